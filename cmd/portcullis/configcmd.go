package main

import (
	"fmt"
	"io"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stdout, "Usage: portcullis config check [--no-secrets] [--risk] FILE")
			return exitOK
		}
		fmt.Fprintln(stderr, "Usage: portcullis config check [--no-secrets] [--risk] FILE")
		return exitUsage
	}
	fs := newFlagSet("config check", "portcullis config check [--no-secrets] [--risk] FILE", stderr)
	noSecrets := fs.Bool("no-secrets", false, "validate structure only: do not read secrets, keys or certificates (for CI without the secrets)")
	showRisk := fs.Bool("risk", false, "also print the effective anomaly-detection and lockdown settings (defaults applied)")
	pos, code, ok := parseArgs(fs, args[1:])
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "expected exactly one FILE")
	}
	cfg, err := loadConfig(pos[0], config.Options{FakeSecrets: *noSecrets}, stderr)
	if err != nil {
		return exitFail
	}
	fmt.Fprintln(stdout, "config OK")
	if *showRisk {
		if err := config.WriteRisk(stdout, cfg.Risk); err != nil {
			return fail(stderr, "config check", err)
		}
	}
	return exitOK
}
