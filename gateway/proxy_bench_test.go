package gateway

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
)

// cannedTransport answers every request with the same 1 KiB body without
// touching the network, so benchmarks measure the gateway alone.
type cannedTransport struct{ body []byte }

func (c cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}, "Content-Length": {"1024"}},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)), Request: r,
	}, nil
}

// discardWriter is a reusable ResponseWriter.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

func benchEnv(b *testing.B) (*coreEnv, *http.Request) {
	return benchEnvRisk(b, risk.Config{})
}

func benchEnvRisk(b *testing.B, rc risk.Config) (*coreEnv, *http.Request) {
	e, _ := newCoreEnvRisk(b, rc)
	e.g.hosts[coreGrafana].routes[len(e.g.hosts[coreGrafana].routes)-1].proxy.Transport = cannedTransport{body: bytes.Repeat([]byte("x"), 1024)}
	cookie := e.login(session.Record{})
	r := e.request(http.MethodGet, coreGrafana, "/dashboard/1?orgId=1", cookie, http.Header{
		"Accept": {"text/html"}, "User-Agent": {"bench"}, "Accept-Encoding": {"gzip"},
	})
	return e, r
}

// BenchmarkGatewayAllowed is the authenticated hot path: cookie → cached
// session → policy → cached assertion → header rewrite → proxy.
func BenchmarkGatewayAllowed(b *testing.B) {
	e, r := benchEnv(b)
	h := e.g.Handler()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

// BenchmarkProxyRisk is the authenticated hot path with the risk engine's
// accounting on (Usage per request, canary lookup) and off
// (risk.Config{Disabled: true}); the target is on/off ≥ 0.95 in
// throughput.
func BenchmarkProxyRisk(b *testing.B) {
	for _, bc := range []struct {
		name string
		rc   risk.Config
	}{
		{"on", risk.Config{CanaryRoutes: []string{coreGrafana + "/backup"}}},
		{"off", risk.Config{Disabled: true, CanaryRoutes: []string{coreGrafana + "/backup"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, r := benchEnvRisk(b, bc.rc)
			h := e.g.Handler()
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// BenchmarkBareReverseProxy is the floor: the same proxying without any
// authentication, for comparison with BenchmarkGatewayAllowed.
func BenchmarkBareReverseProxy(b *testing.B) {
	target, _ := url.Parse("http://127.0.0.1:1")
	p := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport: cannedTransport{body: bytes.Repeat([]byte("x"), 1024)},
	}
	r := httptest.NewRequest(http.MethodGet, "https://grafana.example.com/dashboard/1?orgId=1", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		p.ServeHTTP(w, r)
	}
}

// BenchmarkProxyRiskCalls is what risk accounting adds to an allowed
// request by itself: the canary lookup and the in-memory usage count
// (compare with BenchmarkProxyRisk's ns/op).
func BenchmarkProxyRiskCalls(b *testing.B) {
	for _, disabled := range []bool{false, true} {
		name := map[bool]string{false: "on", true: "off"}[disabled]
		b.Run(name, func(b *testing.B) {
			e, _ := newCoreEnvRisk(b, risk.Config{Disabled: disabled, CanaryRoutes: []string{coreGrafana + "/backup"}})
			var r RiskEngine = e.risk
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := r.CanaryRoute(coreGrafana, "/dashboard/1"); ok {
					b.Fatal("canary")
				}
				r.Usage(coreAlice, 1, 1024)
			}
		})
	}
}
