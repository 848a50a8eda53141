package identity

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/authz"
)

// TestForgedTokens drives Finish against an issuer that returns forged or
// malformed ID tokens; each must be refused with the right typed error.
func TestForgedTokens(t *testing.T) {
	es := func(t *testing.T, c map[string]any) string { return signJWT(t, jose.ES256, ecKey(), "ec-1", c) }
	rs := func(t *testing.T, c map[string]any) string { return signJWT(t, jose.RS256, rsaKey(), "rsa-1", c) }
	tests := []struct {
		name   string
		cfg    func(*Config)
		claims func(c map[string]any, now time.Time)
		// sign defaults to es.
		sign    func(t *testing.T, c map[string]any) string
		resp    func(h *hostileIssuer, token string)
		wantErr error
		check   func(t *testing.T, id Identity)
	}{
		{name: "valid ES256"},
		{name: "valid RS256", sign: rs},
		{name: "wrong audience", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["aud"] = "other-client" }},
		{name: "audience list naming us with azp us",
			claims: func(c map[string]any, _ time.Time) { c["aud"] = []string{"other", clientID}; c["azp"] = clientID }},
		{name: "audience list without azp", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["aud"] = []string{"other", clientID} }},
		{name: "audience list with foreign azp", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["aud"] = []string{"other", clientID}; c["azp"] = "other" }},
		{name: "single audience with foreign azp", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["azp"] = "other" }},
		{name: "azp not a string", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["azp"] = []string{clientID} }},
		{name: "wrong issuer", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["iss"] = "https://evil.example" }},
		{name: "issuer with trailing slash", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["iss"] = c["iss"].(string) + "/" }},
		{name: "alg none", wantErr: ErrTokenInvalid, sign: func(_ *testing.T, c map[string]any) string {
			return rawJWT(map[string]any{"alg": "none", "typ": "JWT"}, c, func(string) []byte { return nil })
		}},
		{name: "HS256 keyed with the public key", wantErr: ErrTokenInvalid,
			sign: func(_ *testing.T, c map[string]any) string { return hs256WithPublicKey(c) }},
		{name: "algorithm not allowed", wantErr: ErrTokenInvalid, sign: rs,
			cfg: func(c *Config) { c.AllowedAlgs = []string{"ES256"} }},
		{name: "expired", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, now time.Time) { c["exp"] = now.Add(-time.Second).Unix() }},
		{name: "not yet valid", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, now time.Time) { c["nbf"] = now.Add(10 * time.Minute).Unix() }},
		{name: "issued in the future", wantErr: ErrTokenInvalid, claims: func(c map[string]any, now time.Time) {
			c["iat"] = now.Add(10 * time.Minute).Unix()
			c["exp"] = now.Add(15 * time.Minute).Unix()
		}},
		{name: "unknown key", wantErr: ErrTokenInvalid,
			sign: func(t *testing.T, c map[string]any) string { return signJWT(t, jose.ES256, ecKey2(), "ec-9", c) }},
		{name: "known kid, other key", wantErr: ErrTokenInvalid,
			sign: func(t *testing.T, c map[string]any) string { return signJWT(t, jose.ES256, ecKey2(), "ec-1", c) }},
		{name: "tampered payload", wantErr: ErrTokenInvalid, sign: func(t *testing.T, c map[string]any) string {
			good := strings.Split(es(t, c), ".")
			c["sub"] = "admin"
			forged := strings.Split(es(t, c), ".")
			return good[0] + "." + forged[1] + "." + good[2]
		}},
		{name: "nonce mismatch", wantErr: ErrNonceMismatch,
			claims: func(c map[string]any, _ time.Time) { c["nonce"] = "attacker-nonce" }},
		{name: "nonce missing", wantErr: ErrNonceMismatch,
			claims: func(c map[string]any, _ time.Time) { delete(c, "nonce") }},
		{name: "subject missing", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { delete(c, "sub") }},
		{name: "subject with newline", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["sub"] = "user\nX-Portcullis-User: admin" }},
		{name: "subject too long", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["sub"] = strings.Repeat("s", 256) }},
		{name: "no id_token", wantErr: ErrTokenInvalid,
			resp: func(h *hostileIssuer, _ string) { h.idToken = "" }},
		{name: "id_token not a string", wantErr: ErrTokenInvalid,
			resp: func(h *hostileIssuer, _ string) { h.idToken = ""; h.extra = map[string]any{"id_token": 42} }},
		{name: "token endpoint refuses", wantErr: ErrExchange, resp: func(h *hostileIssuer, _ string) {
			h.status = http.StatusBadRequest
			h.extra = map[string]any{"error": "invalid_grant", "error_description": "secret detail"}
		}},
		{name: "token endpoint fails", wantErr: ErrExchange,
			resp: func(h *hostileIssuer, _ string) { h.status = http.StatusInternalServerError }},
		{name: "at_hash mismatch", wantErr: ErrTokenInvalid,
			claims: func(c map[string]any, _ time.Time) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }},
		{name: "at_hash matches", claims: func(c map[string]any, _ time.Time) {
			sum := sha256.Sum256([]byte("at-1"))
			c["at_hash"] = base64.RawURLEncoding.EncodeToString(sum[:16])
		}},
		{name: "claims mapped", claims: func(c map[string]any, now time.Time) {
			c["email"] = "u@example.com"
			c["email_verified"] = true
			c["name"] = "Ann\x00 Example\u202e"
			c["groups"] = []any{"eng", "eng", "", "ops"}
			c["auth_time"] = now.Add(-time.Minute).Unix()
		}, check: func(t *testing.T, id Identity) {
			if id.Email != "u@example.com" || id.Name != "Ann Example" || !slices.Equal(id.Groups, []string{"eng", "ops"}) ||
				id.AuthTime.IsZero() {
				t.Fatalf("identity %+v", id)
			}
		}},
		{name: "email unverified", claims: func(c map[string]any, _ time.Time) {
			c["email"] = "u@example.com"
			c["email_verified"] = false
		}, check: wantEmail("")},
		{name: "email_verified as string false", claims: func(c map[string]any, _ time.Time) {
			c["email"] = "u@example.com"
			c["email_verified"] = "false"
		}, check: wantEmail("")},
		{name: "email_verified as string true", claims: func(c map[string]any, _ time.Time) {
			c["email"] = "u@example.com"
			c["email_verified"] = "true"
		}, check: wantEmail("u@example.com")},
		{name: "email_verified absent", claims: func(c map[string]any, _ time.Time) { c["email"] = "u@example.com" },
			check: wantEmail("u@example.com")},
		{name: "email with header injection", claims: func(c map[string]any, _ time.Time) { c["email"] = "u@example.com\r\nX-Admin: 1" },
			check: wantEmail("")},
		{name: "email not a string", claims: func(c map[string]any, _ time.Time) { c["email"] = []string{"u@example.com"} },
			check: wantEmail("")},
		{name: "custom email claim", cfg: func(c *Config) { c.EmailClaim = "upn" },
			claims: func(c map[string]any, _ time.Time) { c["upn"] = "u@corp.example"; c["email"] = "other@example.com" },
			check:  wantEmail("u@corp.example")},
		{name: "groups as single string", claims: func(c map[string]any, _ time.Time) { c["groups"] = "admins" },
			check: wantGroups("admins")},
		{name: "groups as object", claims: func(c map[string]any, _ time.Time) { c["groups"] = map[string]any{"admins": true} },
			check: wantGroups()},
		{name: "custom groups claim", cfg: func(c *Config) { c.GroupsClaim = "roles" },
			claims: func(c map[string]any, _ time.Time) { c["roles"] = []string{"sre"}; c["groups"] = []string{"admins"} },
			check:  wantGroups("sre")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostile(t)
			clock := newClock()
			p, err := h.provider(t, clock, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			st, _, err := p.Begin("/")
			if err != nil {
				t.Fatal(err)
			}
			c := h.goodClaims(clock.Now(), st.Nonce)
			if tc.claims != nil {
				tc.claims(c, clock.Now())
			}
			sign := es
			if tc.sign != nil {
				sign = tc.sign
			}
			token := sign(t, c)
			h.set(func(h *hostileIssuer) {
				h.idToken = token
				if tc.resp != nil {
					tc.resp(h, token)
				}
			})
			id, err := p.Finish(t.Context(), st, st.State, "code-1")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if id.UserID != "" {
					t.Fatalf("identity %+v returned with an error", id)
				}
				if strings.Contains(err.Error(), "secret detail") || strings.Contains(err.Error(), token) {
					t.Fatalf("error leaks IdP free text or the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.UserID != h.url+"#"+c["sub"].(string) {
				t.Fatalf("user ID %q", id.UserID)
			}
			if tc.check != nil {
				tc.check(t, id)
			}
		})
	}
}

func wantEmail(want string) func(*testing.T, Identity) {
	return func(t *testing.T, id Identity) {
		if id.Email != want {
			t.Fatalf("email %q, want %q", id.Email, want)
		}
	}
}

func wantGroups(want ...string) func(*testing.T, Identity) {
	return func(t *testing.T, id Identity) {
		if !slices.Equal(id.Groups, want) {
			t.Fatalf("groups %q, want %q", id.Groups, want)
		}
	}
}

// TestTokenRequest checks what the RP sends to the token endpoint: the
// PKCE verifier matching the challenge, the exact redirect URI, and the
// client credentials by exactly one method.
func TestTokenRequest(t *testing.T) {
	tests := []struct {
		name      string
		methods   []string
		wantBasic bool
	}{
		{"default is basic", nil, true},
		{"basic advertised", []string{"client_secret_post", "client_secret_basic"}, true},
		{"post only", []string{"client_secret_post"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostile(t)
			if tc.methods != nil {
				h.disc["token_endpoint_auth_methods_supported"] = tc.methods
			}
			clock := newClock()
			p, err := h.provider(t, clock, nil)
			if err != nil {
				t.Fatal(err)
			}
			st, authURL, _ := p.Begin("/")
			h.set(func(h *hostileIssuer) {
				h.idToken = signJWT(t, jose.ES256, ecKey(), "ec-1", h.goodClaims(clock.Now(), st.Nonce))
			})
			if _, err := p.Finish(t.Context(), st, st.State, "code-1"); err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(authURL)
			h.mu.Lock()
			defer h.mu.Unlock()
			f := h.lastForm
			if f.Get("grant_type") != "authorization_code" || f.Get("code") != "code-1" || f.Get("redirect_uri") != redirectURL {
				t.Fatalf("token request %v", f)
			}
			if v := f.Get("code_verifier"); v != st.Verifier || s256(v) != u.Query().Get("code_challenge") {
				t.Fatal("code_verifier does not match the S256 challenge sent to the IdP")
			}
			if h.lastAuth != tc.wantBasic || f.Has("client_secret") == tc.wantBasic {
				t.Fatalf("basic auth %v, client_secret in body %v; want basic %v only", h.lastAuth, f.Has("client_secret"), tc.wantBasic)
			}
		})
	}
}

func TestNewDiscovery(t *testing.T) {
	tests := []struct {
		name       string
		disc       func(h *hostileIssuer)
		cfg        func(c *Config, h *hostileIssuer)
		wantErr    string
		endSession string // expected EndSessionURL, "-" for the hostile URL + /logout
	}{
		{name: "valid"},
		{name: "end session endpoint", disc: func(h *hostileIssuer) { h.disc["end_session_endpoint"] = h.url + "/logout" }, endSession: "-"},
		{name: "insecure end session endpoint ignored",
			disc: func(h *hostileIssuer) { h.disc["end_session_endpoint"] = "http://evil.example/logout" }},
		{name: "issuer mismatch", disc: func(h *hostileIssuer) { h.disc["issuer"] = "https://evil.example" }, wantErr: "discovery"},
		{name: "configured issuer with trailing slash", cfg: func(c *Config, h *hostileIssuer) { c.Issuer = h.url + "/" }, wantErr: "discovery"},
		{name: "plain http token endpoint", disc: func(h *hostileIssuer) { h.disc["token_endpoint"] = "http://evil.example/token" }, wantErr: "token_endpoint"},
		{name: "missing jwks", disc: func(h *hostileIssuer) { delete(h.disc, "jwks_uri") }, wantErr: "jwks_uri"},
		{name: "javascript authorization endpoint", disc: func(h *hostileIssuer) { h.disc["authorization_endpoint"] = "javascript:alert(1)" }, wantErr: "authorization_endpoint"},
		{name: "only symmetric algorithms", disc: func(h *hostileIssuer) { h.disc["id_token_signing_alg_values_supported"] = []string{"HS256"} }, wantErr: "allowed_algs"},
		{name: "discovery not found", cfg: func(c *Config, h *hostileIssuer) { c.Issuer = h.url + "/nope" }, wantErr: "discovery"},
		{name: "invalid config", cfg: func(c *Config, _ *hostileIssuer) { c.ClientSecret = "" }, wantErr: "client_secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHostile(t)
			if tc.disc != nil {
				tc.disc(h)
			}
			p, err := h.provider(t, newClock(), func(c *Config) {
				if tc.cfg != nil {
					tc.cfg(c, h)
				}
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.endSession
			if want == "-" {
				want = h.url + "/logout"
			}
			if p.EndSessionURL() != want {
				t.Fatalf("EndSessionURL() = %q, want %q", p.EndSessionURL(), want)
			}
		})
	}
	t.Run("unreachable issuer", func(t *testing.T) {
		h := newHostile(t)
		h.srv.Close()
		if _, err := h.provider(t, newClock(), nil); err == nil {
			t.Fatal("New succeeded against a closed server")
		}
	})
	t.Run("config errors are field errors", func(t *testing.T) {
		_, err := New(t.Context(), Config{}, Options{})
		var fe *authz.FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("err = %v, want *authz.FieldError", err)
		}
	})
}
