package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/e2e/harness"
)

// Host names of every test deployment. *.localhost is 127.0.0.1 for
// Chromium; Go clients use harness.LoopbackDialer.
const (
	accessHost   = "access.localhost"
	appHost      = "app.localhost"
	intranetHost = "intranet.localhost"
	streamHost   = "stream.localhost"
	clientID     = "portcullis-e2e"
	sessionName  = "__Host-portcullis"
)

// testPolicy is the policy every deployment runs: engineers may use app
// except /admin (deny wins), and intranet only from 10.0.0.0/8; members
// of shortlived get 4-second sessions; admins may do anything.
const testPolicy = `apps:
  - name: intranet
    allowed_cidrs: [10.0.0.0/8]
roles:
  - name: admin
    groups: [admins]
    admin: true
    allow:
      - apps: ["*"]
  - name: engineer
    groups: [engineers]
    allow:
      - apps: [app, intranet, stream]
        path_prefixes: [/]
    deny:
      - apps: [app]
        path_prefixes: [/admin]
  - name: shortlived
    groups: [shortlived]
    max_session_ttl: 4s
    allow:
      - apps: [app]
`

// site is one Portcullis deployment under test: a CA and a certificate
// for every host, one IdP with the test's users, shared keys, an upstream
// app, and ports reserved for its instances (registered at the IdP).
type site struct {
	t        *testing.T
	ca       *harness.CA
	certFile string
	keyFile  string
	idp      *harness.IdP
	keys     *harness.KeyFiles
	up       *harness.Upstream
	ports    []int
	users    map[string]harness.Account
}

// newSite starts the IdP with users (login → groups) and reserves ports
// for n gateway instances.
func newSite(t *testing.T, n int, users map[string][]string) *site {
	t.Helper()
	s := &site{t: t, ca: harness.NewCA(t), users: map[string]harness.Account{}}
	s.certFile, s.keyFile = s.ca.Issue(t, accessHost, appHost, intranetHost, streamHost)
	secret := "cs-" + harness.RandomString(16)
	s.keys = harness.NewKeyFiles(t, secret)
	client := harness.IdPClient{ID: clientID, Secret: secret}
	for range n {
		p := harness.FreePort(t)
		s.ports = append(s.ports, p)
		client.RedirectURIs = append(client.RedirectURIs, fmt.Sprintf("https://%s:%d/oauth2/callback", accessHost, p))
	}
	idpUsers := map[string]harness.IdPUser{}
	for login, groups := range users {
		idpUsers[login] = harness.IdPUser{Email: login + "@example.test", Name: strings.ToUpper(login[:1]) + login[1:], Groups: groups}
		s.users[login] = harness.Account{Login: login, Password: "pw-" + harness.RandomString(8)}
	}
	s.idp = harness.StartIdP(t, []harness.IdPClient{client}, idpUsers)
	s.up = harness.StartUpstream(t)
	return s
}

// spec is the configuration of instance i (0-based).
func (s *site) spec(i int, store string) harness.Spec {
	return harness.Spec{
		Instance:   "gw-" + strconv.Itoa(i+1),
		DataDir:    harness.NewDataDir(s.t),
		Port:       s.ports[i],
		AccessHost: accessHost,
		Routes: []harness.RouteSpec{
			{Name: "app", Host: appHost, Upstream: s.up.URL},
			{Name: "intranet", Host: intranetHost, Upstream: s.up.URL},
			{Name: "stream", Host: streamHost, Upstream: s.up.URL, FlushImmediately: true},
		},
		TLS:            harness.TLSFiles(s.certFile, s.keyFile),
		TrustedProxies: []string{"127.0.0.2/32"},
		Issuer:         s.idp.Issuer,
		ClientID:       clientID,
		Keys:           s.keys,
		Store:          store,
		Policy:         testPolicy,
	}
}

// start runs instance i with store ("" = embedded).
func (s *site) start(i int, store string) *harness.Portcullis {
	s.t.Helper()
	return harness.StartPortcullis(s.t, s.spec(i, store).YAML())
}

// userID is the Portcullis user ID of a test IdP login.
func (s *site) userID(login string) string { return s.idp.Issuer + "#sub-" + login }

// client is a new browser-less client trusting the site's CA.
func (s *site) client(t *testing.T) *harness.Client { return harness.NewClient(t, s.ca) }

// session logs login in with a new client (enrolling TOTP) through
// instance p and returns the client (holding access and app cookies),
// the user's authenticator and the session cookie value.
func (s *site) session(t *testing.T, p *harness.Portcullis, login string) (*harness.Client, *harness.TOTP, string) {
	t.Helper()
	c := s.client(t)
	start := p.URL(appHost, "/login-"+login)
	l := c.LoginFlow(start, s.users[login], nil, nil)
	if l.Final.StatusCode != 200 || l.Final.Request.URL.Host != hostPort(appHost, p.Port) {
		t.Fatalf("login of %s did not reach the app: %d at %s\n%s\n--- server:\n%s",
			login, l.Final.StatusCode, l.Final.Request.URL, l.Final.Body, tail(p.Output(), 3000))
	}
	cookie := c.Cookie(p.URL(appHost, "/"), sessionName)
	if cookie == "" {
		t.Fatalf("no session cookie on %s after login", appHost)
	}
	return c, l.TOTP, cookie
}

func hostPort(host string, port int) string { return host + ":" + strconv.Itoa(port) }

// echo decodes the upstream's JSON echo from a response body.
func echo(t *testing.T, body string) harness.Echo {
	t.Helper()
	var e harness.Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("upstream echo is not JSON: %v\n%s", err, body)
	}
	return e
}

// getWithCookie fetches rawURL with only the given session cookie (a fresh
// request, no jar), as a script would.
func getWithCookie(c *harness.Client, rawURL, cookie string, hdr ...string) *harness.Response {
	return c.Get(rawURL, append([]string{"Cookie: " + sessionName + "=" + cookie}, hdr...)...)
}

// isLoginRedirect reports a 302 to the access host's /login.
func isLoginRedirect(p *harness.Portcullis, r *harness.Response) bool {
	if r.StatusCode != 302 {
		return false
	}
	u, err := url.Parse(r.Header.Get("Location"))
	return err == nil && u.Host == hostPort(accessHost, p.Port) && u.Path == "/login"
}

// tail is the end of a long log, for failure messages.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
