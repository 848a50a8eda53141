package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// clock is the CLI's time source; tests replace it to check --for.
var clock = time.Now

const adminGrantsUsage = "portcullis admin grants [list] | grants add USER ROLE [--until RFC3339 | --for 720h] --reason TEXT | grants revoke ID --reason TEXT"

// adminGrants lists active grants, adds a "local" grant (until a time, for
// a while, or until revoked) or revokes one at once on every instance.
func adminGrants(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin grants", adminGrantsUsage, stderr)
	conn.register(fs)
	until := fs.String("until", "", "grant ends at this RFC 3339 time (add)")
	forS := fs.String("for", "", "grant lasts this long, e.g. 720h (add)")
	reason := fs.String("reason", "", "why (required for add and revoke; recorded in the audit trail)")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	sub := "list"
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch sub {
	case "list":
		if len(pos) > 0 {
			return usageError(fs, stderr, "unexpected argument %q", adminclient.Sanitize(pos[0]))
		}
		if set["until"] || set["for"] || set["reason"] {
			return usageError(fs, stderr, "--until, --for and --reason go with add or revoke")
		}
		var resp adminclient.GrantList
		printed, err := call(ctx, conn, adminclient.AdminGrants(), stdout, &resp)
		if err != nil {
			return fail(stderr, "admin grants", explainErr(err, ""))
		}
		if printed {
			return exitOK
		}
		return grantTable(stdout, stderr, resp.Grants)
	case "add":
		return adminGrantAdd(ctx, fs, conn, pos, set, *until, *forS, *reason, stdout, stderr)
	case "revoke":
		if set["until"] || set["for"] {
			return usageError(fs, stderr, "--until and --for go with add")
		}
		if len(pos) != 1 {
			return usageError(fs, stderr, "grants revoke expects exactly one grant ID")
		}
		if err := checkID("grant ID", pos[0]); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		why := strings.TrimSpace(*reason)
		if err := checkText("--reason", why, maxReason, true); err != nil {
			return usageError(fs, stderr, "%v (it is recorded in the audit trail)", err)
		}
		printed, err := call(ctx, conn, adminclient.RevokeGrant(pos[0], why), stdout, nil)
		if err != nil {
			return fail(stderr, "admin grants revoke", explainErr(err, "no such active grant (already revoked or expired?)"))
		}
		if !printed {
			fmt.Fprintf(stdout, "grant %s revoked on every instance; live sessions that relied on it end\n", adminclient.Sanitize(pos[0]))
		}
		return exitOK
	default:
		return usageError(fs, stderr, "unknown grants command %q", adminclient.Sanitize(sub))
	}
}

func adminGrantAdd(ctx context.Context, fs *flag.FlagSet, conn *adminConn, pos []string, set map[string]bool, until, forS, reason string, stdout, stderr io.Writer) int {
	if len(pos) != 2 {
		return usageError(fs, stderr, "grants add expects USER and ROLE")
	}
	user := strings.TrimPrefix(pos[0], "user:") // as admin locks lists it
	if err := checkSubject(user); err != nil || strings.HasPrefix(user, "ip:") {
		return usageError(fs, stderr, "bad user %q: want a user ID (see portcullis admin users)", adminclient.Sanitize(user))
	}
	role := pos[1]
	if err := checkText("ROLE", role, maxRoleLen, true); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	var expires time.Time
	switch {
	case set["until"] && set["for"]:
		return usageError(fs, stderr, "give --until or --for, not both")
	case set["until"]:
		t, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return usageError(fs, stderr, "--until %q is not an RFC 3339 time such as 2026-12-31T18:00:00Z", adminclient.Sanitize(until))
		}
		if !t.After(clock()) {
			return usageError(fs, stderr, "--until is in the past")
		}
		expires = t
	case set["for"]:
		d, err := parseFor(forS)
		if err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		expires = clock().Add(d)
	}
	why := strings.TrimSpace(reason)
	if err := checkText("--reason", why, maxReason, true); err != nil {
		return usageError(fs, stderr, "%v (it is recorded in the audit trail)", err)
	}
	var g adminclient.AccessGrant
	printed, err := call(ctx, conn, adminclient.AddGrant(user, role, expires, why), stdout, &g)
	var ae *adminclient.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		return fail(stderr, "admin grants add", fmt.Errorf("the server does not know this user or role: %v", err))
	case err != nil:
		return fail(stderr, "admin grants add", explainErr(err, ""))
	}
	if !printed {
		exp := when(g.Expires.Time)
		if exp == "" {
			exp = "until revoked"
		} else {
			exp = "until " + exp
		}
		fmt.Fprintf(stdout, "grant %s: %s has %s %s\n", adminclient.Sanitize(g.ID), adminclient.Sanitize(g.UserID), adminclient.Sanitize(g.Role), exp)
	}
	return exitOK
}
