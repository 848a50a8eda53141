package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// runCLI runs the program in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const validConfig = "internal/config/testdata/valid.yaml"

func setValidEnv(t *testing.T) {
	t.Helper()
	_, pemBytes, err := keys.GenerateECPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OIDC_SECRET", "client-secret")
	t.Setenv("MFA_KEY", strings.Repeat("ab", 32))
	t.Setenv("COOKIE_KEY", strings.Repeat("cd", 32))
	t.Setenv("ASSERTION_KEY", string(pemBytes))
}

func TestCLI(t *testing.T) {
	setValidEnv(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("gateway:\n  acess_host: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    string // substring of stdout
		wantErr    string // substring of stderr
		wantNotOut string
	}{
		{"no arguments", nil, exitUsage, "", "Usage:", ""},
		{"help", []string{"help"}, exitOK, "portcullis serve --config FILE", "", ""},
		{"--help", []string{"--help"}, exitOK, "portcullis admin", "", ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`, ""},
		{"config without check", []string{"config"}, exitUsage, "", "config check", ""},
		{"config help", []string{"config", "--help"}, exitOK, "config check", "", ""},
		{"config check without file", []string{"config", "check"}, exitUsage, "", "expected exactly one FILE", ""},
		{"config check two files", []string{"config", "check", "a", "b"}, exitUsage, "", "expected exactly one FILE", ""},
		{"config check valid", []string{"config", "check", validConfig}, exitOK, "config OK", "", ""},
		{"config check flag after file", []string{"config", "check", "../../deploy/portcullis.example.yaml", "--no-secrets"}, exitOK, "config OK", "", ""},
		{"config check needs secrets", []string{"config", "check", "../../deploy/portcullis.example.yaml"}, exitFail, "", "oidc-client-secret does not exist", "config OK"},
		{"config check errors", []string{"config", "check", bad}, exitFail, "", bad + `:2: gateway.acess_host: unknown key (did you mean "access_host"?)`, "config OK"},
		{"config check missing file", []string{"config", "check", "/nonexistent.yaml"}, exitFail, "", "/nonexistent.yaml: configuration file does not exist", ""},
		{"config check bad flag", []string{"config", "check", "--bogus", "x"}, exitUsage, "", "flag provided but not defined", ""},
		{"serve without config", []string{"serve"}, exitUsage, "", "--config is required", ""},
		{"serve stray argument", []string{"serve", "--config", "x", "y"}, exitUsage, "", `unexpected argument "y"`, ""},
		{"serve bad config", []string{"serve", "--config", bad}, exitFail, "", "unknown key", ""},
		{"serve help", []string{"serve", "-h"}, exitOK, "", "--config", ""},
		{"demo public listen", []string{"demo", "--listen", "0.0.0.0:8443", "--no-open"}, exitUsage, "", "loopback", ""},
		{"demo public ssh listen", []string{"demo", "--ssh-listen", "0.0.0.0:2222", "--no-open"}, exitUsage, "", "--ssh-listen \"0.0.0.0:2222\": want a loopback address", ""},
		{"demo bad flag", []string{"demo", "--port", "1"}, exitUsage, "", "flag provided but not defined", ""},
		{"admin without command", []string{"admin"}, exitUsage, "", "missing command", ""},
		{"admin unknown command", []string{"admin", "reboot"}, exitUsage, "", `unknown command "reboot"`, ""},
		{"admin revoke without ID", []string{"admin", "revoke"}, exitUsage, "", "expected exactly one SESSION", ""},
		{"admin mfa-reset two users", []string{"admin", "mfa-reset", "a", "b"}, exitUsage, "", "expected exactly one USER", ""},
		{"admin explain without ip", []string{"admin", "explain", "--user", "u", "--app", "a"}, exitUsage, "", "--ip is required", ""},
		{"admin users stray argument", []string{"admin", "users", "x"}, exitUsage, "", `unexpected argument "x"`, ""},
		{"admin remote over http", []string{"admin", "--server", "http://access.example.com", "--token-file", validConfig, "users"}, exitFail, "", "must be an https URL", ""},
		{"admin remote without token", []string{"admin", "--server", "https://access.example.com", "users"}, exitFail, "", "--server needs --token-file", ""},
		{"admin socket and server", []string{"admin", "--socket", "/x.sock", "--server", "https://a.example", "--token-file", "t", "users"}, exitFail, "", "not both", ""},
		{"admin kill without reason", []string{"admin", "kill", "ssh-1"}, exitUsage, "", "--reason is required", ""},
		{"admin kill without ID", []string{"admin", "kill", "--reason", "x"}, exitUsage, "", "expected exactly one SESSION", ""},
		{"admin watch two IDs", []string{"admin", "watch", "a", "b"}, exitUsage, "", "expected exactly one SESSION", ""},
		{"admin revoke-cert without selector", []string{"admin", "revoke-cert"}, exitUsage, "", "exactly one of --serial and --key-id", ""},
		{"admin revoke-cert with both", []string{"admin", "revoke-cert", "--serial", "1", "--key-id", "u"}, exitUsage, "", "exactly one of --serial and --key-id", ""},
		{"admin revoke-cert bad serial", []string{"admin", "revoke-cert", "--serial", "-1"}, exitUsage, "", "invalid value", ""},
		{"help lists lock commands", []string{"help"}, exitOK, "unlock (USER | user:ID | ip:ADDR[/BITS]) --reason TEXT", "", ""},
		{"config check risk", []string{"config", "check", "--no-secrets", "--risk", "../../deploy/portcullis.example.yaml"}, exitOK, "user.totp_failures", "", ""},
		{"config check risk secrets redacted", []string{"config", "check", "--no-secrets", "--risk", "../../deploy/portcullis.example.yaml"}, exitOK, "alerts.webhooks", "", "fake"},
		{"admin unreachable socket", []string{"admin", "--socket", "/nonexistent/admin.sock", "sessions"}, exitFail, "", "cannot reach the admin API", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q lacks %q", out, tc.wantOut)
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tc.wantErr)
			}
			if tc.wantNotOut != "" && strings.Contains(out, tc.wantNotOut) {
				t.Errorf("stdout %q contains %q", out, tc.wantNotOut)
			}
		})
	}
}

// fakeAdmin is an admin API on a Unix socket that records requests.
type fakeAdmin struct {
	socket string
	mu     sync.Mutex
	reqs   []fakeRequest
	// noBastion answers 404 to the SSH endpoints, as a server without a
	// bastion does.
	noBastion bool
	// sshEnvelope answers the SSH list as an envelope with a warning, as
	// a server whose state store is down does.
	sshEnvelope bool
}

type fakeRequest struct{ method, path, query, body string }

func (f *fakeAdmin) take() []fakeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

func newFakeAdmin(t *testing.T) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{socket: filepath.Join(t.TempDir(), "admin.sock")}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, fakeRequest{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b)})
		noBastion, sshEnvelope := f.noBastion, f.sshEnvelope
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case noBastion && strings.HasPrefix(r.URL.Path, "/api/admin/ssh/"):
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not found","ref":"ref-X"}`)
		case r.URL.Path == "/api/admin/ssh/sessions" && sshEnvelope && r.URL.Query().Get("envelope") == "1":
			io.WriteString(w, `{"instance":"gw-a","warning":"state store unavailable\u001b[2J: only this instance's sessions are listed",
				"sessions":[{"id":"ssh-9","user_id":"https://idp#alice","login":"root","target":"db-1","instance":"gw-a","start":"2026-01-02T03:04:05Z"}]}`)
		case r.URL.Path == "/api/admin/ssh/sessions":
			io.WriteString(w, `[{"id":"ssh-1","user_id":"https://idp#alice","login":"root","target":"db-1","source_ip":"10.0.0.1","cert_serial":42,"start":"2026-01-02T03:04:05Z","last_active":"2026-01-02T03:05:05Z","recording":"/rec/ssh-1.pcrec","instance":"gw-b"},
				{"id":"ssh-2","user_id":"https://idp#bob","login":"deploy\u001b[2J","target":"web-1","cert_serial":7,"start":"2026-01-02T03:04:05Z"}]`)
		case r.URL.Path == "/api/admin/ssh/sessions/gone/kill":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no such live session"}`)
		case strings.HasSuffix(r.URL.Path, "/kill"):
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/watch"):
			w.Header().Set("Content-Type", "application/octet-stream")
			io.WriteString(w, "$ uptime\r\n 10:00:00 up 1 day\r\n")
		case r.URL.Path == "/api/admin/ssh/certs/revoke":
			io.WriteString(w, `{"revoked":true}`)
		case r.URL.Path == "/api/admin/users":
			io.WriteString(w, `[{"user_id":"https://idp#alice","email":"alice@example.com","roles":["admin"],"groups":["admins"],"mfa_enrolled":true,"last_login":"2026-01-02T03:04:05Z","last_ip":"10.0.0.1","sessions":1},
				{"user_id":"evil\u001b[2J","roles":[],"groups":[],"mfa_enrolled":false,"last_login":"0001-01-01T00:00:00Z","sessions":0}]`)
		case r.URL.Path == "/api/admin/sessions":
			io.WriteString(w, `[{"id":"sess-1","user_id":"https://idp#alice","roles":["admin"],"created_at":"2026-01-02T03:04:05Z","last_seen":"2026-01-02T03:05:05Z","expires_at":"2026-01-02T15:04:05Z","source_ip":"10.0.0.1"}]`)
		case r.URL.Path == "/api/admin/sessions/missing/revoke":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no such session","ref":"ref-7KQ2M9XH"}`)
		case strings.HasSuffix(r.URL.Path, "/revoke"), strings.HasSuffix(r.URL.Path, "/mfa-reset"):
			io.WriteString(w, `{"ok":true,"target":"x"}`)
		case r.URL.Path == "/api/admin/locks":
			io.WriteString(w, `{"locks":[{"subject":"user:https://idp#alice","reason":"totp-failure","ref":"R-7KQ2","created_at":"2026-01-02T03:04:05Z","detail":"5 in 15m\u001b[2J"},
				{"subject":"ip:203.0.113.0/24","reason":"source-failures","ref":"R-9XH1","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-02T03:19:05Z","detail":"100 in 5m"}]}`)
		case r.URL.Path == "/api/admin/locks/lock" && strings.Contains(string(b), `"user_id":"ghost"`):
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no such user","ref":"ref-NU"}`)
		case r.URL.Path == "/api/admin/locks/lock":
			io.WriteString(w, `{"lock":{"subject":"user:https://idp#bob","reason":"admin","ref":"R-LOCK1","created_at":"2026-01-02T03:04:05Z","detail":"by local-admin"}}`)
		case r.URL.Path == "/api/admin/locks/unlock" && strings.Contains(string(b), `"subject":"nobody"`):
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not locked","ref":"ref-NL"}`)
		case r.URL.Path == "/api/admin/locks/unlock" && strings.Contains(string(b), `"subject":"store-down"`):
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"state store unavailable","ref":"ref-SU"}`)
		case r.URL.Path == "/api/admin/locks/unlock":
			io.WriteString(w, `{"lock":{"subject":"user:https://idp#alice","reason":"totp-failure","ref":"R-7KQ2","created_at":"2026-01-02T03:04:05Z"}}`)
		case r.URL.Path == "/api/admin/explain":
			io.WriteString(w, `{"allow":false,"reason":"deny-rule","role":"engineer","rule":"roles[engineer].deny[0]","user_id":"bob","roles":["engineer"],"app":"grafana","method":"GET","path":"/admin","ip":"10.0.0.1"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not found","ref":"ref-X"}`)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return f
}

func TestAdminCommands(t *testing.T) {
	f := newFakeAdmin(t)
	tests := []struct {
		name               string
		args               []string
		code               int
		wantOut            []string
		notOut             string
		wantErr            string
		method, path, body string
		query              string
		raw                bool // output is a session's bytes, not sanitised text
	}{
		{name: "users table", args: []string{"users"}, wantOut: []string{"USER", "MFA", "https://idp#alice", "admin", "yes", "2026-01-02T03:04:05Z", "evil?[2J"},
			method: "GET", path: "/api/admin/users"},
		{name: "sessions table", args: []string{"sessions"}, wantOut: []string{"SESSION", "sess-1", "10.0.0.1", "2026-01-02T15:04:05Z",
			"SSH SESSION", "ssh-1", "root@db-1", "/rec/ssh-1.pcrec", "42", "deploy?[2J@web-1", "INSTANCE", "gw-b"}, method: "GET", path: "/api/admin/sessions"},
		{name: "sessions of a user", args: []string{"sessions", "--user", "https://idp#alice"}, wantOut: []string{"sess-1"}, method: "GET", path: "/api/admin/sessions", query: "user=https%3A%2F%2Fidp%23alice"},
		{name: "revoke with reason after ID", args: []string{"revoke", "sess-1", "--reason", "left the company"}, wantOut: []string{"session sess-1 revoked"},
			method: "POST", path: "/api/admin/sessions/sess-1/revoke", body: `{"reason":"left the company"}`},
		{name: "revoke unknown session", args: []string{"revoke", "missing"}, code: exitFail, wantErr: "server answered 404 Not Found: no such session (ref ref-7KQ2M9XH)",
			method: "POST", path: "/api/admin/sessions/missing/revoke", body: `{}`},
		{name: "mfa-reset", args: []string{"mfa-reset", "--reason", "lost phone", "https://idp#bob"}, wantOut: []string{"second factor of https://idp#bob reset"},
			method: "POST", path: "/api/admin/users/https:%2F%2Fidp%23bob/mfa-reset", body: `{"reason":"lost phone"}`},
		{name: "explain", args: []string{"explain", "--user", "bob", "--app", "grafana", "--path", "/admin", "--ip", "10.0.0.1", "--groups", "engineers, ops"},
			wantOut: []string{"decision:  DENY", "reason:    deny-rule", "rule:      roles[engineer].deny[0]"},
			method:  "GET", path: "/api/admin/explain", query: "app=grafana&groups=engineers%2Cops&ip=10.0.0.1&method=GET&path=%2Fadmin&user=bob"},
		{name: "json output", args: []string{"sessions", "--json"}, wantOut: []string{`"id": "sess-1"`, `"kind": "web"`, `"kind": "ssh"`, `"id": "ssh-1"`, `"instance": "gw-b"`}, method: "GET", path: "/api/admin/sessions"},
		{name: "ssh sessions of a user", args: []string{"sessions", "--user", "https://idp#bob"}, wantOut: []string{"ssh-2"}, notOut: "ssh-1",
			method: "GET", path: "/api/admin/ssh/sessions", query: "envelope=1"},
		{name: "kill", args: []string{"kill", "ssh-1", "--reason", "incident 42"}, wantOut: []string{"SSH session ssh-1 killed"},
			method: "POST", path: "/api/admin/ssh/sessions/ssh-1/kill", body: `{"reason":"incident 42"}`},
		{name: "kill unknown", args: []string{"kill", "--reason", "x", "gone"}, code: exitFail, wantErr: "404 Not Found: no such live session",
			method: "POST", path: "/api/admin/ssh/sessions/gone/kill", body: `{"reason":"x"}`},
		{name: "kill escapes the ID", args: []string{"kill", "a/../b", "--reason", "x"}, wantOut: []string{"killed"},
			method: "POST", path: "/api/admin/ssh/sessions/a%2F..%2Fb/kill", body: `{"reason":"x"}`},
		{name: "watch", args: []string{"watch", "ssh-1"}, wantOut: []string{"$ uptime\r\n 10:00:00 up 1 day"}, wantErr: "the session ended",
			method: "GET", path: "/api/admin/ssh/sessions/ssh-1/watch", raw: true},
		{name: "revoke-cert serial", args: []string{"revoke-cert", "--serial", "42", "--reason", "stolen laptop"}, wantOut: []string{"serial 42 revoked"},
			method: "POST", path: "/api/admin/ssh/certs/revoke", body: `{"serial":42,"reason":"stolen laptop"}`},
		{name: "revoke-cert key ID", args: []string{"revoke-cert", "--key-id", "https://idp#bob"}, wantOut: []string{"certificates of https://idp#bob issued until now revoked"},
			method: "POST", path: "/api/admin/ssh/certs/revoke", body: `{"key_id":"https://idp#bob"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"admin", "--socket", f.socket}, tc.args...)
			code, out, errOut := runCLI(t, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.notOut != "" && strings.Contains(out, tc.notOut) {
				t.Errorf("stdout has %q:\n%s", tc.notOut, out)
			}
			if !tc.raw && strings.ContainsAny(out, "\x1b\r") {
				t.Error("control character from the server reached the terminal")
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tc.wantErr)
			}
			want := fakeRequest{tc.method, tc.path, tc.query, tc.body}
			if sent := f.take(); !slices.Contains(sent, want) {
				t.Errorf("sent %+v, want %+v among them", sent, want)
			}
			if strings.Contains(strings.Join(tc.args, " "), "--json") && !json.Valid([]byte(out)) {
				t.Errorf("--json output is not JSON: %s", out)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	fs := newFlagSet("x", "x", io.Discard)
	reason := fs.String("reason", "", "")
	pos, code, ok := parseArgs(fs, []string{"a", "--reason", "r", "b"})
	if !ok || code != 0 || *reason != "r" || strings.Join(pos, ",") != "a,b" {
		t.Fatalf("pos %v reason %q code %d ok %v", pos, *reason, code, ok)
	}
}

// TestAdminSessionsIncomplete: a server whose state store is down lists
// only its own SSH sessions; the CLI shows them and warns on stderr
// (stdout stays a table, or valid JSON).
func TestAdminSessionsIncomplete(t *testing.T) {
	f := newFakeAdmin(t)
	f.sshEnvelope = true
	for _, args := range [][]string{{"sessions"}, {"--json", "sessions"}} {
		code, out, errOut := runCLI(t, append([]string{"admin", "--socket", f.socket}, args...)...)
		if code != exitOK || !strings.Contains(out, "ssh-9") || !strings.Contains(out, "gw-a") || strings.Contains(out, "ssh-1") {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		if !strings.Contains(errOut, "warning: SSH session list incomplete: state store unavailable?[2J") {
			t.Fatalf("%v: stderr %q lacks the sanitised warning", args, errOut)
		}
		if args[0] == "--json" && !json.Valid([]byte(out)) {
			t.Fatalf("--json output is not JSON: %s", out)
		}
	}
}

// TestAdminSessionsWithoutBastion: a server without a bastion answers 404
// to the SSH list; sessions then shows the web sessions only.
func TestAdminSessionsWithoutBastion(t *testing.T) {
	f := newFakeAdmin(t)
	f.noBastion = true
	code, out, errOut := runCLI(t, "admin", "--socket", f.socket, "sessions")
	if code != exitOK || !strings.Contains(out, "sess-1") || strings.Contains(out, "SSH SESSION") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "admin", "--socket", f.socket, "--json", "sessions")
	if code != exitOK || strings.Contains(out, `"kind": "ssh"`) || !json.Valid([]byte(out)) {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "admin", "--socket", f.socket, "kill", "x", "--reason", "r"); code != exitFail || !strings.Contains(errOut, "404") {
		t.Fatalf("kill without a bastion: %d %s", code, errOut)
	}
}
