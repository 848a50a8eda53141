// Command portcullis is the one Portcullis binary: the gateway and SSH
// bastion server (serve), a self-contained demo (demo), a configuration
// checker (config check), the admin client (admin), just-in-time access
// requests (request), and the audit and session recording tools (audit,
// play, recording).
//
// Exit codes: 0 success, 1 failure (bad configuration, server error,
// refused admin call), 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program minus os.Exit, so tests can drive it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context that long-running commands (serve,
// demo) stop on, besides SIGINT and SIGTERM.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "config":
		return cmdConfig(rest, stdout, stderr)
	case "admin":
		return cmdAdmin(ctx, rest, stdout, stderr)
	case "login":
		return cmdLogin(ctx, rest, stdout, stderr)
	case "play":
		return cmdPlay(ctx, rest, stdout, stderr)
	case "recording":
		return cmdRecording(rest, stdout, stderr)
	case "audit":
		return cmdAudit(ctx, rest, stdout, stderr)
	case "request":
		return cmdRequest(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, mainUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "portcullis: unknown command %q\n\n%s", cmd, mainUsage)
		return exitUsage
	}
}

const mainUsage = `Portcullis — zero-trust access gateway and SSH bastion.

Usage:
  portcullis serve --config FILE
  portcullis demo [--data-dir DIR] [--listen ADDR] [--ssh-listen ADDR] [--no-open]
  portcullis config check [--no-secrets] [--risk] FILE
  portcullis login --proxy https://ACCESS-HOST [--ca-file FILE] [--no-browser] [--dir DIR]
  portcullis admin [--socket PATH | --server URL --token-file FILE] [--json] COMMAND ...
      users
      sessions [--user USER]
      revoke SESSION [--reason TEXT]
      mfa-reset USER [--reason TEXT]
      explain --user USER --app APP --path PATH --ip ADDR [--method METHOD] [--groups G1,G2]
      kill SSH-SESSION --reason TEXT
      watch SSH-SESSION
      revoke-cert (--serial N | --key-id USER) [--reason TEXT]
      locks                             account locks and source blocks
      lock USER --reason TEXT           lock an account on every instance (ends its sessions)
      unlock (USER | user:ID | ip:ADDR[/BITS]) --reason TEXT
      purge [--dry-run]                 delete trail files and recordings past their retention (socket only)
      delete-user USER [--reason TEXT]  erase a user's MFA, sessions, SSH certificates, risk profile (socket only)
      rotate-key --old-key FILE --new-key FILE --dir DIR   re-wrap every recording's key (offline)
      requests [list] | requests approve|deny ID [--note TEXT]   just-in-time access requests
      grants [list] | grants add USER ROLE [--until RFC3339 | --for 720h] --reason TEXT | grants revoke ID --reason TEXT
      review start --name NAME | status | show NAME | decide NAME ITEM keep|revoke [--note N] | signoff NAME
      review report NAME --format csv|json|html [--out FILE]
  portcullis request --server URL --token-file FILE [--ca-file F] [--json] COMMAND ...
      --role ROLE --for 2h --reason TEXT   ask for a role for a while
      list | show ID | cancel ID | approve ID [--note N] | deny ID [--note N] | grants
  portcullis audit verify [--pubkey FILE] DIR   check the audit trail (offline; exit 0 only when it verifies)
  portcullis audit search --server URL --token-file FILE [--user U] [--type T] [--since T] [--until T] [--limit N] [--json]
  portcullis audit recordings|recording ...     list or download session recordings through the server
  portcullis play (--key FILE | --config FILE) [--speed X] [--max-idle D] RECORDING
  portcullis recording info (--key FILE | --config FILE) [--json] RECORDING
  portcullis recording export (--key FILE | --config FILE) --format asciicast [-o FILE] RECORDING

Run "portcullis COMMAND --help" for a command's flags.
Exit status: 0 success, 1 failure, 2 usage error.
`

// newFlagSet returns a FlagSet that reports to stderr and whose usage line
// is usage.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n", usage)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses flags that may appear before, between or after
// positional arguments ("revoke ID --reason x") and returns the
// positionals. It returns a usage exit code (0 for --help) when parsing
// fails.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageError prints msg and the FlagSet's usage; it returns exitUsage.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return exitUsage
}

// fail prints an error line; it returns exitFail.
func fail(stderr io.Writer, cmd string, err error) int {
	msg := strings.TrimRight(err.Error(), "\n")
	fmt.Fprintf(stderr, "portcullis %s: %s\n", cmd, msg)
	return exitFail
}
