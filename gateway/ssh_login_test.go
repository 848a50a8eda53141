package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// TestSSHLoginFlow: the whole `portcullis login` exchange for a user
// signing in on the way, and what the certificate carries.
func TestSSHLoginFlow(t *testing.T) {
	e := newSSHEnv(t, nil)
	b := e.browser()
	page := pathSSHLogin + "?port=50123&state=" + testState
	// Not signed in: the login round trip, back to this page.
	p := b.get(page)
	if p.status != http.StatusSeeOther || p.location() != pathLogin+"?rd="+url.QueryEscape(page) {
		t.Fatalf("unauthenticated: %d %q", p.status, p.location())
	}
	_, done := b.loginNew("bob", page)
	rec, err := e.sessions.Lookup(t.Context(), b.cookie(accessHost, e.sessions.CookieName()))
	if err != nil {
		t.Fatal(err)
	}
	if done.location() != page {
		t.Fatalf("login returned to %q, want %q", done.location(), page)
	}
	p = b.get(page)
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="ssh-logins"><code>deploy</code>`) || !strings.Contains(p.body, `id="confirm"`) {
		t.Fatalf("confirmation page: %d\n%s", p.status, p.body)
	}
	if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' http://127.0.0.1:50123") {
		t.Fatalf("CSP does not allow the loopback redirect: %q", csp)
	}
	// Another page keeps the strict policy.
	if csp := b.get(pathHome).header.Get("Content-Security-Policy"); strings.Contains(csp, "127.0.0.1") {
		t.Fatalf("loopback leaked into another page's CSP: %q", csp)
	}
	code := e.confirm(b, "50123")
	e.mustAudit(TypeSSHCertIssue, reasonSSHCodeIssued, audit.Allow)

	key, line := userKey(t)
	status, resp, body := e.exchange(certBody(code, line))
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %s", status, body)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := pk.(*ssh.Certificate)
	if !ok {
		t.Fatalf("not a certificate: %T", pk)
	}
	sid, now := rec.ID, e.clock.Now()
	checks := []struct {
		name string
		ok   bool
	}{
		{"signed by the CA", string(cert.SignatureKey.Marshal()) == string(e.ca.PublicKey().Marshal())},
		{"for the client's key", string(cert.Key.Marshal()) == string(key.Marshal())},
		{"user certificate", cert.CertType == ssh.UserCert},
		{"key ID is the user ID", cert.KeyId == rec.UserID && cert.KeyId == resp.UserID},
		{"principals are bob's logins", slices.Equal(cert.ValidPrincipals, []string{"deploy"}) && slices.Equal(resp.Principals, cert.ValidPrincipals)},
		{"roles extension", cert.Extensions[session.ExtRoles] == "engineer"},
		{"web session extension", cert.Extensions[session.ExtWebSession] == sid && sid != ""},
		{"pty permitted", hasKey(cert.Extensions, session.ExtPermitPTY)},
		{"no port forwarding", !hasKey(cert.Extensions, session.ExtPermitPortForwarding)},
		{"no agent forwarding", !hasKey(cert.Extensions, session.ExtPermitAgentForward)},
		{"not source bound", cert.CriticalOptions[session.OptSourceAddress] == ""},
		{"lifetime is the role's 8h", int64(cert.ValidBefore) == now.Add(8*time.Hour).Unix()},
		{"valid_before reported", resp.ValidBefore.Unix() == int64(cert.ValidBefore)},
		{"target hints", len(resp.Targets) == 1 && resp.Targets[0].Name == "web-1" && slices.Equal(resp.Targets[0].Logins, []string{"deploy"})},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: certificate %+v, response %+v", c.name, cert, resp)
		}
	}
	ev := e.mustAudit(TypeSSHCertIssue, reasonSSHIssued, audit.Allow)
	if ev.SessionID != sid || ev.Attrs["principals"] != "deploy" || ev.Attrs["key_fp"] != ssh.FingerprintSHA256(key) {
		t.Fatalf("issue audit %+v", ev)
	}
	// The code is single use.
	if status, _, _ := e.exchange(certBody(code, line)); status != http.StatusForbidden {
		t.Fatalf("code reused: %d", status)
	}
	e.mustAudit(TypeSSHCertIssue, reasonSSHCodeInvalid, audit.Deny)
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// TestSSHCertPermissionsAndBinding: forwarding extensions follow the
// roles; the source-address option follows the config flag.
func TestSSHCertPermissionsAndBinding(t *testing.T) {
	e := newSSHEnv(t, func(g *Gateway) { g.cfg.SSHCertBindSourceIP, g.cfg.SSHAddr = true, "bastion.example.com:2222" })
	b, _ := e.signedIn("alice")
	_, line := userKey(t)
	status, resp, body := e.exchange(certBody(e.confirm(b, "40000"), line))
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %s", status, body)
	}
	pk, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(resp.Certificate))
	cert := pk.(*ssh.Certificate)
	if !slices.Equal(cert.ValidPrincipals, []string{"postgres", "root"}) ||
		!hasKey(cert.Extensions, session.ExtPermitPortForwarding) || !hasKey(cert.Extensions, session.ExtPermitAgentForward) {
		t.Fatalf("alice's certificate %+v", cert)
	}
	if sa := cert.CriticalOptions[session.OptSourceAddress]; sa != "127.0.0.1" {
		t.Fatalf("source-address %q", sa)
	}
	if resp.SSHAddr != "bastion.example.com:2222" {
		t.Fatalf("ssh_addr %q", resp.SSHAddr)
	}
}

// TestSSHLoginTTLBoundedBySession: a certificate never outlives the web
// session nor the role's max_session_ttl counted from the login.
func TestSSHLoginTTLBoundedBySession(t *testing.T) {
	e := newSSHEnv(t, nil)
	b, sid := e.signedIn("bob")
	code := e.confirm(b, "40000")
	e.clock.Advance(50 * time.Second) // within the code's minute
	_, line := userKey(t)
	status, resp, body := e.exchange(certBody(code, line))
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %s", status, body)
	}
	rec, err := e.sessions.Get(t.Context(), sid)
	if err != nil {
		t.Fatal(err)
	}
	limit := rec.AuthTime.Add(8 * time.Hour)
	if rec.ExpiresAt.Before(limit) {
		limit = rec.ExpiresAt
	}
	if resp.ValidBefore.After(limit) {
		t.Fatalf("valid before %v, beyond %v", resp.ValidBefore, limit)
	}
}

// TestSSHCertHostile: every refusal of the exchange, each with its audit
// reason and a generic body.
func TestSSHCertHostile(t *testing.T) {
	e := newSSHEnv(t, nil)
	b, sid := e.signedIn("bob")
	_, good := userKey(t)
	certKey := func() string {
		k, _ := userKey(t)
		signer := newCASignerForTest(t)
		c := &ssh.Certificate{Key: k, CertType: ssh.UserCert, ValidPrincipals: []string{"deploy"}, ValidBefore: ssh.CertTimeInfinity}
		if err := c.SignCert(rand.Reader, signer); err != nil {
			t.Fatal(err)
		}
		return string(ssh.MarshalAuthorizedKey(c))
	}()
	tests := []struct {
		name   string
		body   func() string
		status int
		reason string
	}{
		{"not JSON", func() string { return "code=x" }, http.StatusBadRequest, reasonSSHBadRequest},
		{"unknown field", func() string { return `{"code":"x","public_key":"y","user":"admin"}` }, http.StatusBadRequest, reasonSSHBadRequest},
		{"trailing data", func() string { return certBody("x", good) + "{}" }, http.StatusBadRequest, reasonSSHBadRequest},
		{"no code", func() string { return certBody("", good) }, http.StatusForbidden, reasonSSHCodeInvalid},
		{"malformed code", func() string { return certBody(strings.Repeat("/", 43), good) }, http.StatusForbidden, reasonSSHCodeInvalid},
		{"unknown code", func() string { return certBody(strings.Repeat("A", 43), good) }, http.StatusForbidden, reasonSSHCodeInvalid},
		{"expired code", func() string {
			c := e.confirm(b, "40000")
			e.clock.Advance(sshCodeTTL + time.Second)
			return certBody(c, good)
		}, http.StatusForbidden, reasonSSHCodeInvalid},
		{"garbage key", func() string { return certBody(e.confirm(b, "40000"), "not a key") }, http.StatusBadRequest, reasonSSHBadKey},
		{"certificate as key", func() string { return certBody(e.confirm(b, "40000"), certKey) }, http.StatusBadRequest, reasonSSHBadKey},
		{"two keys", func() string { return certBody(e.confirm(b, "40000"), good+good) }, http.StatusBadRequest, reasonSSHBadKey},
		{"key with options", func() string { return certBody(e.confirm(b, "40000"), `command="sh" `+good) }, http.StatusBadRequest, reasonSSHBadKey},
		{"short RSA key", func() string { return certBody(e.confirm(b, "40000"), rsaKeyLine(t, 2048)) }, http.StatusBadRequest, reasonSSHBadKey},
		{"CA's own key", func() string {
			return certBody(e.confirm(b, "40000"), string(ssh.MarshalAuthorizedKey(e.ca.PublicKey())))
		}, http.StatusBadRequest, reasonSSHBadKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			e.audit.Reset()
			status, _, body := e.exchange(tc.body())
			if status != tc.status || strings.Contains(body, "certificate\"") {
				t.Fatalf("status %d body %s, want %d", status, body, tc.status)
			}
			if strings.Contains(body, tc.reason) {
				t.Fatalf("reason leaked to the client: %s", body)
			}
			e.mustAudit(TypeSSHCertIssue, tc.reason, audit.Deny)
		})
	}
	t.Run("a refused key spends the code", func(t *testing.T) {
		defer e.useT(t)()
		c := e.confirm(b, "40000")
		if s, _, _ := e.exchange(certBody(c, "bad")); s != http.StatusBadRequest {
			t.Fatalf("bad key: %d", s)
		}
		if s, _, _ := e.exchange(certBody(c, good)); s != http.StatusForbidden {
			t.Fatalf("code usable after a refusal: %d", s)
		}
	})
	t.Run("session revoked after the confirmation", func(t *testing.T) {
		defer e.useT(t)()
		c := e.confirm(b, "40000")
		e.revoke(sid)
		if s, _, body := e.exchange(certBody(c, good)); s != http.StatusForbidden {
			t.Fatalf("revoked session got %d %s", s, body)
		}
		e.mustAudit(TypeSSHCertIssue, reasonInvalidSession, audit.Deny)
	})
}

// useT points the login env's helpers at subtest t until the returned
// func runs.
func (e *sshEnv) useT(t *testing.T) func() {
	old := e.t
	e.t = t
	return func() { e.t = old }
}

func newCASignerForTest(t *testing.T) ssh.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSSHLoginPageHostile: the confirmation page and its POST refuse
// malformed parameters, foreign posts, missing sessions, users without
// SSH logins, and a gateway without a CA.
func TestSSHLoginPageHostile(t *testing.T) {
	e := newSSHEnv(t, nil)
	b, _ := e.signedIn("bob")
	for _, q := range []string{
		"", "port=50000", "state=" + testState, "port=80&state=" + testState, "port=0&state=" + testState,
		"port=65536&state=" + testState, "port=%2B5000&state=" + testState, "port=05000&state=" + testState,
		"port=abc&state=" + testState, "port=50000&state=short", "port=50000&state=" + strings.Repeat("a", 129),
		"port=50000&state=" + url.QueryEscape("state/with/slashes!!"), "port=50000&state=" + url.QueryEscape(testState+"\n"),
		"port=50000@evil.example&state=" + testState,
	} {
		if p := b.get(pathSSHLogin + "?" + q); p.status != http.StatusBadRequest {
			t.Errorf("GET ?%s: %d, want 400", q, p.status)
		}
	}
	p := b.get(pathSSHLogin + "?port=50000&state=" + testState)
	csrf := scrape(t, reCSRF, p.body)
	form := url.Values{"csrf": {csrf}, "port": {"50000"}, "state": {testState}}
	e.runPosts(t, pathSSHLogin, TypeSSHCertIssue, []postCase{
		{"no CSRF token", b, url.Values{"port": {"50000"}, "state": {testState}}, nil, http.StatusForbidden, "csrf-invalid"},
		{"foreign origin", b, form, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "csrf-invalid"},
		{"not signed in", e.browser(), form, nil, http.StatusForbidden, "csrf-invalid"},
		{"bad port in the form", b, url.Values{"csrf": {csrf}, "port": {"22"}, "state": {testState}}, nil, http.StatusBadRequest, reasonSSHBadRequest},
	})
	t.Run("half-finished login", func(t *testing.T) {
		defer e.useT(t)()
		e.halfLoginRedirected("alice", pathSSHLogin+"?port=50000&state="+testState)
	})
	t.Run("user without SSH logins", func(t *testing.T) {
		defer e.useT(t)()
		cb, _ := e.signedIn("carol")
		p := cb.get(pathSSHLogin + "?port=50000&state=" + testState)
		if p.status != http.StatusForbidden || !strings.Contains(p.body, `id="no-ssh-logins"`) || strings.Contains(p.body, `name="csrf"`) {
			t.Fatalf("carol's page: %d\n%s", p.status, p.body)
		}
		e.mustAudit(TypeSSHCertIssue, reasonSSHNoLogins, audit.Deny)
		// A token minted for her session on another page does not help.
		home := cb.get(pathHome)
		p = cb.post(pathSSHLogin, url.Values{"csrf": {scrape(t, reCSRF, home.body)}, "port": {"50000"}, "state": {testState}})
		if p.status != http.StatusForbidden || p.location() != "" {
			t.Fatalf("carol's confirm: %d %q", p.status, p.location())
		}
	})
	t.Run("no CA configured", func(t *testing.T) {
		defer e.useT(t)()
		e.g.deps.SSHCA = nil
		defer func() { e.g.deps.SSHCA = e.ca }()
		if p := b.get(pathSSHLogin + "?port=50000&state=" + testState); p.status != http.StatusNotFound {
			t.Fatalf("page: %d", p.status)
		}
		if p := b.post(pathSSHLogin, form); p.status != http.StatusNotFound {
			t.Fatalf("confirm: %d", p.status)
		}
		if s, _, _ := e.exchange(certBody(strings.Repeat("A", 43), "x")); s != http.StatusNotFound {
			t.Fatalf("exchange: %d", s)
		}
	})
	t.Run("method not allowed", func(t *testing.T) {
		defer e.useT(t)()
		if p := b.get(pathSSHCert); p.status != http.StatusMethodNotAllowed {
			t.Fatalf("GET %s: %d", pathSSHCert, p.status)
		}
	})
}

func TestParseUserKey(t *testing.T) {
	ed, edLine := userKey(t)
	ec := newCASignerForTest(t).PublicKey()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"ed25519", edLine, true},
		{"ed25519 with comment", strings.TrimSpace(edLine) + " alice@laptop\n", true},
		{"ecdsa p256", string(ssh.MarshalAuthorizedKey(ec)), true},
		{"rsa 3072", rsaKeyLine(t, 3072), true},
		{"rsa 2048", rsaKeyLine(t, 2048), false},
		{"empty", "", false},
		{"only type", "ssh-ed25519", false},
		{"truncated base64", edLine[:40], false},
		{"two keys", edLine + edLine, false},
		{"options", `no-pty ` + edLine, false},
		{"huge", strings.Repeat("A", 9000), false},
		{"sk key type", "sk-ssh-ed25519@openssh.com " + strings.Fields(edLine)[1], false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := parseUserKey(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("parseUserKey: %v, want ok=%v", err, tc.ok)
			}
			if tc.name == "ed25519" && string(k.Marshal()) != string(ed.Marshal()) {
				t.Fatal("wrong key parsed")
			}
		})
	}
}

func FuzzParseUserKey(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDGnR9jQh4a0P2XcUO8l0zj5oBZXvyC3Fm7zN+YdJhVf x")
	f.Add("ssh-rsa AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseUserKey(s)
		if err == nil {
			if _, isCert := k.(*ssh.Certificate); isCert {
				t.Fatalf("accepted a certificate: %q", s)
			}
		}
	})
}

// rsaKeyLine is a fresh RSA public key in authorized_keys format.
func rsaKeyLine(t *testing.T, bits int) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(pk))
}

// halfLoginRedirected asserts that a browser which passed OIDC but not
// TOTP is sent to log in from path.
func (e *sshEnv) halfLoginRedirected(user, path string) {
	e.t.Helper()
	hb := e.browser()
	hb.get(hb.idpLogin("/", user)) // OIDC done, TOTP not
	if p := hb.get(path); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location(), pathLogin) {
		e.t.Fatalf("pending login reached %s: %d %q", path, p.status, p.location())
	}
}
