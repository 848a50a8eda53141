package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/identity"
	"github.com/portcullis/portcullis/authz/identity/devidp"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// The login tests run the real thing end to end inside one process: the
// gateway's HTTPS handler on an httptest TLS server, the development OIDC
// issuer on another, the embedded bbolt store in a temp dir, real session
// and MFA managers, and an audit.Memory. Only the clock is fake (shared by
// every component), so TOTP steps can be advanced without sleeping.

const (
	accessHost = "access.example.com"
	appHost    = "app.example.com"
	testPass   = "correct horse battery staple"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type loginEnv struct {
	t        *testing.T
	clock    *testClock
	st       *store.Embedded
	sessions *session.Manager
	mfa      *mfa.Manager
	audit    *audit.Memory
	g        *Gateway
	srv      *httptest.Server
	idpSrv   *httptest.Server
	policy   *atomic.Pointer[authz.Policy]
	risk     *risk.Engine
	tick     chan time.Time // the store pinger's ticks
	health   *auditHealthFake
	// origin is https://access.example.com:port
	origin string
}

func testPolicy(t *testing.T) *authz.Policy {
	t.Helper()
	p, err := authz.Compile(authz.PolicyConfig{
		Apps: []authz.AppConfig{{Name: "app"}},
		Roles: []authz.RoleConfig{
			{Name: "admin", Groups: []string{"admins"}, Admin: true, Allow: []authz.Rule{{Apps: []string{"app"}}}},
			{Name: "engineer", Groups: []string{"engineers"},
				Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/"}}},
				Deny:  []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/admin"}}}},
		},
	})
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	return p
}

func newLoginEnv(t *testing.T) *loginEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &loginEnv{t: t, clock: &testClock{t: time.Now().UTC().Truncate(time.Second)}, audit: &audit.Memory{}, health: &auditHealthFake{}}

	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), store.EmbeddedOptions{Now: e.clock.Now})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.st = st

	// The gateway's listener exists before the gateway (its port goes
	// into the redirect URL registered at the IdP).
	e.srv = httptest.NewUnstartedServer(nil)
	port := e.srv.Listener.Addr().(*net.TCPAddr).Port
	e.origin = "https://" + accessHost + ":" + strconv.Itoa(port)

	e.idpSrv = httptest.NewUnstartedServer(nil)
	issuer := "https://" + e.idpSrv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Config{
		Issuer:  issuer,
		Clients: []devidp.Client{{ID: "portcullis", Secret: "client-secret", RedirectURIs: []string{e.origin + pathCallback}}},
		Users: []devidp.User{
			{Username: "alice", Password: testPass, Email: "alice@example.com", Name: "Alice", Groups: []string{"admins"}},
			{Username: "bob", Password: testPass, Email: "bob@example.com", Name: "Bob", Groups: []string{"engineers"}},
			{Username: "carol", Password: testPass, Email: "carol@example.com", Name: "Carol"},
		},
		Now: e.clock.Now,
	})
	if err != nil {
		t.Fatalf("devidp: %v", err)
	}
	e.idpSrv.Config.Handler = idp.Handler()
	e.idpSrv.StartTLS()
	t.Cleanup(e.idpSrv.Close)

	prov, err := identity.New(ctx, identity.Config{
		Issuer: issuer, ClientID: "portcullis", ClientSecret: "client-secret", RedirectURL: e.origin + pathCallback,
	}, identity.Options{HTTPClient: e.idpSrv.Client(), Now: e.clock.Now})
	if err != nil {
		t.Fatalf("identity: %v", err)
	}

	key := func() []byte {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		return k
	}
	e.sessions, err = session.NewManager(session.Config{CookieKey: key()}, st, session.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatalf("session manager: %v", err)
	}
	if err := e.sessions.Start(ctx); err != nil {
		t.Fatalf("session start: %v", err)
	}
	e.mfa, err = mfa.New(mfa.Config{Key: key()}, st, mfa.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatalf("mfa manager: %v", err)
	}
	signing, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.policy = &atomic.Pointer[authz.Policy]{}
	e.policy.Store(testPolicy(t))

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream user=%s", r.Header.Get("X-Portcullis-User"))
	}))
	t.Cleanup(upstream.Close)

	e.risk, err = risk.New(risk.Config{}, st, risk.Options{Audit: e.audit, Now: e.clock.Now, Revokers: []risk.Revoker{e.sessions}})
	if err != nil {
		t.Fatalf("risk: %v", err)
	}
	e.tick = make(chan time.Time)
	e.g, err = New(Config{
		Listen:     e.srv.Listener.Addr().String(),
		AccessHost: accessHost,
		PublicPort: port,
		TLS:        TLSConfig{Mode: "self-signed"},
		Routes:     []Route{{Name: "app", Host: appHost, Upstream: upstream.URL}},
		Instance:   "gw-test",
	}, Deps{
		Policy: e.policy, Sessions: e.sessions, MFA: e.mfa, Identity: prov, Store: st, Audit: e.audit,
		SigningKey: signing, Now: e.clock.Now, Rand: rand.Reader, Risk: e.risk, StoreTick: e.tick, AuditHealth: e.health,
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	t.Cleanup(func() { e.g.Close() })
	e.srv.Config.Handler = e.g.Handler()
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a cookie-keeping HTTPS client that resolves every
// *.example.com name to the gateway and follows no redirects.
type browser struct {
	e   *loginEnv
	c   *http.Client
	jar *cookiejar.Jar
}

func (e *loginEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	tr := e.srv.Client().Transport.(*http.Transport).Clone()
	gw := e.srv.Listener.Addr().String()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasSuffix(strings.Split(addr, ":")[0], ".example.com") {
			addr = gw
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	// The IdP's certificate is httptest's too: the same root.
	return &browser{e: e, jar: jar, c: &http.Client{
		Jar: jar, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (p page) location() string { return p.header.Get("Location") }

func (b *browser) do(req *http.Request) page {
	b.e.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// abs turns a gateway path into an access-host URL.
func (b *browser) abs(u string) string {
	if strings.HasPrefix(u, "/") {
		return b.e.origin + u
	}
	return u
}

func (b *browser) get(u string) page {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(u), nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return b.do(req)
}

// post submits a form the way a browser does from our own page.
func (b *browser) post(u string, form url.Values, hdr ...string) page {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.abs(u), strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.e.origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return b.do(req)
}

func (b *browser) cookie(host, name string) string {
	u, _ := url.Parse("https://" + host + "/")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setCookie(host, name, value string) {
	u, _ := url.Parse("https://" + host + "/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/", Secure: true}})
}

var (
	reCSRF     = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	reSecret   = regexp.MustCompile(`id="totp-secret">([A-Z2-7=]+)<`)
	reCodes    = regexp.MustCompile(`<li><code>([^<]+)</code></li>`)
	reAdminTok = regexp.MustCompile(`id="admin-token" class="wrap">([^<]+)<`)
)

func scrape(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%v not found in page:\n%s", re, body)
	}
	return html.UnescapeString(m[1])
}

// idpLogin starts at /login?rd= and signs in at the IdP; it returns the
// callback URL (not yet visited).
func (b *browser) idpLogin(rd, user string) string {
	t := b.e.t
	t.Helper()
	p := b.get(pathLogin + "?rd=" + url.QueryEscape(rd))
	if p.status != http.StatusFound {
		t.Fatalf("/login: status %d, want 302\n%s", p.status, p.body)
	}
	authURL, err := url.Parse(p.location())
	if err != nil {
		t.Fatal(err)
	}
	form := authURL.Query()
	form.Set("username", user)
	form.Set("password", testPass)
	authURL.RawQuery = ""
	req, _ := http.NewRequest(http.MethodPost, authURL.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp := b.do(req)
	if resp.status != http.StatusSeeOther || !strings.HasPrefix(resp.location(), b.e.origin+pathCallback) {
		t.Fatalf("IdP sign-in: status %d location %q", resp.status, resp.location())
	}
	return resp.location()
}

// enrol completes the callback and the TOTP enrolment; it returns the
// TOTP secret, the recovery codes and the response to Continue.
func (b *browser) enrol(callback string) (secret string, codes []string, done page) {
	t := b.e.t
	t.Helper()
	p := b.get(callback)
	if p.status != http.StatusSeeOther || p.location() != pathEnrol {
		t.Fatalf("callback: status %d location %q, want 303 %s\n%s", p.status, p.location(), pathEnrol, p.body)
	}
	p = b.get(pathEnrol)
	if p.status != http.StatusOK {
		t.Fatalf("enrol page: %d\n%s", p.status, p.body)
	}
	secret = scrape(t, reSecret, p.body)
	p = b.post(pathEnrol, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {b.e.code(secret)}})
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="recovery-codes"`) {
		t.Fatalf("enrol confirm: %d\n%s", p.status, p.body)
	}
	for _, m := range reCodes.FindAllStringSubmatch(p.body, -1) {
		codes = append(codes, m[1])
	}
	done = b.post(pathContinue, url.Values{"csrf": {scrape(t, reCSRF, p.body)}})
	return secret, codes, done
}

// code is the current TOTP code. Each call first moves the clock one step
// on so that two logins never reuse a step (the replay guard would refuse).
func (e *loginEnv) code(secret string) string {
	e.clock.Advance(30 * time.Second)
	c, err := totp.GenerateCode(secret, e.clock.Now())
	if err != nil {
		e.t.Fatalf("totp: %v", err)
	}
	return c
}

// loginNew runs a first login (with enrolment) for user returning to rd.
func (b *browser) loginNew(user, rd string) (secret string, done page) {
	b.e.t.Helper()
	secret, _, done = b.enrol(b.idpLogin(rd, user))
	if done.status != http.StatusSeeOther {
		b.e.t.Fatalf("continue: status %d\n%s", done.status, done.body)
	}
	return secret, done
}

// loginAgain runs a login of an enrolled user with a TOTP code.
func (b *browser) loginAgain(user, rd, secret string) page {
	t := b.e.t
	t.Helper()
	p := b.get(b.idpLogin(rd, user))
	if p.status != http.StatusSeeOther || p.location() != pathMFA {
		t.Fatalf("callback: status %d location %q, want %s", p.status, p.location(), pathMFA)
	}
	p = b.get(pathMFA)
	if p.status != http.StatusOK {
		t.Fatalf("mfa page: %d\n%s", p.status, p.body)
	}
	return b.post(pathMFA, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {b.e.code(secret)}})
}

// mustAudit asserts at least one event of typ with reason (and decision
// when non-empty) was emitted, and returns the last one.
func (e *loginEnv) mustAudit(typ, reason, decision string) audit.Event {
	e.t.Helper()
	var out []audit.Event
	for _, ev := range e.audit.Find(typ, reason) {
		if decision == "" || ev.Decision == decision {
			out = append(out, ev)
		}
	}
	if len(out) == 0 {
		var all []string
		for _, ev := range e.audit.Events() {
			all = append(all, ev.Type+"/"+ev.Decision+"/"+ev.Reason)
		}
		e.t.Fatalf("no audit event %s/%s/%s; have %v", typ, decision, reason, all)
	}
	return out[len(out)-1]
}

// adminCall calls the remote admin API with a bearer token ("" = none).
func (b *browser) adminCall(method, path, token string, body string) (int, map[string]any, []byte) {
	b.e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, b.abs(path), rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	p := b.do(req)
	var m map[string]any
	_ = json.Unmarshal([]byte(p.body), &m)
	return p.status, m, []byte(p.body)
}
