package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
)

// TestJITAdminAPI: requests and grants in the admin API, on the local
// socket (local-admin: may deny, may not approve) and over HTTPS (an
// admin approves as themselves, subject to the approver rules).
func TestJITAdminAPI(t *testing.T) {
	e := newJITEnv(t, false)
	bob := e.token(jitFrank, "engineer")
	b := e.browser()
	secret, _ := b.loginNew("alice", "/")
	adminTok := e.adminToken(b, secret)
	aliceRec, err := e.sessions.Lookup(t.Context(), adminTok)
	if err != nil {
		t.Fatal(err)
	}

	r1 := e.submit(bob, "db-admin", "1h")
	r2 := e.submit(bob, "ops-admin", "1h")

	st, m := e.local(http.MethodGet, "/api/admin/requests", "")
	if st != http.StatusOK || len(m["requests"].([]any)) != 2 {
		t.Fatalf("list: %d %v", st, m)
	}
	e.mustAudit(audit.TypeAdmin, "", audit.Allow)

	if st, m := e.local(http.MethodPost, "/api/admin/requests/"+r1+"/approve", `{"note":"x"}`); st != http.StatusForbidden || m["reason"] != "approver-required" {
		t.Fatalf("local approve: %d %v", st, m)
	}
	ev := e.mustAudit(audit.TypeAdmin, "approver-required", audit.Deny)
	if ev.Actor != localAdminActor || ev.Target != r1 {
		t.Errorf("refusal audit %+v", ev)
	}
	// Over HTTPS alice (admin, sre-lead) approves as herself.
	st, mm, raw := e.call(http.MethodPost, "/api/admin/requests/"+r1+"/approve", adminTok, `{"note":"ok"}`)
	if st != http.StatusOK || mm["state"] != "approved" {
		t.Fatalf("remote approve: %d %s", st, raw)
	}
	ap := e.mustAudit(access.TypeApprove, "", audit.Allow)
	if ap.Actor != aliceRec.UserID {
		t.Errorf("approval actor %q, want alice (%s)", ap.Actor, aliceRec.UserID)
	}
	// The local root may deny (it grants nothing).
	if st, m := e.local(http.MethodPost, "/api/admin/requests/"+r2+"/deny", `{"note":"not today"}`); st != http.StatusOK || m["state"] != "denied" {
		t.Fatalf("local deny: %d %v", st, m)
	}
	if st, m := e.local(http.MethodPost, "/api/admin/requests/"+r2+"/deny", ``); st != http.StatusConflict || m["reason"] != "already-decided" {
		t.Fatalf("deny twice: %d %v", st, m)
	}

	// Grants.
	st, m = e.local(http.MethodPost, "/api/admin/grants", `{"user_id":"`+jitGrace+`","role":"db-admin","expires":"2999-01-01T00:00:00Z","reason":"migration"}`)
	if st != http.StatusCreated || m["created_by"] != localAdminActor || m["expires"] != "2999-01-01T00:00:00Z" {
		t.Fatalf("add grant: %d %v", st, m)
	}
	gid := m["id"].(string)
	st, m = e.local(http.MethodGet, "/api/admin/grants", "")
	if st != http.StatusOK || len(m["grants"].([]any)) != 2 {
		t.Fatalf("grants: %d %v", st, m)
	}
	if st, m := e.local(http.MethodPost, "/api/admin/grants/"+gid+"/revoke", `{"reason":"done"}`); st != http.StatusOK || m["ok"] != true {
		t.Fatalf("revoke: %d %v", st, m)
	}
	e.mustAudit(access.TypeRevoke, "", "")

	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		reason                   string
	}{
		{"revoke again", http.MethodPost, "/api/admin/grants/" + gid + "/revoke", `{"reason":"x"}`, http.StatusNotFound, "not-found"},
		{"revoke malformed ID", http.MethodPost, "/api/admin/grants/a.b/revoke", ``, http.StatusBadRequest, "invalid-input"},
		{"grant in the past", http.MethodPost, "/api/admin/grants", `{"user_id":"u","role":"db-admin","expires":"2000-01-01T00:00:00Z"}`, http.StatusBadRequest, "invalid-input"},
		{"grant bad expiry", http.MethodPost, "/api/admin/grants", `{"user_id":"u","role":"db-admin","expires":"tomorrow"}`, http.StatusBadRequest, "invalid-input"},
		{"grant unknown role", http.MethodPost, "/api/admin/grants", `{"user_id":"u","role":"nope"}`, http.StatusBadRequest, "invalid-input"},
		{"grant no user", http.MethodPost, "/api/admin/grants", `{"role":"db-admin"}`, http.StatusBadRequest, "invalid-input"},
		{"grant unknown field", http.MethodPost, "/api/admin/grants", `{"user_id":"u","role":"db-admin","admin":true}`, http.StatusBadRequest, "bad-request"},
		{"grant control chars", http.MethodPost, "/api/admin/grants", `{"user_id":"u\u0000","role":"db-admin"}`, http.StatusBadRequest, "invalid-input"},
		{"unknown request", http.MethodPost, "/api/admin/requests/rq-zzzzzzzz/deny", ``, http.StatusNotFound, "not-found"},
		{"wrong method", http.MethodDelete, "/api/admin/grants", ``, http.StatusMethodNotAllowed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			e.audit.Reset()
			st, m := e.local(tc.method, tc.path, tc.body)
			if st != tc.status || tc.reason != "" && m["reason"] != tc.reason {
				t.Fatalf("%d %v, want %d %s", st, m, tc.status, tc.reason)
			}
			if n := len(e.audit.Find(audit.TypeAdmin, "")); n != 1 {
				t.Errorf("%d admin audit events, want 1", n)
			}
		})
	}
}

// TestJITAccessPage: the /access page end to end in a browser session:
// request, approve, grant shown; CSRF and path tricks refused.
func TestJITAccessPage(t *testing.T) {
	e := newJITEnv(t, false)
	bob := e.browser()
	bob.loginNew("bob", "/")
	alice := e.browser()
	alice.loginNew("alice", "/")

	p := bob.get(pathAccess)
	if p.status != http.StatusOK || !strings.Contains(p.body, `<option value="db-admin">`) ||
		!strings.Contains(p.body, `id="my-requests"`) || !strings.Contains(p.body, `id="to-approve"`) || !strings.Contains(p.body, `id="my-grants"`) {
		t.Fatalf("access page: %d\n%s", p.status, p.body)
	}
	csrf := scrape(t, reCSRF, p.body)
	p = bob.post(pathAccessRequest, url.Values{"csrf": {csrf}, "role": {"db-admin"}, "duration": {"2h"}, "reason": {"INC-77 <script>"}})
	if p.status != http.StatusSeeOther || p.location() != pathAccess {
		t.Fatalf("submit: %d %q\n%s", p.status, p.location(), p.body)
	}
	p = bob.get(pathAccess)
	if !strings.Contains(p.body, "INC-77 &lt;script&gt;") || strings.Contains(p.body, "<script>") {
		t.Fatalf("my request not shown (escaped):\n%s", p.body)
	}
	reqs, err := e.acc.ListRequests(t.Context())
	if err != nil || len(reqs) != 1 {
		t.Fatalf("requests %v %v", reqs, err)
	}
	id := reqs[0].ID

	// Bob cannot approve his own: no button, and the POST is refused.
	if strings.Contains(p.body, `action="/access/requests/`+id+`/approve"`) {
		t.Error("approve button shown to the requester")
	}
	p = bob.post(pathAccessRequests+id+"/approve", url.Values{"csrf": {csrf}})
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "cannot decide your own") {
		t.Fatalf("self approval via page: %d\n%s", p.status, p.body)
	}

	ap := alice.get(pathAccess)
	if !strings.Contains(ap.body, `action="/access/requests/`+id+`/approve"`) || !strings.Contains(ap.body, `formaction="/access/requests/`+id+`/deny"`) {
		t.Fatalf("approver page without the buttons:\n%s", ap.body)
	}
	acsrf := scrape(t, reCSRF, ap.body)
	for _, tc := range []struct {
		name string
		form url.Values
		path string
		hdr  []string
		want int
	}{
		{"no CSRF token", url.Values{}, pathAccessRequests + id + "/approve", nil, http.StatusForbidden},
		{"another session's token", url.Values{"csrf": {csrf}}, pathAccessRequests + id + "/approve", nil, http.StatusForbidden},
		{"foreign origin", url.Values{"csrf": {acsrf}}, pathAccessRequests + id + "/approve", []string{"Origin", "https://evil.example", "Sec-Fetch-Site", ""}, http.StatusForbidden},
		{"cross-site fetch", url.Values{"csrf": {acsrf}}, pathAccessRequests + id + "/approve", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"unknown verb", url.Values{"csrf": {acsrf}}, pathAccessRequests + id + "/grant", nil, http.StatusNotFound},
		{"malformed ID", url.Values{"csrf": {acsrf}}, pathAccessRequests + "a.b/approve", nil, http.StatusNotFound},
		{"extra segment", url.Values{"csrf": {acsrf}}, pathAccessRequests + id + "/approve/x", nil, http.StatusNotFound},
		{"escaped slash", url.Values{"csrf": {acsrf}}, pathAccessRequests + id + "%2Fapprove", nil, http.StatusBadRequest},
		{"unknown request", url.Values{"csrf": {acsrf}}, pathAccessRequests + "rq-zzzz/approve", nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p := alice.post(tc.path, tc.form, tc.hdr...); p.status != tc.want {
				t.Fatalf("%d, want %d\n%s", p.status, tc.want, p.body)
			}
			if r, _ := e.acc.GetRequest(t.Context(), id); r.State != access.StatePending {
				t.Fatalf("request decided by a refused POST: %s", r.State)
			}
		})
	}
	p = alice.post(pathAccessRequests+id+"/approve", url.Values{"csrf": {acsrf}, "note": {"go"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("approve via page: %d\n%s", p.status, p.body)
	}
	p = bob.get(pathAccess)
	if !strings.Contains(p.body, `id="grant-`+id+`"`) {
		t.Fatalf("grant not in my-grants:\n%s", p.body)
	}
	if p := bob.get(pathHome); !strings.Contains(p.body, "db-admin") {
		t.Errorf("home page roles do not show the granted role")
	}
	// Cancel: only pending ones, only one's own.
	p = bob.post(pathAccessRequest, url.Values{"csrf": {csrf}, "role": {"auditor"}, "duration": {"1h"}, "reason": {"audit"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("second submit: %d", p.status)
	}
	reqs, _ = e.acc.ListRequests(t.Context())
	var aid string
	for _, r := range reqs {
		if r.Role == "auditor" {
			aid = r.ID
		}
	}
	if p := alice.post(pathAccessRequests+aid+"/cancel", url.Values{"csrf": {acsrf}}); p.status != http.StatusForbidden {
		t.Errorf("cancel of another's request: %d", p.status)
	}
	if p := bob.post(pathAccessRequests+aid+"/cancel", url.Values{"csrf": {csrf}}); p.status != http.StatusSeeOther {
		t.Errorf("cancel own: %d", p.status)
	}
	// A hostile submission is refused with the page, nothing created.
	p = bob.post(pathAccessRequest, url.Values{"csrf": {csrf}, "role": {"db-admin"}, "duration": {"99999h"}, "reason": {"x"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, `id="error"`) {
		t.Errorf("bad duration: %d\n%s", p.status, p.body)
	}
	// Signed out: the page sends to the login.
	if p := e.browser().get(pathAccess); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), pathLogin) {
		t.Errorf("signed-out /access: %d %q", p.status, p.location())
	}
}
