package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/authz/identity/devidp"
)

// fakeClock is an injectable clock; tests move it instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

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
	clientID    = "portcullis"
	secret      = "client-secret"
	redirectURL = "https://access.localhost/oauth2/callback"
)

func s256(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// devEnv is a relying party wired to a devidp over TLS. The IdP and the RP
// have separate clocks so that tests can age one without the other.
type devEnv struct {
	srv      *httptest.Server
	idpClock *fakeClock
	rpClock  *fakeClock
	p        *Provider
	// browser plays the user agent: it never follows redirects.
	browser *http.Client
}

func newDevEnv(t *testing.T, mod func(*Config)) *devEnv {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	e := &devEnv{srv: srv, idpClock: newClock(), rpClock: newClock()}
	issuer := "https://" + srv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Config{
		Issuer:  issuer,
		Clients: []devidp.Client{{ID: clientID, Secret: secret, RedirectURIs: []string{redirectURL}}},
		Users: []devidp.User{
			{Username: "alice", Password: "alice-pw", Email: "alice@example.com", Name: "Alice", Groups: []string{"admins", "engineers"}},
			{Username: "bob", Password: "bob-pw", Email: "bob@example.com", Name: "Bob"},
		},
		Now: e.idpClock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp.Handler()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := Config{Issuer: issuer, ClientID: clientID, ClientSecret: secret, RedirectURL: redirectURL}
	if mod != nil {
		mod(&cfg)
	}
	e.p, err = New(t.Context(), cfg, Options{HTTPClient: srv.Client(), Now: e.rpClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.browser = srv.Client()
	e.browser.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return e
}

// login runs Begin and the user's side of the IdP login, returning the
// login state and the callback query the IdP redirected to.
func (e *devEnv) login(t *testing.T, user, pass string) (LoginState, url.Values) {
	t.Helper()
	st, authURL, err := e.p.Begin("/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	form := u.Query()
	form.Set("username", user)
	form.Set("password", pass)
	u.RawQuery = ""
	resp, err := e.browser.PostForm(u.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("IdP login: status %d", resp.StatusCode)
	}
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != redirectURL {
		t.Fatalf("IdP redirected to %q, want %q", got, redirectURL)
	}
	return st, cb.Query()
}

// hostileIssuer is a hand-rolled issuer that answers discovery, JWKS and
// the token endpoint with whatever a test wants, to forge ID tokens.
type hostileIssuer struct {
	srv *httptest.Server
	url string

	mu       sync.Mutex
	disc     map[string]any
	jwks     jose.JSONWebKeySet
	idToken  string
	extra    map[string]any // merged into the token response
	status   int
	lastForm url.Values
	lastAuth bool
}

var (
	ecKey  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	ecKey2 = sync.OnceValue(func() *ecdsa.PrivateKey { return mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)) })
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey { return mustKey(rsa.GenerateKey(rand.Reader, 2048)) })
)

func mustKey[K any](k K, err error) K {
	if err != nil {
		panic(err)
	}
	return k
}

func newHostile(t *testing.T) *hostileIssuer {
	t.Helper()
	h := &hostileIssuer{status: http.StatusOK}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	h.url = h.srv.URL
	h.disc = map[string]any{
		"issuer":                                h.url,
		"authorization_endpoint":                h.url + "/authorize",
		"token_endpoint":                        h.url + "/token",
		"jwks_uri":                              h.url + "/jwks",
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	}
	h.jwks = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &ecKey().PublicKey, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		{Key: &rsaKey().PublicKey, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
	}}
	return h
}

func (h *hostileIssuer) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		_ = json.NewEncoder(w).Encode(h.disc)
	case "/jwks":
		_ = json.NewEncoder(w).Encode(h.jwks)
	case "/token":
		_ = r.ParseForm()
		h.lastForm = r.PostForm
		_, _, h.lastAuth = r.BasicAuth()
		resp := map[string]any{"access_token": "at-1", "token_type": "Bearer", "expires_in": 300}
		if h.idToken != "" {
			resp["id_token"] = h.idToken
		}
		for k, v := range h.extra {
			resp[k] = v
		}
		w.WriteHeader(h.status)
		_ = json.NewEncoder(w).Encode(resp)
	default:
		http.NotFound(w, r)
	}
}

func (h *hostileIssuer) set(f func(h *hostileIssuer)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

// provider builds a relying party for the hostile issuer.
func (h *hostileIssuer) provider(t *testing.T, clock *fakeClock, mod func(*Config)) (*Provider, error) {
	t.Helper()
	cfg := Config{Issuer: h.url, ClientID: clientID, ClientSecret: secret, RedirectURL: redirectURL}
	if mod != nil {
		mod(&cfg)
	}
	return New(t.Context(), cfg, Options{HTTPClient: h.srv.Client(), Now: clock.Now})
}

// goodClaims are the claims of a valid token for nonce at now.
func (h *hostileIssuer) goodClaims(now time.Time, nonce string) map[string]any {
	return map[string]any{
		"iss":   h.url,
		"sub":   "user-1",
		"aud":   clientID,
		"exp":   now.Add(5 * time.Minute).Unix(),
		"iat":   now.Unix(),
		"nonce": nonce,
	}
}

// signJWT signs claims with a real key through go-jose.
func signJWT(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rawJWT hand-assembles a token, for algorithms go-jose refuses to sign
// with ("none", HMAC keyed with a public key).
func rawJWT(header, claims map[string]any, sign func(input string) []byte) string {
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	return in + "." + base64.RawURLEncoding.EncodeToString(sign(in))
}

// hs256WithPublicKey is the RS256→HS256 confusion attack: HMAC keyed with
// the issuer's public key, which anyone can download.
func hs256WithPublicKey(claims map[string]any) string {
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return rawJWT(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims, func(in string) []byte {
		m := hmac.New(sha256.New, pemKey)
		m.Write([]byte(in))
		return m.Sum(nil)
	})
}
