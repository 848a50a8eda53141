package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// adminAccessRoute answers the admin API's requests and grants calls.
func adminAccessRoute(w http.ResponseWriter, r *http.Request, body string) {
	p := r.URL.Path
	switch {
	case p == "/api/admin/requests":
		io.WriteString(w, `{"requests":[`+reqPending+`,`+reqHostile+`]}`)
	case p == "/api/admin/requests/r2/approve" && r.Header.Get("Authorization") == "":
		// The admin socket acts as local-admin, who is nobody's approver.
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"forbidden","reason":"approver-required","ref":"ref-LA"}`)
	case p == "/api/admin/requests/r2/approve":
		io.WriteString(w, reqApproved)
	case p == "/api/admin/requests/r2/deny":
		io.WriteString(w, reqDenied)
	case p == "/api/admin/requests/r3/deny":
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"conflict","reason":"already-decided","ref":"ref-AD"}`)
	case p == "/api/admin/requests/broken/deny":
		io.WriteString(w, `[1,2`)
	case p == "/api/admin/grants" && r.Method == http.MethodGet:
		io.WriteString(w, grantList)
	case p == "/api/admin/grants" && strings.Contains(body, `"user_id":"ghost"`):
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"unknown role","ref":"ref-UR"}`)
	case p == "/api/admin/grants":
		var exp string
		if i := strings.Index(body, `"expires":"`); i >= 0 {
			exp = body[i+len(`"expires":"`):]
			exp = exp[:strings.IndexByte(exp, '"')]
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"g7","user_id":"https://idp#dave\u001b[2J","role":"db-admin","source":"local","start":"2026-01-02T04:00:00Z","expires":"`+exp+`","created_by":"local-admin","reason":"x"}`)
	case p == "/api/admin/grants/gone/revoke":
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"not found","ref":"ref-GG"}`)
	case strings.HasPrefix(p, "/api/admin/grants/") && strings.HasSuffix(p, "/revoke"):
		io.WriteString(w, `{"ok":true}`)
	default:
		adminReviewRoute(w, r, body)
	}
}

func TestAdminRequestsCLI(t *testing.T) {
	f := newUnixFake(t, adminAccessRoute)
	cases := []cliCase{
		{name: "list", args: []string{"requests"}, wantOut: []string{"ID", "USER", "STATE", "r1", "https://idp#alice", "1/2", "r9?[2J", "x??[1Aevil"},
			sent: &sentReq{"GET", "/api/admin/requests", "", ""}},
		{name: "list explicit", args: []string{"requests", "list"}, wantOut: []string{"r1"}, sent: &sentReq{"GET", "/api/admin/requests", "", ""}},
		{name: "list json", args: []string{"--json", "requests"}, wantOut: []string{`"requests"`}, json: true, sent: &sentReq{"GET", "/api/admin/requests", "", ""}},
		{name: "list with note", args: []string{"requests", "--note", "x"}, code: exitUsage, wantErr: "--note goes with approve and deny"},
		{name: "list stray argument", args: []string{"requests", "list", "r1"}, code: exitUsage, wantErr: `unexpected argument "r1"`},
		{name: "approve over the socket", args: []string{"requests", "approve", "r2"}, code: exitFail,
			wantErr: "approving needs a signed-in approver", sent: &sentReq{"POST", "/api/admin/requests/r2/approve", "", `{"note":""}`}},
		{name: "deny", args: []string{"requests", "deny", "r2", "--note", "not now"}, wantOut: []string{"request r2 denied: now denied by https://idp#alice"},
			sent: &sentReq{"POST", "/api/admin/requests/r2/deny", "", `{"note":"not now"}`}},
		{name: "deny decided", args: []string{"requests", "deny", "r3"}, code: exitFail, wantErr: "portcullis admin requests deny: the request is already decided (reason already-decided, ref ref-AD)",
			sent: &sentReq{"POST", "/api/admin/requests/r3/deny", "", `{"note":""}`}},
		{name: "deny malformed answer", args: []string{"requests", "deny", "broken"}, code: exitFail, wantErr: "unexpected answer from the server",
			sent: &sentReq{"POST", "/api/admin/requests/broken/deny", "", `{"note":""}`}},
		{name: "deny unknown", args: []string{"requests", "deny", "zz"}, code: exitFail, wantErr: "no such request (ref ref-X)",
			sent: &sentReq{"POST", "/api/admin/requests/zz/deny", "", `{"note":""}`}},
		{name: "approve without ID", args: []string{"requests", "approve"}, code: exitUsage, wantErr: "expects exactly one request ID"},
		{name: "approve hostile ID", args: []string{"requests", "approve", "\x1b[2J"}, code: exitUsage, wantErr: "bad request ID"},
		{name: "deny long note", args: []string{"requests", "deny", "r2", "--note", strings.Repeat("n", 201)}, code: exitUsage, wantErr: "at most 200 bytes"},
		{name: "unknown", args: []string{"requests", "purge"}, code: exitUsage, wantErr: `unknown requests command "purge"`},
	}
	runCases(t, f, []string{"admin", "--socket", f.socket}, cases)
}

// TestAdminRequestsRemote: with an admin's own token over HTTPS the
// approval is made as that person.
func TestAdminRequestsRemote(t *testing.T) {
	f := newTLSFake(t, adminAccessRoute)
	runCases(t, f, append([]string{"admin"}, f.remote()...), []cliCase{
		{name: "approve as a person", args: []string{"requests", "approve", "r2", "--note", "ok"}, wantOut: []string{"request r2 approved: now approved (grant r2)"},
			sent: &sentReq{"POST", "/api/admin/requests/r2/approve", "", `{"note":"ok"}`}},
	})
}
