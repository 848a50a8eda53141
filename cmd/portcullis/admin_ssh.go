package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// adminSessions lists web sessions and, when the server runs a bastion,
// the live SSH sessions of every bastion instance, each with the instance
// that runs it. With --json it prints one array of both, each entry
// tagged "kind": "web" or "ssh". When the server could list only its own
// SSH sessions (its state store did not answer), a warning goes to
// stderr.
func adminSessions(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin sessions", "portcullis admin sessions [--user USER] [--json]", stderr)
	conn.register(fs)
	user := fs.String("user", "", "only this user's sessions")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	cl, err := conn.client()
	if err != nil {
		return fail(stderr, "admin sessions", err)
	}
	webBody, err := cl.Call(ctx, adminclient.Sessions(*user))
	if err != nil {
		return fail(stderr, "admin sessions", err)
	}
	var web []adminclient.Session
	if err := json.Unmarshal(webBody, &web); err != nil {
		return fail(stderr, "admin sessions", fmt.Errorf("unexpected answer from the server: %v", err))
	}
	sshs, haveSSH, err := sshSessions(ctx, cl, stderr)
	if err != nil {
		return fail(stderr, "admin sessions", err)
	}
	if *user != "" {
		// The web list is filtered by the server; the bastion's is not.
		kept := sshs[:0]
		for _, s := range sshs {
			if s.UserID == *user {
				kept = append(kept, s)
			}
		}
		sshs = kept
	}
	if conn.json {
		return printSessionsJSON(webBody, sshs, stdout, stderr)
	}
	tw := table(stdout, "SESSION", "USER", "ROLES", "CREATED", "LAST SEEN", "EXPIRES", "SOURCE IP")
	for _, s := range web {
		row(tw, s.ID, s.UserID, list(s.Roles), when(s.CreatedAt), when(s.LastSeen), when(s.ExpiresAt), s.SourceIP)
	}
	if code := flush(tw, stderr); code != exitOK || !haveSSH {
		return code
	}
	fmt.Fprintln(stdout)
	tw = table(stdout, "SSH SESSION", "USER", "LOGIN@TARGET", "SOURCE IP", "STARTED", "LAST ACTIVE", "CERT SERIAL", "INSTANCE", "RECORDING")
	for _, s := range sshs {
		row(tw, s.ID, s.UserID, s.Login+"@"+s.Target, s.SourceIP, when(s.Start), when(s.LastActive), strconv.FormatUint(s.CertSerial, 10),
			s.Instance, s.Recording)
	}
	return flush(tw, stderr)
}

// sshSessions fetches the live SSH sessions of every bastion instance; ok
// is false when the server runs no bastion. It asks for the envelope that
// carries the server's warning, and accepts a plain list too (servers
// from before the envelope). A warning is printed to stderr.
func sshSessions(ctx context.Context, cl *adminclient.Client, stderr io.Writer) (sessions []adminclient.SSHSession, ok bool, err error) {
	req := adminclient.SSHSessions()
	req.Query = url.Values{"envelope": {"1"}}
	body, err := cl.Call(ctx, req)
	var apiErr *adminclient.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound:
		return nil, false, nil // the server runs no bastion
	case err != nil:
		return nil, false, err
	}
	var page struct {
		Sessions []adminclient.SSHSession `json:"sessions"`
		Warning  string                   `json:"warning"`
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		err = json.Unmarshal(body, &page.Sessions)
	} else {
		err = json.Unmarshal(body, &page)
	}
	if err != nil {
		return nil, false, fmt.Errorf("unexpected answer from the server: %v", err)
	}
	if page.Warning != "" {
		fmt.Fprintf(stderr, "portcullis: warning: SSH session list incomplete: %s\n", adminclient.Sanitize(page.Warning))
	}
	return page.Sessions, true, nil
}

// printSessionsJSON prints the web sessions as the server sent them plus
// the SSH sessions, each object with a "kind".
func printSessionsJSON(webBody []byte, sshs []adminclient.SSHSession, stdout, stderr io.Writer) int {
	var web []map[string]any
	if err := json.Unmarshal(webBody, &web); err != nil {
		return fail(stderr, "admin sessions", fmt.Errorf("unexpected answer from the server: %v", err))
	}
	all := make([]any, 0, len(web)+len(sshs))
	for _, w := range web {
		w["kind"] = "web"
		all = append(all, w)
	}
	for _, s := range sshs {
		all = append(all, struct {
			Kind string `json:"kind"`
			adminclient.SSHSession
		}{"ssh", s})
	}
	out, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return fail(stderr, "admin sessions", err)
	}
	if _, err := stdout.Write(append(out, '\n')); err != nil {
		return fail(stderr, "admin sessions", err)
	}
	return exitOK
}

// adminKill ends a live SSH session wherever it runs.
func adminKill(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin kill", "portcullis admin kill SESSION --reason TEXT", stderr)
	conn.register(fs)
	reason := fs.String("reason", "", "why (required; recorded in the audit trail and the recording)")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "expected exactly one SESSION")
	}
	if *reason == "" {
		return usageError(fs, stderr, "--reason is required")
	}
	printed, err := call(ctx, conn, adminclient.Kill(pos[0], *reason), stdout, nil)
	if err != nil {
		return fail(stderr, "admin kill", err)
	}
	if !printed {
		fmt.Fprintf(stdout, "SSH session %s killed (on whichever instance runs it)\n", adminclient.Sanitize(pos[0]))
	}
	return exitOK
}

// adminWatch streams a live SSH session's output, read-only, until it
// ends or the watcher is interrupted. The bytes are the session's
// terminal output, written to this terminal as they are.
func adminWatch(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin watch", "portcullis admin watch SESSION", stderr)
	conn.register(fs)
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "expected exactly one SESSION")
	}
	cl, err := conn.client()
	if err != nil {
		return fail(stderr, "admin watch", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	body, err := cl.Stream(ctx, adminclient.Watch(pos[0]))
	if err != nil {
		return fail(stderr, "admin watch", err)
	}
	defer body.Close()
	fmt.Fprintf(stderr, "portcullis: watching SSH session %s (read-only); Ctrl-C stops watching, not the session\r\n", adminclient.Sanitize(pos[0]))
	_, err = io.Copy(stdout, body)
	switch {
	case ctx.Err() != nil:
		return exitOK
	case err != nil:
		return fail(stderr, "admin watch", fmt.Errorf("watch interrupted: %w", err))
	}
	fmt.Fprint(stderr, "\r\nportcullis: the session ended\r\n")
	return exitOK
}

// adminRevokeCert revokes SSH user certificates by serial or key ID.
func adminRevokeCert(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin revoke-cert", "portcullis admin revoke-cert (--serial N | --key-id USER) [--reason TEXT]", stderr)
	conn.register(fs)
	serial := fs.Uint64("serial", 0, "revoke the certificate with this serial (see admin sessions)")
	keyID := fs.String("key-id", "", "revoke every certificate issued so far to this key ID (the user ID)")
	reason := fs.String("reason", "", "why (recorded in the audit trail)")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	if (*serial == 0) == (*keyID == "") {
		return usageError(fs, stderr, "give exactly one of --serial and --key-id")
	}
	printed, err := call(ctx, conn, adminclient.RevokeCert(*serial, *keyID, *reason), stdout, nil)
	if err != nil {
		return fail(stderr, "admin revoke-cert", err)
	}
	if !printed {
		var b bytes.Buffer
		if *serial != 0 {
			fmt.Fprintf(&b, "SSH certificate serial %d revoked", *serial)
		} else {
			fmt.Fprintf(&b, "SSH certificates of %s issued until now revoked", adminclient.Sanitize(*keyID))
		}
		b.WriteString(" on every instance; live sessions using them end\n")
		stdout.Write(b.Bytes())
	}
	return exitOK
}
