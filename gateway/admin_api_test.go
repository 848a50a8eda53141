package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
)

// adminToken logs alice (admin) in and mints an admin API token.
func (e *loginEnv) adminToken(b *browser, secret string) string {
	e.t.Helper()
	p := b.get(pathAdminToken)
	if p.status != http.StatusOK {
		e.t.Fatalf("admin token page: %d\n%s", p.status, p.body)
	}
	p = b.post(pathAdminToken, url.Values{"csrf": {scrape(e.t, reCSRF, p.body)}, "code": {e.code(secret)}})
	if p.status != http.StatusOK {
		e.t.Fatalf("admin token issue: %d\n%s", p.status, p.body)
	}
	return scrape(e.t, reAdminTok, p.body)
}

type adminFixture struct {
	e           *loginEnv
	alice, bob  *browser
	aliceSecret string
	token       string
	bobID       string
	bobSession  string
}

func newAdminFixture(t *testing.T) *adminFixture {
	e := newLoginEnv(t)
	f := &adminFixture{e: e, alice: e.browser(), bob: e.browser()}
	f.aliceSecret, _ = f.alice.loginNew("alice", "/")
	f.bob.loginNew("bob", "/")
	rec, err := e.sessions.Lookup(t.Context(), f.bob.cookie(accessHost, sessionCookie))
	if err != nil {
		t.Fatal(err)
	}
	f.bobID, f.bobSession = rec.UserID, rec.ID
	f.token = e.adminToken(f.alice, f.aliceSecret)
	return f
}

func TestAdminTokenPage(t *testing.T) {
	f := newAdminFixture(t)
	e := f.e
	ev := e.mustAudit(audit.TypeAdmin, "admin-token-issued", audit.Allow)
	if ev.Actor == "" || ev.Attrs["action"] != "token.issue" || ev.Target == "" {
		t.Errorf("token audit %+v", ev)
	}
	if strings.Contains(ev.Target, f.token) || strings.Contains(strings.Join(mapValues(ev.Attrs), " "), f.token) {
		t.Error("token in the audit trail")
	}
	// The token is a separate session with MFA and alice's roles.
	rec, err := e.sessions.Lookup(t.Context(), f.token)
	if err != nil || !rec.MFA || strings.Join(rec.Roles, ",") != "admin" {
		t.Fatalf("token session %+v, %v", rec, err)
	}
	// bob is no admin: the page refuses him.
	if p := f.bob.get(pathAdminToken); p.status != http.StatusForbidden {
		t.Errorf("non-admin token page: %d", p.status)
	}
	e.mustAudit(audit.TypeAdmin, "not-admin", audit.Deny)
	// A wrong code mints nothing.
	p := f.alice.get(pathAdminToken)
	p = f.alice.post(pathAdminToken, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {"000000"}})
	if p.status != http.StatusUnauthorized || strings.Contains(p.body, `id="admin-token"`) {
		t.Errorf("wrong code: %d", p.status)
	}
	e.mustAudit(audit.TypeAdmin, "mfa-invalid", audit.Deny)
	// Without CSRF token: refused.
	if p := f.alice.post(pathAdminToken, url.Values{"code": {e.code(f.aliceSecret)}}); p.status != http.StatusForbidden {
		t.Errorf("no csrf: %d", p.status)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestAdminAPIAuth(t *testing.T) {
	f := newAdminFixture(t)
	e := f.e
	bobCookie := f.bob.cookie(accessHost, sessionCookie)
	tests := []struct {
		name   string
		auth   string
		want   int
		reason string
	}{
		{"no token", "", http.StatusUnauthorized, "admin-auth-required"},
		{"garbage token", "Bearer x", http.StatusUnauthorized, "admin-auth-required"},
		{"basic scheme", "Basic " + f.token, http.StatusUnauthorized, "admin-auth-required"},
		{"forged token", "Bearer " + f.token[:len(f.token)-3] + "AAA", http.StatusUnauthorized, "admin-auth-required"},
		{"non-admin session", "Bearer " + bobCookie, http.StatusForbidden, "not-admin"},
		{"admin token", "Bearer " + f.token, http.StatusOK, ""},
		{"admin token, lower-case scheme", "bearer " + f.token, http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.origin+"/api/admin/users", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			p := f.alice.do(req)
			if p.status != tc.want {
				t.Fatalf("status %d, want %d\n%s", p.status, tc.want, p.body)
			}
			if tc.want != http.StatusOK {
				var body adminError
				if err := json.Unmarshal([]byte(p.body), &body); err != nil || body.Ref == "" || body.Error == "" {
					t.Fatalf("error body %q", p.body)
				}
				ev := e.mustAudit(audit.TypeAdmin, tc.reason, audit.Deny)
				if ev.Ref == "" {
					t.Error("deny without ref")
				}
			}
		})
	}
	// A session cookie (rather than a bearer) never authenticates the API.
	if st, _, _ := f.alice.adminCall(http.MethodGet, "/api/admin/users", "", ""); st != http.StatusUnauthorized {
		t.Errorf("cookie-authenticated admin call: %d", st)
	}
}

func TestAdminAPIEndpoints(t *testing.T) {
	f := newAdminFixture(t)
	e := f.e
	call := func(method, path, body string) (int, []byte) {
		st, _, raw := f.alice.adminCall(method, path, f.token, body)
		return st, raw
	}

	st, raw := call(http.MethodGet, "/api/admin/users", "")
	var users []userView
	if st != http.StatusOK || json.Unmarshal(raw, &users) != nil || len(users) != 2 {
		t.Fatalf("users: %d %s", st, raw)
	}
	for _, u := range users {
		if !u.MFAEnrolled || u.Sessions < 1 || u.LastIP == "" || len(u.Roles) != 1 {
			t.Errorf("user %+v", u)
		}
	}
	ev := e.mustAudit(audit.TypeAdmin, "", audit.Allow)
	if ev.Attrs["action"] != "users.list" || ev.Actor != users[0].UserID && ev.Actor != users[1].UserID {
		t.Errorf("users audit %+v", ev)
	}

	st, raw = call(http.MethodGet, "/api/admin/sessions?user="+url.QueryEscape(f.bobID), "")
	var sessions []sessionView
	if st != http.StatusOK || json.Unmarshal(raw, &sessions) != nil || len(sessions) != 1 || sessions[0].ID != f.bobSession {
		t.Fatalf("sessions: %d %s", st, raw)
	}

	// explain: bob (engineer) may GET /x, not /admin; from groups=admins yes.
	explain := func(q string) explainResult {
		t.Helper()
		st, raw := call(http.MethodGet, "/api/admin/explain?"+q, "")
		var r explainResult
		if st != http.StatusOK || json.Unmarshal(raw, &r) != nil {
			t.Fatalf("explain %s: %d %s", q, st, raw)
		}
		return r
	}
	u := url.QueryEscape(f.bobID)
	if r := explain("user=" + u + "&app=app&path=/x&ip=10.1.2.3"); !r.Allow || r.Reason != "allowed" || r.Role != "engineer" {
		t.Errorf("explain allow: %+v", r)
	}
	if r := explain("user=" + u + "&app=app&path=/public/../admin/x&ip=::ffff:10.1.2.3"); r.Allow || r.Reason != "deny-rule" || r.Path != "/admin/x" || r.IP != "10.1.2.3" {
		t.Errorf("explain deny: %+v", r)
	}
	if r := explain("user=" + u + "&app=app&path=/x%252fadmin&ip=10.1.2.3"); r.Allow || r.Reason != "invalid-path" {
		t.Errorf("explain ambiguous path: %+v", r)
	}
	if r := explain("user=nobody&app=app&path=/&ip=10.1.2.3"); r.Allow || r.Reason != "no-roles" {
		t.Errorf("explain unknown user: %+v", r)
	}
	if r := explain("user=nobody&app=app&ip=10.1.2.3&groups=admins"); !r.Allow || r.Role != "admin" {
		t.Errorf("explain what-if groups: %+v", r)
	}
	if ev := e.mustAudit(audit.TypeAdmin, "", audit.Allow); ev.Attrs["action"] != "explain" || ev.Attrs["result"] == "" {
		t.Errorf("explain audit %+v", ev)
	}

	// revoke bob's session: his cookie stops working at once.
	st, raw = call(http.MethodPost, "/api/admin/sessions/"+f.bobSession+"/revoke", `{"reason":"left the company"}`)
	if st != http.StatusOK {
		t.Fatalf("revoke: %d %s", st, raw)
	}
	if p := f.bob.get(pathHome); p.status != http.StatusSeeOther {
		t.Errorf("revoked session still signed in: %d", p.status)
	}
	if ev := e.mustAudit(audit.TypeSessionRevoke, "admin-revoke", audit.Allow); ev.SessionID != f.bobSession || ev.Actor == "" {
		t.Errorf("revoke audit %+v", ev)
	}
	if st, _ := call(http.MethodPost, "/api/admin/sessions/"+f.bobSession+"/revoke", ""); st != http.StatusNotFound {
		t.Errorf("revoke twice: %d", st)
	}

	// mfa-reset bob over HTTPS: user IDs ("issuer#subject") travel
	// path-escaped, %2F included, and must still reach the admin API.
	st, raw = call(http.MethodPost, "/api/admin/users/"+url.PathEscape(f.bobID)+"/mfa-reset", `{"reason":"lost phone"}`)
	if st != http.StatusOK {
		t.Fatalf("mfa-reset: %d %s", st, raw)
	}
	if ev := e.mustAudit(audit.TypeMFAReset, "admin-reset", audit.Allow); ev.UserID != f.bobID {
		t.Errorf("reset audit %+v", ev)
	}
	b := e.browser()
	if p := b.get(b.idpLogin("/", "bob")); p.location() != pathEnrol {
		t.Errorf("login after reset: %q", p.location())
	}
}

func TestAdminAPIHostileInput(t *testing.T) {
	f := newAdminFixture(t)
	revoke := "/api/admin/sessions/" + f.bobSession + "/revoke"
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"malformed JSON", http.MethodPost, revoke, `{"reason":`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, revoke, `{"reason":"x","force":true}`, http.StatusBadRequest},
		{"trailing data", http.MethodPost, revoke, `{"reason":"x"} {}`, http.StatusBadRequest},
		{"not an object", http.MethodPost, revoke, `["x"]`, http.StatusBadRequest},
		{"reason with control chars", http.MethodPost, revoke, `{"reason":"a\nb"}`, http.StatusBadRequest},
		{"oversized body", http.MethodPost, revoke, `{"reason":"` + strings.Repeat("a", maxAdminBody) + `"}`, http.StatusBadRequest},
		{"bad session ID", http.MethodPost, "/api/admin/sessions/..%2F..%2Fx/revoke", "", http.StatusBadRequest},
		{"unknown session", http.MethodPost, "/api/admin/sessions/" + strings.Repeat("a", 43) + "/revoke", "", http.StatusNotFound},
		{"user ID with control chars", http.MethodPost, "/api/admin/users/a%01b/mfa-reset", "", http.StatusBadRequest},
		{"unknown endpoint", http.MethodGet, "/api/admin/lockz", "", http.StatusNotFound},
		{"trailing slash", http.MethodGet, "/api/admin/users/", "", http.StatusNotFound},
		{"wrong method", http.MethodPost, "/api/admin/users", "", http.StatusMethodNotAllowed},
		{"GET on action", http.MethodGet, revoke, "", http.StatusMethodNotAllowed},
		{"explain without user", http.MethodGet, "/api/admin/explain?app=app&ip=1.2.3.4", "", http.StatusBadRequest},
		{"explain bad ip", http.MethodGet, "/api/admin/explain?user=u&app=app&ip=1.2.3.999", "", http.StatusBadRequest},
		{"explain bad method", http.MethodGet, "/api/admin/explain?user=u&app=app&ip=1.2.3.4&method=G%20T", "", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, m, raw := f.alice.adminCall(tc.method, tc.path, f.token, tc.body)
			if st != tc.want {
				t.Fatalf("status %d, want %d: %s", st, tc.want, raw)
			}
			if m["ref"] == nil || m["error"] == nil {
				t.Errorf("error body without ref: %s", raw)
			}
		})
	}
	// None of that touched bob's session.
	if _, err := f.e.sessions.Get(t.Context(), f.bobSession); err != nil {
		t.Errorf("bob's session after hostile calls: %v", err)
	}
}

func TestAdminLocalHandler(t *testing.T) {
	f := newAdminFixture(t)
	h := f.e.g.AdminHandler()
	req := httptest.NewRequest(http.MethodPost, "/api/admin/sessions/"+f.bobSession+"/revoke", strings.NewReader(`{}`))
	req.RemoteAddr = "@"
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code != http.StatusOK {
		t.Fatalf("local revoke: %d %s", rr.Code, rr.Body)
	}
	ev := f.e.mustAudit(audit.TypeSessionRevoke, "admin-revoke", audit.Allow)
	if ev.Actor != localAdminActor || ev.Attrs["note"] != "admin" {
		t.Errorf("local revoke audit %+v", ev)
	}
	rr = httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/api/admin/sessions", nil))
	var sessions []sessionView
	if rr.Code != http.StatusOK || json.Unmarshal(rr.Body.Bytes(), &sessions) != nil {
		t.Fatalf("local sessions: %d %s", rr.Code, rr.Body)
	}
	for _, s := range sessions {
		if s.ID == f.bobSession {
			t.Error("revoked session still listed")
		}
	}
}
