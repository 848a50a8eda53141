package devidp_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/identity/devidp"
)

// fakeClock is an injectable clock; tests move it instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	verifier  = "dBjftJeZ4CVP-mJ0nGg0HIaVjJNB1vV9jV6Y8rGcYNa0zKzT0y5WmQ"
	secretA   = "s3cr:t/+%A"
	redirectA = "https://app.example/cb"
)

func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

type env struct {
	idp    *devidp.IdP
	srv    *httptest.Server
	clock  *fakeClock
	issuer string
	// browser never follows redirects, so tests can inspect them.
	browser *http.Client
}

// newEnv starts the IdP on a loopback server at issuer path prefix.
func newEnv(t testing.TB, prefix string) *env {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	e := &env{
		srv:    srv,
		clock:  &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
		issuer: "http://" + srv.Listener.Addr().String() + prefix,
	}
	idp, err := devidp.New(devidp.Config{
		Issuer: e.issuer,
		Clients: []devidp.Client{
			{ID: "app-a", Secret: secretA, RedirectURIs: []string{redirectA, "http://127.0.0.1:9/cb?x=1"}},
			{ID: "app-b", Secret: "secret-b", RedirectURIs: []string{"https://b.example/cb"}},
		},
		Users: []devidp.User{
			{Username: "alice", Password: "alice-pass", Email: "alice@example.com", Name: "Alice A", Groups: []string{"admins", "engineers"}},
			{Username: "bob", Password: "bob-pass", Email: "bob@example.com", Name: "Bob B"},
		},
		Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.idp = idp
	srv.Config.Handler = idp.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	e.browser = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func authParams() url.Values {
	return url.Values{
		"client_id":             {"app-a"},
		"redirect_uri":          {redirectA},
		"response_type":         {"code"},
		"scope":                 {"openid email profile groups"},
		"state":                 {"st-123"},
		"nonce":                 {"n-456"},
		"code_challenge":        {challenge(verifier)},
		"code_challenge_method": {"S256"},
	}
}

func (e *env) url(path string) string { return e.issuer + path }

func (e *env) get(t *testing.T, rawURL string) (*http.Response, string) {
	t.Helper()
	resp, err := e.browser.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(t, resp)
}

func (e *env) postForm(t *testing.T, path, contentType, body string, setup func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url(path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if setup != nil {
		setup(req)
	}
	resp, err := e.browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(t, resp)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const formType = "application/x-www-form-urlencoded"

// login posts the login form and returns the redirect's query.
func (e *env) login(t *testing.T, params url.Values, user, pass string) (*http.Response, url.Values) {
	t.Helper()
	f := url.Values{}
	for k, v := range params {
		f[k] = v
	}
	f.Set("username", user)
	f.Set("password", pass)
	resp, _ := e.postForm(t, "/authorize", formType, f.Encode(), nil)
	if resp.StatusCode != http.StatusSeeOther {
		return resp, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return resp, loc.Query()
}

// code logs alice in with the default parameters and returns the code.
func (e *env) code(t *testing.T) string {
	t.Helper()
	resp, q := e.login(t, authParams(), "alice", "alice-pass")
	if resp.StatusCode != http.StatusSeeOther || q.Get("code") == "" {
		t.Fatalf("login: status %d, query %v", resp.StatusCode, q)
	}
	return q.Get("code")
}

func tokenForm(code string) url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectA},
		"code_verifier": {verifier},
	}
}

// basic sets client_secret_basic credentials the way RFC 6749 §2.3.1 (and
// x/oauth2) encode them.
func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

// token posts to /token and decodes the JSON answer.
func (e *env) token(t *testing.T, form url.Values, setup func(*http.Request)) (int, map[string]any) {
	t.Helper()
	resp, body := e.postForm(t, "/token", formType, form.Encode(), setup)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("token response is not JSON (status %d): %q", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("token response Cache-Control = %q, want no-store", cc)
	}
	return resp.StatusCode, m
}
