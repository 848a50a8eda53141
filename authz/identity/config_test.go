package identity

import (
	"errors"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/authz"
)

func TestConfigValidate(t *testing.T) {
	good := func() Config {
		return Config{Issuer: "https://login.example.com", ClientID: "portcullis", ClientSecret: "s",
			RedirectURL: "https://access.example.com/oauth2/callback"}
	}
	tests := []struct {
		name  string
		mod   func(*Config)
		paths []string // FieldError paths, in order
	}{
		{"valid with defaults", func(*Config) {}, nil},
		{"everything missing", func(c *Config) { *c = Config{} }, []string{"issuer", "client_id", "client_secret", "redirect_url"}},
		{"http issuer", func(c *Config) { c.Issuer = "http://login.example.com" }, []string{"issuer"}},
		{"http loopback issuer", func(c *Config) { c.Issuer = "http://127.0.0.1:5556/dex" }, nil},
		{"http localhost subdomain issuer", func(c *Config) { c.Issuer = "http://idp.localhost:9000" }, nil},
		{"http ipv6 loopback redirect", func(c *Config) { c.RedirectURL = "http://[::1]:8080/cb" }, nil},
		{"issuer with query", func(c *Config) { c.Issuer = "https://login.example.com?x=1" }, []string{"issuer"}},
		{"issuer with empty query", func(c *Config) { c.Issuer = "https://login.example.com?" }, []string{"issuer"}},
		{"issuer with fragment", func(c *Config) { c.Issuer = "https://login.example.com#" }, []string{"issuer"}},
		{"issuer with userinfo", func(c *Config) { c.Issuer = "https://a:b@login.example.com" }, []string{"issuer"}},
		{"relative issuer", func(c *Config) { c.Issuer = "login.example.com" }, []string{"issuer"}},
		{"unparsable issuer", func(c *Config) { c.Issuer = "https://[::1" }, []string{"issuer"}},
		{"http redirect", func(c *Config) { c.RedirectURL = "http://access.example.com/cb" }, []string{"redirect_url"}},
		{"http redirect to localhost lookalike", func(c *Config) { c.RedirectURL = "http://localhost.evil.com/cb" }, []string{"redirect_url"}},
		{"relative redirect", func(c *Config) { c.RedirectURL = "/oauth2/callback" }, []string{"redirect_url"}},
		{"javascript redirect", func(c *Config) { c.RedirectURL = "javascript:alert(1)" }, []string{"redirect_url"}},
		{"control char client id", func(c *Config) { c.ClientID = "a\nb" }, []string{"client_id"}},
		{"scopes without openid", func(c *Config) { c.Scopes = []string{"email", "profile"} }, []string{"scopes"}},
		{"bad scope token", func(c *Config) { c.Scopes = []string{"openid", "a b"} }, []string{"scopes[1]"}},
		{"alg none", func(c *Config) { c.AllowedAlgs = []string{"RS256", "none"} }, []string{"allowed_algs[1]"}},
		{"alg HS256", func(c *Config) { c.AllowedAlgs = []string{"HS256"} }, []string{"allowed_algs[0]"}},
		{"alg EdDSA", func(c *Config) { c.AllowedAlgs = []string{"EdDSA", "PS256"} }, nil},
		{"bad groups claim", func(c *Config) { c.GroupsClaim = "gr\x00oups" }, []string{"groups_claim"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(&c)
			var paths []string
			for _, e := range authz.Flatten(c.Validate()) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a FieldError: %v", e)
				}
				paths = append(paths, fe.Path)
			}
			if !slices.Equal(paths, tc.paths) {
				t.Fatalf("paths %q, want %q", paths, tc.paths)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	in := Config{}
	c := in.withDefaults()
	if !slices.Equal(c.Scopes, []string{"openid", "email", "profile", "groups"}) || c.GroupsClaim != "groups" ||
		c.EmailClaim != "email" || !slices.Equal(c.AllowedAlgs, []string{"RS256", "ES256"}) {
		t.Fatalf("defaults %+v", c)
	}
	c.Scopes[0] = "changed"
	if DefaultScopes[0] != "openid" {
		t.Fatal("withDefaults aliases the package defaults")
	}
}
