package main

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// apiFake is an HTTP API that records what it is sent and answers with
// route; it listens on a Unix socket (the admin socket) or over TLS (the
// access host, bearer token).
type apiFake struct {
	mu    sync.Mutex
	reqs  []sentReq
	route func(w http.ResponseWriter, r *http.Request, body string)

	socket  string // Unix socket path
	url     string // https URL
	caFile  string
	tokFile string
}

// sentReq is one request as the fake saw it.
type sentReq struct{ method, path, query, body string }

const testToken = "tok-SECRET-7f3a9c"

func (f *apiFake) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, sentReq{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b)})
		f.mu.Unlock()
		if f.url != "" && r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"unauthorized","ref":"ref-401"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		f.route(w, r, string(b))
	})
}

// newTLSFake serves route over TLS and writes its CA and a token file.
func newTLSFake(t *testing.T, route func(http.ResponseWriter, *http.Request, string)) *apiFake {
	t.Helper()
	f := &apiFake{route: route}
	srv := httptest.NewTLSServer(f.handler())
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	f.url, f.caFile, f.tokFile = srv.URL, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.tokFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// newUnixFake serves route on a Unix socket, as the admin socket.
func newUnixFake(t *testing.T, route func(http.ResponseWriter, *http.Request, string)) *apiFake {
	t.Helper()
	f := &apiFake{route: route, socket: filepath.Join(t.TempDir(), "admin.sock")}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f.handler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *apiFake) take() []sentReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

// remote are the connection flags for the TLS fake.
func (f *apiFake) remote() []string {
	return []string{"--server", f.url, "--token-file", f.tokFile, "--ca-file", f.caFile}
}

// cliCase is one command line and what must come of it.
type cliCase struct {
	name    string
	args    []string
	code    int
	wantOut []string
	notOut  string
	wantErr string
	sent    *sentReq // nil: nothing may be sent
	json    bool     // stdout must be valid JSON
	raw     bool     // stdout is a body written as is (not sanitised)
}

// runCases runs each case as prefix + args and checks exit code, output,
// that no control character from the server reaches the terminal, that
// the token is never printed, and exactly what was sent.
func runCases(t *testing.T, f *apiFake, prefix []string, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.take()
			code, out, errOut := runCLI(t, append(append([]string{}, prefix...), tc.args...)...)
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
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errOut)
			}
			if strings.ContainsAny(errOut, "\x1b\x07") || (!tc.raw && strings.ContainsAny(out, "\x1b\x07\r")) {
				t.Errorf("control character from the server reached the terminal:\nstdout %q\nstderr %q", out, errOut)
			}
			if strings.Contains(out+errOut, testToken) {
				t.Error("the token was printed")
			}
			sent := f.take()
			switch {
			case tc.sent == nil && len(sent) > 0:
				t.Errorf("sent %+v, want nothing sent", sent)
			case tc.sent != nil && (len(sent) != 1 || sent[0] != *tc.sent):
				t.Errorf("sent %+v, want %+v", sent, *tc.sent)
			}
			if tc.json && !json.Valid([]byte(out)) {
				t.Errorf("--json output is not JSON: %s", out)
			}
		})
	}
}

// Contract JSON (plan ISSUE5 §5), with hostile strings where a user or
// the IdP chooses the text.
const (
	reqPending  = `{"id":"r1","user_id":"https://idp#alice","role":"db-admin","duration":"2h0m0s","reason":"INC-1234","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-03T03:04:05Z","state":"pending","approvals":[{"user_id":"https://idp#carol","at":"2026-01-02T04:00:00Z","note":"ok\u001b]0;pwned\u0007"}],"approvals_required":2,"denial":null,"grant_id":""}`
	reqApproved = `{"id":"r2","user_id":"https://idp#bob","role":"db-admin","duration":"1h0m0s","reason":"INC-9","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-03T03:04:05Z","state":"approved","approvals":[{"user_id":"https://idp#alice","at":"2026-01-02T04:00:00Z","note":""}],"approvals_required":1,"denial":null,"grant_id":"r2"}`
	reqDenied   = `{"id":"r2","user_id":"https://idp#bob","role":"db-admin","duration":"1h0m0s","reason":"INC-9","created_at":"2026-01-02T03:04:05Z","expires_at":"","state":"denied","approvals":[],"approvals_required":1,"denial":{"user_id":"https://idp#alice","at":"2026-01-02T04:00:00Z","note":"no"},"grant_id":""}`
	reqHostile  = `{"id":"r9\u001b[2J","user_id":"https://idp#mallory","role":"db-admin\u001b[31m","duration":"2h0m0s","reason":"x\r\u001b[1Aevil","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-03T03:04:05Z","state":"pending\u001b[0m","approvals":null,"approvals_required":1,"denial":null,"grant_id":""}`
	grantList   = `{"grants":[{"id":"g1","user_id":"https://idp#alice","role":"db-admin","source":"temporary","request_id":"r2","start":"2026-01-02T04:00:00Z","expires":"2026-01-02T06:00:00Z","created_by":"https://idp#carol","reason":"INC-9"},
		{"id":"g2","user_id":"https://idp#alice","role":"auditor\u001b[2J","source":"local","start":"2026-01-02T04:00:00Z","expires":"","created_by":"local-admin","reason":"audit season"}]}`
)

// userRoute answers the user API (/api/access, /api/audit).
func userRoute(w http.ResponseWriter, r *http.Request, body string) {
	p := r.URL.Path
	switch {
	case p == "/api/access/requests" && r.Method == http.MethodPost && strings.Contains(body, `"role":"db-admin"`):
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, reqPending)
	case p == "/api/access/requests" && r.Method == http.MethodPost && strings.Contains(body, `"role":"hostile"`):
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, reqHostile)
	case p == "/api/access/requests" && r.Method == http.MethodPost && strings.Contains(body, `"role":"broken"`):
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"r1","created_at":"yesterday"`)
	case p == "/api/access/requests" && r.Method == http.MethodPost:
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"forbidden","reason":"not-requestable","ref":"ref-NR"}`)
	case p == "/api/access/requests":
		io.WriteString(w, `{"requests":[`+reqPending+`],"to_approve":[`+reqHostile+`]}`)
	case p == "/api/access/requests/r1" && r.Method == http.MethodGet:
		io.WriteString(w, reqPending)
	case p == "/api/access/requests/r1/approve":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"forbidden","reason":"self-approval","ref":"ref-SELF"}`)
	case p == "/api/access/requests/r2/approve":
		io.WriteString(w, reqApproved)
	case p == "/api/access/requests/r2/deny":
		io.WriteString(w, reqDenied)
	case p == "/api/access/requests/r3/approve":
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"conflict","reason":"already-decided","ref":"ref-AD"}`)
	case p == "/api/access/requests/r4/approve":
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"conflict","reason":"duplicate-approval","ref":"ref-DA"}`)
	case p == "/api/access/requests/r5/approve":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"forbidden","reason":"not-approver","ref":"ref-NA"}`)
	case p == "/api/access/requests/r6/approve":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"forbidden\u001b[2J","reason":"brand-new\u001b[2J","ref":"ref\u0007"}`)
	case p == "/api/access/requests/r1/cancel":
		io.WriteString(w, strings.Replace(reqPending, `"state":"pending"`, `"state":"cancelled"`, 1))
	case p == "/api/access/grants":
		io.WriteString(w, grantList)
	case p == "/api/audit/events" && r.URL.Query().Get("user") == "outsider":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"forbidden","reason":"auditor-role-required","ref":"ref-AR"}`)
	case p == "/api/audit/events" && r.URL.Query().Get("user") == "standing":
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"forbidden","reason":"approval-required","ref":"ref-AP"}`)
	case p == "/api/audit/events" && r.URL.Query().Get("type") == "broken":
		io.WriteString(w, `{"events":[{"time":12}],"more":false}`)
	case p == "/api/audit/events":
		io.WriteString(w, `{"events":[{"time":"2026-01-02T03:04:05Z","type":"decision","user_id":"https://idp#alice","app":"grafana","method":"GET","path":"/d/1","decision":"allow","role":"sre","reason":"allowed","ref":"ref-1"},
			{"time":"2026-01-02T03:05:05Z","type":"decision","user_id":"evil\u001b[2J","target":"db-1","decision":"deny","reason":"no-rule","attrs":{"login":"root"}},
			{"time":"2026-01-02T03:06:05Z","type":"access.approve","user_id":"https://idp#bob","actor":"https://idp#alice","attrs":{"request_id":"r2"}}],
			"more":`+map[bool]string{true: "true", false: "false"}[r.URL.Query().Get("limit") == "3"]+`}`)
	case p == "/api/audit/recordings":
		io.WriteString(w, `{"recordings":[{"id":"rec-1","user_id":"https://idp#alice","target":"db-1","login":"root\u001b[2J","start":"2026-01-02T03:04:05Z","end":"2026-01-02T03:14:05Z","bytes":4096},
			{"id":"rec-2","user_id":"https://idp#alice","target":"db-2","login":"deploy","start":"2026-01-02T05:04:05Z","end":"","bytes":10}]}`)
	case p == "/api/audit/recordings/rec-1":
		w.Header().Set("Content-Type", "application/x-asciicast")
		io.WriteString(w, "{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"\\u001b[1m$ \"]\n")
	case strings.HasPrefix(p, "/api/audit/recordings/"):
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"not found","ref":"ref-RNF"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"not found","ref":"ref-X"}`)
	}
}

func TestRequestCLI(t *testing.T) {
	f := newTLSFake(t, userRoute)
	create := func(role, dur, reason string) *sentReq {
		return &sentReq{"POST", "/api/access/requests", "", `{"role":"` + role + `","duration":"` + dur + `","reason":"` + reason + `"}`}
	}
	get := func(path string) *sentReq { return &sentReq{"GET", path, "", ""} }
	post := func(path, body string) *sentReq { return &sentReq{"POST", path, "", body} }
	cases := []cliCase{
		{name: "create", args: []string{"--role", "db-admin", "--for", "2h", "--reason", "INC-1234"},
			wantOut: []string{"request r1 for db-admin (2h0m0s): pending (1/2 approvals; decide by 2026-01-03T03:04:05Z)"},
			sent:    create("db-admin", "2h0m0s", "INC-1234")},
		{name: "create flags in any order, minutes", args: []string{"--reason", " INC-1 ", "--for", "90m", "--role", "db-admin"},
			wantOut: []string{"request r1"}, sent: create("db-admin", "1h30m0s", "INC-1")},
		{name: "create json", args: []string{"--json", "--role", "db-admin", "--for", "2h", "--reason", "x"},
			wantOut: []string{`"id": "r1"`, `"approvals_required": 2`}, json: true, sent: create("db-admin", "2h0m0s", "x")},
		{name: "create hostile answer sanitised", args: []string{"--role", "hostile", "--for", "1h", "--reason", "x"},
			wantOut: []string{"request r9?[2J for db-admin?[31m", "pending?[0m"}, sent: create("hostile", "1h0m0s", "x")},
		{name: "create malformed answer", args: []string{"--role", "broken", "--for", "1h", "--reason", "x"}, code: exitFail,
			wantErr: "portcullis request: unexpected answer from the server", sent: create("broken", "1h0m0s", "x")},
		{name: "create not requestable", args: []string{"--role", "root", "--for", "1h", "--reason", "x"}, code: exitFail,
			wantErr: "portcullis request: this role cannot be requested (reason not-requestable, ref ref-NR)", sent: create("root", "1h0m0s", "x")},
		{name: "create without role", args: []string{"--for", "1h", "--reason", "x"}, code: exitUsage, wantErr: "--role is required"},
		{name: "create without for", args: []string{"--role", "db-admin", "--reason", "x"}, code: exitUsage, wantErr: "--for is required"},
		{name: "create for zero", args: []string{"--role", "db-admin", "--for", "0s", "--reason", "x"}, code: exitUsage, wantErr: "--for must be positive"},
		{name: "create for negative", args: []string{"--role", "db-admin", "--for", "-1h", "--reason", "x"}, code: exitUsage, wantErr: "--for must be positive"},
		{name: "create for not a duration", args: []string{"--role", "db-admin", "--for", "2 days", "--reason", "x"}, code: exitUsage, wantErr: `--for "2 days" is not a duration`},
		{name: "create for too long", args: []string{"--role", "db-admin", "--for", "721h", "--reason", "x"}, code: exitUsage, wantErr: "--for is at most 720h"},
		{name: "create without reason", args: []string{"--role", "db-admin", "--for", "1h"}, code: exitUsage, wantErr: "--reason is required"},
		{name: "create blank reason", args: []string{"--role", "db-admin", "--for", "1h", "--reason", "  "}, code: exitUsage, wantErr: "--reason is required"},
		{name: "create reason too long", args: []string{"--role", "db-admin", "--for", "1h", "--reason", strings.Repeat("x", 201)}, code: exitUsage, wantErr: "at most 200 bytes"},
		{name: "create reason control character", args: []string{"--role", "db-admin", "--for", "1h", "--reason", "a\x1b[2J"}, code: exitUsage, wantErr: "printable"},
		{name: "create role control character", args: []string{"--role", "db\x1b[2J", "--for", "1h", "--reason", "x"}, code: exitUsage, wantErr: "--role must be printable"},
		{name: "create with note", args: []string{"--role", "db-admin", "--for", "1h", "--reason", "x", "--note", "n"}, code: exitUsage, wantErr: `--note does not go with "request"`},

		{name: "list", args: []string{"list"}, wantOut: []string{"My requests:", "To approve:", "ID", "DECIDE BY", "r1", "1/2", "INC-1234", "r9?[2J", "x??[1Aevil"},
			sent: get("/api/access/requests")},
		{name: "list json", args: []string{"list", "--json"}, wantOut: []string{`"to_approve"`}, json: true, sent: get("/api/access/requests")},
		{name: "list with role", args: []string{"list", "--role", "x"}, code: exitUsage, wantErr: `--role does not go with "request list"`},
		{name: "list stray argument", args: []string{"list", "r1"}, code: exitUsage, wantErr: `unexpected argument "r1"`},
		{name: "show", args: []string{"show", "r1"}, wantOut: []string{"id:", "r1", "role:", "db-admin", "approvals:", "1/2", "approved by:", "https://idp#carol", "ok?]0;pwned?"},
			sent: get("/api/access/requests/r1")},
		{name: "show unknown", args: []string{"show", "zz"}, code: exitFail, wantErr: "no such request (or it is not yours to see) (ref ref-X)",
			sent: get("/api/access/requests/zz")},
		{name: "show escapes the ID", args: []string{"show", "a/../b"}, code: exitFail, wantErr: "no such request", sent: get("/api/access/requests/a%2F..%2Fb")},
		{name: "show without ID", args: []string{"show"}, code: exitUsage, wantErr: "expects exactly one request ID"},
		{name: "show two IDs", args: []string{"show", "a", "b"}, code: exitUsage, wantErr: "expects exactly one request ID"},
		{name: "show hostile ID", args: []string{"show", "a\x1b[2J"}, code: exitUsage, wantErr: `bad request ID "a?[2J"`},
		{name: "cancel", args: []string{"cancel", "r1"}, wantOut: []string{"request r1 cancelled: now cancelled"}, sent: post("/api/access/requests/r1/cancel", "")},
		{name: "approve", args: []string{"approve", "r2", "--note", "looks fine"}, wantOut: []string{"request r2 approved: now approved (grant r2)"},
			sent: post("/api/access/requests/r2/approve", `{"note":"looks fine"}`)},
		{name: "approve own request", args: []string{"approve", "r1"}, code: exitFail,
			wantErr: "portcullis request approve: you cannot approve your own request (reason self-approval, ref ref-SELF)", sent: post("/api/access/requests/r1/approve", `{"note":""}`)},
		{name: "approve decided", args: []string{"approve", "r3"}, code: exitFail, wantErr: "the request is already decided (reason already-decided",
			sent: post("/api/access/requests/r3/approve", `{"note":""}`)},
		{name: "approve twice", args: []string{"approve", "r4"}, code: exitFail, wantErr: "you have already approved this request",
			sent: post("/api/access/requests/r4/approve", `{"note":""}`)},
		{name: "approve not an approver", args: []string{"approve", "r5"}, code: exitFail, wantErr: "you are not an approver for this role",
			sent: post("/api/access/requests/r5/approve", `{"note":""}`)},
		{name: "approve unknown hostile reason", args: []string{"approve", "r6"}, code: exitFail,
			wantErr: "server answered 403 Forbidden: forbidden?[2J (reason brand-new?[2J, ref ref?)", sent: post("/api/access/requests/r6/approve", `{"note":""}`)},
		{name: "approve note with control character", args: []string{"approve", "r2", "--note", "\x1b[2J"}, code: exitUsage, wantErr: "--note must be printable"},
		{name: "deny", args: []string{"deny", "r2", "--note", "no"}, wantOut: []string{"request r2 denied: now denied by https://idp#alice"},
			sent: post("/api/access/requests/r2/deny", `{"note":"no"}`)},
		{name: "cancel with note", args: []string{"cancel", "r1", "--note", "n"}, code: exitUsage, wantErr: `--note does not go with "request cancel"`},
		{name: "grants", args: []string{"grants"}, wantOut: []string{"g1", "temporary", "2026-01-02T06:00:00Z", "g2", "auditor?[2J", "until revoked", "local-admin"},
			sent: get("/api/access/grants")},
		{name: "unknown command", args: []string{"lsit"}, code: exitUsage, wantErr: `unknown command "lsit"`},
		{name: "help", args: []string{"--help"}, code: exitOK, wantErr: "Usage: portcullis request"},
	}
	runCases(t, f, append([]string{"request"}, f.remote()...), cases)
}

// TestRequestConnection: the connection flags are checked before anything
// is sent, and a refused token says what to do.
func TestRequestConnection(t *testing.T) {
	f := newTLSFake(t, userRoute)
	dir := t.TempDir()
	empty, wrong := filepath.Join(dir, "empty"), filepath.Join(dir, "wrong")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	os.WriteFile(wrong, []byte("not-the-token"), 0o600)
	cases := []cliCase{
		{name: "no server", args: []string{"request", "list", "--token-file", f.tokFile}, code: exitUsage, wantErr: "--server is required"},
		{name: "plain http server", args: []string{"request", "list", "--server", "http://access.example.com", "--token-file", f.tokFile}, code: exitUsage,
			wantErr: "--server must be an https URL"},
		{name: "no token file", args: []string{"request", "list", "--server", f.url}, code: exitUsage, wantErr: "--token-file is required"},
		{name: "zero timeout", args: []string{"request", "list", "--server", f.url, "--token-file", f.tokFile, "--timeout", "0s"}, code: exitUsage, wantErr: "--timeout must be positive"},
		{name: "missing token file", args: []string{"request", "list", "--server", f.url, "--token-file", filepath.Join(dir, "nope")}, code: exitFail, wantErr: "read token file"},
		{name: "empty token file", args: []string{"request", "list", "--server", f.url, "--token-file", empty}, code: exitFail, wantErr: "is empty"},
		{name: "untrusted certificate", args: []string{"request", "list", "--server", f.url, "--token-file", f.tokFile}, code: exitFail,
			wantErr: "cannot reach the access API", sent: nil},
		{name: "refused token", args: []string{"request", "list", "--server", f.url, "--token-file", wrong, "--ca-file", f.caFile}, code: exitFail,
			wantErr: "the token was refused (expired or revoked?): mint a new one at https://ACCESS-HOST/token (ref ref-401)", sent: &sentReq{"GET", "/api/access/requests", "", ""}},
	}
	runCases(t, f, nil, cases)
}
