package config

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
)

// TestValidBuildsPackageConfigs checks what valid.yaml turns into: values
// carried over, defaults filled, relative paths resolved against the
// file's directory, apps derived from routes.
func TestValidBuildsPackageConfigs(t *testing.T) {
	cfg, warns, err := Load("testdata/valid.yaml", testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	abs, _ := filepath.Abs("testdata")
	checks := []struct {
		name      string
		got, want any
	}{
		{"instance", cfg.Instance, "gw-test"},
		{"data_dir relative to file", cfg.DataDir, filepath.Join(abs, "state")},
		{"admin socket default", cfg.AdminSocket, filepath.Join(abs, "state", "admin.sock")},
		{"log level", cfg.Log.Level.String(), "DEBUG"},
		{"log text", cfg.Log.JSON, false},
		{"gateway instance", cfg.Gateway.Instance, "gw-test"},
		{"trusted proxies", cfg.Gateway.TrustedProxies, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}},
		{"hsts", cfg.Gateway.HSTSMaxAge, 17520 * time.Hour},
		{"acme storage default", cfg.Gateway.TLS.ACME.StoragePath, filepath.Join(abs, "state", "acme")},
		{"flush interval negative", cfg.Gateway.Routes[1].FlushInterval, -time.Millisecond},
		{"redirect url default", cfg.Identity.RedirectURL, "https://access.example.com:8443/oauth2/callback"},
		{"client secret from env", cfg.Identity.ClientSecret, "client-secret"},
		{"mfa key decoded", string(cfg.MFA.Key), "0123456789abcdef0123456789abcdef"},
		{"cookie key decoded", len(cfg.Session.CookieKey), 32},
		{"idle timeout", cfg.Session.IdleTimeout, 20 * time.Minute},
		{"assertion key", cfg.AssertionKey != nil, true},
		{"store default", cfg.Store.Backend, BackendEmbedded},
		{"store path default", cfg.Store.Path, filepath.Join(abs, "state", "state.db")},
		{"audit dir default", cfg.Audit.Dir, filepath.Join(abs, "state", "audit")},
		{"audit instance", cfg.Audit.Instance, "gw-test"},
		{"compiled", cfg.Compiled != nil, true},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !equal(c.got, c.want) {
				t.Errorf("got %#v, want %#v", c.got, c.want)
			}
		})
	}
	// policy.apps entries come first (so Compile paths match the file),
	// then routes not listed there.
	var apps []string
	for _, a := range cfg.Policy.Apps {
		apps = append(apps, a.Name)
	}
	if !slices.Equal(apps, []string{"grafana-api", "grafana"}) {
		t.Errorf("apps = %v", apps)
	}
	d := cfg.Compiled.Evaluate(&authz.Request{
		Kind: authz.KindHTTP, App: "grafana", Method: "GET", Path: "/admin/users",
		SourceIP: netip.MustParseAddr("192.0.2.1"),
		Subject:  authz.Subject{UserID: "u", Roles: []string{"engineer"}, MFA: true, AuthTime: time.Now()},
	}, time.Now())
	if d.Allow || d.Reason != authz.ReasonDenyRule {
		t.Errorf("deny rule from the file not applied: %+v", d)
	}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case []netip.Prefix:
		return slices.Equal(x, b.([]netip.Prefix))
	default:
		return a == b
	}
}

func TestInstanceDefaultsToHostname(t *testing.T) {
	data := []byte(minimalYAML)
	opts := testOptions(t)
	cfg, _, err := Parse("x.yaml", data, opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Instance != "test-host" || cfg.DataDir != DefaultDataDir {
		t.Errorf("instance %q data_dir %q", cfg.Instance, cfg.DataDir)
	}
}

// minimalYAML is the smallest valid file (secrets from the test env).
const minimalYAML = `gateway:
  access_host: access.example.com
  tls: {mode: acme}
  routes:
    - {name: app, host: app.example.com, upstream: "http://127.0.0.1:1"}
identity:
  issuer: https://login.example.com
  client_id: portcullis
  client_secret_env: OIDC_SECRET
mfa: {key_env: MFA_KEY}
session: {cookie_key_env: COOKIE_KEY, assertion_key_env: ASSERTION_KEY}
policy:
  roles:
    - {name: r, groups: [g], allow: [{apps: [app]}]}
`

func TestFakeSecretsNeedNoSecrets(t *testing.T) {
	data := []byte(minimalYAML + "store:\n  backend: redis\n  redis:\n    addr: redis:6379\n    password_file: /nonexistent/pw\n    tls: {enabled: true, ca_file: /nonexistent/ca.pem}\n")
	opts := Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }}
	cfg, _, err := Parse("x.yaml", data, opts)
	if err != nil {
		t.Fatalf("FakeSecrets still reads secrets: %v", err)
	}
	if len(cfg.MFA.Key) != 32 || len(cfg.Session.CookieKey) != 32 || cfg.AssertionKey == nil || cfg.Identity.ClientSecret == "" || cfg.Store.Redis.Password == "" {
		t.Errorf("fake secrets not filled in: %+v", cfg)
	}
	// Without FakeSecrets the same file fails on exactly those secrets.
	_, _, err = Parse("x.yaml", data, Options{LookupEnv: func(string) (string, bool) { return "", false }})
	ce, ok := err.(*Error)
	if !ok {
		t.Fatalf("want *Error, got %v", err)
	}
	var paths []string
	for _, d := range ce.Diags {
		paths = append(paths, d.Path)
	}
	want := []string{"identity.client_secret_env", "mfa.key_env", "session.cookie_key_env", "session.assertion_key_env", "store.redis.password_file", "store.redis.tls.ca_file"}
	for _, w := range want {
		if !slices.Contains(paths, w) {
			t.Errorf("missing error for %s in %v", w, paths)
		}
	}
}
