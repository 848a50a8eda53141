package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/portcullis/portcullis/authz/session"
)

// coreServer is the gateway serving on real loopback sockets.
type coreServer struct {
	tlsAddr, httpAddr string
	roots             *x509.CertPool
	client            *http.Client // HTTP/2-capable, trusts the self-signed cert, dials tlsAddr
}

func (e *coreEnv) start(t *testing.T) *coreServer {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.g.ServeListeners(ctx, tl, hl) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListeners: %v", err)
		}
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(e.g.SelfSignedCertificatePEM()) {
		t.Fatal("no self-signed certificate")
	}
	s := &coreServer{tlsAddr: tl.Addr().String(), httpAddr: hl.Addr().String(), roots: roots}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.tlsAddr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	s.client = &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

func (s *coreServer) get(t *testing.T, url, cookie string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", session.DefaultCookieName+"="+cookie)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestServeTLSVersions(t *testing.T) {
	e, _ := newCoreEnv(t)
	s := e.start(t)
	tests := []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.0 refused", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS 1.1 refused", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", s.tlsAddr, &tls.Config{
				RootCAs: s.roots, ServerName: coreGrafana, MinVersion: tc.min, MaxVersion: tc.max,
				NextProtos: []string{"h2", "http/1.1"},
			})
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if st.Version != tc.max || st.NegotiatedProtocol != "h2" {
				t.Fatalf("version %x, ALPN %q", st.Version, st.NegotiatedProtocol)
			}
		})
	}
	// A TLS 1.2 client offering only weak suites is refused.
	if c, err := tls.Dial("tcp", s.tlsAddr, &tls.Config{
		RootCAs: s.roots, ServerName: coreGrafana, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
	}); err == nil {
		c.Close()
		t.Fatal("CBC-only client accepted")
	}
	// The certificate covers every configured name plus localhost.
	for _, name := range []string{coreAccess, coreGrafana, coreStream, "localhost"} {
		c, err := tls.Dial("tcp", s.tlsAddr, &tls.Config{RootCAs: s.roots, ServerName: name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c.Close()
	}
}

func TestServeHTTP2AndRedirect(t *testing.T) {
	e, _ := newCoreEnv(t)
	s := e.start(t)
	cookie := e.login(session.Record{})
	resp := s.get(t, "https://grafana.example.com/d/1", cookie)
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("status %d over %s", resp.StatusCode, resp.Proto)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS")
	}
	if resp := s.get(t, "https://grafana.example.com/", ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("unauthenticated: %d", resp.StatusCode)
	}

	// Plain HTTP only redirects, to the same host, path and query.
	plain := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.httpAddr+"/d/1?x=y", nil)
	req.Host = coreGrafana
	hr, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusPermanentRedirect || hr.Header.Get("Location") != "https://grafana.example.com/d/1?x=y" {
		t.Fatalf("plain HTTP: %d %q", hr.StatusCode, hr.Header.Get("Location"))
	}
}

// TestServeRawHeaders sends identity headers byte for byte over a real
// socket (underscore forms as a client would write them) and checks what
// the upstream got.
func TestServeRawHeaders(t *testing.T) {
	e, _ := newCoreEnv(t)
	s := e.start(t)
	cookie := e.login(session.Record{})
	c, err := tls.Dial("tcp", s.tlsAddr, &tls.Config{RootCAs: s.roots, ServerName: coreGrafana, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw := "GET /x HTTP/1.1\r\nHost: grafana.example.com\r\n" +
		"x_forwarded_user: root\r\nremote_user: root\r\nREMOTE-USER: root\r\nx-portcullis-user: root\r\n" +
		"X_PORTCULLIS_JWT_ASSERTION: forged\r\nx-auth-request-email: root@example.com\r\n" +
		"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n" +
		"Cookie: " + session.DefaultCookieName + "=" + cookie + "\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for _, bad := range []string{"root@example.com", "forged", `"root"`, "10.0.0."} {
		if strings.Contains(string(body), bad) {
			t.Errorf("upstream saw %s: %s", bad, body)
		}
	}
	if !strings.Contains(string(body), `"X-Forwarded-For":["127.0.0.1"]`) {
		t.Errorf("X-Forwarded-For is not the socket peer: %s", body)
	}
}

func TestServeWebSocket(t *testing.T) {
	e, _ := newCoreEnv(t)
	s := e.start(t)
	d := websocket.Dialer{
		TLSClientConfig: &tls.Config{RootCAs: s.roots},
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.tlsAddr)
		},
		HandshakeTimeout: 10 * time.Second,
	}
	hdr := http.Header{"Cookie": {session.DefaultCookieName + "=" + e.login(session.Record{})}}
	conn, resp, err := d.Dial("wss://grafana.example.com/ws", hdr)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, msg := range []string{"hello", "again"} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if want := "echo https://idp.example.com#alice: " + msg; string(got) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	// Without a session the upgrade is refused before reaching the upstream.
	_, resp, err = d.Dial("wss://grafana.example.com/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("unauthenticated upgrade: %v %v", err, resp)
	}
}

func TestServeStreamsFlushImmediately(t *testing.T) {
	tests := []struct {
		name, url string
	}{
		{"server-sent events (detected by content type)", "https://grafana.example.com/sse"},
		{"flush_interval -1 route", "https://stream.example.com/stream"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, release := newCoreEnv(t)
			s := e.start(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.url, nil)
			req.Header.Set("Cookie", session.DefaultCookieName+"="+e.login(session.Record{}))
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			// The upstream holds the response open until we have read the
			// first event: this read only returns if the gateway flushed.
			line, err := br.ReadString('\n')
			if err != nil || line != "data: first\n" {
				t.Fatalf("first line %q, %v", line, err)
			}
			close(release)
			rest, err := io.ReadAll(br)
			if err != nil || !strings.Contains(string(rest), "data: second") {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

func TestFilesModeReloads(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &coreClock{now: now}
	write := func(names ...string) *x509.Certificate {
		t.Helper()
		sub := t.TempDir()
		c, err := selfSignedCert(names, sub, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{selfSignedCertName, selfSignedKeyName} {
			b, err := os.ReadFile(filepath.Join(sub, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := writeFileAtomic(filepath.Join(dir, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return c.Leaf
	}
	first := write("one.example.com")
	certFile, keyFile := filepath.Join(dir, selfSignedCertName), filepath.Join(dir, selfSignedKeyName)
	fc, err := newFileCert(certFile, keyFile, clock.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		c, err := fc.get(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	if serial() != first.SerialNumber.String() {
		t.Fatal("initial certificate not served")
	}
	second := write("two.example.com")
	// Bump mtimes explicitly: a fast file system may keep the same second.
	future := time.Now().Add(time.Hour)
	_ = os.Chtimes(certFile, future, future)
	if serial() != first.SerialNumber.String() {
		t.Fatal("reloaded before the check interval")
	}
	clock.Advance(fileCertCheck)
	if serial() != second.SerialNumber.String() {
		t.Fatal("renewed certificate not picked up")
	}
	// A broken renewal keeps the last good certificate.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := future.Add(time.Hour)
	_ = os.Chtimes(certFile, later, later)
	clock.Advance(fileCertCheck)
	if serial() != second.SerialNumber.String() {
		t.Fatal("broken files replaced the certificate")
	}
	if _, err := newFileCert(filepath.Join(dir, "missing"), keyFile, clock.Now, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestSelfSignedPersisted(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a, err := selfSignedCert([]string{"access.localhost", "grafana.localhost"}, dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, selfSignedKeyName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	b, err := selfSignedCert([]string{"grafana.localhost"}, dir, now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Certificate[0], b.Certificate[0]) {
		t.Fatal("stored certificate not reused")
	}
	c, err := selfSignedCert([]string{"new.localhost"}, dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Certificate[0], c.Certificate[0]) || c.Leaf.VerifyHostname("new.localhost") != nil {
		t.Fatal("certificate not regenerated for a new name")
	}
	d, err := selfSignedCert([]string{"new.localhost"}, dir, now.Add(340*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(c.Certificate[0], d.Certificate[0]) {
		t.Fatal("certificate close to expiry not renewed")
	}
}

func TestACMEModeConfiguration(t *testing.T) {
	e, _ := newCoreEnv(t)
	cfg := e.g.cfg
	cfg.TLS = TLSConfig{Mode: ModeACME, ACME: ACMEConfig{
		StoragePath: t.TempDir(), DirectoryURL: "https://127.0.0.1:1/dir", Email: "ops@example.com",
		AltHTTPPort: 5002, AltTLSALPNPort: 5001,
	}}
	g, err := New(cfg, e.g.deps)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tc, err := g.TLSConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tc.MinVersion != tls.VersionTLS12 || tc.GetCertificate == nil || !slices.Contains(tc.NextProtos, acmeTLSALPN) ||
		!slices.Contains(tc.NextProtos, "h2") {
		t.Fatalf("TLS config: %+v", tc)
	}
	iss := g.acme.issuer
	if iss.CA != "https://127.0.0.1:1/dir" || iss.Email != "ops@example.com" || !iss.Agreed ||
		iss.AltHTTPPort != 5002 || iss.AltTLSALPNPort != 5001 {
		t.Fatalf("issuer: %+v", iss)
	}
	decide := g.acme.magic.OnDemand.DecisionFunc
	for _, name := range []string{coreAccess, coreGrafana, "GRAFANA.example.com"} {
		if err := decide(context.Background(), name); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	for _, name := range []string{"evil.com", "x.grafana.example.com", "", "127.0.0.1"} {
		if err := decide(context.Background(), name); err == nil {
			t.Errorf("on-demand certificate allowed for %q", name)
		}
	}
	// With no challenge pending, plain HTTP still just redirects.
	r := httptest.NewRequest(http.MethodGet, "http://grafana.example.com/.well-known/acme-challenge/token", nil)
	rec := httptest.NewRecorder()
	g.RedirectHandler().ServeHTTP(rec, r)
	if rec.Code != http.StatusPermanentRedirect {
		t.Fatalf("challenge path without a challenge: %d", rec.Code)
	}

	bad := cfg
	bad.TLS.ACME.CARootFile = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := New(bad, e.g.deps); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing CA root file: %v", err)
	}
}
