package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

const adminRequestsUsage = "portcullis admin requests [list] | requests approve ID [--note TEXT] | requests deny ID [--note TEXT]"

// adminRequests lists every just-in-time access request, or approves or
// denies one. Approving needs a person: over the admin socket the caller
// is local-admin and the server refuses (reason "approver-required");
// denying works from the socket too.
func adminRequests(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin requests", adminRequestsUsage, stderr)
	conn.register(fs)
	note := fs.String("note", "", "note recorded with the decision")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	sub := "list"
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	noteSet := false
	fs.Visit(func(f *flag.Flag) { noteSet = noteSet || f.Name == "note" })
	switch sub {
	case "list":
		if len(pos) > 0 {
			return usageError(fs, stderr, "unexpected argument %q", adminclient.Sanitize(pos[0]))
		}
		if noteSet {
			return usageError(fs, stderr, "--note goes with approve and deny")
		}
		var resp adminclient.RequestList
		printed, err := call(ctx, conn, adminclient.AdminRequests(), stdout, &resp)
		if err != nil {
			return fail(stderr, "admin requests", explainErr(err, ""))
		}
		if printed {
			return exitOK
		}
		return requestTable(stdout, stderr, resp.Requests)
	case "approve", "deny":
		if len(pos) != 1 {
			return usageError(fs, stderr, "requests %s expects exactly one request ID", sub)
		}
		if err := checkID("request ID", pos[0]); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		n := strings.TrimSpace(*note)
		if err := checkText("--note", n, maxReason, false); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		var r adminclient.AccessRequest
		printed, err := call(ctx, conn, adminclient.AdminDecideRequest(pos[0], sub, n), stdout, &r)
		if err != nil {
			return fail(stderr, "admin requests "+sub, explainErr(err, "no such request"))
		}
		if !printed {
			fmt.Fprintf(stdout, "request %s %s: now %s\n", adminclient.Sanitize(r.ID), pastTense[sub], describeState(r))
		}
		return exitOK
	default:
		return usageError(fs, stderr, "unknown requests command %q", adminclient.Sanitize(sub))
	}
}
