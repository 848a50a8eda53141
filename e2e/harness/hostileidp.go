package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Secret kinds the hostile IdP hands out: Portcullis must never log an
// authorization code or an ID token either (even one it refused).
const (
	KindAuthCode = "auth-code"
	KindIDToken  = "id-token"
)

// Grant is what the hostile IdP's authorization endpoint received for one
// login: everything a forged ID token may need (the nonce above all).
type Grant struct {
	State, Nonce, Challenge, RedirectURI, Scope string
}

// Forge returns the id_token the token endpoint hands out for a grant.
type Forge func(Grant) string

// HostileIdP is an OIDC issuer under the test's control, served over
// plain HTTP on 127.0.0.1 (as the real test IdP is; Portcullis allows http
// only for loopback issuers). Discovery, JWKS, authorization and token
// endpoints behave like a strict real IdP — registered client and
// redirect URI, PKCE S256 required, client_secret_basic checked, codes
// single use — so that a login reaches ID token verification only through
// the genuine flow. The ID token itself is whatever the test's Forge for
// that login returns: the relying party's verification is what is tested.
//
// Each login is selected by its state: the test reads the state from the
// gateway's redirect to /authorize and registers a Forge for it with
// Expect before the browser gets there. An authorization request with an
// unregistered state is refused, so parallel logins never mix.
type HostileIdP struct {
	Issuer   string
	ClientID string
	// Key signs valid tokens; its public half is the JWKS's only key.
	Key   *ecdsa.PrivateKey
	KeyID string

	clientSecret string
	redirectURIs []string

	mu     sync.Mutex
	forges map[string]Forge       // by state, until /authorize takes it
	codes  map[string]pendingCode // by code, until /token takes it
	served map[string]bool        // states whose token was handed out
}

type pendingCode struct {
	grant Grant
	forge Forge
}

// StartHostileIdP serves the issuer until the test ends. clientSecret is
// the secret Portcullis must present (client_secret_basic); redirectURIs
// are compared exactly.
func StartHostileIdP(t TB, clientID, clientSecret string, redirectURIs ...string) *HostileIdP {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("hostile IdP key: %v", err)
	}
	h := &HostileIdP{
		ClientID:     clientID,
		Key:          key,
		KeyID:        "hostile-" + RandomString(4),
		clientSecret: clientSecret,
		redirectURIs: redirectURIs,
		forges:       map[string]Forge{},
		codes:        map[string]pendingCode{},
		served:       map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", h.discovery)
	mux.HandleFunc("GET /jwks", h.jwks)
	mux.HandleFunc("GET /authorize", h.authorize)
	mux.HandleFunc("POST /token", h.token)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h.Issuer = srv.URL
	return h
}

// Expect makes f the token source of the login with this state.
func (h *HostileIdP) Expect(state string, f Forge) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forges[state] = f
}

// TokenServed reports whether the token endpoint handed out an ID token
// for the login with this state (the relying party authenticated, sent
// the right PKCE verifier and redirect URI).
func (h *HostileIdP) TokenServed(state string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served[state]
}

// Claims are the claims of a valid ID token for grant g and subject sub,
// valid for five minutes from now, for tests to alter.
func (h *HostileIdP) Claims(g Grant, sub string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":            h.Issuer,
		"sub":            sub,
		"aud":            h.ClientID,
		"exp":            now.Add(5 * time.Minute).Unix(),
		"iat":            now.Unix(),
		"auth_time":      now.Unix(),
		"nonce":          g.Nonce,
		"email":          sub + "@example.test",
		"email_verified": true,
		"name":           "Hostile " + sub,
		"groups":         []string{"engineers"},
	}
}

// Sign is a token with claims signed by the JWKS key (ES256, its key ID).
func (h *HostileIdP) Sign(claims map[string]any) string {
	return JWT(map[string]any{"alg": "ES256", "typ": "JWT", "kid": h.KeyID}, claims, ES256Signer(h.Key))
}

// PublicKeyPEM is the JWKS key as a PEM "PUBLIC KEY" block: the HMAC
// secret of the classic algorithm-confusion attack.
func (h *HostileIdP) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(&h.Key.PublicKey)
	if err != nil {
		panic(err) // a P-256 public key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWT encodes header and claims as a compact JWS signed by sign over the
// signing input; sign nil leaves the signature empty (alg "none").
func JWT(header, claims map[string]any, sign func([]byte) []byte) string {
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err) // test-made maps of plain values always marshal
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// ES256Signer signs with key as JWS ES256 does (r||s, 32 bytes each).
func ES256Signer(key *ecdsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		sum := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			panic(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

// HS256Signer signs with HMAC-SHA256 under secret.
func HS256Signer(secret []byte) func([]byte) []byte {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(input)
		return m.Sum(nil)
	}
}

func (h *HostileIdP) discovery(w http.ResponseWriter, _ *http.Request) {
	idpJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         h.Issuer,
		"authorization_endpoint":                         h.Issuer + "/authorize",
		"token_endpoint":                                 h.Issuer + "/token",
		"jwks_uri":                                       h.Issuer + "/jwks",
		"response_types_supported":                       []string{"code"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"ES256"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic"},
		"code_challenge_methods_supported":               []string{"S256"},
		"scopes_supported":                               []string{"openid", "email", "profile", "groups"},
		"authorization_response_iss_parameter_supported": true,
	})
}

func (h *HostileIdP) jwks(w http.ResponseWriter, _ *http.Request) {
	pub := h.Key.PublicKey
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	idpJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": h.KeyID,
		"x": base64.RawURLEncoding.EncodeToString(x), "y": base64.RawURLEncoding.EncodeToString(y),
	}}})
}

// authorize answers at once (no login form: the user is whoever the test
// says) with a redirect carrying code, state and iss (RFC 9207). Like a
// real IdP it never redirects to an unregistered URI: bad requests get a
// 400 page.
func (h *HostileIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g := Grant{
		State: q.Get("state"), Nonce: q.Get("nonce"), Challenge: q.Get("code_challenge"),
		RedirectURI: q.Get("redirect_uri"), Scope: q.Get("scope"),
	}
	switch {
	case q.Get("client_id") != h.ClientID:
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	case !slices.Contains(h.redirectURIs, g.RedirectURI):
		http.Error(w, "unregistered redirect_uri", http.StatusBadRequest)
		return
	case q.Get("response_type") != "code" || !slices.Contains(strings.Fields(g.Scope), "openid"):
		http.Error(w, "not an OIDC code flow request", http.StatusBadRequest)
		return
	case g.State == "" || g.Nonce == "" || g.Challenge == "" || q.Get("code_challenge_method") != "S256":
		http.Error(w, "state, nonce and PKCE S256 are required", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	forge, ok := h.forges[g.State]
	delete(h.forges, g.State)
	code := RandomString(24)
	if ok {
		h.codes[code] = pendingCode{grant: g, forge: forge}
	}
	h.mu.Unlock()
	if !ok {
		http.Error(w, "no test case registered for this login", http.StatusBadRequest)
		return
	}
	RecordSecret(KindAuthCode, code)
	to, _ := url.Parse(g.RedirectURI)
	v := url.Values{"code": {code}, "state": {g.State}, "iss": {h.Issuer}}
	to.RawQuery = v.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

// token exchanges a code as RFC 6749 §4.1.3 and RFC 7636 §4.6 require.
func (h *HostileIdP) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	id, secret, ok := r.BasicAuth()
	if ok {
		// RFC 6749 §2.3.1: both parts are form-urlencoded inside Basic.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	if !ok || id != h.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(h.clientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="hostile-idp"`)
		idpJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "authorization_code" {
		idpJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	h.mu.Lock()
	pc, found := h.codes[r.PostForm.Get("code")]
	delete(h.codes, r.PostForm.Get("code")) // single use, whatever follows
	h.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	if !found || r.PostForm.Get("redirect_uri") != pc.grant.RedirectURI ||
		subtle.ConstantTimeCompare([]byte(challenge), []byte(pc.grant.Challenge)) != 1 {
		idpJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	idToken := pc.forge(pc.grant)
	RecordSecret(KindIDToken, idToken)
	h.mu.Lock()
	h.served[pc.grant.State] = true
	h.mu.Unlock()
	idpJSON(w, http.StatusOK, map[string]any{
		"access_token": RandomString(24),
		"token_type":   "Bearer",
		"expires_in":   300,
		"id_token":     idToken,
	})
}

func idpJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
