package main

import (
	"fmt"
	"io"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stdout, "Usage: portcullis config check [--no-secrets] FILE")
			return exitOK
		}
		fmt.Fprintln(stderr, "Usage: portcullis config check [--no-secrets] FILE")
		return exitUsage
	}
	fs := newFlagSet("config check", "portcullis config check [--no-secrets] FILE", stderr)
	noSecrets := fs.Bool("no-secrets", false, "validate structure only: do not read secrets, keys or certificates (for CI without the secrets)")
	pos, code, ok := parseArgs(fs, args[1:])
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "expected exactly one FILE")
	}
	if _, err := loadConfig(pos[0], config.Options{FakeSecrets: *noSecrets}, stderr); err != nil {
		return exitFail
	}
	fmt.Fprintln(stdout, "config OK")
	return exitOK
}
