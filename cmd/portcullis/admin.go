package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// DefaultAdminSocket is where `serve` listens when the config names no
// admin_socket and data_dir is the default.
const DefaultAdminSocket = "/var/lib/portcullis/admin.sock"

// adminConn is how the admin client reaches the server. Its flags are
// accepted both before the subcommand and after it.
type adminConn struct {
	socket    string
	server    string
	tokenFile string
	caFile    string
	timeout   time.Duration
	json      bool
}

// register adds the connection flags to fs, defaulting to the values
// already parsed (so "admin --socket X users --json" keeps X).
func (c *adminConn) register(fs *flag.FlagSet) {
	fs.StringVar(&c.socket, "socket", c.socket, "admin Unix socket of the local server")
	fs.StringVar(&c.server, "server", c.server, "remote access host, e.g. https://access.example.com (with --token-file)")
	fs.StringVar(&c.tokenFile, "token-file", c.tokenFile, "file holding an admin API token from https://ACCESS-HOST/admin/token")
	fs.StringVar(&c.caFile, "ca-file", c.caFile, "PEM CA certificate to trust for --server (default: system roots)")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "request timeout")
	fs.BoolVar(&c.json, "json", c.json, "print the server's JSON instead of a table")
}

func (c *adminConn) client() (*adminclient.Client, error) {
	if c.server == "" {
		if c.tokenFile != "" || c.caFile != "" {
			return nil, fmt.Errorf("--token-file and --ca-file go with --server")
		}
		return adminclient.NewUnix(c.socket, c.timeout), nil
	}
	if c.socket != DefaultAdminSocket {
		return nil, fmt.Errorf("give --socket or --server, not both")
	}
	if c.tokenFile == "" {
		return nil, fmt.Errorf("--server needs --token-file")
	}
	tok, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	return adminclient.NewRemote(adminclient.RemoteOptions{
		Server: c.server, Token: strings.TrimSpace(string(tok)), CAFile: c.caFile, Timeout: c.timeout,
	})
}

const adminUsage = "portcullis admin [--socket PATH | --server URL --token-file FILE] [--json] users|sessions|revoke|mfa-reset|explain|kill|watch|revoke-cert|locks|lock|unlock|purge|delete-user|rotate-key|requests|grants|review ..."

func cmdAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	conn := &adminConn{socket: DefaultAdminSocket, timeout: 30 * time.Second}
	fs := newFlagSet("admin", adminUsage, stderr)
	conn.register(fs)
	// Only the connection flags come before the subcommand.
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError(fs, stderr, "missing command")
	}
	sub, subArgs := rest[0], rest[1:]
	switch sub {
	case "rotate-key": // offline: works on the recording files
		return adminRotateKey(subArgs, stdout, stderr)
	case "users":
		return adminUsers(ctx, conn, subArgs, stdout, stderr)
	case "sessions":
		return adminSessions(ctx, conn, subArgs, stdout, stderr)
	case "revoke":
		return adminAction(ctx, conn, "revoke", "SESSION", subArgs, stdout, stderr)
	case "mfa-reset":
		return adminAction(ctx, conn, "mfa-reset", "USER", subArgs, stdout, stderr)
	case "explain":
		return adminExplain(ctx, conn, subArgs, stdout, stderr)
	case "kill":
		return adminKill(ctx, conn, subArgs, stdout, stderr)
	case "watch":
		return adminWatch(ctx, conn, subArgs, stdout, stderr)
	case "revoke-cert":
		return adminRevokeCert(ctx, conn, subArgs, stdout, stderr)
	case "locks":
		return adminLocks(ctx, conn, subArgs, stdout, stderr)
	case "lock":
		return adminLock(ctx, conn, subArgs, stdout, stderr)
	case "unlock":
		return adminUnlock(ctx, conn, subArgs, stdout, stderr)
	case "purge":
		return adminPurge(ctx, conn, subArgs, stdout, stderr)
	case "delete-user":
		return adminDeleteUser(ctx, conn, subArgs, stdout, stderr)
	case "requests":
		return adminRequests(ctx, conn, subArgs, stdout, stderr)
	case "grants":
		return adminGrants(ctx, conn, subArgs, stdout, stderr)
	case "review":
		return adminReview(ctx, conn, subArgs, stdout, stderr)
	default:
		return usageError(fs, stderr, "unknown command %q", sub)
	}
}

// call performs req, printing the JSON itself with --json; otherwise out
// (when non-nil) receives the decoded answer.
func call(ctx context.Context, conn *adminConn, req adminclient.Request, stdout io.Writer, out any) (printed bool, err error) {
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

func adminUsers(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin users", "portcullis admin users [--json]", stderr)
	conn.register(fs)
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	var users []adminclient.User
	printed, err := call(ctx, conn, adminclient.Users(), stdout, &users)
	if err != nil {
		return fail(stderr, "admin users", err)
	}
	if printed {
		return exitOK
	}
	tw := table(stdout, "USER", "EMAIL", "ROLES", "GROUPS", "MFA", "SESSIONS", "LAST LOGIN", "LAST IP")
	for _, u := range users {
		row(tw, u.UserID, u.Email, list(u.Roles), list(u.Groups), yesNo(u.MFAEnrolled), fmt.Sprint(u.Sessions), when(u.LastLogin), u.LastIP)
	}
	return flush(tw, stderr)
}

// adminAction runs revoke SESSION or mfa-reset USER.
func adminAction(ctx context.Context, conn *adminConn, name, arg string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin "+name, fmt.Sprintf("portcullis admin %s %s [--reason TEXT]", name, arg), stderr)
	conn.register(fs)
	reason := fs.String("reason", "", "why (recorded in the audit trail)")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(fs, stderr, "expected exactly one %s", arg)
	}
	var req adminclient.Request
	var done string
	if name == "revoke" {
		req, done = adminclient.Revoke(pos[0], *reason), "session %s revoked on every instance\n"
	} else {
		req, done = adminclient.MFAReset(pos[0], *reason), "second factor of %s reset: they enrol again at next login\n"
	}
	printed, err := call(ctx, conn, req, stdout, nil)
	if err != nil {
		return fail(stderr, "admin "+name, err)
	}
	if !printed {
		fmt.Fprintf(stdout, done, adminclient.Sanitize(pos[0]))
	}
	return exitOK
}

func adminExplain(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin explain", "portcullis admin explain --user USER --app APP --path PATH --ip ADDR [--method METHOD] [--groups G1,G2]", stderr)
	conn.register(fs)
	var q adminclient.ExplainQuery
	fs.StringVar(&q.User, "user", "", "user ID (issuer#subject) or email `USER` (required)")
	fs.StringVar(&q.App, "app", "", "route name (required)")
	fs.StringVar(&q.Path, "path", "/", "request path")
	fs.StringVar(&q.IP, "ip", "", "client IP address (required)")
	fs.StringVar(&q.Method, "method", "GET", "HTTP method")
	groups := fs.String("groups", "", "comma-separated IdP groups to use instead of the user's last known groups")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	for _, req := range []struct{ name, v string }{{"user", q.User}, {"app", q.App}, {"ip", q.IP}} {
		if req.v == "" {
			return usageError(fs, stderr, "--%s is required", req.name)
		}
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "groups" {
			q.Groups = []string{}
			for _, g := range strings.Split(*groups, ",") {
				if g = strings.TrimSpace(g); g != "" {
					q.Groups = append(q.Groups, g)
				}
			}
		}
	})
	var e adminclient.Explanation
	printed, err := call(ctx, conn, adminclient.Explain(q), stdout, &e)
	if err != nil {
		return fail(stderr, "admin explain", err)
	}
	if printed {
		return exitOK
	}
	decision := "DENY"
	if e.Allow {
		decision = "ALLOW"
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"decision", decision}, {"reason", e.Reason}, {"role", e.Role}, {"rule", e.Rule},
		{"user", e.UserID}, {"roles", list(e.Roles)}, {"request", strings.TrimSpace(e.Method + " " + e.App + " " + e.Path)}, {"ip", e.IP},
	} {
		row(tw, kv[0]+":", kv[1])
	}
	return flush(tw, stderr)
}

// noPositionals parses flags and refuses stray arguments.
func noPositionals(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0]), false
	}
	return 0, true
}

func table(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// row writes one table row; cells come from the server and are sanitised
// (no control characters, no tabs to break the columns).
func row(tw *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = adminclient.Sanitize(c)
		if cells[i] == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

func flush(tw *tabwriter.Writer, stderr io.Writer) int {
	if err := tw.Flush(); err != nil {
		return fail(stderr, "admin", err)
	}
	return exitOK
}

func list(s []string) string { return strings.Join(s, ",") }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
