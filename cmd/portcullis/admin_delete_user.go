package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// adminDeleteUser erases what Portcullis stores about a user, in one call
// to the running server: TOTP secret and recovery codes, web sessions
// (on every instance), SSH certificates (revoked by key ID), just-in-time
// access requests and grants (a grant ends at once), the risk profile and
// the users entry. The audit trail keeps the user ID, as the
// law allows for security logs; an account lock is kept.
func adminDeleteUser(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin delete-user", "portcullis admin delete-user USER [--reason TEXT] [--json]", stderr)
	conn.register(fs)
	reason := fs.String("reason", "", "why (recorded in the audit trail)")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		return usageError(fs, stderr, "expected exactly one USER")
	}
	user := strings.TrimPrefix(pos[0], "user:") // as admin locks lists it
	if err := checkSubject(user); err != nil || strings.HasPrefix(user, "ip:") {
		return usageError(fs, stderr, "bad user %q: want a user ID (see portcullis admin users)", adminclient.Sanitize(user))
	}
	why := strings.TrimSpace(*reason)
	if len(why) > maxReason || !utf8.ValidString(why) || adminclient.Sanitize(why) != why {
		return usageError(fs, stderr, "--reason must be printable text of at most %d bytes", maxReason)
	}
	var res adminclient.DeleteUserResult
	printed, err := call(ctx, conn, adminclient.DeleteUser(user, why), stdout, &res)
	var apiErr *adminclient.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		return fail(stderr, "admin delete-user", fmt.Errorf("nothing is stored for %s: not a known user ID, or already deleted", adminclient.Sanitize(user)))
	case err != nil:
		return fail(stderr, "admin delete-user", err)
	}
	if printed {
		return exitOK
	}
	removed := func(b bool) string {
		if b {
			return "removed"
		}
		return "none"
	}
	fmt.Fprintf(stdout, "deleted %s on every instance:\n", adminclient.Sanitize(user))
	fmt.Fprintf(stdout, "  web sessions revoked:  %d\n", res.Sessions)
	if res.SSHCertsRevoked {
		fmt.Fprintf(stdout, "  SSH certificates:      revoked (every one issued so far)\n")
	}
	fmt.Fprintf(stdout, "  JIT requests/grants:   %d removed\n", res.AccessRecords)
	fmt.Fprintf(stdout, "  TOTP enrolment:        %s\n", removed(res.MFAEnrolment))
	fmt.Fprintf(stdout, "  recovery codes:        %d removed\n", res.RecoveryCodes)
	fmt.Fprintf(stdout, "  risk profile:          %s\n", removed(res.RiskProfile))
	fmt.Fprintf(stdout, "  users entry:           %s\n", removed(res.DirectoryEntry))
	if res.Locked {
		fmt.Fprintf(stdout, "  account lock:          kept (lift it with portcullis admin unlock)\n")
	}
	fmt.Fprintf(stdout, "the audit trail keeps the user ID\n")
	return exitOK
}
