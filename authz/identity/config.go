package identity

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/portcullis/portcullis/authz"
)

// Config is the relying-party configuration for one OIDC issuer.
type Config struct {
	// Issuer is the issuer URL exactly as the IdP publishes it in its
	// discovery document ("iss"); discovery fails on any difference.
	Issuer string
	// ClientID and ClientSecret identify Portcullis as a confidential client.
	ClientID     string
	ClientSecret string
	// RedirectURL is the callback registered at the IdP, compared exactly by
	// the IdP. It must be https, or http only for loopback hosts.
	RedirectURL string
	// Scopes requested; default openid, email, profile, groups. Must
	// include openid.
	Scopes []string
	// GroupsClaim names the top-level ID token claim carrying group names
	// (default "groups").
	GroupsClaim string
	// EmailClaim names the top-level ID token claim carrying the email
	// address (default "email").
	EmailClaim string
	// AllowedAlgs are the ID token signature algorithms accepted (default
	// RS256, ES256). Only asymmetric algorithms are permitted: "none" and
	// the HMAC family would let anyone who knows the client secret (or the
	// issuer's public key, in the classic confusion attack) mint tokens.
	AllowedAlgs []string
}

// Defaults.
var (
	DefaultScopes      = []string{oidc.ScopeOpenID, "email", "profile", "groups"}
	DefaultAllowedAlgs = []string{oidc.RS256, oidc.ES256}
)

const (
	defaultGroupsClaim = "groups"
	defaultEmailClaim  = "email"
)

// asymmetricAlgs is the closed set of algorithms AllowedAlgs may name.
var asymmetricAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.EdDSA,
}

// withDefaults returns a copy with empty optional fields filled in. Slices
// are copied so that later changes by the caller cannot alter a running
// Provider.
func (c Config) withDefaults() Config {
	if len(c.Scopes) == 0 {
		c.Scopes = DefaultScopes
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = defaultGroupsClaim
	}
	if c.EmailClaim == "" {
		c.EmailClaim = defaultEmailClaim
	}
	if len(c.AllowedAlgs) == 0 {
		c.AllowedAlgs = DefaultAllowedAlgs
	}
	c.Scopes = slices.Clone(c.Scopes)
	c.AllowedAlgs = slices.Clone(c.AllowedAlgs)
	return c
}

// Validate reports every problem at once as errors.Join of
// *authz.FieldError with keys issuer, client_id, client_secret,
// redirect_url, scopes[i], groups_claim, email_claim, allowed_algs[i].
// Empty optional fields are valid (defaults apply).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Issuer == "" {
		add("issuer", "required")
	} else if err := checkEndpointURL(c.Issuer); err != nil {
		add("issuer", "%v", err)
	}
	if c.ClientID == "" {
		add("client_id", "required")
	} else if hasControl(c.ClientID) {
		add("client_id", "must not contain control characters")
	}
	if c.ClientSecret == "" {
		add("client_secret", "required")
	}
	if c.RedirectURL == "" {
		add("redirect_url", "required")
	} else if err := checkEndpointURL(c.RedirectURL); err != nil {
		add("redirect_url", "%v", err)
	}
	if !slices.Contains(c.Scopes, oidc.ScopeOpenID) {
		add("scopes", "must include %q", oidc.ScopeOpenID)
	}
	for i, s := range c.Scopes {
		// RFC 6749 3.3: scope tokens are printable ASCII without space,
		// double quote or backslash.
		if s == "" || strings.ContainsFunc(s, func(r rune) bool {
			return r <= ' ' || r > '~' || r == '"' || r == '\\'
		}) {
			add(fmt.Sprintf("scopes[%d]", i), "invalid scope token %q", s)
		}
	}
	if !validClaimName(c.GroupsClaim) {
		add("groups_claim", "invalid claim name %q", c.GroupsClaim)
	}
	if !validClaimName(c.EmailClaim) {
		add("email_claim", "invalid claim name %q", c.EmailClaim)
	}
	for i, a := range c.AllowedAlgs {
		if !slices.Contains(asymmetricAlgs, a) {
			add(fmt.Sprintf("allowed_algs[%d]", i), "unsupported algorithm %q (allowed: %s)", a, strings.Join(asymmetricAlgs, ", "))
		}
	}
	return errors.Join(errs...)
}

func validClaimName(s string) bool {
	return s != "" && len(s) <= 128 && !hasControl(s)
}

// checkEndpointURL accepts an absolute https URL, or an http URL whose host
// is loopback (development IdPs and callbacks on the same machine). Query
// and fragment are refused: issuers and redirect URIs are compared exactly
// and must not carry parameters of their own.
func checkEndpointURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute URL")
	}
	if u.User != nil {
		return errors.New("must not contain user information")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("must not contain a query or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return errors.New("must use https (http is allowed only for loopback hosts)")
	default:
		return errors.New("must use https")
	}
}

// isLoopbackHost reports whether host is a loopback IP literal, "localhost"
// or a name under ".localhost" (RFC 6761 reserves it for loopback).
func isLoopbackHost(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}
