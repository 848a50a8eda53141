package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// Limits the server applies too; checked here for a clear message before
// anything is sent.
const (
	maxSubject = 512 + len("user:")
	maxReason  = 200
)

// adminLocks lists account locks and source blocks.
func adminLocks(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin locks", "portcullis admin locks [--json]", stderr)
	conn.register(fs)
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	var resp adminclient.LocksResponse
	printed, err := call(ctx, conn, adminclient.Locks(), stdout, &resp)
	if err != nil {
		return fail(stderr, "admin locks", err)
	}
	if printed {
		return exitOK
	}
	tw := table(stdout, "SUBJECT", "REASON", "REF", "CREATED", "EXPIRES", "DETAIL")
	for _, l := range resp.Locks {
		expires := when(l.ExpiresAt)
		if expires == "" {
			expires = "never" // account locks last until an admin unlocks
		}
		row(tw, l.Subject, l.Reason, l.Ref, when(l.CreatedAt), expires, l.Detail)
	}
	return flush(tw, stderr)
}

// adminLock locks an account on every instance: web sessions and SSH
// certificates are revoked, live sessions end, and only an unlock lifts it.
func adminLock(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin lock", "portcullis admin lock USER --reason TEXT", stderr)
	conn.register(fs)
	reason := fs.String("reason", "", "why (required; recorded in the audit trail)")
	user, why, code, ok := lockArgs(fs, args, "USER", reason, stderr)
	if !ok {
		return code
	}
	// "user:<id>" is how locks lists it; the API takes the bare ID.
	user = strings.TrimPrefix(user, "user:")
	if err := checkSubject(user); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if strings.HasPrefix(user, "ip:") {
		return usageError(fs, stderr, "only accounts are locked by hand; sources (ip:…) are blocked automatically and lifted with unlock")
	}
	var resp adminclient.LockResponse
	printed, err := call(ctx, conn, adminclient.LockUser(user, why), stdout, &resp)
	var apiErr *adminclient.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		// Users are known from their first web login on.
		return fail(stderr, "admin lock", fmt.Errorf("%s is not a known user (see portcullis admin users)", adminclient.Sanitize(user)))
	case err != nil:
		return fail(stderr, "admin lock", err)
	}
	if !printed {
		fmt.Fprintf(stdout, "%s locked on every instance (ref %s): web sessions and SSH certificates revoked; only `portcullis admin unlock` lifts it\n",
			adminclient.Sanitize(user), adminclient.Sanitize(resp.Lock.Ref))
	}
	return exitOK
}

// adminUnlock lifts an account lock or a source block.
func adminUnlock(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin unlock", "portcullis admin unlock (USER | user:ID | ip:ADDR[/BITS]) --reason TEXT", stderr)
	conn.register(fs)
	reason := fs.String("reason", "", "why (required; recorded in the audit trail)")
	subject, why, code, ok := lockArgs(fs, args, "USER or ip:ADDR", reason, stderr)
	if !ok {
		return code
	}
	if err := checkSubject(subject); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	printed, err := call(ctx, conn, adminclient.Unlock(subject, why), stdout, nil)
	var apiErr *adminclient.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		return fail(stderr, "admin unlock", fmt.Errorf("%s is not locked", adminclient.Sanitize(subject)))
	case err != nil:
		return fail(stderr, "admin unlock", err)
	}
	if !printed {
		fmt.Fprintf(stdout, "%s unlocked on every instance\n", adminclient.Sanitize(subject))
	}
	return exitOK
}

// lockArgs parses the one positional argument and the required --reason.
func lockArgs(fs *flag.FlagSet, args []string, what string, reason *string, stderr io.Writer) (arg, why string, code int, ok bool) {
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return "", "", code, false
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return "", "", usageError(fs, stderr, "expected exactly one %s", what), false
	}
	why = strings.TrimSpace(*reason)
	if why == "" {
		return "", "", usageError(fs, stderr, "--reason is required (it is recorded in the audit trail)"), false
	}
	if len(why) > maxReason || !utf8.ValidString(why) || adminclient.Sanitize(why) != why {
		return "", "", usageError(fs, stderr, "--reason must be printable text of at most %d bytes", maxReason), false
	}
	return pos[0], why, 0, true
}

// checkSubject refuses subjects the server could only reject: control
// characters, "user:" with no ID, "ip:" with no valid address or prefix.
func checkSubject(s string) error {
	if strings.TrimSpace(s) == "" || len(s) > maxSubject || !utf8.ValidString(s) || adminclient.Sanitize(s) != s {
		return fmt.Errorf("bad subject %q: want a user ID, user:ID or ip:ADDR", adminclient.Sanitize(s))
	}
	if rest, ok := strings.CutPrefix(s, "ip:"); ok {
		if _, err := netip.ParseAddr(rest); err == nil {
			return nil
		}
		if _, err := netip.ParsePrefix(rest); err == nil {
			return nil // the server masks host bits, as locks lists it
		}
		return fmt.Errorf("bad subject %q: want ip:ADDR or ip:NETWORK/BITS (as admin locks lists it)", s)
	}
	if rest, ok := strings.CutPrefix(s, "user:"); ok && strings.TrimSpace(rest) == "" {
		return fmt.Errorf("bad subject %q: user: needs a user ID", s)
	}
	return nil
}
