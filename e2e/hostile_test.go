package e2e

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// hostile is one running deployment that the hostile-input tests attack
// with Go HTTP clients (each test asserts the secure outcome and the audit
// event that records it).
type hostile struct {
	s      *site
	p      *harness.Portcullis
	spec   harness.Spec
	cookie string // erin's valid session cookie (engineer)
}

// TestHostile starts one instance (embedded store, plain-HTTP listener,
// 127.0.0.2 as the only trusted proxy) and runs the attacks in parallel.
func TestHostile(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, map[string][]string{
		"erin": {"engineers"}, "frank": {"engineers"}, "gina": {"shortlived"}, "hank": {"engineers"},
		"ivan": {"engineers"}, "judy": {"engineers"},
	})
	spec := s.spec(0, "")
	spec.HTTPPort = harness.FreePort(t)
	h := &hostile{s: s, spec: spec, p: harness.StartPortcullis(t, spec.YAML())}
	_, _, h.cookie = s.session(t, h.p, "erin")

	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *hostile)
	}{
		{"cookies", testBadCookies},
		{"expired-session", testExpiredSession},
		{"unauthenticated", testUnauthenticated},
		{"half-finished-login", testHalfFinishedLogin},
		{"login-state", testLoginState},
		{"open-redirect", testOpenRedirect},
		{"identity-header-injection", testIdentityHeaders},
		{"x-forwarded-for-spoofing", testForwardedFor},
		{"ipv4-mapped-ipv6", testMappedAddresses},
		{"path-normalisation", testPathTricks},
		{"tls-and-hsts", testTLSAndHSTS},
		{"admin-cli", testAdminCLI},
		{"config-check", testConfigCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

// refPattern is the reference ID error pages and JSON errors show.
var refPattern = regexp.MustCompile(`ref-[0-9A-Za-z]+`)

// auditForRef returns the audit event carrying the reference ID shown in
// body: the user sees only the ID, the audit trail has the cause.
func (h *hostile) auditForRef(t *testing.T, body string) audit.Event {
	t.Helper()
	ref := refPattern.FindString(body)
	if ref == "" {
		t.Fatalf("no reference ID in the error response:\n%s", body)
	}
	return harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Ref: ref})
}

// wantDenied asserts a refused request: the status, a generic body with a
// reference ID, and an audit event with that ID, decision deny and reason.
func (h *hostile) wantDenied(t *testing.T, what string, r *harness.Response, status int, reason string) audit.Event {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s: got %d, want %d\n%s", what, r.StatusCode, status, r.Body)
	}
	ev := h.auditForRef(t, r.Body)
	if ev.Decision != audit.Deny || (reason != "" && ev.Reason != reason) {
		t.Fatalf("%s: audit event %+v, want decision deny, reason %q", what, ev, reason)
	}
	return ev
}

// jsonError decodes the 401/403 JSON body of an API request.
func jsonError(t *testing.T, r *harness.Response) (msg, ref string) {
	t.Helper()
	var body struct{ Error, Ref string }
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || json.Unmarshal([]byte(r.Body), &body) != nil {
		t.Fatalf("want a JSON error, got %s: %s", r.Header.Get("Content-Type"), r.Body)
	}
	return body.Error, body.Ref
}

// signCookie builds a session cookie the way a deployment with key does:
// "v1." token "." MAC, the MAC being
// HMAC-SHA256(key, "portcullis-session-v1|" token)[:16].
func signCookie(key, token []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("portcullis-session-v1|"))
	m.Write(token)
	return "v1." + base64.RawURLEncoding.EncodeToString(token) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// foreignCookie is a well-formed cookie of another deployment (another key).
func foreignCookie(token []byte) string {
	key := make([]byte, 32)
	rand.Read(key)
	return signCookie(key, token)
}

// testBadCookies: tampered, foreign and malformed session cookies are
// refused (401 for API clients, redirect to login for browsers), never
// reach the upstream, and are audited as invalid sessions.
func testBadCookies(t *testing.T, h *hostile) {
	parts := strings.Split(h.cookie, ".")
	if len(parts) != 3 {
		t.Fatalf("session cookie %q is not v1.token.mac", "v1.…")
	}
	realToken, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("session cookie token: %v", err)
	}
	// The construction must match the real format, or the foreign-key
	// cases would only test malformed cookies: with this deployment's own
	// key it reproduces the real cookie.
	key, err := os.ReadFile(h.s.keys.CookieKey)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := hex.DecodeString(strings.TrimSpace(string(key))); err != nil || signCookie(raw, realToken) != h.cookie {
		t.Fatalf("signCookie does not reproduce the deployment's cookie format (%v)", err)
	}
	otherToken := make([]byte, 32)
	rand.Read(otherToken)
	cases := []struct{ name, cookie string }{
		{"tampered-mac", parts[0] + "." + parts[1] + "." + flip(parts[2][:4]) + parts[2][4:]},
		{"tampered-token", parts[0] + "." + flip(parts[1][:4]) + parts[1][4:] + "." + parts[2]},
		{"foreign-key-real-token", foreignCookie(realToken)},
		{"foreign-key-other-token", foreignCookie(otherToken)},
		{"truncated", h.cookie[:len(h.cookie)-3]},
		{"wrong-version", "v2." + parts[1] + "." + parts[2]},
		{"garbage", "not-a-session"},
		{"oversized", strings.Repeat("A", 3000)},
	}
	c := h.s.client(t)
	for _, tc := range cases {
		marker := "/bad-cookie-" + tc.name
		r := getWithCookie(c, h.p.URL(appHost, marker), tc.cookie, "Accept: application/json")
		h.wantDenied(t, tc.name, r, http.StatusUnauthorized, "invalid-session")
		if msg, _ := jsonError(t, r); msg != "authentication required" {
			t.Errorf("%s: error %q", tc.name, msg)
		}
		if r := getWithCookie(c, h.p.URL(appHost, marker), tc.cookie); !isLoginRedirect(h.p, r) {
			t.Errorf("%s: browser request got %d %s, want a redirect to login", tc.name, r.StatusCode, r.Header.Get("Location"))
		}
		if got := h.s.up.Received(marker); len(got) != 0 {
			t.Errorf("%s: the upstream received %d requests", tc.name, len(got))
		}
	}
	// The same client with the real cookie gets through: the refusals
	// above were about the cookies.
	if r := getWithCookie(c, h.p.URL(appHost, "/good-cookie"), h.cookie); r.StatusCode != 200 {
		t.Fatalf("the valid cookie was refused: %d", r.StatusCode)
	}
}

// testExpiredSession: gina's role allows 4-second sessions. Her cookie
// works at first and is refused once the session is past its lifetime
// (polled, bounded; the gateway's own clock decides).
func testExpiredSession(t *testing.T, h *hostile) {
	_, _, cookie := h.s.session(t, h.p, "gina")
	start := time.Now()
	anon := h.s.client(t)
	for i := 0; ; i++ {
		r := getWithCookie(anon, h.p.URL(appHost, "/expiry-probe"), cookie, "Accept: application/json")
		if r.StatusCode == 200 {
			if time.Since(start) > 30*time.Second {
				t.Fatalf("a 4-second session still works after %v", time.Since(start))
			}
			time.Sleep(250 * time.Millisecond)
			continue
		}
		if r.StatusCode == 401 {
			h.wantDenied(t, "expired session", r, 401, "invalid-session")
		} else {
			h.wantDenied(t, "expired session", r, 403, "session-ttl-exceeded")
		}
		t.Logf("expired session refused (%d) %v after login", r.StatusCode, time.Since(start).Round(100*time.Millisecond))
		return
	}
}

// testUnauthenticated: no cookie at all. Scripts (Accept: application/json
// or X-Requested-With) get 401 JSON with a reference ID; browsers get a
// redirect to the login page that carries them back.
func testUnauthenticated(t *testing.T, h *hostile) {
	c := h.s.client(t)
	for _, hdr := range []string{"X-Requested-With: XMLHttpRequest", "Accept: application/json"} {
		r := c.Get(h.p.URL(appHost, "/unauth-api"), hdr)
		ev := h.wantDenied(t, hdr, r, http.StatusUnauthorized, "no-session")
		msg, ref := jsonError(t, r)
		if msg != "authentication required" || ref != ev.Ref || ev.Path != "/unauth-api" || ev.SourceIP != "127.0.0.1" {
			t.Errorf("%s: body (%q, %q), audit %+v", hdr, msg, ref, ev)
		}
	}
	orig := h.p.URL(appHost, "/unauth-browser?q=1")
	r := c.Get(orig, "Accept: text/html")
	if !isLoginRedirect(h.p, r) {
		t.Fatalf("browser without a session: %d %s, want a redirect to login", r.StatusCode, r.Header.Get("Location"))
	}
	if rd := r.Location().Query().Get("rd"); rd != orig {
		t.Errorf("login redirect carries rd=%q, want %q", rd, orig)
	}
	harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeRequestRejected, Reason: "no-session", Decision: audit.Deny, PathContains: "/unauth-browser"})
	if got := h.s.up.Received("/unauth-"); len(got) != 0 {
		t.Errorf("the upstream received %d unauthenticated requests", len(got))
	}
}

// testHalfFinishedLogin: ivan passes OIDC but not TOTP. Nothing is
// granted: no route, no access-host page, no session from the pending
// cookie, and the enrolment cannot be skipped.
func testHalfFinishedLogin(t *testing.T, h *hostile) {
	c := h.s.client(t)
	atEnrol := func(u *url.URL) bool { return u.Path == "/mfa/enrol" }
	l := c.LoginFlow(h.p.URL(appHost, "/half"), h.s.users["ivan"], nil, atEnrol)
	if !l.Final.IsRedirect() {
		t.Fatalf("ivan's OIDC step did not lead to enrolment: %d at %s", l.Final.StatusCode, l.Final.Request.URL)
	}
	pending := c.Cookie(h.p.AccessURL+"/", "__Host-portcullis-mfa")
	if pending == "" {
		t.Fatal("no pending-MFA cookie after the OIDC step")
	}
	harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeLoginCallback, UserID: h.s.userID("ivan"), Reason: "oidc-verified"})

	if r := c.Get(h.p.URL(appHost, "/half-route")); !isLoginRedirect(h.p, r) {
		t.Errorf("route after OIDC only: %d, want a redirect to login", r.StatusCode)
	}
	r := getWithCookie(h.s.client(t), h.p.URL(appHost, "/half-pending-as-session"), pending, "Accept: application/json")
	h.wantDenied(t, "pending cookie as session", r, http.StatusUnauthorized, "invalid-session")
	if r := c.Get(h.p.AccessURL + "/"); r.StatusCode/100 != 3 || r.Location().Path != "/login" {
		t.Errorf("access home after OIDC only: %d %s, want a redirect to /login", r.StatusCode, r.Header.Get("Location"))
	}
	// Skipping the code: continue straight to the session.
	enrol := c.Get(h.p.AccessURL + "/mfa/enrol")
	f, ok := harness.FormWith(enrol.Request.URL, enrol.Body, "csrf")
	if !ok {
		t.Fatalf("enrolment page has no form: %d", enrol.StatusCode)
	}
	if secret, ok := harness.TextByID(enrol.Body, "totp-secret"); ok {
		harness.RecordSecret(harness.KindTOTPSecret, secret)
	}
	skip := c.PostForm(h.p.AccessURL+"/mfa/continue", url.Values{"csrf": f.Fields["csrf"]})
	if got := c.Cookie(h.p.AccessURL+"/", sessionName); got != "" || (skip.StatusCode/100 == 3 && skip.Location().Path != "/mfa") {
		t.Errorf("POST /mfa/continue without a code: %d %s, session cookie set: %v", skip.StatusCode, skip.Header.Get("Location"), got != "")
	}
	if got := harness.FindAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeSessionStart, UserID: h.s.userID("ivan")}); len(got) != 0 {
		t.Errorf("a session was started for a half-finished login: %+v", got)
	}
	if got := h.s.up.Received("/half"); len(got) != 0 {
		t.Errorf("the upstream received %d requests of a half-finished login", len(got))
	}
}
