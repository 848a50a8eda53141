package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// `portcullis request`: just-in-time access from the user's side. It talks
// to the user API (/api/access) with the caller's own bearer token, minted
// at https://ACCESS-HOST/token after a fresh TOTP code; the token is read
// from a file and never printed.

// Client-side bounds, checked before anything is sent (the server applies
// its own): longest grant anyone may configure, longest role and ID.
const (
	maxGrantDuration = 720 * time.Hour
	maxRoleLen       = 128
	maxIDLen         = 512
)

// userConn is how `request` and `audit search|recording` reach the access
// host: always HTTPS with the caller's token.
type userConn struct {
	server    string
	tokenFile string
	caFile    string
	timeout   time.Duration
	json      bool
}

func (c *userConn) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", "", "access host, e.g. https://access.example.com (required)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding an API token from https://ACCESS-HOST/token (required)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM CA certificate to trust for --server (default: system roots)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "request timeout")
	fs.BoolVar(&c.json, "json", false, "print the server's JSON instead of a table")
}

// check refuses missing connection flags (a usage error, before any I/O).
func (c *userConn) check() error {
	switch {
	case c.server == "":
		return errors.New("--server is required")
	case !httpsURL(c.server):
		return errors.New("--server must be an https URL such as https://access.example.com")
	case c.tokenFile == "":
		return errors.New("--token-file is required (mint a token at https://ACCESS-HOST/token)")
	case c.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

func httpsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.Host != ""
}

// client reads the token and builds the HTTPS client.
func (c *userConn) client() (*adminclient.Client, error) {
	tok, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	token := strings.TrimSpace(string(tok))
	if token == "" {
		return nil, fmt.Errorf("token file %s is empty", c.tokenFile)
	}
	return adminclient.NewRemote(adminclient.RemoteOptions{
		Server: c.server, Token: token, CAFile: c.caFile, Timeout: c.timeout, API: "access API",
	})
}

// callUser performs req over the user API like call does for the admin
// API: --json prints the server's JSON, otherwise out receives it.
func callUser(ctx context.Context, conn *userConn, req adminclient.Request, stdout io.Writer, out any) (printed bool, err error) {
	cl, err := conn.client()
	if err != nil {
		return false, err
	}
	body, err := cl.Call(ctx, req)
	if err != nil {
		return false, err
	}
	return decodeAnswer(body, conn.json, stdout, out)
}

// decodeAnswer prints body indented when printJSON, else decodes it into
// out (when non-nil). Invalid JSON is an error either way.
func decodeAnswer(body []byte, printJSON bool, stdout io.Writer, out any) (bool, error) {
	if printJSON {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") != nil {
			return false, errors.New("the server answered with invalid JSON")
		}
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return true, err
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return false, fmt.Errorf("unexpected answer from the server: %v", err)
		}
	}
	return false, nil
}

// reasonText says in words what the server's stable reason codes mean.
var reasonText = map[string]string{
	"self-approval":         "you cannot approve your own request",
	"not-approver":          "you are not an approver for this role",
	"already-decided":       "the request is already decided",
	"duplicate-approval":    "you have already approved this request",
	"not-requestable":       "this role cannot be requested",
	"approver-required":     "approving needs a signed-in approver: use your own token (portcullis request approve, or admin --server URL --token-file FILE), not the admin socket",
	"auditor-role-required": "reading the audit trail and others' recordings needs the auditor role",
	"approval-required":     "reading the audit trail needs the auditor role from an approved request (portcullis request --role ROLE ...)",
}

// explainErr rewrites an API error into what the user can act on; notFound
// names the thing a 404 means is missing ("" keeps the server's words).
func explainErr(err error, notFound string) error {
	var ae *adminclient.APIError
	if !errors.As(err, &ae) {
		return err
	}
	msg, ok := reasonText[ae.Reason]
	switch {
	case ok:
	case ae.Status == http.StatusUnauthorized:
		msg = "the token was refused (expired or revoked?): mint a new one at https://ACCESS-HOST/token"
	case ae.Status == http.StatusNotFound && notFound != "":
		msg = notFound
	default:
		return err
	}
	var notes []string
	if ae.Reason != "" {
		notes = append(notes, "reason "+ae.Reason)
	}
	if ae.Ref != "" {
		notes = append(notes, "ref "+ae.Ref)
	}
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, ", ") + ")"
	}
	return errors.New(msg)
}

// checkText refuses text the server could only reject: too long, not
// UTF-8, or with control characters (it goes into the audit trail).
func checkText(flagName, s string, max int, required bool) error {
	if required && strings.TrimSpace(s) == "" {
		return fmt.Errorf("%s is required", flagName)
	}
	if len(s) > max || !utf8.ValidString(s) || adminclient.Sanitize(s) != s {
		return fmt.Errorf("%s must be printable text of at most %d bytes", flagName, max)
	}
	return nil
}

// checkID refuses an empty, oversized or unprintable identifier.
func checkID(what, s string) error {
	if strings.TrimSpace(s) == "" || len(s) > maxIDLen || !utf8.ValidString(s) || adminclient.Sanitize(s) != s {
		return fmt.Errorf("bad %s %q", what, adminclient.Sanitize(s))
	}
	return nil
}

// parseFor parses a --for duration: positive, at most 30 days.
func parseFor(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--for %q is not a duration such as 2h or 90m", adminclient.Sanitize(s))
	}
	if d <= 0 {
		return 0, errors.New("--for must be positive")
	}
	if d > maxGrantDuration {
		return 0, fmt.Errorf("--for is at most %s", maxGrantDuration)
	}
	return d, nil
}

const requestUsage = `portcullis request --server URL --token-file FILE [--ca-file F] [--json] COMMAND
      --role ROLE --for 2h --reason TEXT   ask for a role for a while (an approver decides)
      list                                 my requests and those I may approve
      show ID
      cancel ID                            withdraw my pending request
      approve ID [--note TEXT]             approve someone else's request
      deny ID [--note TEXT]
      grants                               my active grants`

// requestFlags lists which flags other than the connection flags go with
// which subcommand ("" = creating a request).
var requestFlags = map[string][]string{
	"": {"role", "for", "reason"}, "approve": {"note"}, "deny": {"note"},
	"list": nil, "show": nil, "cancel": nil, "grants": nil,
}

var pastTense = map[string]string{"approve": "approved", "deny": "denied"}

// requestArgs is the number of positionals after each subcommand.
var requestArgs = map[string]int{"": 0, "list": 0, "grants": 0, "show": 1, "cancel": 1, "approve": 1, "deny": 1}

func cmdRequest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("request", requestUsage, stderr)
	conn := &userConn{}
	conn.register(fs)
	role := fs.String("role", "", "role to ask for")
	forS := fs.String("for", "", "how long the role is needed, e.g. 2h (at most 720h)")
	reason := fs.String("reason", "", "why, e.g. an incident ID (recorded in the audit trail)")
	note := fs.String("note", "", "note recorded with an approval or denial")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	sub := ""
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
		if _, known := requestArgs[sub]; !known || sub == "" {
			return usageError(fs, stderr, "unknown command %q", adminclient.Sanitize(sub))
		}
	}
	name := strings.TrimSpace("request " + sub)
	var stray string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "server", "token-file", "ca-file", "timeout", "json":
			return
		}
		for _, ok := range requestFlags[sub] {
			if ok == f.Name {
				return
			}
		}
		if stray == "" {
			stray = f.Name
		}
	})
	if stray != "" {
		return usageError(fs, stderr, "--%s does not go with %q", stray, name)
	}
	if len(pos) != requestArgs[sub] {
		if requestArgs[sub] == 0 {
			return usageError(fs, stderr, "unexpected argument %q", adminclient.Sanitize(pos[0]))
		}
		return usageError(fs, stderr, "%s expects exactly one request ID", name)
	}
	if err := conn.check(); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	var id string
	if len(pos) == 1 {
		id = pos[0]
		if err := checkID("request ID", id); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
	}
	switch sub {
	case "":
		return requestSubmit(ctx, fs, conn, *role, *forS, *reason, stdout, stderr)
	case "list":
		return requestList(ctx, conn, stdout, stderr)
	case "grants":
		return requestGrants(ctx, conn, stdout, stderr)
	case "show":
		return requestOne(ctx, conn, name, adminclient.GetAccessRequest(id), "", stdout, stderr)
	case "cancel":
		return requestOne(ctx, conn, name, adminclient.CancelAccessRequest(id), "cancelled", stdout, stderr)
	default: // approve, deny
		if err := checkText("--note", *note, maxReason, false); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		return requestOne(ctx, conn, name, adminclient.DecideAccessRequest(id, sub, strings.TrimSpace(*note)), pastTense[sub], stdout, stderr)
	}
}

func requestSubmit(ctx context.Context, fs *flag.FlagSet, conn *userConn, role, forS, reason string, stdout, stderr io.Writer) int {
	if role == "" {
		return usageError(fs, stderr, "--role is required (or give a command: list, show, cancel, approve, deny, grants)")
	}
	if err := checkText("--role", role, maxRoleLen, true); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if forS == "" {
		return usageError(fs, stderr, "--for is required, e.g. --for 2h")
	}
	d, err := parseFor(forS)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	reason = strings.TrimSpace(reason)
	if err := checkText("--reason", reason, maxReason, true); err != nil {
		return usageError(fs, stderr, "%v (it is recorded in the audit trail)", err)
	}
	var r adminclient.AccessRequest
	printed, err := callUser(ctx, conn, adminclient.SubmitRequest(role, d, reason), stdout, &r)
	if err != nil {
		return fail(stderr, "request", explainErr(err, ""))
	}
	if !printed {
		fmt.Fprintf(stdout, "request %s for %s (%s): %s\n", adminclient.Sanitize(r.ID), adminclient.Sanitize(r.Role),
			adminclient.Sanitize(r.Duration), describeState(r))
	}
	return exitOK
}

// describeState is one line about where a request stands.
func describeState(r adminclient.AccessRequest) string {
	s := adminclient.Sanitize(r.State)
	switch r.State {
	case "pending":
		s += fmt.Sprintf(" (%s approvals", approvals(r))
		if !r.ExpiresAt.IsZero() {
			s += "; decide by " + when(r.ExpiresAt.Time)
		}
		s += ")"
	case "approved":
		if r.GrantID != "" {
			s += " (grant " + adminclient.Sanitize(r.GrantID) + ")"
		}
	case "denied":
		if r.Denial != nil {
			s += " by " + adminclient.Sanitize(r.Denial.UserID)
		}
	}
	return s
}

func approvals(r adminclient.AccessRequest) string {
	need := r.ApprovalsRequired
	if need <= 0 {
		need = 1
	}
	return fmt.Sprintf("%d/%d", len(r.Approvals), need)
}

func requestList(ctx context.Context, conn *userConn, stdout, stderr io.Writer) int {
	var resp adminclient.MyRequests
	printed, err := callUser(ctx, conn, adminclient.MyAccessRequests(), stdout, &resp)
	if err != nil {
		return fail(stderr, "request list", explainErr(err, ""))
	}
	if printed {
		return exitOK
	}
	fmt.Fprintln(stdout, "My requests:")
	if code := requestTable(stdout, stderr, resp.Requests); code != exitOK {
		return code
	}
	fmt.Fprintln(stdout, "\nTo approve:")
	return requestTable(stdout, stderr, resp.ToApprove)
}

// requestTable prints requests, one row each.
func requestTable(stdout, stderr io.Writer, rs []adminclient.AccessRequest) int {
	tw := table(stdout, "ID", "USER", "ROLE", "FOR", "STATE", "APPROVALS", "CREATED", "DECIDE BY", "REASON")
	for _, r := range rs {
		row(tw, r.ID, r.UserID, r.Role, r.Duration, r.State, approvals(r), when(r.CreatedAt), when(r.ExpiresAt.Time), r.Reason)
	}
	return flush(tw, stderr)
}

// requestOne shows a request (after an action, when done is its past tense).
func requestOne(ctx context.Context, conn *userConn, name string, req adminclient.Request, done string, stdout, stderr io.Writer) int {
	var r adminclient.AccessRequest
	printed, err := callUser(ctx, conn, req, stdout, &r)
	if err != nil {
		return fail(stderr, name, explainErr(err, "no such request (or it is not yours to see)"))
	}
	if printed {
		return exitOK
	}
	if done != "" {
		fmt.Fprintf(stdout, "request %s %s: now %s\n", adminclient.Sanitize(r.ID), done, describeState(r))
		return exitOK
	}
	return printRequest(stdout, stderr, r)
}

// printRequest prints every field of a request, one per line.
func printRequest(stdout, stderr io.Writer, r adminclient.AccessRequest) int {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"id", r.ID}, {"user", r.UserID}, {"role", r.Role}, {"for", r.Duration}, {"reason", r.Reason},
		{"state", r.State}, {"approvals", approvals(r)}, {"created", when(r.CreatedAt)}, {"decide by", when(r.ExpiresAt.Time)},
		{"grant", r.GrantID},
	} {
		row(tw, kv[0]+":", kv[1])
	}
	for _, a := range r.Approvals {
		row(tw, "approved by:", strings.TrimSpace(a.UserID+" at "+when(a.At)+" "+a.Note))
	}
	if r.Denial != nil {
		row(tw, "denied by:", strings.TrimSpace(r.Denial.UserID+" at "+when(r.Denial.At)+" "+r.Denial.Note))
	}
	return flush(tw, stderr)
}

func requestGrants(ctx context.Context, conn *userConn, stdout, stderr io.Writer) int {
	var resp adminclient.GrantList
	printed, err := callUser(ctx, conn, adminclient.MyGrants(), stdout, &resp)
	if err != nil {
		return fail(stderr, "request grants", explainErr(err, ""))
	}
	if printed {
		return exitOK
	}
	return grantTable(stdout, stderr, resp.Grants)
}

// grantTable prints grants, one row each.
func grantTable(stdout, stderr io.Writer, gs []adminclient.AccessGrant) int {
	tw := table(stdout, "ID", "USER", "ROLE", "SOURCE", "START", "EXPIRES", "BY", "REQUEST", "REASON")
	for _, g := range gs {
		expires := when(g.Expires.Time)
		if expires == "" {
			expires = "until revoked"
		}
		row(tw, g.ID, g.UserID, g.Role, g.Source, when(g.Start.Time), expires, g.CreatedBy, g.RequestID, g.Reason)
	}
	return flush(tw, stderr)
}
