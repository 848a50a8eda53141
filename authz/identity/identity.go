// Package identity is the OIDC relying party: authorization code flow with
// PKCE (S256), state, nonce verification (go-oidc does not check it), exact
// redirect URI, issuer/audience/algorithm checks, and mapping of verified
// claims to a stable user ID (issuer + subject).
//
// A Provider keeps no per-login state. Begin returns a LoginState that the
// caller stores server-side, bound to the browser, and deletes before
// calling Finish (or FinishCallback): that deletion is what makes the state
// single use. The IdP makes the code single use; PKCE binds the code to
// this LoginState's verifier; the nonce binds the ID token to it.
//
// Trust boundary: everything in an Identity comes from an ID token that was
// received directly from the issuer's token endpoint over TLS and then
// verified (signature with a key from the issuer's JWKS, algorithm in
// Config.AllowedAlgs, iss, aud/azp, exp, nonce). Nothing from the callback
// query except the one-time code is trusted, and the code is only ever sent
// back to the issuer together with the PKCE verifier.
//
// The package never logs tokens, authorization codes, state or nonce
// values; errors carry only short, sanitised descriptions.
package identity

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Errors returned by Finish and FinishCallback. Each failure wraps exactly
// one of these (test with errors.Is); the wrapped detail is for logs only.
// Show users a generic message.
var (
	// ErrStateMismatch: the callback's state does not match the browser's
	// login state (CSRF, a replayed or foreign callback, or no login state).
	ErrStateMismatch = errors.New("identity: state mismatch")
	// ErrLoginExpired: the login state is older than MaxLoginAge.
	ErrLoginExpired = errors.New("identity: login expired")
	// ErrExchange: the code could not be exchanged at the token endpoint
	// (invalid or reused code, network failure, client authentication).
	ErrExchange = errors.New("identity: code exchange failed")
	// ErrTokenInvalid: the ID token is missing or failed verification.
	ErrTokenInvalid = errors.New("identity: invalid ID token")
	// ErrNonceMismatch: the ID token's nonce is not the one we sent.
	ErrNonceMismatch = errors.New("identity: nonce mismatch")
	// ErrIdPError: the IdP redirected back with ?error= instead of a code
	// (the user cancelled, or the IdP refused the request).
	ErrIdPError = errors.New("identity: identity provider returned an error")
)

// MaxLoginAge bounds how long a login may take between Begin and Finish.
const MaxLoginAge = 10 * time.Minute

// Options carries injected dependencies.
type Options struct {
	// HTTPClient talks to the issuer (discovery, JWKS, token endpoint).
	// Default: a client with a 15 s timeout (never http.DefaultClient, which
	// has none).
	HTTPClient *http.Client
	// Now is the clock for login state age and token expiry. Default time.Now.
	Now func() time.Time
	// Rand supplies state, nonce and PKCE verifier. Default crypto/rand.
	Rand io.Reader
	// Logger; nil discards.
	Logger *slog.Logger
}

// LoginState is what the caller keeps (server-side, bound to the browser)
// between Begin and Finish. State, Nonce and Verifier are secrets: never
// put them in logs, and never in a cookie that the browser can read back to
// the IdP.
type LoginState struct {
	State     string    `json:"state"`
	Nonce     string    `json:"nonce"`
	Verifier  string    `json:"verifier"`
	ReturnTo  string    `json:"return_to"`
	CreatedAt time.Time `json:"created_at"`
}

// Identity is the verified result of a login.
type Identity struct {
	// UserID is Issuer + "#" + Subject. It is the stable key for the user:
	// OIDC guarantees (iss, sub) never changes and is never reassigned,
	// whereas an email address can change owner. Never key anything on the
	// email.
	UserID  string
	Issuer  string
	Subject string
	// Email is set only when the email claim is a plausible address and
	// email_verified is not false.
	Email string
	Name  string
	// Groups from Config.GroupsClaim: an array of strings or a single
	// string; any other shape yields no groups. Deduplicated, order kept.
	Groups []string
	// AuthTime is the auth_time claim (when the user authenticated at the
	// IdP); zero when the IdP did not send it.
	AuthTime time.Time
}

// Provider is a configured OIDC relying party. It is safe for concurrent
// use; it holds no per-login state (that lives in LoginState).
type Provider struct {
	cfg      Config
	client   *http.Client
	now      func() time.Time
	rand     io.Reader
	log      *slog.Logger
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	// endSession is the discovered end_session_endpoint, "" if none.
	endSession string
}

// New validates cfg and performs OIDC discovery against cfg.Issuer. The
// discovered issuer must equal cfg.Issuer exactly, and the endpoints must
// be https (http only on loopback).
func New(ctx context.Context, cfg Config, opts Options) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Provider{
		cfg:    cfg,
		client: opts.HTTPClient,
		now:    opts.Now,
		rand:   opts.Rand,
		log:    opts.Logger,
	}
	if p.client == nil {
		p.client = &http.Client{Timeout: 15 * time.Second}
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

	op, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("identity: discovery for %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		JWKSURI    string   `json:"jwks_uri"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
		AuthMeth   []string `json:"token_endpoint_auth_methods_supported"`
		EndSession string   `json:"end_session_endpoint"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("identity: discovery for %s: %w", cfg.Issuer, err)
	}
	ep := op.Endpoint()
	for name, u := range map[string]string{
		"authorization_endpoint": ep.AuthURL,
		"token_endpoint":         ep.TokenURL,
		"jwks_uri":               meta.JWKSURI,
	} {
		if err := checkDiscoveredURL(u); err != nil {
			return nil, fmt.Errorf("identity: discovery for %s: %s: %w", cfg.Issuer, name, err)
		}
	}
	if len(meta.Algs) > 0 && !slices.ContainsFunc(cfg.AllowedAlgs, func(a string) bool { return slices.Contains(meta.Algs, a) }) {
		return nil, fmt.Errorf("identity: issuer %s signs ID tokens with %v, none of which is in allowed_algs %v",
			cfg.Issuer, meta.Algs, cfg.AllowedAlgs)
	}
	if checkDiscoveredURL(meta.EndSession) == nil {
		p.endSession = meta.EndSession
	}
	// A fixed client authentication method, never auto-detection: oauth2's
	// auto-detection retries a failed exchange with the other method, which
	// sends the single-use code twice. Discovery's default is
	// client_secret_basic (OIDC Discovery 1.0 §3).
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if len(meta.AuthMeth) > 0 && !slices.Contains(meta.AuthMeth, "client_secret_basic") &&
		slices.Contains(meta.AuthMeth, "client_secret_post") {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	p.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     ep,
		RedirectURL:  cfg.RedirectURL,
		Scopes:       cfg.Scopes,
	}
	// Verifier (not VerifierContext): its key set fetches with the HTTP
	// client discovery used, and keeps its cache for the Provider's life.
	p.verifier = op.Verifier(&oidc.Config{
		ClientID:             cfg.ClientID,
		SupportedSigningAlgs: cfg.AllowedAlgs,
		Now:                  p.now,
	})
	p.log.Debug("oidc discovery complete", "issuer", cfg.Issuer, "end_session", p.endSession != "")
	return p, nil
}

// checkDiscoveredURL applies the issuer's URL rules to endpoints found in
// the discovery document, which may carry a query (some IdPs do).
func checkDiscoveredURL(raw string) error {
	if raw == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	u.RawQuery, u.ForceQuery = "", false
	return checkEndpointURL(u.String())
}

// Issuer returns the configured (and discovered) issuer URL.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// EndSessionURL returns the issuer's discovered end_session_endpoint (RP
// initiated logout), or "" if it has none or it is not a safe URL.
func (p *Provider) EndSessionURL() string { return p.endSession }
