package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
)

// The audit command family: offline tools over the audit trail (verify),
// and reads through the running server (search, recordings, recording; see
// audit_search.go).

const auditUsage = `Usage: portcullis audit COMMAND

Commands:
  verify [--pubkey FILE] [--recordings DIR (--key FILE | --config FILE) [--allow-incomplete]] DIR
                               check the hash chain, signed checkpoints and head markers
                               of every instance's trail in DIR (offline); with
                               --recordings, also authenticate every chunk of every
                               session recording in that directory
  search --server URL --token-file FILE [--user U] [--type T] [--since T] [--until T] [--limit N] [--json]
                               search the trail through the server (auditor role)
  recordings --server URL --token-file FILE [--user U] [--json]
                               list session recordings (your own, or any as auditor)
  recording --server URL --token-file FILE [--out FILE] ID
                               download a recording as asciicast v2

Exit status of verify: 0 everything verifies, 1 a problem was found, 2 the
directory or key could not be read, or a usage error.
`

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return exitUsage
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "search":
		return auditSearch(ctx, args[1:], stdout, stderr)
	case "recordings":
		return auditRecordings(ctx, args[1:], stdout, stderr)
	case "recording":
		return auditRecording(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, auditUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "portcullis audit: unknown command %q\n\n%s", args[0], auditUsage)
		return exitUsage
	}
}

// auditVerify runs audit.Verify and reports exactly what it found: the
// report's text on stdout and its exit code. It needs only public keys.
// Without --pubkey the copy beside the trail is used; whoever can edit
// the trail can replace that copy too, so the command says so on stderr
// as well as in the report.
func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit verify", "portcullis audit verify [--pubkey FILE] [--recordings DIR (--key FILE | --config FILE)] DIR", stderr)
	pubkey := fs.String("pubkey", "", "PEM file of trusted public keys, kept apart from the trail (default: the copy beside the trail, with a warning)")
	recDir := fs.String("recordings", "", "also verify the session recordings in `DIR` (needs the recording key)")
	kf := addKeyFlags(fs)
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "want exactly one audit directory, got %d arguments", len(pos))
	}
	dir := pos[0]
	var recKey *recording.Key
	if *recDir != "" {
		if recKey, code, ok = kf.load(fs, stderr); !ok {
			return code
		}
	} else if *kf.key != "" || *kf.config != "" {
		return usageError(fs, stderr, "--key and --config go with --recordings")
	}
	var keys []ed25519.PublicKey
	var opts audit.VerifyOptions
	if *pubkey != "" {
		var err error
		if keys, err = audit.ReadPublicKeys(*pubkey); err != nil {
			fmt.Fprintf(stderr, "portcullis audit verify: %v\n", err)
			return exitUsage
		}
		opts.KeySource = "--pubkey " + *pubkey
	}
	rep, err := audit.Verify(dir, keys, opts)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis audit verify: %v\n", err)
		return exitUsage
	}
	if rep.BesideKey {
		fmt.Fprintln(stderr, "portcullis audit verify: WARNING: no --pubkey given: verified with the public key stored beside the trail,\n"+
			"  which whoever can edit the trail can also replace. Verify with --pubkey and a copy of the key kept elsewhere.")
	}
	fmt.Fprint(stdout, rep.String())
	status := rep.ExitCode()
	if *recDir != "" {
		if rc := verifyRecordings(*recDir, recKey, *kf.allowIncomplete, stdout, stderr); rc > status {
			status = rc
		}
	}
	return status
}

// verifyRecordings authenticates every recording in dir and prints one
// line per recording; the status is 1 when any is tampered with, under
// another key, corrupt, or (without allowIncomplete) cut short.
func verifyRecordings(dir string, key *recording.Key, allowIncomplete bool, stdout, stderr io.Writer) int {
	entries, err := recording.VerifyDir(dir, key)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis audit verify: recordings: %v\n", err)
		return exitUsage
	}
	bad, incomplete := 0, 0
	for _, e := range entries {
		switch {
		case e.Err == nil:
			fmt.Fprintf(stdout, "recording %s: OK (%d chunks)\n", filepath.Base(e.Path), e.Result.Chunks)
		case errors.Is(e.Err, recording.ErrTruncated):
			incomplete++
			fmt.Fprintf(stdout, "recording %s: INCOMPLETE: %v\n", filepath.Base(e.Path), e.Err)
		default:
			bad++
			fmt.Fprintf(stdout, "recording %s: FAILED: %v\n", filepath.Base(e.Path), e.Err)
		}
	}
	fmt.Fprintf(stdout, "recordings: %d verified, %d incomplete, %d failed\n", len(entries)-bad-incomplete, incomplete, bad)
	if bad > 0 || (incomplete > 0 && !allowIncomplete) {
		return exitFail
	}
	return exitOK
}
