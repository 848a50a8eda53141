// Package devidp is a tiny OpenID Connect issuer for `portcullis demo` ONLY.
// `portcullis serve` refuses to run with it: it keeps users and plaintext
// demo passwords in memory, has no rate limiting, account management or
// key rotation, and forgets everything (signing key, outstanding codes) on
// restart. Production deployments use a real IdP.
//
// It implements just enough of OIDC Core for the authorization code flow
// with PKCE, so that the demo exercises the same relying-party code
// (authz/identity) as a real deployment:
//
//   - discovery (/.well-known/openid-configuration) and a JWKS (/jwks) with
//     one ES256 key generated at New;
//   - /authorize: an HTML login form (GET); POST checks the credentials in
//     constant time and redirects back with a code. Only response_type=code,
//     an exact match against the client's registered redirect URIs, and a
//     PKCE S256 code_challenge are accepted; state and nonce are carried
//     through;
//   - /token: authorization_code grant only, client_secret_basic or
//     client_secret_post, single-use codes valid for 60 s, code_verifier
//     checked against the challenge, redirect_uri re-checked; returns an
//     ES256 ID token (5 min) and an opaque access token.
//
// All endpoints live under the issuer URL's path, so the handler can be
// mounted at that path of a larger mux without stripping the prefix.
// Every request body is capped with http.MaxBytesReader.
package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/authz"
)

// Client is a registered relying party.
type Client struct {
	ID     string
	Secret string
	// RedirectURIs are compared byte for byte with the redirect_uri
	// parameter; no prefix or pattern matching.
	RedirectURIs []string
}

// User is a demo account.
type User struct {
	Username string
	Password string
	Email    string
	Name     string
	Groups   []string
}

// Config configures the development issuer.
type Config struct {
	// Issuer is the absolute http(s) URL the IdP is reachable at; it is the
	// "iss" of every token and the prefix of every endpoint.
	Issuer  string
	Clients []Client
	Users   []User
	// Now is the clock for codes and token lifetimes; default time.Now.
	Now func() time.Time
	// Rand supplies codes and access tokens; default crypto/rand. (The
	// ECDSA signing key always comes from a secure source: since Go 1.26
	// crypto/ecdsa ignores a custom reader.)
	Rand io.Reader
	// Logger; nil discards. Passwords, codes and tokens are never logged.
	Logger *slog.Logger
}

// Lifetimes and bounds.
const (
	codeTTL    = 60 * time.Second
	idTokenTTL = 5 * time.Minute
	// maxBody caps form bodies: the largest legitimate one (login form) is
	// well under 4 KiB.
	maxBody = 64 << 10
	// maxCodes bounds outstanding authorization codes so that a flood of
	// logins cannot grow memory without limit.
	maxCodes = 10000
	// maxParamLen bounds state, nonce and other free-form parameters.
	maxParamLen = 1024
)

type client struct {
	id           string
	secretHash   [32]byte
	redirectURIs []string
}

type user struct {
	User
	sub          string
	usernameHash [32]byte
	passwordHash [32]byte
}

// grant is an issued, not yet redeemed authorization code.
type grant struct {
	clientID    string
	redirectURI string
	user        *user
	nonce       string
	challenge   string
	scopes      []string
	authTime    time.Time
	expires     time.Time
}

// IdP is the development issuer. It is safe for concurrent use.
type IdP struct {
	issuer    string // as configured, used verbatim as "iss"
	base      string // issuer without trailing slash, prefix of endpoint URLs
	basePath  string // URL path of base
	clients   map[string]*client
	users     []*user
	signer    jose.Signer
	jwks      []byte
	discovery []byte
	now       func() time.Time
	rand      io.Reader
	log       *slog.Logger

	mu    sync.Mutex // guards codes
	codes map[string]*grant
}

// New validates cfg, generates the ES256 signing key and returns the IdP.
func New(cfg Config) (*IdP, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	p := &IdP{
		issuer:  cfg.Issuer,
		base:    strings.TrimSuffix(cfg.Issuer, "/"),
		clients: make(map[string]*client, len(cfg.Clients)),
		now:     cfg.Now,
		rand:    cfg.Rand,
		log:     cfg.Logger,
		codes:   make(map[string]*grant),
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.rand == nil {
		p.rand = rand.Reader
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	u, _ := url.Parse(p.base) // validated above
	p.basePath = u.Path
	for _, c := range cfg.Clients {
		p.clients[c.ID] = &client{id: c.ID, secretHash: sha256.Sum256([]byte(c.Secret)), redirectURIs: slices.Clone(c.RedirectURIs)}
	}
	for _, cu := range cfg.Users {
		cu.Groups = slices.Clone(cu.Groups)
		sub := sha256.Sum256([]byte("portcullis-devidp-sub\x00" + cu.Username))
		p.users = append(p.users, &user{
			User:         cu,
			sub:          "u-" + hex.EncodeToString(sub[:12]),
			usernameHash: sha256.Sum256([]byte(cu.Username)),
			passwordHash: sha256.Sum256([]byte(cu.Password)),
		})
	}
	if err := p.initKeys(); err != nil {
		return nil, err
	}
	disc, err := json.Marshal(p.discoveryDoc())
	if err != nil {
		return nil, err
	}
	p.discovery = disc
	return p, nil
}

func validate(cfg Config) error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if err := checkURL(cfg.Issuer); err != nil {
		add("issuer", "%v", err)
	}
	if len(cfg.Clients) == 0 {
		add("clients", "at least one client is required")
	}
	seen := map[string]bool{}
	for i, c := range cfg.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		if c.ID == "" || seen[c.ID] {
			add(p+".id", "must be non-empty and unique")
		}
		seen[c.ID] = true
		if c.Secret == "" {
			add(p+".secret", "required")
		}
		if len(c.RedirectURIs) == 0 {
			add(p+".redirect_uris", "at least one redirect URI is required")
		}
		for j, r := range c.RedirectURIs {
			if err := checkURL(r); err != nil {
				add(fmt.Sprintf("%s.redirect_uris[%d]", p, j), "%v", err)
			}
		}
	}
	if len(cfg.Users) == 0 {
		add("users", "at least one user is required")
	}
	seen = map[string]bool{}
	for i, u := range cfg.Users {
		p := fmt.Sprintf("users[%d]", i)
		if u.Username == "" || seen[u.Username] {
			add(p+".username", "must be non-empty and unique")
		}
		seen[u.Username] = true
		if u.Password == "" {
			add(p+".password", "required")
		}
	}
	return errors.Join(errs...)
}

// checkURL accepts an absolute http(s) URL without user info or fragment.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a valid URL")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		return errors.New("must be an absolute http(s) URL")
	case u.User != nil || u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("must not contain user information or a fragment")
	}
	return nil
}

func (p *IdP) initKeys() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), p.rand)
	if err != nil {
		return fmt.Errorf("devidp: generate signing key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("devidp: key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb[:16])
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return fmt.Errorf("devidp: signer: %w", err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return err
	}
	p.signer, p.jwks = signer, jwks
	return nil
}

func (p *IdP) discoveryDoc() map[string]any {
	return map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.base + "/authorize",
		"token_endpoint":                        p.base + "/token",
		"jwks_uri":                              p.base + "/jwks",
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.ES256)},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
			"email", "email_verified", "name", "groups"},
		"authorization_response_iss_parameter_supported": true,
	}
}

// Users returns a copy of the configured users (with their demo passwords,
// which `portcullis demo` prints).
func (p *IdP) Users() []User {
	out := make([]User, len(p.users))
	for i, u := range p.users {
		out[i] = u.User
		out[i].Groups = slices.Clone(u.Groups)
	}
	return out
}

// Issuer returns the issuer URL.
func (p *IdP) Issuer() string { return p.issuer }

// Handler serves the IdP's endpoints under the issuer URL's path.
func (p *IdP) Handler() http.Handler { return http.HandlerFunc(p.serveHTTP) }

func (p *IdP) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	rest, ok := strings.CutPrefix(r.URL.Path, p.basePath)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch rest {
	case "/.well-known/openid-configuration":
		p.serveStatic(w, r, p.discovery)
	case "/jwks":
		p.serveStatic(w, r, p.jwks)
	case "/authorize":
		p.handleAuthorize(w, r)
	case "/token":
		p.handleToken(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (p *IdP) serveStatic(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// randomToken returns 256 random bits, base64url.
func (p *IdP) randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(p.rand, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashEqual compares two secrets in constant time via their SHA-256, so
// that neither content nor length leaks.
func hashEqual(a [32]byte, b string) bool {
	h := sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(a[:], h[:]) == 1
}

// singleValues flattens a form, refusing repeated parameters (RFC 6749
// §3.1: parameters MUST NOT be included more than once) and oversized
// values.
func singleValues(form url.Values, names ...string) (map[string]string, error) {
	out := make(map[string]string, len(names))
	for _, n := range names {
		v := form[n]
		if len(v) > 1 {
			return nil, fmt.Errorf("repeated parameter %s", n)
		}
		if len(v) == 1 {
			if len(v[0]) > maxParamLen {
				return nil, fmt.Errorf("parameter %s too long", n)
			}
			out[n] = v[0]
		}
	}
	return out, nil
}
