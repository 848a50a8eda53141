package gateway

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

func validCoreConfig() Config {
	return Config{
		AccessHost: "access.example.com",
		TLS:        TLSConfig{Mode: ModeSelfSigned},
		Routes: []Route{
			{Name: "grafana", Host: "grafana.example.com", Upstream: "http://10.0.0.5:3000"},
			{Name: "grafana-api", Host: "grafana.example.com", PathPrefix: "/api", Upstream: "https://10.0.0.5:3443/base"},
		},
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *Config)
		paths []string // expected FieldError paths; none = valid
	}{
		{name: "valid", edit: func(*Config) {}},
		{name: "valid acme", edit: func(c *Config) {
			c.TLS = TLSConfig{Mode: ModeACME, ACME: ACMEConfig{StoragePath: "/var/lib/p/acme", DirectoryURL: "https://127.0.0.1:14000/dir",
				Email: "ops@example.com", AltHTTPPort: 5002, AltTLSALPNPort: 5001}}
		}},
		{name: "valid files", edit: func(c *Config) { c.TLS = TLSConfig{Mode: ModeFiles, CertFile: "c", KeyFile: "k"} }},
		{name: "access host missing", edit: func(c *Config) { c.AccessHost = "" }, paths: []string{"access_host"}},
		{name: "access host with port", edit: func(c *Config) { c.AccessHost = "access.example.com:443" }, paths: []string{"access_host"}},
		{name: "access host upper case", edit: func(c *Config) { c.AccessHost = "Access.example.com" }, paths: []string{"access_host"}},
		{name: "access host URL", edit: func(c *Config) { c.AccessHost = "https://access.example.com" }, paths: []string{"access_host"}},
		{name: "access host trailing dot", edit: func(c *Config) { c.AccessHost = "access.example.com." }, paths: []string{"access_host"}},
		{name: "bad public port", edit: func(c *Config) { c.PublicPort = 70000 }, paths: []string{"public_port"}},
		{name: "bad listen", edit: func(c *Config) { c.Listen = "443" }, paths: []string{"listen"}},
		{name: "same listeners", edit: func(c *Config) { c.Listen, c.HTTPListen = ":8443", ":8443" }, paths: []string{"http_listen"}},
		{name: "invalid trusted proxy", edit: func(c *Config) {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}
		}, paths: []string{"trusted_proxies[1]"}},
		{name: "short HSTS", edit: func(c *Config) { c.HSTSMaxAge = 24 * time.Hour }, paths: []string{"hsts_max_age"}},
		{name: "long assertion", edit: func(c *Config) { c.AssertionTTL = 24 * time.Hour }, paths: []string{"assertion_ttl"}},
		{name: "tiny assertion", edit: func(c *Config) { c.AssertionTTL = time.Second }, paths: []string{"assertion_ttl"}},
		{name: "negative login timeout", edit: func(c *Config) { c.LoginTimeout = -time.Second }, paths: []string{"login_timeout"}},
		{name: "route on access host", edit: func(c *Config) { c.Routes[1].Host = "access.example.com" }, paths: []string{"routes[1].host"}},
		{name: "duplicate host and prefix", edit: func(c *Config) { c.Routes[1].PathPrefix = "/" }, paths: []string{"routes[1].host"}},
		{name: "duplicate host, empty vs slash prefix", edit: func(c *Config) {
			c.Routes[0].PathPrefix = "/"
			c.Routes[1].PathPrefix = ""
		}, paths: []string{"routes[1].host"}},
		{name: "duplicate name", edit: func(c *Config) { c.Routes[1].Name = "grafana" }, paths: []string{"routes[1].name"}},
		{name: "missing name", edit: func(c *Config) { c.Routes[0].Name = "" }, paths: []string{"routes[0].name"}},
		{name: "name with space", edit: func(c *Config) { c.Routes[0].Name = "my app" }, paths: []string{"routes[0].name"}},
		{name: "missing host", edit: func(c *Config) { c.Routes[0].Host = "" }, paths: []string{"routes[0].host"}},
		{name: "host with wildcard", edit: func(c *Config) { c.Routes[0].Host = "*.example.com" }, paths: []string{"routes[0].host"}},
		{name: "relative upstream", edit: func(c *Config) { c.Routes[1].Upstream = "10.0.0.5:3000" }, paths: []string{"routes[1].upstream"}},
		{name: "ftp upstream", edit: func(c *Config) { c.Routes[1].Upstream = "ftp://10.0.0.5/" }, paths: []string{"routes[1].upstream"}},
		{name: "upstream without host", edit: func(c *Config) { c.Routes[1].Upstream = "http:///x" }, paths: []string{"routes[1].upstream"}},
		{name: "upstream with credentials", edit: func(c *Config) { c.Routes[1].Upstream = "http://u:p@10.0.0.5/" }, paths: []string{"routes[1].upstream"}},
		{name: "upstream with query", edit: func(c *Config) { c.Routes[1].Upstream = "http://10.0.0.5/?a=b" }, paths: []string{"routes[1].upstream"}},
		{name: "missing upstream", edit: func(c *Config) { c.Routes[0].Upstream = "" }, paths: []string{"routes[0].upstream"}},
		{name: "CA file on http upstream", edit: func(c *Config) { c.Routes[0].UpstreamCAFile = "/ca.pem" }, paths: []string{"routes[0].upstream_ca_file"}},
		{name: "prefix without slash", edit: func(c *Config) { c.Routes[1].PathPrefix = "api" }, paths: []string{"routes[1].path_prefix"}},
		{name: "prefix with trailing slash", edit: func(c *Config) { c.Routes[1].PathPrefix = "/api/" }, paths: []string{"routes[1].path_prefix"}},
		{name: "prefix with dot-dot", edit: func(c *Config) { c.Routes[1].PathPrefix = "/a/../b" }, paths: []string{"routes[1].path_prefix"}},
		{name: "prefix with escape", edit: func(c *Config) { c.Routes[1].PathPrefix = "/a%2f" }, paths: []string{"routes[1].path_prefix"}},
		{name: "tls mode missing", edit: func(c *Config) { c.TLS.Mode = "" }, paths: []string{"tls.mode"}},
		{name: "tls mode unknown", edit: func(c *Config) { c.TLS.Mode = "letsencrypt" }, paths: []string{"tls.mode"}},
		{name: "files without files", edit: func(c *Config) { c.TLS = TLSConfig{Mode: ModeFiles} }, paths: []string{"tls.cert_file", "tls.key_file"}},
		{name: "acme without storage", edit: func(c *Config) { c.TLS = TLSConfig{Mode: ModeACME} }, paths: []string{"tls.acme.storage_path"}},
		{name: "acme bad directory", edit: func(c *Config) {
			c.TLS = TLSConfig{Mode: ModeACME, ACME: ACMEConfig{StoragePath: "/s", DirectoryURL: "http://ca/dir"}}
		}, paths: []string{"tls.acme.directory_url"}},
		{name: "acme no challenge", edit: func(c *Config) {
			c.TLS = TLSConfig{Mode: ModeACME, ACME: ACMEConfig{StoragePath: "/s", DisableHTTP01: true, DisableTLSALPN: true}}
		}, paths: []string{"tls.acme"}},
		{name: "acme bad ports", edit: func(c *Config) {
			c.TLS = TLSConfig{Mode: ModeACME, ACME: ACMEConfig{StoragePath: "/s", AltHTTPPort: -1, AltTLSALPNPort: 65536}}
		}, paths: []string{"tls.acme.alt_http_port", "tls.acme.alt_tls_alpn_port"}},
		{name: "several errors at once", edit: func(c *Config) {
			c.AccessHost = ""
			c.Routes[0].Upstream = "nope"
			c.TLS.Mode = ""
		}, paths: []string{"access_host", "routes[0].upstream", "tls.mode"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validCoreConfig()
			tc.edit(&c)
			err := c.Validate()
			var got []string
			for _, e := range authz.Flatten(err) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("non-field error %v", e)
				}
				got = append(got, fe.Path)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.paths))
			if !slices.Equal(got, want) {
				t.Fatalf("error paths = %q, want %q (err: %v)", got, want, err)
			}
		})
	}
}

func TestNewRequiresDeps(t *testing.T) {
	e, _ := newCoreEnv(t)
	full := Deps{Policy: &e.policy, Sessions: e.sess, Store: e.st, Audit: e.audit, SigningKey: e.key, Risk: e.risk, AuditHealth: e.audit}
	for name, edit := range map[string]func(d *Deps){
		"policy":      func(d *Deps) { d.Policy = nil },
		"sessions":    func(d *Deps) { d.Sessions = nil },
		"store":       func(d *Deps) { d.Store = nil },
		"audit":       func(d *Deps) { d.Audit = nil },
		"signing key": func(d *Deps) { d.SigningKey = nil },
		// Never a silent "lockdown off".
		"risk": func(d *Deps) { d.Risk = nil },
		// Never a silent "the trail is always fine".
		"audit health": func(d *Deps) { d.AuditHealth = nil },
	} {
		d := full
		edit(&d)
		if _, err := New(validCoreConfig(), d); err == nil {
			t.Errorf("missing %s accepted", name)
		}
	}
	if _, err := New(Config{}, full); err == nil {
		t.Error("invalid config accepted")
	}
	bad := validCoreConfig()
	bad.Routes[1].UpstreamCAFile = "/nonexistent/ca.pem"
	_, err := New(bad, full)
	var fe *authz.FieldError
	if !errors.As(err, &fe) || fe.Path != "routes[1].upstream_ca_file" {
		t.Errorf("unreadable CA file: %v", err)
	}
}

// TestSecurityHeadersEverywhere: HSTS and nosniff on every response the
// gateway produces or relays, the page headers on Portcullis's own pages
// only.
func TestSecurityHeadersEverywhere(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	json := http.Header{"Accept": {"application/json"}}
	tests := []struct {
		name   string
		host   string
		target string
		cookie string
		hdr    http.Header
		status int
		own    bool // Portcullis's own page
	}{
		{"proxied", coreGrafana, "/", cookie, nil, http.StatusOK, false},
		{"login redirect", coreGrafana, "/", "", nil, http.StatusFound, true},
		{"401", coreGrafana, "/", "", json, http.StatusUnauthorized, true},
		{"403", coreGrafana, "/admin", cookie, nil, http.StatusForbidden, true},
		{"400", coreGrafana, "/a%2fb", cookie, nil, http.StatusBadRequest, true},
		{"404 unknown host", "nowhere.example.net", "/", "", nil, http.StatusNotFound, true},
		{"404 no route", coreGrafana, "/.portcullis/x", cookie, nil, http.StatusNotFound, true},
		{"jwks", coreGrafana, jwksPath, "", nil, http.StatusOK, false},
		{"healthz", coreAccess, "/healthz", "", nil, http.StatusOK, true},
		{"access host bad path", coreAccess, "/%2e%2e%2fx", "", nil, http.StatusBadRequest, true},
		{"hop refused", coreGrafana, hopPath + "?code=x", "", nil, http.StatusForbidden, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := e.get(tc.host, tc.target, tc.cookie, tc.hdr)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d", w.Code, tc.status)
			}
			h := w.Header()
			if got := h.Values("Strict-Transport-Security"); len(got) != 1 || got[0] != "max-age=31536000; includeSubDomains" {
				t.Fatalf("HSTS = %q", got)
			}
			if h.Get("X-Content-Type-Options") != "nosniff" {
				t.Fatal("no nosniff")
			}
			own := h.Get("X-Frame-Options") == "DENY" && h.Get("Referrer-Policy") == "no-referrer" &&
				strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'")
			if own != tc.own {
				t.Fatalf("page headers present = %v, want %v (%v)", own, tc.own, h)
			}
		})
	}
}

func TestCSPAllowsFormHopsToRouteHosts(t *testing.T) {
	e, _ := newCoreEnv(t)
	csp := e.get(coreAccess, "/healthz", "", nil).Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "img-src 'self' data:",
		"form-action 'self' https://grafana.example.com https://status.example.com"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP allows inline code: %q", csp)
	}
}

func TestUnknownHostAudited(t *testing.T) {
	e, _ := newCoreEnv(t)
	for _, host := range []string{"evil.com", "GRAFANA.example.com.evil.com", "", "[::1]:443"} {
		e.audit.Reset()
		r := e.request(http.MethodGet, coreGrafana, "/", "", nil)
		r.Host = host
		w := e.serve(r)
		if w.Code != http.StatusNotFound {
			t.Fatalf("host %q: status %d", host, w.Code)
		}
		if evs := e.audit.Find(audit.TypeRequestRejected, reasonUnknownHost); len(evs) != 1 || evs[0].Ref == "" {
			t.Fatalf("host %q: events %+v", host, e.audit.Events())
		}
	}
	// Host matching is case-insensitive and ignores the port.
	r := e.request(http.MethodGet, coreGrafana, "/", e.login(session.Record{}), nil)
	r.Host = "Grafana.Example.COM:443"
	if w := e.serve(r); w.Code != http.StatusOK {
		t.Fatalf("mixed-case host: %d", w.Code)
	}
}

func TestHealthz(t *testing.T) {
	e, _ := newCoreEnv(t)
	if w := e.get(coreAccess, "/healthz", "", nil); w.Code != http.StatusOK || w.Body.String() != "ok\n" {
		t.Fatalf("healthz: %d %q", w.Code, w.Body.String())
	}
	if w := e.serve(e.request(http.MethodPost, coreAccess, "/healthz", "", nil)); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST healthz: %d", w.Code)
	}
	// On a route host, /healthz is the upstream's.
	if s := e.seen(e.get(coreGrafana, "/healthz", e.login(session.Record{}), nil)); s.Path != "/healthz" {
		t.Fatalf("route host /healthz went to %q", s.Path)
	}
}

func TestErrorPageCarriesNoCause(t *testing.T) {
	e, _ := newCoreEnv(t)
	w := e.get("evil.com", "/<script>", "", nil)
	body := w.Body.String()
	if strings.Contains(body, "evil.com") || strings.Contains(body, "<script>") {
		t.Fatalf("request details echoed in the page: %s", body)
	}
	if w.Header().Get("Content-Type") != "text/html; charset=utf-8" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("headers: %v", w.Header())
	}
	ev := e.lastEvent(audit.TypeRequestRejected)
	if !strings.Contains(body, ev.Ref) || ev.Path != "/<script>" || ev.SourceIP != "198.51.100.20" || ev.Time.IsZero() {
		t.Fatalf("event = %+v", ev)
	}
}
