package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// sshEnv is the login environment with an SSH CA and a policy with SSH
// targets: alice (admins) may log in as root and postgres on db-1, with
// port and agent forwarding; bob (engineers) as deploy on web-1 only;
// carol has no role.
type sshEnv struct {
	*loginEnv
	ca *session.SSHCA
}

func sshTestPolicy(t *testing.T) *authz.Policy {
	t.Helper()
	p, err := authz.Compile(authz.PolicyConfig{
		Apps:    []authz.AppConfig{{Name: "app"}},
		Targets: []authz.TargetConfig{{Name: "db-1", Labels: map[string]string{"tier": "db"}}, {Name: "web-1"}},
		Roles: []authz.RoleConfig{
			{Name: "admin", Groups: []string{"admins"}, Admin: true, PortForwards: []string{"127.0.0.1:*"}, AgentForward: true,
				Allow: []authz.Rule{{Apps: []string{"app"}}, {TargetLabels: map[string]string{"tier": "db"}, Logins: []string{"root", "postgres"}}}},
			{Name: "engineer", Groups: []string{"engineers"},
				Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/"}}, {Targets: []string{"web-1"}, Logins: []string{"deploy"}}}},
		},
	})
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	return p
}

// newSSHEnv builds the environment. The CA is installed before the first
// request (Deps are read-only once serving).
func newSSHEnv(t *testing.T, mod func(*Gateway)) *sshEnv {
	t.Helper()
	e := &sshEnv{loginEnv: newLoginEnv(t)}
	e.policy.Store(sshTestPolicy(t))
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	e.ca, err = session.NewSSHCA(signer, session.SSHCAOptions{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.g.deps.SSHCA = e.ca
	if mod != nil {
		mod(e.g)
	}
	return e
}

// signedIn returns a browser with a fresh session of user (after the full
// OIDC + TOTP login) and the session's public ID.
func (e *sshEnv) signedIn(user string) (*browser, string) {
	e.t.Helper()
	b := e.browser()
	b.loginNew(user, "/")
	tok := b.cookie(accessHost, e.sessions.CookieName())
	if tok == "" {
		e.t.Fatal("no session cookie after login")
	}
	rec, err := e.sessions.Lookup(context.Background(), tok)
	if err != nil {
		e.t.Fatal(err)
	}
	return b, rec.ID
}

// userKey is a fresh client key in authorized_keys format.
func userKey(t *testing.T) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(ssh.MarshalAuthorizedKey(k))
}

const testState = "state-0123456789abcdef"

// confirm loads the confirmation page and posts it; it returns the
// one-time code from the redirect to the loopback listener.
func (e *sshEnv) confirm(b *browser, port string) string {
	e.t.Helper()
	p := b.get(pathSSHLogin + "?port=" + port + "&state=" + testState)
	if p.status != http.StatusOK {
		e.t.Fatalf("confirmation page: %d\n%s", p.status, p.body)
	}
	p = b.post(pathSSHLogin, url.Values{"csrf": {scrape(e.t, reCSRF, p.body)}, "port": {port}, "state": {testState}})
	if p.status != http.StatusFound {
		e.t.Fatalf("confirm: %d\n%s", p.status, p.body)
	}
	u, err := url.Parse(p.location())
	if err != nil || u.Scheme != "http" || u.Host != "127.0.0.1:"+port || u.Path != "/callback" || u.Query().Get("state") != testState {
		e.t.Fatalf("redirect %q", p.location())
	}
	return u.Query().Get("code")
}

// exchange posts to the certificate API (as the CLI does: no cookies).
func (e *sshEnv) exchange(body string) (int, SSHCertResponse, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.origin+pathSSHCert, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	p := e.browser().do(req)
	var resp SSHCertResponse
	if p.status == http.StatusOK {
		if err := json.Unmarshal([]byte(p.body), &resp); err != nil {
			e.t.Fatalf("response %q: %v", p.body, err)
		}
	}
	return p.status, resp, p.body
}

func certBody(code, key string) string {
	b, _ := json.Marshal(map[string]string{"code": code, "public_key": key})
	return string(b)
}

// revoke ends a web session.
func (e *sshEnv) revoke(id string) {
	e.t.Helper()
	if err := e.sessions.Revoke(context.Background(), id, "test"); err != nil {
		e.t.Fatal(err)
	}
}

// postCase is a POST the page must refuse.
type postCase struct {
	name   string
	b      *browser
	form   url.Values
	hdr    []string // header name, value pairs
	status int
	reason string // audit reason of the refusal
}

// runPosts posts each case to path and asserts the refusal: the status,
// no redirect anywhere, and a deny audit event of auditType.
func (e *sshEnv) runPosts(t *testing.T, path, auditType string, cases []postCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			e.audit.Reset()
			p := tc.b.post(path, tc.form, tc.hdr...)
			if p.status != tc.status || p.location() != "" {
				t.Fatalf("status %d location %q, want %d\n%s", p.status, p.location(), tc.status, p.body)
			}
			e.mustAudit(auditType, tc.reason, audit.Deny)
		})
	}
}
