package gateway

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
)

const sessionCookie = "__Host-portcullis"

func (e *loginEnv) appURL(path string) string {
	return "https://" + appHost + ":" + strconv.Itoa(e.g.cfg.PublicPort) + path
}

func TestLoginHappyPathToRouteHost(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	rd := e.appURL("/dash?x=1")

	// An unauthenticated browser on the route host is sent to log in.
	p := b.get(rd)
	if p.status != http.StatusFound || !strings.HasPrefix(p.location(), e.origin+pathLogin+"?rd=") {
		t.Fatalf("route host unauthenticated: %d %q", p.status, p.location())
	}

	secret, done := b.loginNew("bob", rd)
	if !strings.HasPrefix(done.location(), e.appURL(hopPath+"?")) {
		t.Fatalf("after login: location %q, want the login hop on the route host", done.location())
	}
	tok := b.cookie(accessHost, sessionCookie)
	if tok == "" {
		t.Fatal("no session cookie on the access host")
	}
	rec, err := e.sessions.Lookup(t.Context(), tok)
	if err != nil {
		t.Fatalf("session lookup: %v", err)
	}
	if !rec.MFA || rec.Email != "bob@example.com" || strings.Join(rec.Roles, ",") != "engineer" || rec.SourceIP == "" {
		t.Fatalf("session record %+v", rec)
	}
	for _, name := range []string{loginCookie, mfaCookie} {
		if v := b.cookie(accessHost, name); v != "" {
			t.Errorf("cookie %s still set after login", name)
		}
	}

	// The hop sets the route host's own cookie and lands on the original URL.
	p = b.get(done.location())
	if p.status/100 != 3 || p.location() != "/dash?x=1" && p.location() != rd {
		t.Fatalf("hop: %d %q", p.status, p.location())
	}
	p = b.get(rd)
	if p.status != http.StatusOK || !strings.Contains(p.body, "upstream user=") {
		t.Fatalf("route host after login: %d %q", p.status, p.body)
	}

	// Home page: identity, roles and the app link.
	p = b.get(pathHome)
	if p.status != http.StatusOK || !strings.Contains(p.body, "Bob") || !strings.Contains(p.body, `id="roles">engineer`) ||
		!strings.Contains(p.body, e.appURL("/")) {
		t.Fatalf("home: %d\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "/admin/token") {
		t.Error("non-admin home page links to the admin token page")
	}

	e.mustAudit(audit.TypeLoginStart, "", audit.Allow)
	cb := e.mustAudit(audit.TypeLoginCallback, "oidc-verified", audit.Allow)
	if cb.UserID != rec.UserID {
		t.Errorf("callback audit user %q, want %q", cb.UserID, rec.UserID)
	}
	e.mustAudit(audit.TypeMFAEnrolStart, "", audit.Allow)
	e.mustAudit(audit.TypeMFAEnrolConfirm, "", audit.Allow)
	if ev := e.mustAudit(audit.TypeSessionStart, "login-complete", audit.Allow); ev.SessionID != rec.ID {
		t.Errorf("session.start audit session %q, want %q", ev.SessionID, rec.ID)
	}

	// The user directory has the verified identity.
	u, err := getUser(t.Context(), e.st, rec.UserID)
	if err != nil || u.Email != "bob@example.com" || strings.Join(u.Groups, ",") != "engineers" || u.LastIP == "" {
		t.Fatalf("directory record %+v, %v", u, err)
	}

	// Second login (new browser): TOTP only, new session ID, access-host return.
	b2 := e.browser()
	p = b2.loginAgain("bob", "/", secret)
	if p.status != http.StatusSeeOther || p.location() != "/" {
		t.Fatalf("second login: %d %q\n%s", p.status, p.location(), p.body)
	}
	rec2, err := e.sessions.Lookup(t.Context(), b2.cookie(accessHost, sessionCookie))
	if err != nil || rec2.ID == rec.ID {
		t.Fatalf("second session %+v, %v (first %s)", rec2, err, rec.ID)
	}
	if ev := e.mustAudit(audit.TypeMFAVerify, "mfa-verified", audit.Allow); ev.Attrs["method"] != "totp" {
		t.Errorf("mfa.verify attrs %v", ev.Attrs)
	}
}

func TestLoginRecoveryCode(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	_, codes, done := b.enrol(b.idpLogin("/", "bob"))
	if done.status != http.StatusSeeOther || len(codes) != 10 {
		t.Fatalf("enrol: %d, %d codes", done.status, len(codes))
	}
	use := func(code string) page {
		b := e.browser()
		p := b.get(b.idpLogin("/", "bob"))
		p = b.get(p.location())
		return b.post(pathMFA, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "recovery": {code}})
	}
	if p := use(codes[3]); p.status != http.StatusSeeOther {
		t.Fatalf("recovery code: %d\n%s", p.status, p.body)
	}
	if p := use(codes[3]); p.status != http.StatusUnauthorized || !strings.Contains(p.body, genericCodeError) {
		t.Fatalf("reused recovery code: %d", p.status)
	}
	e.mustAudit(audit.TypeMFAVerify, "mfa-invalid", audit.Deny)
}

func TestCallbackHostile(t *testing.T) {
	tests := []struct {
		name string
		run  func(e *loginEnv) page
	}{
		{"replayed callback", func(e *loginEnv) page {
			b := e.browser()
			cb := b.idpLogin("/", "bob")
			if p := b.get(cb); p.status != http.StatusSeeOther {
				t.Fatalf("first callback: %d", p.status)
			}
			return b.get(cb)
		}},
		{"callback in another browser", func(e *loginEnv) page {
			cb := e.browser().idpLogin("/", "bob")
			return e.browser().get(cb)
		}},
		{"different binding cookie", func(e *loginEnv) page {
			b := e.browser()
			cb := b.idpLogin("/", "bob")
			b.setCookie(accessHost, loginCookie, strings.Repeat("A", 43))
			return b.get(cb)
		}},
		{"victim cannot finish after attacker tried", func(e *loginEnv) page {
			b := e.browser()
			cb := b.idpLogin("/", "bob")
			e.browser().get(cb)
			return b.get(cb)
		}},
		{"state tampered", func(e *loginEnv) page {
			b := e.browser()
			u, _ := url.Parse(b.idpLogin("/", "bob"))
			q := u.Query()
			q.Set("state", q.Get("state")+"x")
			u.RawQuery = q.Encode()
			return b.get(u.String())
		}},
		{"missing state", func(e *loginEnv) page { return e.browser().get(pathCallback + "?code=abc") }},
		{"malformed state", func(e *loginEnv) page {
			return e.browser().get(pathCallback + "?code=abc&state=" + url.QueryEscape("a b\r\n<x>"))
		}},
		{"oversized state", func(e *loginEnv) page {
			return e.browser().get(pathCallback + "?code=abc&state=" + strings.Repeat("a", 5000))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newLoginEnv(t)
			p := tc.run(e)
			if p.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400\n%s", p.status, p.body)
			}
			if strings.Contains(p.body, "state") {
				t.Errorf("error page reveals which check failed:\n%s", p.body)
			}
			e.mustAudit(audit.TypeLoginCallback, "state-invalid", audit.Deny)
			if got := e.audit.Find(audit.TypeLoginCallback, "oidc-verified"); len(got) > 1 {
				t.Errorf("%d verified callbacks, want at most 1", len(got))
			}
		})
	}
}

func TestCallbackIdPErrorAndBadCode(t *testing.T) {
	tests := []struct {
		name, reason string
		edit         func(q url.Values)
	}{
		{"idp error", "idp-error", func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") }},
		{"code forged", "idp-error", func(q url.Values) { q.Set("code", "forged-code") }},
		{"code missing", "idp-error", func(q url.Values) { q.Del("code") }},
		{"issuer mix-up", "state-invalid", func(q url.Values) { q.Set("iss", "https://evil.example") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newLoginEnv(t)
			b := e.browser()
			u, _ := url.Parse(b.idpLogin("/", "bob"))
			q := u.Query()
			tc.edit(q)
			u.RawQuery = q.Encode()
			p := b.get(u.String())
			if p.status != http.StatusUnauthorized && p.status != http.StatusBadRequest {
				t.Fatalf("status %d\n%s", p.status, p.body)
			}
			ev := e.audit.Find(audit.TypeLoginCallback, "")
			if len(ev) == 0 || ev[len(ev)-1].Decision != audit.Deny || ev[len(ev)-1].Ref == "" {
				t.Fatalf("audit %+v", ev)
			}
			if got := ev[len(ev)-1].Reason; got != tc.reason {
				t.Errorf("reason %q, want %q", got, tc.reason)
			}
			if b.cookie(accessHost, mfaCookie) != "" || b.cookie(accessHost, sessionCookie) != "" {
				t.Error("a failed callback left a pending or session cookie")
			}
		})
	}
}

func TestHalfFinishedLoginGrantsNothing(t *testing.T) {
	e := newLoginEnv(t)
	// Make alice enrolled and an admin, then stop her second login half way.
	a := e.browser()
	secret, _ := a.loginNew("alice", "/")
	_ = secret
	b := e.browser()
	p := b.get(b.idpLogin("/", "alice"))
	if p.location() != pathMFA {
		t.Fatalf("callback: %q", p.location())
	}
	pending := b.cookie(accessHost, mfaCookie)
	if pending == "" {
		t.Fatal("no pending cookie")
	}
	if p := b.get(pathHome); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), pathLogin) {
		t.Errorf("home with pending login: %d %q", p.status, p.location())
	}
	if p := b.get(pathAdminToken); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), pathLogin) {
		t.Errorf("admin token page with pending login: %d %q", p.status, p.location())
	}
	if p := b.get(e.appURL("/")); p.status != http.StatusFound {
		t.Errorf("route host with pending login: %d", p.status)
	}
	// The pending cookie, presented as a session cookie or a bearer token,
	// is nothing.
	b.setCookie(accessHost, sessionCookie, pending)
	if p := b.get(pathHome); p.status != http.StatusSeeOther {
		t.Errorf("pending value as session cookie: %d", p.status)
	}
	if st, _, _ := b.adminCall(http.MethodGet, "/api/admin/users", pending, ""); st != http.StatusUnauthorized {
		t.Errorf("pending value as admin bearer: %d", st)
	}
	e.mustAudit(audit.TypeAdmin, "admin-auth-required", audit.Deny)
	// Still no session for that browser.
	if _, err := e.sessions.Lookup(t.Context(), pending); err != session.ErrNoSession {
		t.Errorf("lookup of pending value: %v", err)
	}
}

func TestTamperedPendingCookie(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	p := b.get(b.idpLogin("/", "bob"))
	if p.location() != pathEnrol {
		t.Fatalf("callback: %q", p.location())
	}
	p = b.get(pathEnrol)
	csrf := scrape(t, reCSRF, p.body)
	secret := scrape(t, reSecret, p.body)
	orig := b.cookie(accessHost, mfaCookie)
	tampered := []byte(orig)
	tampered[5] ^= 1
	b.setCookie(accessHost, mfaCookie, string(tampered))

	if p := b.get(pathMFA); p.status != http.StatusSeeOther || p.location() != pathLogin {
		t.Errorf("GET /mfa with tampered cookie: %d %q", p.status, p.location())
	}
	b.setCookie(accessHost, mfaCookie, string(tampered))
	p = b.post(pathEnrol, url.Values{"csrf": {csrf}, "code": {e.code(secret)}})
	if p.status != http.StatusForbidden {
		t.Fatalf("POST with tampered cookie: %d", p.status)
	}
	e.mustAudit(audit.TypeRequestRejected, "csrf-invalid", audit.Deny)
	if b.cookie(accessHost, sessionCookie) != "" {
		t.Fatal("session cookie after tampered login")
	}
}

func TestTOTPReplayRefused(t *testing.T) {
	e := newLoginEnv(t)
	secret, _ := e.browser().loginNew("bob", "/")

	// A login with a code, then a second login replaying that very code
	// within the same time step.
	b1 := e.browser()
	p := b1.get(b1.idpLogin("/", "bob"))
	p = b1.get(p.location())
	code := e.code(secret)
	if p := b1.post(pathMFA, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {code}}); p.status != http.StatusSeeOther {
		t.Fatalf("first use: %d", p.status)
	}
	b2 := e.browser()
	p = b2.get(b2.idpLogin("/", "bob"))
	p = b2.get(p.location())
	p = b2.post(pathMFA, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {code}})
	if p.status != http.StatusUnauthorized || !strings.Contains(p.body, genericCodeError) {
		t.Fatalf("replayed code: %d\n%s", p.status, p.body)
	}
	if b2.cookie(accessHost, sessionCookie) != "" {
		t.Fatal("replayed code created a session")
	}
	e.mustAudit(audit.TypeMFAVerify, "mfa-invalid", audit.Deny)
	// The same form with a fresh code works.
	p = b2.post(pathMFA, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {e.code(secret)}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("fresh code: %d", p.status)
	}
}

func TestPendingAttemptLimit(t *testing.T) {
	e := newLoginEnv(t)
	// The per-pending-login limit on its own: with the risk engine's
	// default (5 TOTP failures) the 5th code would lock the account
	// first (TestWrongTOTPCodesLock).
	if err := e.risk.SetConfig(risk.Config{User: map[risk.Signal]risk.Threshold{risk.SignalTOTPFailure: {Count: 50, Window: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	secret, _ := e.browser().loginNew("bob", "/")
	_ = secret
	b := e.browser()
	p := b.get(b.idpLogin("/", "bob"))
	p = b.get(p.location())
	csrf := scrape(t, reCSRF, p.body)
	for i := 1; i <= maxPendingFailures; i++ {
		p = b.post(pathMFA, url.Values{"csrf": {csrf}, "code": {"000000"}})
		if p.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, p.status)
		}
	}
	if !strings.Contains(p.body, "Sign in again") {
		t.Fatalf("last attempt page:\n%s", p.body)
	}
	if ev := e.mustAudit(audit.TypeMFAVerify, "mfa-invalid", audit.Deny); ev.Attrs["pending"] != "dropped" {
		t.Errorf("last failure attrs %v", ev.Attrs)
	}
	// Even a correct code is useless now: the pending login is gone.
	b.setCookie(accessHost, mfaCookie, "")
	if p := b.get(pathMFA); p.status != http.StatusSeeOther || p.location() != pathLogin {
		t.Fatalf("after limit: %d %q", p.status, p.location())
	}
}

func TestEnrolWrongCodeKeepsSecret(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	b.get(b.idpLogin("/", "carol"))
	p := b.get(pathEnrol)
	secret := scrape(t, reSecret, p.body)
	p = b.post(pathEnrol, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {"12345x"}})
	if p.status != http.StatusUnauthorized || strings.Contains(p.body, "totp-secret") || !strings.Contains(p.body, genericCodeError) {
		t.Fatalf("wrong enrol code: %d\n%s", p.status, p.body)
	}
	e.mustAudit(audit.TypeMFAEnrolConfirm, "mfa-invalid", audit.Deny)
	p = b.post(pathEnrol, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {e.code(secret)}})
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="recovery-codes"`) {
		t.Fatalf("retry with right code: %d\n%s", p.status, p.body)
	}
	// Carol has no role: she gets a session that grants no application.
	p = b.post(pathContinue, url.Values{"csrf": {scrape(t, reCSRF, p.body)}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("continue: %d", p.status)
	}
	if p := b.get(pathHome); !strings.Contains(p.body, "No application is open") {
		t.Fatalf("home of a user without roles:\n%s", p.body)
	}
}

func TestEnrolledUserCannotReEnrol(t *testing.T) {
	e := newLoginEnv(t)
	e.browser().loginNew("bob", "/")
	b := e.browser()
	b.get(b.idpLogin("/", "bob"))
	if p := b.get(pathEnrol); p.status != http.StatusSeeOther || p.location() != pathMFA {
		t.Fatalf("enrol page for an enrolled user: %d %q", p.status, p.location())
	}
}

func TestCSRF(t *testing.T) {
	tests := []struct {
		name  string
		csrf  func(good string) string
		hdr   []string
		allow bool
	}{
		{"good", func(g string) string { return g }, nil, true},
		{"good without origin headers", func(g string) string { return g }, []string{"Origin", "", "Sec-Fetch-Site", ""}, true},
		{"opaque origin vouched by fetch metadata", func(g string) string { return g }, []string{"Origin", "null"}, true},
		{"missing token", func(string) string { return "" }, nil, false},
		{"wrong token", func(g string) string { return g[:len(g)-2] + "AA" }, nil, false},
		{"token for another purpose", nil, nil, false},
		{"cross-origin", func(g string) string { return g }, []string{"Origin", "https://evil.example.com"}, false},
		{"other port", func(g string) string { return g }, []string{"Origin", "https://" + accessHost}, false},
		{"cross-site fetch", func(g string) string { return g }, []string{"Sec-Fetch-Site", "cross-site"}, false},
		{"same-site sibling", func(g string) string { return g }, []string{"Sec-Fetch-Site", "same-site"}, false},
		{"opaque origin alone", func(g string) string { return g }, []string{"Origin", "null", "Sec-Fetch-Site", ""}, false},
		{"foreign referer", func(g string) string { return g }, []string{"Origin", "", "Sec-Fetch-Site", "", "Referer", "https://evil.example.com/x"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newLoginEnv(t)
			b := e.browser()
			b.loginNew("bob", "/")
			p := b.get(pathLogout)
			good := scrape(t, reCSRF, p.body)
			tok := good
			if tc.csrf == nil {
				tok = e.g.login.csrf.token(csrfPending, b.cookie(accessHost, sessionCookie))
			} else {
				tok = tc.csrf(good)
			}
			p = b.post(pathLogout, url.Values{"csrf": {tok}}, tc.hdr...)
			_, err := e.sessions.Lookup(t.Context(), b.cookie(accessHost, sessionCookie))
			if tc.allow {
				if p.status != http.StatusOK || err == nil {
					t.Fatalf("allowed logout: %d, session err %v", p.status, err)
				}
				return
			}
			if p.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403", p.status)
			}
			if err != nil {
				t.Fatalf("refused logout still ended the session: %v", err)
			}
			e.mustAudit(audit.TypeRequestRejected, "csrf-invalid", audit.Deny)
		})
	}
}

func TestLogoutRevokes(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	secret, done := b.loginNew("bob", e.appURL("/"))
	b.get(done.location()) // hop: the route host gets the same session
	tok := b.cookie(accessHost, sessionCookie)
	if p := b.get(e.appURL("/")); p.status != http.StatusOK {
		t.Fatalf("route host before logout: %d", p.status)
	}
	p := b.get(pathLogout)
	if p.status != http.StatusOK || !strings.Contains(p.body, `action="/logout"`) {
		t.Fatalf("logout confirm: %d", p.status)
	}
	p = b.post(pathLogout, url.Values{"csrf": {scrape(t, reCSRF, p.body)}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "signed out") {
		t.Fatalf("logout: %d\n%s", p.status, p.body)
	}
	if b.cookie(accessHost, sessionCookie) != "" {
		t.Error("session cookie not cleared")
	}
	if _, err := e.sessions.Lookup(t.Context(), tok); err != session.ErrNoSession {
		t.Errorf("revoked session lookup: %v", err)
	}
	if p := b.get(e.appURL("/")); p.status != http.StatusFound {
		t.Errorf("route host after logout: %d", p.status)
	}
	b.setCookie(accessHost, sessionCookie, tok)
	if p := b.get(pathHome); p.status != http.StatusSeeOther {
		t.Errorf("old cookie on access host after logout: %d", p.status)
	}
	e.mustAudit(audit.TypeSessionEnd, "logout", audit.Allow)
	// GET /logout must not sign anyone out.
	b2 := e.browser()
	if p := b2.loginAgain("bob", "/", secret); p.status != http.StatusSeeOther {
		t.Fatalf("second login: %d", p.status)
	}
	b2.get(pathLogout)
	if _, err := e.sessions.Lookup(t.Context(), b2.cookie(accessHost, sessionCookie)); err != nil {
		t.Errorf("GET /logout ended the session: %v", err)
	}
}

func TestLoginWithSessionHopsWithoutIdP(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	b.loginNew("bob", "/")
	starts := len(e.audit.Find(audit.TypeLoginStart, ""))
	p := b.get(pathLogin + "?rd=" + url.QueryEscape(e.appURL("/x")))
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), e.appURL(hopPath)) {
		t.Fatalf("login with a session: %d %q", p.status, p.location())
	}
	if n := len(e.audit.Find(audit.TypeLoginStart, "")); n != starts {
		t.Errorf("an OIDC login was started for a signed-in browser")
	}
	// Open redirects are neutralised before anything else.
	for _, rd := range []string{"//evil.com", "https://evil.com/", "/\\evil.com", "javascript:alert(1)"} {
		p := b.get(pathLogin + "?rd=" + url.QueryEscape(rd))
		if p.status != http.StatusSeeOther || p.location() != "/" {
			t.Errorf("rd %q: %d %q", rd, p.status, p.location())
		}
	}
}

func TestStoreUnavailable(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	p := b.get(b.idpLogin("/", "bob"))
	if p.location() != pathEnrol {
		t.Fatalf("callback: %q", p.location())
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{pathEnrol, pathMFA, pathLogin} {
		p := b.get(path)
		if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "state store unavailable") {
			t.Errorf("%s with the store down: %d\n%s", path, p.status, p.body)
		}
	}
	e.mustAudit(audit.TypeLoginStart, "store-unavailable", audit.Deny)
}

func TestPagesMethodAndNotFound(t *testing.T) {
	e := newLoginEnv(t)
	b := e.browser()
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, pathLogin, http.StatusMethodNotAllowed},
		{http.MethodPut, pathMFA, http.StatusMethodNotAllowed},
		{http.MethodGet, pathContinue, http.StatusMethodNotAllowed},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, pathCSS, http.StatusOK},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, b.abs(tc.path), nil)
		if p := b.do(req); p.status != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, p.status, tc.want)
		}
	}
	// An oversized form is refused before anything parses it.
	p := b.post(pathMFA, url.Values{"code": {strings.Repeat("1", maxFormBytes)}})
	if p.status != http.StatusBadRequest {
		t.Errorf("oversized form: %d", p.status)
	}
}
