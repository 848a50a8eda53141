package gateway

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

func TestProxyStripsIdentityHeaders(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	spoofed := http.Header{
		"X-Forwarded-User":               {"root"},
		"X-Forwarded-Email":              {"root@example.com"},
		"X-Forwarded-Groups":             {"admins"},
		"X-Forwarded-Preferred-Username": {"root"},
		"X-Auth-Request-User":            {"root"},
		"X-Auth-Request-Groups":          {"admins"},
		"Remote-User":                    {"root"},
		"X-Remote-User":                  {"root"},
		"X-Portcullis-User":              {"root"},
		"X-Portcullis-Groups":            {"admins"},
		"X-Portcullis-Jwt-Assertion":     {"forged.jwt.value"},
		"X-Portcullis-Anything":          {"x"},
		"X_Forwarded_User":               {"root"},
		"X_forwarded_email":              {"root@example.com"},
		"Remote_User":                    {"root"},
		"REMOTE_USER":                    {"root"},
		"X_Auth_Request_User":            {"root"},
		"X_Portcullis_User":              {"root"},
		"X-Forwarded-For":                {"10.0.0.1, 127.0.0.1"},
		"X_Forwarded_For":                {"127.0.0.1"},
		"X-Real-Ip":                      {"127.0.0.1"},
		"Forwarded":                      {"for=127.0.0.1"},
		"X-Forwarded-Proto":              {"http"},
		"X-Forwarded-Host":               {"evil.com"},
		"Authorization":                  {"Bearer upstream-own-token"},
		"Cookie":                         {"theme=dark"},
	}
	w := e.get(coreGrafana, "/d/1?orgId=2", cookie, spoofed)
	s := e.seen(w)

	want := map[string]string{
		"X-Portcullis-User":   "https://idp.example.com#alice",
		"X-Portcullis-Email":  "alice@example.com",
		"X-Portcullis-Groups": "eng,ops",
		"X-Forwarded-For":     "198.51.100.20",
		"X-Forwarded-Proto":   "https",
		"X-Forwarded-Host":    coreGrafana,
		"Authorization":       "Bearer upstream-own-token",
		"Cookie":              "theme=dark",
	}
	for k, v := range want {
		if got := s.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("upstream %s = %q, want [%q]", k, got, v)
		}
	}
	if jwt := s.Header.Get("X-Portcullis-Jwt-Assertion"); jwt == "" || jwt == "forged.jwt.value" {
		t.Errorf("assertion = %q, want a fresh one", jwt)
	}
	allowed := map[string]bool{"X-Portcullis-User": true, "X-Portcullis-Email": true, "X-Portcullis-Groups": true,
		"X-Portcullis-Jwt-Assertion": true, "X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true}
	for k := range s.Header {
		if isIdentityHeader(k) && !allowed[k] {
			t.Errorf("spoofed header %s = %q reached the upstream", k, s.Header[k])
		}
	}
	if strings.Contains(strings.Join(s.Header["Cookie"], ";"), cookie) {
		t.Error("the session cookie reached the upstream")
	}
	if s.Path != "/d/1" || s.Query != "orgId=2" {
		t.Errorf("upstream got %s?%s", s.Path, s.Query)
	}
	if s.Host == coreGrafana {
		t.Error("Host was preserved without preserve_host")
	}
	// Response side: our HSTS wins over the upstream's, and the upstream
	// cannot plant a Portcullis cookie.
	if got := w.Header().Values("Strict-Transport-Security"); len(got) != 1 || got[0] != "max-age=31536000; includeSubDomains" {
		t.Errorf("HSTS = %q", got)
	}
	if got := w.Header().Values("Set-Cookie"); len(got) != 1 || got[0] != "app=1" {
		t.Errorf("Set-Cookie = %q, want only the app's own cookie", got)
	}
	ev := e.lastEvent(audit.TypeDecision)
	if ev.Decision != audit.Allow || ev.App != "grafana" || ev.Path != "/d/1" || ev.SourceIP != "198.51.100.20" ||
		ev.UserID != "https://idp.example.com#alice" || ev.SessionID == "" || ev.Instance != "gw-test" {
		t.Errorf("allow event = %+v", ev)
	}
}

func TestProxyPreserveHost(t *testing.T) {
	e, _ := newCoreEnv(t, func(c *Config) { c.Routes[0].PreserveHost = true })
	s := e.seen(e.get(coreGrafana, "/", e.login(session.Record{}), nil))
	if s.Host != coreGrafana {
		t.Fatalf("upstream Host = %q, want %q", s.Host, coreGrafana)
	}
}

func TestProxyClientIPAndAllowlists(t *testing.T) {
	tests := []struct {
		name     string
		trusted  []netip.Prefix
		remote   string
		xff      string
		status   int
		upstream string // X-Forwarded-For seen upstream when allowed
		reason   string // deny reason when refused
	}{
		{name: "untrusted peer spoofing an allowed address", remote: "198.51.100.20:1", xff: "10.1.2.3",
			status: http.StatusForbidden, reason: string(authz.ReasonSourceIPNotAllowed)},
		{name: "peer inside the allowlist", remote: "10.9.9.9:1", xff: "192.0.2.1", status: http.StatusOK, upstream: "10.9.9.9"},
		{name: "trusted proxy chain names an allowed client", trusted: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			remote: "198.51.100.20:1", xff: "6.6.6.6, 10.1.2.3", status: http.StatusOK, upstream: "10.1.2.3"},
		{name: "trusted proxy chain names a refused client", trusted: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			remote: "198.51.100.20:1", xff: "10.1.2.3, 192.0.2.1", status: http.StatusForbidden, reason: string(authz.ReasonSourceIPNotAllowed)},
		{name: "IPv4-mapped peer matches IPv4 allowlist", remote: "[::ffff:10.1.2.3]:1", status: http.StatusOK, upstream: "10.1.2.3"},
		{name: "IPv4-mapped peer outside IPv4 allowlist", remote: "[::ffff:192.0.2.1]:1", status: http.StatusForbidden,
			reason: string(authz.ReasonSourceIPNotAllowed)},
		{name: "IPv6 peer against IPv4 allowlist", remote: "[2001:db8::1]:1", status: http.StatusForbidden,
			reason: string(authz.ReasonSourceIPNotAllowed)},
		{name: "garbage RemoteAddr", remote: "garbage", status: http.StatusForbidden, reason: string(authz.ReasonInvalidSourceIP)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newCoreEnv(t, func(c *Config) { c.TrustedProxies = tc.trusted })
			r := e.request(http.MethodGet, coreOffice, "/", e.login(session.Record{}), nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			w := e.serve(r)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tc.status, w.Body.String())
			}
			if tc.status == http.StatusOK {
				if got := e.seen(w).Header.Get("X-Forwarded-For"); got != tc.upstream {
					t.Fatalf("upstream X-Forwarded-For = %q, want %q", got, tc.upstream)
				}
				return
			}
			ev := e.lastEvent(audit.TypeDecision)
			if ev.Decision != audit.Deny || ev.Reason != tc.reason || ev.Ref == "" {
				t.Fatalf("deny event = %+v, want reason %s", ev, tc.reason)
			}
		})
	}
}

func TestProxyPathTricks(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	tests := []struct {
		name, path string
		status     int
		upstream   string // path the upstream sees on allow
		reason     string
	}{
		{"plain allowed", "/public", http.StatusOK, "/public", ""},
		{"dot segments resolved before proxying", "/public/./x/../y", http.StatusOK, "/public/y", ""},
		{"encoded space kept", "/a%20b", http.StatusOK, "/a%20b", ""},
		{"denied prefix", "/admin", http.StatusForbidden, "", "deny-rule"},
		{"denied below prefix", "/admin/users", http.StatusForbidden, "", "deny-rule"},
		{"dot-dot into denied", "/public/../admin", http.StatusForbidden, "", "deny-rule"},
		{"encoded dot-dot into denied", "/public/%2e%2e/admin", http.StatusForbidden, "", "deny-rule"},
		{"double slash", "//admin", http.StatusForbidden, "", "deny-rule"},
		{"matrix parameter", "/admin;x=1", http.StatusForbidden, "", "deny-rule"},
		{"case", "/ADMIN", http.StatusForbidden, "", "deny-rule"},
		{"encoded slash", "/a%2fb", http.StatusBadRequest, "", reasonInvalidPath},
		{"encoded slash into denied", "/public%2f..%2fadmin", http.StatusBadRequest, "", reasonInvalidPath},
		{"encoded backslash", "/%5cadmin", http.StatusBadRequest, "", reasonInvalidPath},
		{"double encoding", "/%252e%252e/admin", http.StatusBadRequest, "", reasonInvalidPath},
		{"encoded NUL", "/admin%00", http.StatusBadRequest, "", reasonInvalidPath},
		{"reserved namespace", "/.portcullis/other", http.StatusNotFound, "", reasonNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request(http.MethodGet, coreGrafana, tc.path, cookie, nil)
			if got := r.URL.EscapedPath(); got != tc.path {
				t.Fatalf("test request path %q, want %q", got, tc.path)
			}
			e.audit.Reset()
			w := e.serve(r)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d (%s)", w.Code, tc.status, w.Body.String())
			}
			if tc.status == http.StatusOK {
				if got := e.seen(w).Path; got != tc.upstream {
					t.Fatalf("upstream path = %q, want %q", got, tc.upstream)
				}
				return
			}
			evs := e.audit.Find("", tc.reason)
			if len(evs) != 1 || evs[0].Decision != audit.Deny || evs[0].Ref == "" || !strings.Contains(w.Body.String(), evs[0].Ref) {
				t.Fatalf("want one deny event with reason %s and the page's ref; got %+v", tc.reason, e.audit.Events())
			}
		})
	}
}

func TestProxyUnauthenticated(t *testing.T) {
	e, _ := newCoreEnv(t)
	valid := e.login(session.Record{})
	other, _ := newCoreEnv(t) // same cookie format, different key
	foreign := other.login(session.Record{})
	tests := []struct {
		name   string
		cookie string
		hdr    http.Header
		json   bool
		reason string
	}{
		{name: "browser without cookie", reason: reasonNoSession},
		{name: "XHR without cookie", hdr: http.Header{"X-Requested-With": {"XMLHttpRequest"}}, json: true, reason: reasonNoSession},
		{name: "API without cookie", hdr: http.Header{"Accept": {"application/json, text/plain"}}, json: true, reason: reasonNoSession},
		{name: "forged cookie", cookie: "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA", reason: reasonInvalidSession},
		{name: "tampered cookie", cookie: valid[:len(valid)-2] + "AA", reason: reasonInvalidSession},
		{name: "cookie from another deployment", cookie: foreign, json: true,
			hdr: http.Header{"Accept": {"application/json"}}, reason: reasonInvalidSession},
		{name: "garbage cookie", cookie: "\"; DROP TABLE", reason: reasonInvalidSession},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.audit.Reset()
			w := e.get(coreGrafana, "/d/1?x=1&y=%2F", tc.cookie, tc.hdr)
			if tc.json {
				if w.Code != http.StatusUnauthorized {
					t.Fatalf("status = %d, want 401", w.Code)
				}
				b := decodeErrorBody(t, w)
				if b.Error != "authentication required" || !strings.HasPrefix(b.Ref, "ref-") {
					t.Fatalf("body = %+v", b)
				}
				if ct := w.Header().Get("Content-Type"); ct != "application/json" {
					t.Fatalf("Content-Type = %q", ct)
				}
			} else {
				if w.Code != http.StatusFound {
					t.Fatalf("status = %d, want 302", w.Code)
				}
				want := "https://access.example.com/login?rd=" + url.QueryEscape("https://grafana.example.com/d/1?x=1&y=%2F")
				if got := w.Header().Get("Location"); got != want {
					t.Fatalf("Location = %q, want %q", got, want)
				}
				// The return URL must survive the login's own check.
				u, _ := url.Parse(w.Header().Get("Location"))
				if rd := u.Query().Get("rd"); e.g.safeRedirect(rd) != rd {
					t.Fatalf("rd %q would be refused after login", rd)
				}
			}
			evs := e.audit.Find(audit.TypeRequestRejected, tc.reason)
			if len(evs) != 1 || evs[0].App != "grafana" || evs[0].Decision != audit.Deny {
				t.Fatalf("want one request.rejected/%s event, got %+v", tc.reason, e.audit.Events())
			}
			if len(e.audit.Find(audit.TypeDecision, "")) != 0 {
				t.Fatal("an unauthenticated request reached the decision")
			}
		})
	}
}

func TestProxySessionLifecycle(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusOK {
		t.Fatalf("fresh session: %d", w.Code)
	}
	rec, err := e.sess.Lookup(context.Background(), cookie)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sess.Revoke(context.Background(), rec.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusFound {
		t.Fatalf("revoked session: %d, want 302", w.Code)
	}
	expired := e.login(session.Record{})
	e.clock.Advance(13 * time.Hour)
	if w := e.get(coreGrafana, "/", expired, nil); w.Code != http.StatusFound {
		t.Fatalf("expired session: %d, want 302", w.Code)
	}
}

func TestProxyHalfFinishedOrWeakSessions(t *testing.T) {
	e, _ := newCoreEnv(t)
	tests := []struct {
		name   string
		rec    session.Record
		reason authz.Reason
	}{
		{"no second factor", session.Record{Roles: []string{"engineer"}, MFA: false}, authz.ReasonMFARequired},
		{"no roles", session.Record{Roles: []string{}}, authz.ReasonNoRoles},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := e.get(coreGrafana, "/", e.login(tc.rec), http.Header{"Accept": {"application/json"}})
			if w.Code != http.StatusForbidden {
				t.Fatalf("status = %d, want 403", w.Code)
			}
			if ev := e.lastEvent(audit.TypeDecision); ev.Reason != string(tc.reason) {
				t.Fatalf("reason = %q, want %q", ev.Reason, tc.reason)
			}
		})
	}
}

// TestDenyBodiesLookAlike: whatever check failed, the user sees the same
// body (only the reference differs), so refusals are no oracle.
func TestDenyBodiesLookAlike(t *testing.T) {
	e, _ := newCoreEnv(t)
	ok := e.login(session.Record{})
	noMFA := e.login(session.Record{Roles: []string{"engineer"}})
	refRE := regexp.MustCompile(`ref-[0-9A-Z]+`)
	var bodies []string
	for _, c := range []struct{ host, path, cookie, remote string }{
		{coreGrafana, "/admin", ok, ""},            // deny rule
		{coreGrafana, "/", noMFA, ""},              // MFA
		{coreOffice, "/", ok, "192.0.2.1:1"},       // allowlist
		{coreOffice, "/", ok, "[2001:db8::9]:443"}, // allowlist, IPv6
	} {
		for _, accept := range []string{"text/html", "application/json"} {
			r := e.request(http.MethodGet, c.host, c.path, c.cookie, http.Header{"Accept": {accept}})
			if c.remote != "" {
				r.RemoteAddr = c.remote
			}
			w := e.serve(r)
			if w.Code != http.StatusForbidden {
				t.Fatalf("%s%s: status %d", c.host, c.path, w.Code)
			}
			bodies = append(bodies, accept+"|"+refRE.ReplaceAllString(w.Body.String(), "REF"))
		}
	}
	for i := 2; i < len(bodies); i++ {
		if bodies[i] != bodies[i%2] {
			t.Fatalf("deny bodies differ:\n%s\n%s", bodies[i%2], bodies[i])
		}
	}
}

func TestProxyStoreUnavailable(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	// Another instance (a fresh manager over the same store) has nothing
	// cached, so its lookup must go to the store.
	fresh, err := session.NewManager(session.Config{CookieKey: e.cookieKey}, e.st, session.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.g.sessions = fresh
	e.st.down.Store(true)
	w := e.get(coreGrafana, "/", cookie, http.Header{"Accept": {"application/json"}})
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", w.Code)
	}
	if b := decodeErrorBody(t, w); b.Error != "state store unavailable" {
		t.Fatalf("body = %+v", b)
	}
	if evs := e.audit.Find("", reasonStoreDown); len(evs) != 1 {
		t.Fatalf("want one store-unavailable event, got %+v", e.audit.Events())
	}
	e.st.down.Store(false)
	if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusOK {
		t.Fatalf("after recovery: %d", w.Code)
	}
}

func TestProxyNoPolicyDenies(t *testing.T) {
	e, _ := newCoreEnv(t)
	e.policy.Store(nil)
	w := e.get(coreGrafana, "/", e.login(session.Record{}), nil)
	if w.Code != http.StatusForbidden {
		t.Fatalf("status = %d, want 403", w.Code)
	}
	if ev := e.lastEvent(audit.TypeDecision); ev.Reason != reasonNoPolicy || ev.Decision != audit.Deny {
		t.Fatalf("event = %+v", ev)
	}
}

func TestProxyPublicApp(t *testing.T) {
	e, _ := newCoreEnv(t)
	s := e.seen(e.get(coreStatus, "/", "", http.Header{"X-Portcullis-User": {"root"}}))
	if got := s.Header.Get("X-Portcullis-User"); got != "" {
		t.Fatalf("anonymous request to a public app carried identity %q", got)
	}
	s = e.seen(e.get(coreStatus, "/", e.login(session.Record{}), nil))
	if got := s.Header.Get("X-Portcullis-User"); got != "https://idp.example.com#alice" {
		t.Fatalf("signed-in request to a public app: user %q", got)
	}
	// A forged cookie on a public app is just anonymous.
	if w := e.get(coreStatus, "/", "v1.forged", nil); w.Code != http.StatusOK {
		t.Fatalf("forged cookie on public app: %d", w.Code)
	}
}

func TestProxyLongestPrefix(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	for _, tc := range []struct{ path, upstream, aud string }{
		{"/api/v2", "/base/api/v2", "grafana-api"},
		{"/api/v2/users", "/base/api/v2/users", "grafana-api"},
		{"/api/v2x", "/api/v2x", "grafana"},
		{"/api", "/api", "grafana"},
	} {
		s := e.seen(e.get(coreGrafana, tc.path, cookie, nil))
		if s.Path != tc.upstream {
			t.Errorf("%s: upstream path %q, want %q", tc.path, s.Path, tc.upstream)
		}
		if got := e.lastEvent(audit.TypeDecision).App; got != tc.aud {
			t.Errorf("%s: app %q, want %q", tc.path, got, tc.aud)
		}
	}
}

func TestProxyUpstreamDown(t *testing.T) {
	e, _ := newCoreEnv(t, func(c *Config) { c.Routes[0].Upstream = "http://127.0.0.1:1" })
	w := e.get(coreGrafana, "/x", e.login(session.Record{}), nil)
	if w.Code != http.StatusBadGateway {
		t.Fatalf("status = %d, want 502", w.Code)
	}
	evs := e.audit.Find(audit.TypeRequestRejected, reasonUpstream)
	if len(evs) != 1 || evs[0].App != "grafana" || evs[0].Path != "/x" || !strings.Contains(w.Body.String(), evs[0].Ref) {
		t.Fatalf("events = %+v", e.audit.Events())
	}
	if strings.Contains(w.Body.String(), "127.0.0.1") || strings.Contains(w.Body.String(), "refused") {
		t.Fatalf("the cause leaked into the page: %s", w.Body.String())
	}
	if w.Header().Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS on the 502")
	}
}

func TestProxyHTTPSUpstreamWithCAFile(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls upstream saw "+r.Header.Get("X-Portcullis-User"))
	}))
	defer up.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	e, _ := newCoreEnv(t, func(c *Config) {
		c.Routes[0].Upstream = up.URL
		c.Routes[0].UpstreamCAFile = caFile
		c.Routes[2].Upstream = up.URL // same upstream without the CA: must not be trusted
	})
	cookie := e.login(session.Record{})
	w := e.get(coreGrafana, "/", cookie, nil)
	if w.Code != http.StatusOK || w.Body.String() != "tls upstream saw https://idp.example.com#alice" {
		t.Fatalf("https upstream: %d %q", w.Code, w.Body.String())
	}
	if w := e.get(coreStatus, "/", cookie, nil); w.Code != http.StatusBadGateway {
		t.Fatalf("untrusted https upstream: %d, want 502", w.Code)
	}
}
