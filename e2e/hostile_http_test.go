package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// raw sends a hand-written HTTP/1.1 request to host (SNI and Host) on the
// gateway with erin's session cookie; extra are header lines.
func (h *hostile) raw(t *testing.T, host, target string, extra ...string) *harness.Response {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nCookie: %s=%s\r\n", target, hostPort(host, h.p.Port), sessionName, h.cookie)
	for _, x := range extra {
		b.WriteString(x + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return harness.RawHTTPS(t, h.p.Addr, host, h.s.ca.ClientTLS(), b.String())
}

// testIdentityHeaders: identity headers sent by the client, in every
// spelling (dashes, underscores, case), never reach the upstream; only
// the gateway's own X-Portcullis-* headers do.
func testIdentityHeaders(t *testing.T, h *hostile) {
	forged := []string{
		"X-Forwarded-User: evil", "X_Forwarded_User: evil", "x-forwarded-user: evil",
		"Remote-User: evil", "Remote_User: evil", "REMOTE-USER: evil",
		"X-Portcullis-User: evil", "X_Portcullis_User: evil", "x-portcullis-user: evil",
		"X-Portcullis-Email: evil@evil.example", "X-Portcullis-Groups: admins",
		"X-Portcullis-Jwt-Assertion: forged.jwt.token",
		"X-Auth-Request-User: evil", "X-Auth-Request-Email: evil@evil.example", "X_Auth_Request_Groups: admins",
		"X-Forwarded-Email: evil@evil.example", "X-Forwarded-Groups: admins", "X_Forwarded_Groups: admins",
		"X-Remote-User: evil", "X-WebAuth-User: evil", "X-Real-IP: 6.6.6.6", "X_Real_IP: 6.6.6.6",
	}
	check := func(what string, e harness.Echo) {
		t.Helper()
		for name, vals := range e.Headers {
			for _, v := range vals {
				if strings.Contains(v, "evil") || strings.Contains(v, "forged") || strings.Contains(v, "admins") || strings.Contains(v, "6.6.6.6") {
					t.Errorf("%s: the upstream received the client's %s: %q", what, name, v)
				}
			}
		}
		if got := e.Header("X-Portcullis-User"); len(got) != 1 || got[0] != h.s.userID("erin") {
			t.Errorf("%s: X-Portcullis-User = %q, want only erin's ID", what, got)
		}
	}
	r := h.raw(t, appHost, "/inject-h1", forged...)
	if r.StatusCode != 200 {
		t.Fatalf("HTTP/1.1 request with forged headers: %d", r.StatusCode)
	}
	check("HTTP/1.1", echo(t, r.Body))

	// The same over HTTP/2 (header names arrive lower case).
	c := h.s.client(t)
	r = getWithCookie(c, h.p.URL(appHost, "/inject-h2"), h.cookie, forged...)
	if r.StatusCode != 200 || r.Proto != "HTTP/2.0" {
		t.Fatalf("HTTP/2 request with forged headers: %d over %s", r.StatusCode, r.Proto)
	}
	check("HTTP/2", echo(t, r.Body))
	for _, p := range []string{"/inject-h1", "/inject-h2"} {
		harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, Decision: audit.Allow, UserID: h.s.userID("erin"), PathContains: p})
	}
}

// testForwardedFor: a client that is not a trusted proxy cannot choose its
// address with X-Forwarded-For (or Forwarded, X-Real-IP…): the upstream
// and the audit trail see the socket peer, and IP allowlists use it.
func testForwardedFor(t *testing.T, h *hostile) {
	spoof := []string{"X-Forwarded-For: 10.1.2.3", "Forwarded: for=10.1.2.3", "X-Real-IP: 10.1.2.3", "True-Client-IP: 10.1.2.3", "X-Client-IP: 10.1.2.3"}
	c := h.s.client(t)
	r := getWithCookie(c, h.p.URL(appHost, "/xff-spoof"), h.cookie, spoof...)
	if r.StatusCode != 200 {
		t.Fatalf("spoofed request: %d", r.StatusCode)
	}
	e := echo(t, r.Body)
	if got := e.Header("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("upstream X-Forwarded-For = %q, want [127.0.0.1]", got)
	}
	for _, name := range []string{"Forwarded", "X-Real-Ip", "True-Client-Ip", "X-Client-Ip"} {
		if got := e.Header(name); len(got) != 0 {
			t.Errorf("upstream received the client's %s: %q", name, got)
		}
	}
	ev := harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, PathContains: "/xff-spoof"})
	if ev.SourceIP != "127.0.0.1" {
		t.Errorf("audit source_ip = %q, want 127.0.0.1", ev.SourceIP)
	}
	// intranet admits only 10.0.0.0/8: claiming such an address does not help.
	r = getWithCookie(c, h.p.URL(intranetHost, "/xff-intranet"), h.cookie, spoof...)
	if ev := h.wantDenied(t, "intranet with a spoofed 10.x address", r, http.StatusForbidden, "source-ip-not-allowed"); ev.SourceIP != "127.0.0.1" {
		t.Errorf("audit source_ip = %q, want 127.0.0.1", ev.SourceIP)
	}
}

// testMappedAddresses: behind the trusted proxy (127.0.0.2), an
// IPv4-mapped IPv6 client address is the IPv4 address for the IPv4
// allowlist of intranet (10.0.0.0/8): ::ffff:10.1.2.3 is allowed and
// recorded as 10.1.2.3, ::ffff:192.0.2.7 is refused. A client cannot
// prepend a fake hop to the left of what the proxy appended.
func testMappedAddresses(t *testing.T, h *hostile) {
	proxy := harness.NewClientFrom(t, h.s.ca, "127.0.0.2")
	r := getWithCookie(proxy, h.p.URL(intranetHost, "/mapped-in"), h.cookie, "X-Forwarded-For: ::ffff:10.1.2.3")
	if r.StatusCode != 200 {
		t.Fatalf("::ffff:10.1.2.3 via the trusted proxy: %d, want 200", r.StatusCode)
	}
	if got := echo(t, r.Body).Header("X-Forwarded-For"); len(got) != 1 || got[0] != "10.1.2.3" {
		t.Errorf("upstream X-Forwarded-For = %q, want [10.1.2.3]", got)
	}
	harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, Decision: audit.Allow, SourceIP: "10.1.2.3", PathContains: "/mapped-in"})

	for _, tc := range []struct{ xff, ip string }{
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"10.9.9.9, ::ffff:192.0.2.8", "192.0.2.8"},
	} {
		r := getWithCookie(proxy, h.p.URL(intranetHost, "/mapped-out"), h.cookie, "X-Forwarded-For: "+tc.xff)
		if ev := h.wantDenied(t, "X-Forwarded-For "+tc.xff, r, http.StatusForbidden, "source-ip-not-allowed"); ev.SourceIP != tc.ip {
			t.Errorf("X-Forwarded-For %s: audit source_ip = %q, want %s", tc.xff, ev.SourceIP, tc.ip)
		}
	}
	if got := h.s.up.Received("/mapped-out"); len(got) != 0 {
		t.Errorf("the upstream received %d refused requests", len(got))
	}
}

// testPathTricks: the policy denies /admin on app; no spelling of it gets
// through. Every attempt is refused with 403 (normalised to /admin and
// denied) or 400 (ambiguous encoding), and audited.
func testPathTricks(t *testing.T, h *hostile) {
	for _, target := range []string{
		"/admin", "/admin/users", "/public/../admin", "/public/../admin/users", "/%2e%2e/admin",
		"/public/%2e%2e/admin", "/public/%2E%2E/admin", "/.%2e/admin", "//admin", "///admin/users",
		"/admin;x", "/admin;/x", "/public/..;/admin", "/./admin", "/admin/", "/admin/.", "/admin/x/..",
		"/admin%2fx", "/admin%2Fx", "/public%2f..%2fadmin", "/public/..%2fadmin", "/%61dmin", "/admin%00",
		"/admin%5cx", "/public/%252e%252e/admin",
	} {
		r := h.raw(t, appHost, target)
		switch r.StatusCode {
		case http.StatusForbidden:
			ev := h.auditForRef(t, r.Body)
			if ev.Type != audit.TypeDecision || ev.Reason != "deny-rule" || !strings.HasPrefix(ev.Path, "/admin") {
				t.Errorf("%s: 403 audited as %+v, want a deny-rule decision on /admin", target, ev)
			}
		case http.StatusBadRequest:
			if ev := h.auditForRef(t, r.Body); ev.Reason != "invalid-path" || ev.Decision != audit.Deny {
				t.Errorf("%s: 400 audited as %+v, want invalid-path", target, ev)
			}
		default:
			t.Errorf("%s: got %d, want 403 or 400", target, r.StatusCode)
		}
	}
	for _, e := range h.s.up.Requests() {
		if strings.HasPrefix(e.Path, "/admin") || strings.Contains(e.Path, "/../") {
			t.Errorf("the upstream received %q (raw %q)", e.Path, e.RawPath)
		}
	}
	// Control: an allowed path is normalised before it is sent upstream.
	if r := h.raw(t, appHost, "/public/../norm-ok"); r.StatusCode != 200 || echo(t, r.Body).Path != "/norm-ok" {
		t.Errorf("/public/../norm-ok: %d, upstream path %q; want 200 and /norm-ok", r.StatusCode, echo(t, r.Body).Path)
	}
}

var maxAge = regexp.MustCompile(`max-age=(\d+)`)

// testTLSAndHSTS: TLS 1.0 and 1.1 handshakes are refused, 1.2 and 1.3
// work with HTTP/2; every HTTPS response — pages, errors, redirects,
// proxied answers — carries HSTS of at least a year; plain HTTP only
// redirects configured hosts. (TLS refusals happen before any request
// exists, so there is no audit event for them.)
func testTLSAndHSTS(t *testing.T, h *hostile) {
	for _, v := range []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		cfg := h.s.ca.ClientTLS()
		cfg.ServerName, cfg.MinVersion, cfg.MaxVersion = appHost, v.min, v.max
		cfg.NextProtos = []string{"h2", "http/1.1"}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", h.p.Addr, cfg)
		switch {
		case v.ok && err != nil:
			t.Errorf("%s handshake failed: %v", v.name, err)
		case v.ok:
			st := conn.ConnectionState()
			if st.Version != v.max || st.NegotiatedProtocol != "h2" {
				t.Errorf("%s: negotiated version %x, ALPN %q", v.name, st.Version, st.NegotiatedProtocol)
			}
			conn.Close()
		case err == nil:
			conn.Close()
			t.Errorf("%s handshake accepted", v.name)
		case !strings.Contains(err.Error(), "protocol version"):
			t.Errorf("%s refused, but not for its version: %v", v.name, err)
		}
	}

	c := h.s.client(t)
	post, _ := http.NewRequest(http.MethodPost, h.p.AccessURL+"/healthz", nil)
	responses := map[string]*harness.Response{
		"jwks":               c.Get(h.p.URL(appHost, "/.well-known/portcullis/jwks.json")),
		"healthz":            c.Get(h.p.AccessURL + "/healthz"),
		"login redirect":     c.Get(h.p.AccessURL + "/login"),
		"access 404":         c.Get(h.p.AccessURL + "/no-such-page"),
		"405":                c.Do(post),
		"route 302":          c.Get(h.p.URL(appHost, "/hsts-anon")),
		"route 401":          c.Get(h.p.URL(appHost, "/hsts-anon"), "Accept: application/json"),
		"proxied 200":        getWithCookie(c, h.p.URL(appHost, "/hsts-ok"), h.cookie),
		"policy 403":         getWithCookie(c, h.p.URL(appHost, "/admin"), h.cookie),
		"bad path 400":       getWithCookie(c, h.p.URL(appHost, "/a%2fb"), h.cookie),
		"bad hop 403":        c.Get(h.p.URL(appHost, "/.portcullis/auth?code=forged")),
		"unknown host":       harness.RawHTTPS(t, h.p.Addr, appHost, h.s.ca.ClientTLS(), "GET / HTTP/1.1\r\nHost: nope.localhost\r\nConnection: close\r\n\r\n"),
		"upstream max-age=0": getWithCookie(c, h.p.URL(appHost, "/hsts-upstream?hsts=weak"), h.cookie),
	}
	for name, r := range responses {
		hsts := r.Header.Values("Strict-Transport-Security")
		m := maxAge.FindStringSubmatch(strings.Join(hsts, ","))
		if len(hsts) != 1 || m == nil {
			t.Errorf("%s (%d): HSTS headers %q, want exactly one", name, r.StatusCode, hsts)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n < 31536000 {
			t.Errorf("%s: HSTS max-age %d < one year", name, n)
		}
	}
	if r := responses["upstream max-age=0"]; r.StatusCode != http.StatusOK || len(echo(t, r.Body).Path) == 0 {
		t.Errorf("upstream with its own HSTS: %d, want the proxied 200", r.StatusCode)
	}
	if r := responses["unknown host"]; r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown host: %d, want 404", r.StatusCode)
	} else {
		h.auditForRef(t, r.Body)
	}
	if r := responses["bad hop 403"]; r.StatusCode != http.StatusForbidden {
		t.Errorf("forged hop code: %d, want 403", r.StatusCode)
	} else if ev := h.auditForRef(t, r.Body); ev.Reason != "invalid-hop-code" {
		t.Errorf("forged hop code audited as %+v", ev)
	}

	// Plain HTTP: a redirect to HTTPS for configured hosts, nothing else.
	plain := "http://" + hostPort(appHost, h.spec.HTTPPort)
	if r := c.Get(plain + "/x?y=1"); r.StatusCode != http.StatusPermanentRedirect || r.Header.Get("Location") != h.p.URL(appHost, "/x?y=1") {
		t.Errorf("plain HTTP: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := c.Get("http://" + hostPort("evil.localhost", h.spec.HTTPPort) + "/"); r.StatusCode != http.StatusNotFound {
		t.Errorf("plain HTTP for an unknown host: %d, want 404", r.StatusCode)
	}
}
