package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz/session"
)

// jwksPath is served on every host so upstreams can fetch the key from the
// host they are reached by.
const jwksPath = "/.well-known/portcullis/jwks.json"

// assertionReuseMargin: a cached assertion is replaced once it has less
// than this left, so an upstream never receives one about to expire in
// flight.
const assertionReuseMargin = 30 * time.Second

// signer makes the ES256 compact JWS sent upstream as
// X-Portcullis-Jwt-Assertion. The JOSE header is fixed per key, so it is
// encoded once.
type signer struct {
	key       *ecdsa.PrivateKey
	kid       string
	header    string // base64url of the JOSE header
	jwks      []byte // JSON Web Key Set with the public key
	issuer    string
	ttl       time.Duration
	rand      io.Reader // jti
	signRand  io.Reader // ECDSA nonce entropy: always crypto/rand
	keyLength int
}

func newSigner(key *ecdsa.PrivateKey, issuer string, ttl time.Duration, rnd io.Reader) (*signer, error) {
	if key == nil {
		return nil, errors.New("gateway: Deps.SigningKey is required (ES256 P-256 key for upstream assertions)")
	}
	if key.Curve != elliptic.P256() {
		return nil, errors.New("gateway: Deps.SigningKey must be a P-256 key (ES256)")
	}
	pub, err := key.PublicKey.Bytes() // uncompressed point 0x04||X||Y
	if err != nil {
		return nil, fmt.Errorf("gateway: signing key: %w", err)
	}
	x := base64.RawURLEncoding.EncodeToString(pub[1:33])
	y := base64.RawURLEncoding.EncodeToString(pub[33:65])
	// RFC 7638 thumbprint: the required members in lexicographic order,
	// no whitespace.
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	kid := base64.RawURLEncoding.EncodeToString(sum[:])
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{"ES256", kid, "JWT"})
	if err != nil {
		return nil, err
	}
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
	}
	jwks, err := json.Marshal(struct {
		Keys []jwk `json:"keys"`
	}{[]jwk{{"EC", "P-256", x, y, kid, "sig", "ES256"}}})
	if err != nil {
		return nil, err
	}
	return &signer{
		key: key, kid: kid, header: base64.RawURLEncoding.EncodeToString(hdr), jwks: jwks,
		issuer: issuer, ttl: ttl, rand: rnd, signRand: rand.Reader, keyLength: 32,
	}, nil
}

// assertionClaims is the JWT body. Upstreams verify iss, aud (the route
// name) and exp against the JWKS.
type assertionClaims struct {
	Iss    string   `json:"iss"`
	Aud    string   `json:"aud"`
	Sub    string   `json:"sub"`
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"`
	Groups []string `json:"groups"`
	Iat    int64    `json:"iat"`
	Exp    int64    `json:"exp"`
	Jti    string   `json:"jti"`
}

// sign returns a compact JWS for rec and audience, expiring at the earlier
// of now+ttl and the session's absolute expiry.
func (s *signer) sign(rec *session.Record, audience string, now time.Time) (token string, exp time.Time, err error) {
	exp = now.Add(s.ttl)
	if !rec.ExpiresAt.IsZero() && rec.ExpiresAt.Before(exp) {
		exp = rec.ExpiresAt
	}
	var jti [16]byte
	if _, err := io.ReadFull(s.rand, jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("assertion jti: %w", err)
	}
	groups := rec.Groups
	if groups == nil {
		groups = []string{}
	}
	body, err := json.Marshal(assertionClaims{
		Iss: s.issuer, Aud: audience, Sub: rec.UserID, Email: rec.Email, Name: rec.Name,
		Groups: groups, Iat: now.Unix(), Exp: exp.Unix(),
		Jti: base64.RawURLEncoding.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", time.Time{}, err
	}
	var b strings.Builder
	b.Grow(len(s.header) + 1 + base64.RawURLEncoding.EncodedLen(len(body)) + 1 + 86)
	b.WriteString(s.header)
	b.WriteByte('.')
	b.WriteString(base64.RawURLEncoding.EncodeToString(body))
	digest := sha256.Sum256([]byte(b.String()))
	r, sig, err := ecdsa.Sign(s.signRand, s.key, digest[:])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("assertion sign: %w", err)
	}
	// JWS ES256 signatures are the raw big-endian r||s, each left-padded
	// to 32 bytes (RFC 7518 §3.4), not ASN.1.
	raw := make([]byte, 2*s.keyLength)
	r.FillBytes(raw[:s.keyLength])
	sig.FillBytes(raw[s.keyLength:])
	b.WriteByte('.')
	b.WriteString(base64.RawURLEncoding.EncodeToString(raw))
	return b.String(), exp, nil
}

// upstreamIdentity is what a proxied request carries upstream for one session and
// route: the header values are precomputed slices assigned into the
// outgoing header map as they are (never appended to: cap == len).
type upstreamIdentity struct {
	user, email, groups, jwt []string
	refreshAt                time.Time // reuse until then
	expires                  time.Time
}

// assertionCache holds one identity per session and route. Signing is the
// most expensive thing the gateway does per request; caching makes it once
// per session, route and TTL instead. Entries of revoked sessions are
// unreachable (the session lookup fails first) and are swept once expired.
type assertionCache struct {
	mu        sync.RWMutex
	m         map[assertionKey]*upstreamIdentity
	nextSweep int
}

type assertionKey struct{ session, route string }

const minSweep = 1024

func newAssertionCache() *assertionCache {
	return &assertionCache{m: make(map[assertionKey]*upstreamIdentity), nextSweep: minSweep}
}

// identityFor returns the cached identity for rec and route, signing a new
// assertion when there is none or it is close to expiry.
func (g *Gateway) identityFor(rec *session.Record, route string, now time.Time) (*upstreamIdentity, error) {
	c := g.assertions
	k := assertionKey{rec.ID, route}
	c.mu.RLock()
	id := c.m[k]
	c.mu.RUnlock()
	if id != nil && now.Before(id.refreshAt) {
		return id, nil
	}
	tok, exp, err := g.signer.sign(rec, route, now)
	if err != nil {
		return nil, err
	}
	id = &upstreamIdentity{
		user:      []string{sanitizeHeaderValue(rec.UserID)},
		email:     []string{sanitizeHeaderValue(rec.Email)},
		groups:    []string{sanitizeHeaderValue(strings.Join(rec.Groups, ","))},
		jwt:       []string{tok},
		refreshAt: exp.Add(-assertionReuseMargin),
		expires:   exp,
	}
	c.mu.Lock()
	c.m[k] = id
	if len(c.m) >= c.nextSweep {
		for k, v := range c.m {
			if !now.Before(v.expires) {
				delete(c.m, k)
			}
		}
		c.nextSweep = max(minSweep, 2*len(c.m))
	}
	c.mu.Unlock()
	return id, nil
}
