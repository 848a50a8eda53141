package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// atCallback stops a login flow before the browser delivers the IdP's
// answer to the gateway, so tests can tamper with it.
func atCallback(u *url.URL) bool { return u.Path == "/oauth2/callback" }

// startToCallback runs a login with c as far as the IdP's redirect back
// and returns the callback URL (code and state in its query).
func (h *hostile) startToCallback(t *testing.T, c *harness.Client, login string) *url.URL {
	t.Helper()
	l := c.LoginFlow(h.p.AccessURL+"/login?rd=%2F", h.s.users[login], nil, atCallback)
	if !l.Final.IsRedirect() {
		t.Fatalf("login did not come back from the IdP: %d at %s\n%s", l.Final.StatusCode, l.Final.Request.URL, l.Final.Body)
	}
	cb := l.Final.Location()
	if cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
		t.Fatalf("IdP callback without code and state: %s", cb.Redacted())
	}
	return cb
}

// withQuery returns u with query parameters replaced ("" deletes one).
func withQuery(u *url.URL, set map[string]string) string {
	v := u.Query()
	for k, x := range set {
		if x == "" {
			v.Del(k)
		} else {
			v.Set(k, x)
		}
	}
	c := *u
	c.RawQuery = v.Encode()
	return c.String()
}

// noPending asserts that a refused callback left nothing behind.
func (h *hostile) noPending(t *testing.T, c *harness.Client, what string) {
	t.Helper()
	for _, name := range []string{"__Host-portcullis-mfa", sessionName} {
		if c.Cookie(h.p.AccessURL+"/", name) != "" {
			t.Errorf("%s: cookie %s was set", what, name)
		}
	}
}

// testLoginState attacks the OIDC callback: a forged state, a replayed
// callback, a callback delivered to another browser, an authorization
// code swapped into another login, an IdP error, a missing state.
func testLoginState(t *testing.T, h *hostile) {
	t.Run("state-mismatch-then-replay", func(t *testing.T) {
		c := h.s.client(t)
		cb := h.startToCallback(t, c, "judy")
		forged := withQuery(cb, map[string]string{"state": flip(cb.Query().Get("state")[:8]) + cb.Query().Get("state")[8:]})
		h.wantDenied(t, "forged state", c.Get(forged), http.StatusBadRequest, "state-invalid")
		h.noPending(t, c, "forged state")

		// The genuine callback works once…
		if r := c.Get(cb.String()); r.StatusCode/100 != 3 || !strings.HasPrefix(r.Location().Path, "/mfa") {
			t.Fatalf("genuine callback: %d %s, want a redirect to the TOTP step", r.StatusCode, r.Header.Get("Location"))
		}
		// …and never again, even from the same browser.
		h.wantDenied(t, "replayed callback", c.Get(cb.String()), http.StatusBadRequest, "state-invalid")
	})
	t.Run("callback-in-another-browser", func(t *testing.T) {
		cb := h.startToCallback(t, h.s.client(t), "judy")
		other := h.s.client(t)
		h.wantDenied(t, "callback without the login's browser binding", other.Get(cb.String()), http.StatusBadRequest, "state-invalid")
		h.noPending(t, other, "foreign browser")
	})
	t.Run("code-swapped-into-another-login", func(t *testing.T) {
		// Two logins in one browser; login B's state with login A's code.
		// The code was issued for A's PKCE challenge (and A's nonce), so
		// the IdP refuses the exchange with B's verifier. That is also why
		// a nonce mismatch cannot be produced end to end: PKCE stops the
		// swap first (identity's unit tests cover the nonce check).
		c := h.s.client(t)
		cbA := h.startToCallback(t, c, "judy")
		cbB := h.startToCallback(t, c, "judy")
		swapped := withQuery(cbB, map[string]string{"code": cbA.Query().Get("code")})
		h.wantDenied(t, "code from another login", c.Get(swapped), http.StatusUnauthorized, "idp-error")
		h.noPending(t, c, "swapped code")
	})
	t.Run("idp-error-and-missing-state", func(t *testing.T) {
		c := h.s.client(t)
		cb := h.startToCallback(t, c, "judy")
		r := c.Get(withQuery(cb, map[string]string{"error": "access_denied", "code": ""}))
		if r.StatusCode != http.StatusUnauthorized && r.StatusCode != http.StatusBadRequest {
			t.Fatalf("IdP error callback: %d", r.StatusCode)
		}
		if ev := h.auditForRef(t, r.Body); ev.Decision != audit.Deny || ev.Type != audit.TypeLoginCallback {
			t.Errorf("IdP error callback audited as %+v", ev)
		}
		h.wantDenied(t, "no state", c.Get(h.p.AccessURL+"/oauth2/callback?code=abc"), http.StatusBadRequest, "state-invalid")
		h.noPending(t, c, "IdP error")
	})
}

// redirectVariants are return URLs that must never send a user anywhere
// but the access host's "/".
func (h *hostile) redirectVariants() []string {
	app := hostPort(appHost, h.p.Port)
	return []string{
		"//evil.example",
		"///evil.example",
		"/\\evil.example",
		"\\\\evil.example",
		"https:evil.example",
		"https://evil.example/",
		"http://" + app + "/",
		"https://" + appHost + ":1/",
		"https://evil.example@" + app + "/",
		"https://" + app + ".evil.example/",
		"javascript:alert(1)",
		"%2f%2fevil.example",
		"/%2f/evil.example",
		"/%2F%2Fevil.example",
		"/%5cevil.example",
		"/%252f%252fevil.example",
		" //evil.example",
		"\t//evil.example",
		"/\t/evil.example",
		"/\r\n/evil.example",
		"/%0d%0aSet-Cookie:%20x=y",
		"https://" + app + "/%0d%0aSet-Cookie:%20x=y",
		"evil.example",
	}
}

// testOpenRedirect: after login, the browser goes only to a path on the
// access host or to a configured route host. One full login carries a
// hostile rd end to end; then every variant goes through /login with a
// live session (which redirects straight to the return URL).
func testOpenRedirect(t *testing.T, h *hostile) {
	c := h.s.client(t)
	since := time.Now()
	var offsite []string
	watch := func(u *url.URL) bool {
		if !strings.HasSuffix(u.Hostname(), ".localhost") && u.Hostname() != "127.0.0.1" {
			offsite = append(offsite, u.String())
			return true
		}
		return false
	}
	l := c.LoginFlow(h.p.AccessURL+"/login?rd="+url.QueryEscape("//evil.example/steal"), h.s.users["hank"], nil, watch)
	if len(offsite) > 0 || l.Final.Request.URL.String() != h.p.AccessURL+"/" || l.Final.StatusCode != 200 {
		t.Fatalf("login with rd=//evil.example ended at %s (%d), off-site redirects %v; want the access host's /",
			l.Final.Request.URL, l.Final.StatusCode, offsite)
	}
	if !strings.Contains(l.Final.Body, h.s.userID("hank")) {
		t.Fatalf("the access home page does not show hank signed in")
	}
	// The trail is written in order: once the session start is there,
	// the login start before it is too.
	harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeSessionStart, UserID: h.s.userID("hank"), Reason: "login-complete"})
	var sawStart bool
	for _, e := range harness.FindAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeLoginStart, Since: since}) {
		sawStart = sawStart || e.Attrs["return_host"] == "access"
	}
	if !sawStart {
		t.Errorf("no login.start event recording the return host as the access host")
	}

	for _, v := range h.redirectVariants() {
		r := c.Get(h.p.AccessURL + "/login?rd=" + url.QueryEscape(v))
		if r.StatusCode/100 != 3 || r.Header.Get("Location") != "/" {
			t.Errorf("rd=%q: %d Location %q, want a redirect to \"/\"", v, r.StatusCode, r.Header.Get("Location"))
		}
	}
	// Controls: legitimate return URLs are kept.
	if r := c.Get(h.p.AccessURL + "/login?rd=" + url.QueryEscape("/some/page?x=1")); r.Header.Get("Location") != "/some/page?x=1" {
		t.Errorf("rd=/some/page?x=1: Location %q", r.Header.Get("Location"))
	}
	r := c.Get(h.p.AccessURL + "/login?rd=" + url.QueryEscape(h.p.URL(appHost, "/deep/link")))
	if loc := r.Location(); loc == nil || loc.Host != hostPort(appHost, h.p.Port) || loc.Path != "/.portcullis/auth" {
		t.Fatalf("rd=<route URL>: Location %q, want the route host's login hop", r.Header.Get("Location"))
	}
	if final := c.Follow(r, nil); final.StatusCode != 200 || final.Request.URL.Path != "/deep/link" {
		t.Errorf("route return URL ended at %s (%d)", final.Request.URL, final.StatusCode)
	}
}
