package gateway

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/portcullis/portcullis/authz/session"
)

// fetchJWKS gets the key set the way an upstream would.
func (e *coreEnv) fetchJWKS(host string) jose.JSONWebKeySet {
	e.t.Helper()
	w := e.get(host, jwksPath, "", nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		e.t.Fatalf("JWKS on %s: %d %s", host, w.Code, w.Header().Get("Content-Type"))
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		e.t.Fatalf("JWKS: %v", err)
	}
	return set
}

type assertionBody struct {
	jwt.Claims
	Email  string   `json:"email"`
	Groups []string `json:"groups"`
}

// verifyAssertion checks tok against the JWKS like an upstream: ES256
// only, key by kid, then iss/aud/exp at time at.
func verifyAssertion(t *testing.T, set jose.JSONWebKeySet, tok, aud string, at time.Time) (assertionBody, error) {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return assertionBody{}, err
	}
	if len(parsed.Headers) != 1 {
		t.Fatalf("headers: %+v", parsed.Headers)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in JWKS", parsed.Headers[0].KeyID)
	}
	var body assertionBody
	if err := parsed.Claims(keys[0].Key, &body); err != nil {
		return body, err
	}
	return body, body.ValidateWithLeeway(jwt.Expected{
		Issuer: "https://" + coreAccess, AnyAudience: jwt.Audience{aud}, Time: at,
	}, 0)
}

func TestAssertionVerifiesAgainstJWKS(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	now := e.clock.Now()
	tok := e.seen(e.get(coreGrafana, "/", cookie, nil)).Header.Get("X-Portcullis-Jwt-Assertion")

	// The same key set is published on every host.
	set := e.fetchJWKS(coreGrafana)
	for _, h := range []string{coreAccess, coreStatus, "unknown.example.net"} {
		if other := e.fetchJWKS(h); len(other.Keys) != 1 || other.Keys[0].KeyID != set.Keys[0].KeyID {
			t.Fatalf("JWKS on %s differs", h)
		}
	}
	if k := set.Keys[0]; k.Algorithm != "ES256" || k.Use != "sig" || !k.IsPublic() {
		t.Fatalf("JWK = %+v", k)
	}
	// kid is the RFC 7638 thumbprint.
	tp, err := set.Keys[0].Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(tp); got != set.Keys[0].KeyID {
		t.Fatalf("kid %q, thumbprint %q", set.Keys[0].KeyID, got)
	}

	body, err := verifyAssertion(t, set, tok, "grafana", now)
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	if body.Subject != "https://idp.example.com#alice" || body.Email != "alice@example.com" ||
		!slices.Equal(body.Groups, []string{"eng", "ops"}) || body.ID == "" {
		t.Fatalf("claims = %+v", body)
	}
	if got := body.Expiry.Time().Sub(now); got != DefaultAssertionTTL {
		t.Fatalf("lifetime %v, want %v", got, DefaultAssertionTTL)
	}

	bad := []struct {
		name string
		aud  string
		at   time.Time
	}{
		{"other audience", "grafana-api", now},
		{"expired", "grafana", now.Add(DefaultAssertionTTL + time.Second)},
	}
	for _, b := range bad {
		if _, err := verifyAssertion(t, set, tok, b.aud, b.at); err == nil {
			t.Errorf("%s: verified", b.name)
		}
	}
	// A token signed by another key is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s2, err := newSigner(other, "https://"+coreAccess, time.Minute, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := s2.sign(&session.Record{UserID: "root"}, "grafana", now)
	if err != nil {
		t.Fatal(err)
	}
	forged = e.g.signer.header + forged[strings.IndexByte(forged, '.'):] // claim our kid
	if _, err := verifyAssertion(t, set, forged, "grafana", now); err == nil {
		t.Fatal("a token signed with another key verified")
	}
}

func TestAssertionCachedAndRefreshed(t *testing.T) {
	e, _ := newCoreEnv(t)
	alice := e.login(session.Record{})
	bob := e.login(session.Record{UserID: "https://idp.example.com#bob"})
	jwtOf := func(host, path, cookie string) string {
		t.Helper()
		return e.seen(e.get(host, path, cookie, nil)).Header.Get("X-Portcullis-Jwt-Assertion")
	}
	first := jwtOf(coreGrafana, "/", alice)
	if second := jwtOf(coreGrafana, "/other", alice); second != first {
		t.Fatal("assertion was re-signed for the same session and route")
	}
	if api := jwtOf(coreGrafana, "/api/v2/x", alice); api == first {
		t.Fatal("two routes share an assertion (audience must differ)")
	}
	if b := jwtOf(coreGrafana, "/", bob); b == first {
		t.Fatal("two sessions share an assertion")
	}
	// Still reused until 30 s before expiry, replaced after.
	e.clock.Advance(DefaultAssertionTTL - assertionReuseMargin - time.Second)
	if got := jwtOf(coreGrafana, "/", alice); got != first {
		t.Fatal("replaced too early")
	}
	e.clock.Advance(2 * time.Second)
	fresh := jwtOf(coreGrafana, "/", alice)
	if fresh == first {
		t.Fatal("not replaced within 30 s of expiry")
	}
	if _, err := verifyAssertion(t, e.fetchJWKS(coreGrafana), fresh, "grafana", e.clock.Now().Add(time.Minute)); err != nil {
		t.Fatalf("refreshed assertion: %v", err)
	}
}

func TestAssertionNeverOutlivesSession(t *testing.T) {
	s, err := newSigner(mustKey(t), "https://a", 5*time.Minute, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_900_000_000, 0)
	_, exp, err := s.sign(&session.Record{UserID: "u", ExpiresAt: now.Add(time.Minute)}, "app", now)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Minute)) {
		t.Fatalf("exp %v, want the session's expiry", exp)
	}
}

func TestAssertionCacheSweeps(t *testing.T) {
	e, _ := newCoreEnv(t)
	now := e.clock.Now()
	for i := range minSweep + 10 {
		rec := &session.Record{ID: fmt.Sprintf("s%d", i), UserID: "u"}
		if _, err := e.g.identityFor(rec, "grafana", now); err != nil {
			t.Fatal(err)
		}
		if i == minSweep/2 {
			now = now.Add(time.Hour) // everything before this has expired
		}
	}
	e.g.assertions.mu.RLock()
	n := len(e.g.assertions.m)
	e.g.assertions.mu.RUnlock()
	if n >= minSweep {
		t.Fatalf("cache holds %d entries after a sweep", n)
	}
}

func TestNewSignerRejects(t *testing.T) {
	if _, err := newSigner(nil, "https://a", time.Minute, rand.Reader); err == nil {
		t.Error("nil key accepted")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := newSigner(p384, "https://a", time.Minute, rand.Reader); err == nil {
		t.Error("P-384 key accepted for ES256")
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
