package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// idpCase is one ID token the hostile issuer hands the gateway. forge gets
// the claims of a valid token for the login (nonce included) to alter.
type idpCase struct {
	name   string
	forge  func(idp *harness.HostileIdP, claims map[string]any) string
	reason string // the login.callback deny reason; "" = the token is valid
	// cause is part of the refusal's cause in the server log (line with
	// the same ref): proof that the intended check refused the token, not
	// some other flaw of the forgery.
	cause string
}

// otherClient is a client ID the hostile issuer puts in tokens meant for
// someone else.
const otherClient = "another-client"

// idpCases: a control case, then every way an issuer (or whoever holds a
// token) can lie about a login. The authorization code flow itself is
// genuine in every case — right client secret, PKCE verifier, redirect
// URI — so each refusal comes from verifying the ID token.
func idpCases(t *testing.T) []idpCase {
	signed := func(alter func(map[string]any)) func(*harness.HostileIdP, map[string]any) string {
		return func(idp *harness.HostileIdP, c map[string]any) string {
			alter(c)
			return idp.Sign(c)
		}
	}
	rogue, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("rogue key: %v", err)
	}
	return []idpCase{
		{name: "valid", forge: signed(func(map[string]any) {})},
		{name: "wrong-audience", reason: "token-invalid", cause: "expected audience", forge: signed(func(c map[string]any) { c["aud"] = otherClient })},
		{name: "extra-audience-without-azp", reason: "token-invalid", cause: "multiple audiences without azp", forge: signed(func(c map[string]any) {
			c["aud"] = []string{otherClient, clientID}
		})},
		{name: "wrong-issuer", reason: "token-invalid", cause: "issued by a different provider", forge: signed(func(c map[string]any) { c["iss"] = "https://issuer.evil.example" })},
		{name: "alg-none", reason: "token-invalid", cause: "unexpected signature algorithm", forge: func(_ *harness.HostileIdP, c map[string]any) string {
			return harness.JWT(map[string]any{"alg": "none", "typ": "JWT"}, c, nil)
		}},
		{name: "hs256-with-public-key", reason: "token-invalid", cause: "unexpected signature algorithm", forge: func(idp *harness.HostileIdP, c map[string]any) string {
			hdr := map[string]any{"alg": "HS256", "typ": "JWT", "kid": idp.KeyID}
			return harness.JWT(hdr, c, harness.HS256Signer(idp.PublicKeyPEM()))
		}},
		{name: "key-not-in-jwks", reason: "token-invalid", cause: "failed to verify signature", forge: func(idp *harness.HostileIdP, c map[string]any) string {
			// The rogue key claims the real key's ID.
			hdr := map[string]any{"alg": "ES256", "typ": "JWT", "kid": idp.KeyID}
			return harness.JWT(hdr, c, harness.ES256Signer(rogue))
		}},
		{name: "expired", reason: "token-invalid", cause: "token is expired", forge: signed(func(c map[string]any) {
			now := time.Now()
			c["iat"], c["auth_time"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		})},
		{name: "nonce-mismatch", reason: "nonce-mismatch", cause: "nonce mismatch", forge: signed(func(c map[string]any) { c["nonce"] = harness.RandomString(32) })},
		{name: "nonce-missing", reason: "nonce-mismatch", cause: "nonce mismatch", forge: signed(func(c map[string]any) { delete(c, "nonce") })},
		{name: "missing-sub", reason: "token-invalid", cause: "unusable subject", forge: signed(func(c map[string]any) { delete(c, "sub") })},
		{name: "azp-other-client", reason: "token-invalid", cause: "authorized party is another client", forge: signed(func(c map[string]any) { c["azp"] = otherClient })},
	}
}

// leakWords must not appear on a refusal page: they would tell the user
// (or an attacker probing with tokens) which check failed.
var leakWords = []string{"audience", "nonce", "issuer", "alg", "expired", "signature", "azp", "subject", "jwks", "hs256", "es256", "token"}

// idpPolicy lets the hostile issuer's users (group engineers) use the one
// route, so only the login itself can stop them.
const idpPolicy = `roles:
  - name: engineer
    groups: [engineers]
    allow:
      - apps: [app]
`

// hostileIdPEnv is one gateway whose only issuer is the hostile one.
type hostileIdPEnv struct {
	ca  *harness.CA
	idp *harness.HostileIdP
	p   *harness.Portcullis
}

// TestHostileIdP logs in through the real gateway against an issuer that
// forges ID tokens, one login per case on one instance. The valid token
// reaches TOTP enrolment; every forged one gets the generic failure page
// with a reference ID, no cookie that grants anything, and a login.callback
// deny event with the gateway's reason code under that reference.
func TestHostileIdP(t *testing.T) {
	t.Parallel()
	e := &hostileIdPEnv{ca: harness.NewCA(t)}
	certFile, keyFile := e.ca.Issue(t, accessHost, appHost)
	secret := "cs-" + harness.RandomString(16)
	keys := harness.NewKeyFiles(t, secret)
	port := harness.FreePort(t)
	e.idp = harness.StartHostileIdP(t, clientID, secret, fmt.Sprintf("https://%s:%d/oauth2/callback", accessHost, port))
	up := harness.StartUpstream(t)
	e.p = harness.StartPortcullis(t, harness.Spec{
		Instance:   "gw-hostile-idp",
		DataDir:    harness.NewDataDir(t),
		Port:       port,
		AccessHost: accessHost,
		Routes:     []harness.RouteSpec{{Name: "app", Host: appHost, Upstream: up.URL}},
		TLS:        harness.TLSFiles(certFile, keyFile),
		Issuer:     e.idp.Issuer,
		ClientID:   clientID,
		Keys:       keys,
		Policy:     idpPolicy,
	}.YAML())

	var mu sync.Mutex
	pages := map[string]string{} // refused case → page with its ref blanked
	t.Run("cases", func(t *testing.T) {
		for _, tc := range idpCases(t) {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				page := e.run(t, tc)
				mu.Lock()
				defer mu.Unlock()
				if tc.reason != "" {
					pages[tc.name] = page
				}
			})
		}
	})
	// One page for every refusal, whatever the cause: the page is no
	// oracle for which check failed.
	var first, firstName string
	for name, page := range pages {
		if first == "" {
			first, firstName = page, name
		} else if page != first {
			t.Errorf("refusal pages differ between %s and %s:\n%s\n---\n%s", firstName, name, first, page)
		}
	}
}

// run logs in a new browser through case tc and checks the outcome. It
// returns the final page with its reference ID blanked.
func (e *hostileIdPEnv) run(t *testing.T, tc idpCase) string {
	t.Helper()
	c := harness.NewClient(t, e.ca)
	sub := "sub-hostile-" + tc.name
	uid := e.idp.Issuer + "#" + sub
	route := e.p.URL(appHost, "/hostile-idp/"+tc.name)
	idpHost := strings.TrimPrefix(e.idp.Issuer, "http://")

	// Route → access /login → stop before the issuer's /authorize to tell
	// it which token this login gets.
	r := c.Follow(c.Get(route), func(u *url.URL) bool { return u.Host == idpHost })
	authz := r.Location()
	if !r.IsRedirect() || authz.Path != "/authorize" {
		t.Fatalf("login did not go to the issuer: %d %s\n%s", r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	state := authz.Query().Get("state")
	e.idp.Expect(state, func(g harness.Grant) string { return tc.forge(e.idp, e.idp.Claims(g, sub)) })
	final := c.Follow(r, nil)
	if !e.idp.TokenServed(state) {
		t.Fatalf("the gateway never completed the code exchange (ended %d at %s)", final.StatusCode, final.Request.URL)
	}

	if tc.reason == "" {
		e.wantEnrolment(t, c, final, uid)
		return ""
	}
	if final.StatusCode != http.StatusUnauthorized || final.Request.URL.Path != "/oauth2/callback" {
		t.Fatalf("PRODUCT BUG? forged token (%s) not refused at the callback: ended %d at %s\n%s",
			tc.name, final.StatusCode, final.Request.URL.Redacted(), final.Body)
	}
	ref := refPattern.FindString(final.Body)
	if ref == "" {
		t.Fatalf("refusal page without a reference ID:\n%s", final.Body)
	}
	page := strings.ReplaceAll(final.Body, ref, "ref-X")
	for _, w := range leakWords {
		if strings.Contains(strings.ToLower(page), w) {
			t.Errorf("refusal page says %q:\n%s", w, final.Body)
		}
	}
	ev := harness.WaitAudit(t, e.p.AuditDir, harness.AuditQuery{Ref: ref})
	if ev.Type != audit.TypeLoginCallback || ev.Decision != audit.Deny || ev.Reason != tc.reason || ev.UserID != "" {
		t.Errorf("audit event for %s: %+v; want login.callback, deny, reason %q, no user", ref, ev, tc.reason)
	}
	if line := e.logLine(t, ref); !strings.Contains(line, tc.cause) {
		t.Errorf("refused, but not by the check under test: want cause %q in\n%s", tc.cause, line)
	}
	for _, name := range []string{"__Host-portcullis-mfa", sessionName} {
		if c.Cookie(e.p.AccessURL+"/", name) != "" || c.Cookie(route, name) != "" {
			t.Errorf("cookie %s was set by a refused login", name)
		}
	}
	if r := c.Get(route); !isLoginRedirect(e.p, r) {
		t.Errorf("route after a refused login: %d %s, want a redirect to login", r.StatusCode, r.Header.Get("Location"))
	}
	if got := harness.FindAudit(t, e.p.AuditDir, harness.AuditQuery{UserID: uid}); len(got) != 0 {
		t.Errorf("the forged identity appears in the audit trail: %+v", got)
	}
	return page
}

// logLine waits (the server's stderr is copied asynchronously) for the
// log line naming ref and returns it.
func (e *hostileIdPEnv) logLine(t *testing.T, ref string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range strings.Split(e.p.Output(), "\n") {
			if strings.Contains(l, ref) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no server log line with %s", ref)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wantEnrolment: the valid token passes the OIDC step and nothing more —
// TOTP enrolment, a pending-MFA cookie, no session.
func (e *hostileIdPEnv) wantEnrolment(t *testing.T, c *harness.Client, final *harness.Response, uid string) {
	t.Helper()
	secret, ok := harness.TextByID(final.Body, "totp-secret")
	if final.StatusCode != http.StatusOK || final.Request.URL.Path != "/mfa/enrol" || !ok || secret == "" {
		t.Fatalf("valid token did not lead to TOTP enrolment: %d at %s\n%s", final.StatusCode, final.Request.URL.Redacted(), final.Body)
	}
	harness.RecordSecret(harness.KindTOTPSecret, secret)
	if c.Cookie(e.p.AccessURL+"/", "__Host-portcullis-mfa") == "" || c.Cookie(e.p.AccessURL+"/", sessionName) != "" {
		t.Errorf("after the OIDC step: want a pending-MFA cookie and no session cookie")
	}
	harness.WaitAudit(t, e.p.AuditDir, harness.AuditQuery{
		Type: audit.TypeLoginCallback, Decision: audit.Allow, Reason: "oidc-verified", UserID: uid,
	})
}
