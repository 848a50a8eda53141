package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	campaignJSON = `{"id":"2026-q4","name":"2026-Q4","created_at":"2026-10-01T00:00:00Z","due":"2026-10-15T00:00:00Z","period_start":"2026-07-01T00:00:00Z","created_by":"local-admin","signed_off_by":"","signed_off_at":"0001-01-01T00:00:00Z",
	"items":[{"id":"it-1","user_id":"https://idp#alice","email":"alice@example.com","role":"sre","source":"idp-group","group":"sre-team","last_login":"2026-09-30T10:00:00Z","uses":[{"kind":"ssh","name":"db-1","login":"root","last":"2026-09-30T10:05:00Z","count":12},{"kind":"app","name":"grafana","last":"2026-09-29T10:05:00Z","count":3}],"last_use":"2026-09-30T10:05:00Z","mfa_enrolled":true,"decision":"keep","decided_by":"https://idp#carol","decided_at":"2026-10-02T00:00:00Z"},
	{"id":"it-3","email":"frank@example.com","role":"sre","source":"config","config_entry":"frank@example.com","mfa_enrolled":false},
	{"id":"it-2","user_id":"https://idp#eve","email":"eve@example.com\u001b[2J","role":"db-admin","source":"local","grant_id":"g2","grant_expires":"","last_login":null,"uses":null,"dormant":true,"unused":true,"locked":true,"mfa_enrolled":false,"decision":"","note":"\u001b]8;;http://evil\u0007click"}]}`
	campaignSigned   = `{"id":"2026-q3","name":"2026-Q3","created_at":"2026-07-01T00:00:00Z","due":"2026-07-15T00:00:00Z","created_by":"local-admin","signed_off_by":"https://idp#carol","signed_off_at":"2026-07-10T00:00:00Z","items":[{"id":"it-1"},{"id":"it-2"}]}`
	reviewStatusJSON = `{"campaigns":[{"id":"2026-q3","name":"2026-Q3","state":"signed-off","created_at":"2026-07-01T00:00:00Z","due":"2026-07-15T00:00:00Z","items":2,"decided":2,"signed_off_by":"https://idp#carol","signed_off_at":"2026-07-10T00:00:00Z"},
	{"id":"2026-q2","name":"2026-Q2","state":"incomplete","created_at":"2026-04-01T00:00:00Z","created_by":"local-admin","due":"2026-04-15T00:00:00Z","items":0,"decided":0},
	{"id":"2026-q4","name":"2026-Q4\u001b[2J","state":"overdue","created_at":"2026-10-01T00:00:00Z","due":"2026-10-15T00:00:00Z","items":2,"decided":1}],"new_due":true}`
)

// adminReviewRoute answers the admin API's reviews calls.
func adminReviewRoute(w http.ResponseWriter, r *http.Request, body string) {
	p := r.URL.Path
	switch {
	case p == "/api/admin/reviews" && r.Method == http.MethodGet:
		io.WriteString(w, reviewStatusJSON)
	case p == "/api/admin/reviews" && strings.Contains(body, `"name":"2026-Q3"`):
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"a campaign with this name exists","ref":"ref-DUP"}`)
	case p == "/api/admin/reviews":
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, campaignJSON)
	case p == "/api/admin/reviews/2026-Q4":
		io.WriteString(w, campaignJSON)
	case p == "/api/admin/reviews/broken":
		io.WriteString(w, `{"id":"x","items":[{"last_login":"last week"}]}`)
	case p == "/api/admin/reviews/2026-Q4/items/it-1":
		io.WriteString(w, `{"id":"it-1","user_id":"https://idp#alice","role":"sre","source":"idp-group","group":"sre-team","decision":"revoke","action":"remove https://idp#alice from IdP group sre-team\u001b[2J"}`)
	case p == "/api/admin/reviews/2026-Q4/items/it-2":
		io.WriteString(w, `{"id":"it-2","user_id":"https://idp#eve","role":"db-admin","source":"local","grant_id":"g2","decision":"revoke","revoked":true}`)
	case p == "/api/admin/reviews/2026-Q4/signoff":
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":"1 item is undecided","ref":"ref-UND"}`)
	case p == "/api/admin/reviews/2026-Q3/signoff":
		io.WriteString(w, campaignSigned)
	case p == "/api/admin/reviews/2026-Q4/report" && r.URL.Query().Get("format") == "csv":
		w.Header().Set("Content-Type", "text/csv")
		io.WriteString(w, "item,user,role,decision\nit-1,https://idp#alice,sre,keep\n")
	case p == "/api/admin/reviews/2026-Q4/report" && r.URL.Query().Get("format") == "html" && r.Header.Get("Accept") == "text/html":
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>2026-Q4</title>\r\n")
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"not found","ref":"ref-X"}`)
	}
}

func TestAdminReviewCLI(t *testing.T) {
	f := newUnixFake(t, adminAccessRoute)
	dir := t.TempDir()
	get := func(path, query string) *sentReq { return &sentReq{"GET", path, query, ""} }
	cases := []cliCase{
		{name: "start", args: []string{"review", "start", "--name", "2026-Q4"}, wantOut: []string{"review 2026-Q4 started (id 2026-q4): 3 item(s), due 2026-10-15T00:00:00Z"},
			sent: &sentReq{"POST", "/api/admin/reviews", "", `{"name":"2026-Q4"}`}},
		{name: "start existing", args: []string{"review", "start", "--name", "2026-Q3"}, code: exitFail,
			wantErr: "409 Conflict: a campaign with this name exists (ref ref-DUP)", sent: &sentReq{"POST", "/api/admin/reviews", "", `{"name":"2026-Q3"}`}},
		{name: "start without name", args: []string{"review", "start"}, code: exitUsage, wantErr: "--name is required"},
		{name: "start hostile name", args: []string{"review", "start", "--name", "q\x1b[2J"}, code: exitUsage, wantErr: "--name must be printable"},
		{name: "start positional name", args: []string{"review", "start", "2026-Q4"}, code: exitUsage, wantErr: `unexpected argument "2026-Q4"`},
		{name: "status", args: []string{"review", "status"},
			wantOut: []string{"NAME", "STATE", "2026-Q3", "signed-off", "2/2", "https://idp#carol", "2026-Q4?[2J", "OVERDUE", "1/2", "INCOMPLETE", "a new review is due"},
			sent:    get("/api/admin/reviews", "")},
		{name: "status json", args: []string{"review", "status", "--json"}, wantOut: []string{`"new_due": true`}, json: true, sent: get("/api/admin/reviews", "")},
		{name: "status with note", args: []string{"review", "status", "--note", "x"}, code: exitUsage, wantErr: "--note does not go with review status"},
		{name: "show", args: []string{"review", "show", "2026-Q4"},
			wantOut: []string{"review:", "2026-Q4", "period from:", "2026-07-01T00:00:00Z", "decided:", "1/3", "signed off:", "not yet",
				"ITEM", "it-1", "idp-group:sre-team", "it-3", "config:frank@example.com", "15", "keep", "https://idp#carol", "it-2", "eve@example.com?[2J", "dormant,unused,locked,no-mfa", "?]8;;http://evil?click"},
			sent: get("/api/admin/reviews/2026-Q4", "")},
		{name: "show malformed", args: []string{"review", "show", "broken"}, code: exitFail, wantErr: "unexpected answer from the server", sent: get("/api/admin/reviews/broken", "")},
		{name: "show unknown", args: []string{"review", "show", "1999-Q1"}, code: exitFail, wantErr: "no such review campaign (ref ref-X)", sent: get("/api/admin/reviews/1999-Q1", "")},
		{name: "show escapes the name", args: []string{"review", "show", "a/b c"}, code: exitFail, wantErr: "no such review campaign", sent: get("/api/admin/reviews/a%2Fb%20c", "")},
		{name: "show without name", args: []string{"review", "show"}, code: exitUsage, wantErr: "review show expects NAME"},
		{name: "decide revoke group", args: []string{"review", "decide", "2026-Q4", "it-1", "revoke", "--note", "left the team"},
			wantOut: []string{"item it-1 (https://idp#alice, sre via idp-group): revoke", "action needed: remove https://idp#alice from IdP group sre-team?[2J"},
			sent:    &sentReq{"POST", "/api/admin/reviews/2026-Q4/items/it-1", "", `{"decision":"revoke","note":"left the team"}`}},
		{name: "decide revoke grant", args: []string{"review", "decide", "2026-Q4", "it-2", "revoke"}, wantOut: []string{"grant g2 revoked on every instance"},
			sent: &sentReq{"POST", "/api/admin/reviews/2026-Q4/items/it-2", "", `{"decision":"revoke","note":""}`}},
		{name: "decide bad decision", args: []string{"review", "decide", "2026-Q4", "it-1", "maybe"}, code: exitUsage, wantErr: `decision must be keep or revoke, not "maybe"`},
		{name: "decide missing decision", args: []string{"review", "decide", "2026-Q4", "it-1"}, code: exitUsage, wantErr: "review decide expects NAME ITEM keep|revoke"},
		{name: "decide hostile item", args: []string{"review", "decide", "2026-Q4", "\x1b[2J", "keep"}, code: exitUsage, wantErr: "bad ITEM"},
		{name: "decide unknown item", args: []string{"review", "decide", "2026-Q4", "it-9", "keep"}, code: exitFail, wantErr: "no such review campaign or item",
			sent: &sentReq{"POST", "/api/admin/reviews/2026-Q4/items/it-9", "", `{"decision":"keep","note":""}`}},
		{name: "signoff", args: []string{"review", "signoff", "2026-Q3"}, wantOut: []string{"review 2026-Q3 signed off by https://idp#carol at 2026-07-10T00:00:00Z (2 item(s))"},
			sent: &sentReq{"POST", "/api/admin/reviews/2026-Q3/signoff", "", ""}},
		{name: "signoff undecided", args: []string{"review", "signoff", "2026-Q4"}, code: exitFail, wantErr: "409 Conflict: 1 item is undecided (ref ref-UND)",
			sent: &sentReq{"POST", "/api/admin/reviews/2026-Q4/signoff", "", ""}},
		{name: "report csv to stdout", args: []string{"review", "report", "2026-Q4", "--format", "csv"}, wantOut: []string{"item,user,role,decision\nit-1,https://idp#alice,sre,keep\n"},
			sent: get("/api/admin/reviews/2026-Q4/report", "format=csv")},
		{name: "report html as is", args: []string{"review", "report", "2026-Q4", "--format", "html"}, wantOut: []string{"<!doctype html><title>2026-Q4</title>\r\n"}, raw: true,
			sent: get("/api/admin/reviews/2026-Q4/report", "format=html")},
		{name: "report to file", args: []string{"review", "report", "2026-Q4", "--format", "csv", "--out", filepath.Join(dir, "q4.csv")},
			wantOut: []string{"report written to " + filepath.Join(dir, "q4.csv")}, sent: get("/api/admin/reviews/2026-Q4/report", "format=csv")},
		{name: "report unknown", args: []string{"review", "report", "1999-Q1", "--format", "json", "--out", filepath.Join(dir, "none.json")}, code: exitFail,
			wantErr: "no such review campaign (ref ref-X)", sent: get("/api/admin/reviews/1999-Q1/report", "format=json")},
		{name: "report without format", args: []string{"review", "report", "2026-Q4"}, code: exitUsage, wantErr: "--format must be csv, json or html"},
		{name: "report bad format", args: []string{"review", "report", "2026-Q4", "--format", "pdf"}, code: exitUsage, wantErr: "--format must be csv, json or html"},
		{name: "report with json", args: []string{"--json", "review", "report", "2026-Q4", "--format", "json"}, code: exitUsage, wantErr: "use --format json"},
		{name: "report into a missing directory", args: []string{"review", "report", "2026-Q4", "--format", "csv", "--out", filepath.Join(dir, "nope", "q4.csv")}, code: exitUsage,
			wantErr: "does not exist"},
		{name: "report onto a directory", args: []string{"review", "report", "2026-Q4", "--format", "csv", "--out", dir}, code: exitUsage, wantErr: "is a directory"},
		{name: "format with show", args: []string{"review", "show", "2026-Q4", "--format", "csv"}, code: exitUsage, wantErr: "--format does not go with review show"},
		{name: "no command", args: []string{"review"}, code: exitUsage, wantErr: "missing review command"},
		{name: "unknown command", args: []string{"review", "delete", "x"}, code: exitUsage, wantErr: `unknown review command "delete"`},
	}
	runCases(t, f, []string{"admin", "--socket", f.socket}, cases)

	b, err := os.ReadFile(filepath.Join(dir, "q4.csv"))
	if err != nil || string(b) != "item,user,role,decision\nit-1,https://idp#alice,sre,keep\n" {
		t.Fatalf("report file %q %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "q4.csv")); fi.Mode().Perm() != 0o600 {
		t.Errorf("report file mode %v, want 0600", fi.Mode().Perm())
	}
	// A failed download leaves nothing behind, not even a temporary file.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v, want only q4.csv", entries)
	}
}

// TestReviewReportReplacesFile: an existing file is replaced whole, and
// ends up 0600 even when it was readable by others before.
func TestReviewReportReplacesFile(t *testing.T) {
	f := newUnixFake(t, adminAccessRoute)
	out := filepath.Join(t.TempDir(), "q4.csv")
	if err := os.WriteFile(out, []byte(strings.Repeat("old ", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "admin", "--socket", f.socket, "review", "report", "2026-Q4", "--format", "csv", "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b, _ := os.ReadFile(out)
	fi, _ := os.Stat(out)
	if string(b) != "item,user,role,decision\nit-1,https://idp#alice,sre,keep\n" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file %q mode %v", b, fi.Mode().Perm())
	}
}
