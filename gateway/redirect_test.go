package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// redirectTestGateway has just what safeRedirect and RedirectHandler read.
func redirectTestGateway(port int) *Gateway {
	g := &Gateway{
		cfg: Config{AccessHost: "access.example.com", PublicPort: port},
		hosts: map[string]*hostRoutes{
			"grafana.example.com": {host: "grafana.example.com"},
			"wiki.example.com":    {host: "wiki.example.com"},
		},
		hsts: hstsValue(0),
		log:  slog.New(slog.DiscardHandler),
	}
	if port != 0 && port != 443 {
		g.portSuffix = ":" + strconv.Itoa(port)
	}
	return g
}

func TestSafeRedirect(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool // true: returned unchanged; false: "/"
	}{
		{"root", "/", true},
		{"path", "/dashboards/1", true},
		{"path with query", "/d?x=1&y=%2F", true},
		{"path with fragment", "/d#top", true},
		{"encoded space", "/a%20b", true},
		{"route host URL", "https://grafana.example.com/d/abc?orgId=1", true},
		{"route host without path", "https://grafana.example.com", true},
		{"route host upper case", "https://GRAFANA.example.com/", true},
		{"route host scheme upper case", "HTTPS://grafana.example.com/", true},
		{"route host default port", "https://grafana.example.com:443/", true},

		{"empty", "", false},
		{"scheme-relative", "//evil.com", false},
		{"backslash host", "/\\evil.com", false},
		{"backslash first", "\\/evil.com", false},
		{"backslash anywhere", "/a\\b", false},
		{"scheme without slashes", "https:evil.com", false},
		{"javascript", "javascript:alert(1)", false},
		{"javascript split by newline", "java\nscript:alert(1)", false},
		{"encoded double slash", "/%2f%2fevil.com", false},
		{"encoded double slash upper", "/%2F%2Fevil.com", false},
		{"encoded backslash", "/%5cevil.com", false},
		{"double-encoded slash", "/%252f%252fevil.com", false},
		{"triple-encoded slash", "/%25252f%25252fevil.com", false},
		{"encoded CR LF", "/%0d%0aSet-Cookie:x=1", false},
		{"raw CR LF", "/a\r\nLocation: https://evil.com", false},
		{"leading space", " //evil.com", false},
		{"leading tab", "\t//evil.com", false},
		{"tab inside", "/\t/evil.com", false},
		{"NUL", "/a\x00b", false},
		{"encoded NUL", "/a%00b", false},
		{"DEL", "/a\x7f", false},
		{"non-ASCII raw", "/ä", false},
		{"broken escape", "/%zz", false},
		{"userinfo", "https://evil.com@grafana.example.com", false},
		{"userinfo on route host", "https://grafana.example.com@evil.com/", false},
		{"userinfo with password", "https://u:p@grafana.example.com/", false},
		{"suffix attack", "https://grafana.example.com.evil.com", false},
		{"prefix attack", "https://evilgrafana.example.com/", false},
		{"plain http route host", "http://grafana.example.com/", false},
		{"unconfigured host", "https://evil.com/", false},
		{"access host absolute", "https://access.example.com/", false},
		{"wrong port", "https://grafana.example.com:8443/", false},
		{"empty port", "https://grafana.example.com:/", false},
		{"encoded host", "https://grafana%2eexample.com/", false},
		{"backslash in route URL", "https://grafana.example.com\\@evil.com/", false},
		{"route URL with encoded CRLF", "https://grafana.example.com/%0d%0a", false},
		{"route URL with space", "https://grafana.example.com/a b", false},
		{"triple slash", "https:///evil.com", false},
		{"ftp", "ftp://grafana.example.com/", false},
		{"data URI", "data:text/html,<script>alert(1)</script>", false},
		{"relative path", "dashboards", false},
		{"too long", "/" + strings.Repeat("a", maxRedirectLen), false},
	}
	g := redirectTestGateway(443)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := "/"
			if tc.ok {
				want = tc.in
			}
			if got := g.safeRedirect(tc.in); got != want {
				t.Fatalf("safeRedirect(%q) = %q, want %q", tc.in, got, want)
			}
		})
	}
}

func TestSafeRedirectPublicPort(t *testing.T) {
	g := redirectTestGateway(8443)
	for in, want := range map[string]string{
		"https://grafana.example.com:8443/x": "https://grafana.example.com:8443/x",
		"https://grafana.example.com:443/x":  "/",
		"https://grafana.example.com:9999/x": "/",
	} {
		if got := g.safeRedirect(in); got != want {
			t.Errorf("safeRedirect(%q) = %q, want %q", in, got, want)
		}
	}
	if got := g.externalURL("grafana.example.com", "/x"); got != "https://grafana.example.com:8443/x" {
		t.Errorf("externalURL = %q", got)
	}
}

func FuzzSafeRedirect(f *testing.F) {
	for _, s := range []string{
		"/", "/ok", "//evil.com", "/\\evil.com", "https:evil.com", "\\/evil.com", "/%2f%2fevil.com",
		"/%5cevil.com", " //evil.com", "\t//evil.com", "java\nscript:", "https://evil.com@grafana.example.com",
		"https://grafana.example.com.evil.com", "https://grafana.example.com/x?y=1", "/%25%32%66",
	} {
		f.Add(s)
	}
	g := redirectTestGateway(443)
	f.Fuzz(func(t *testing.T, in string) {
		got := g.safeRedirect(in)
		if got == "/" {
			return
		}
		if got != in {
			t.Fatalf("safeRedirect(%q) = %q: neither the input nor /", in, got)
		}
		if g.safeRedirect(got) != got {
			t.Fatalf("result %q does not pass its own check", got)
		}
		// Whatever passes must resolve, against the access host, to the
		// access host or a configured route host.
		base, _ := url.Parse("https://access.example.com/login")
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted %q does not parse: %v", got, err)
		}
		host := strings.ToLower(base.ResolveReference(ref).Hostname())
		if _, ok := g.hosts[host]; !ok && host != "access.example.com" {
			t.Fatalf("accepted %q leads to host %q", got, host)
		}
		if strings.ContainsAny(got, "\\\r\n\t\x00 ") {
			t.Fatalf("accepted %q contains a forbidden byte", got)
		}
	})
}

func TestRedirectHandler(t *testing.T) {
	g := redirectTestGateway(8443)
	tests := []struct {
		name, host, target string
		status             int
		location           string
	}{
		{"access host", "access.example.com", "/login?rd=x", http.StatusPermanentRedirect, "https://access.example.com:8443/login?rd=x"},
		{"route host with port", "grafana.example.com:80", "/d/1?a=b", http.StatusPermanentRedirect, "https://grafana.example.com:8443/d/1?a=b"},
		{"upper-case host", "GRAFANA.example.com", "/", http.StatusPermanentRedirect, "https://grafana.example.com:8443/"},
		{"unknown host is not redirected", "evil.com", "/", http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://x"+tc.target, nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			g.RedirectHandler().ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d", w.Code, tc.status)
			}
			if got := w.Header().Get("Location"); got != tc.location {
				t.Fatalf("Location = %q, want %q", got, tc.location)
			}
		})
	}
}
