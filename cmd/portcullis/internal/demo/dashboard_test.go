package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func signAssertion(t *testing.T, key *ecdsa.PrivateKey, c jwt.Claims) string {
	t.Helper()
	jwk := jose.JSONWebKey{Key: key, KeyID: "k1", Algorithm: "ES256"}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jwk}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestDashboardVerifiesAssertion: the sample upstream shows "verified" only
// for a token signed by the gateway's JWKS key, for its audience and
// issuer, and not expired.
func TestDashboardVerifiesAssertion(t *testing.T) {
	gwKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &gwKey.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	defer jwks.Close()
	now := time.Now()
	d := &dashboard{app: "grafana", issuer: "https://access.localhost:8443", jwksURL: jwks.URL, client: jwks.Client(), now: func() time.Time { return now }}
	good := jwt.Claims{Issuer: d.issuer, Audience: jwt.Audience{"grafana"}, Subject: "bob", Expiry: jwt.NewNumericDate(now.Add(time.Minute))}
	withAud := good
	withAud.Audience = jwt.Audience{"kibana"}
	withIss := good
	withIss.Issuer = "https://evil.example"
	expired := good
	expired.Expiry = jwt.NewNumericDate(now.Add(-time.Minute))

	tests := []struct {
		name, token, want string
	}{
		{"valid", signAssertion(t, gwKey, good), "present, signature verified"},
		{"missing", "", "missing"},
		{"foreign key", signAssertion(t, otherKey, good), "does not verify"},
		{"other audience", signAssertion(t, gwKey, withAud), "invalid: "},
		{"other issuer", signAssertion(t, gwKey, withIss), "invalid: "},
		{"expired", signAssertion(t, gwKey, expired), "invalid: "},
		{"garbage", "a.b.c", "not a compact ES256 JWS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set("X-Portcullis-User", "bob")
			if tc.token != "" {
				req.Header.Set("X-Portcullis-Jwt-Assertion", tc.token)
			}
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != 200 || !strings.Contains(body, tc.want) {
				t.Fatalf("%d, body lacks %q", rec.Code, tc.want)
			}
			if tc.name != "valid" && strings.Contains(body, "signature verified") {
				t.Fatal("unverified assertion shown as verified")
			}
		})
	}
}

func TestDashboardEscapesHeaders(t *testing.T) {
	d := &dashboard{app: "grafana", now: time.Now}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-Portcullis-User", `<script>alert(1)</script>`)
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, req)
	if strings.Contains(rec.Body.String(), "<script>alert") {
		t.Fatal("header value not escaped")
	}
}
