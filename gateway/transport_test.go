package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// spyTransport stands for the fallback http.Transport: it counts what it
// is given and answers without the network.
type spyTransport struct{ n atomic.Int32 }

func (s *spyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.n.Add(1)
	return &http.Response{StatusCode: http.StatusTeapot, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func newLean(t *testing.T) (*leanTransport, *spyTransport, *coreClock) {
	t.Helper()
	if !leanCapable {
		t.Skip("no non-blocking peek on this platform: every request uses http.Transport")
	}
	spy := &spyTransport{}
	clock := &coreClock{now: time.Unix(1_700_000_000, 0)}
	d := &net.Dialer{Timeout: 10 * time.Second}
	lt := &leanTransport{fallback: spy, dial: d.DialContext, now: clock.Now,
		headerTimeout: time.Minute, idleTimeout: 90 * time.Second, maxIdle: 16, maxConns: 64}
	t.Cleanup(lt.CloseIdleConnections)
	return lt, spy, clock
}

// upstream is a TCP server that counts the connections it accepted and
// runs serve on each (closing it when serve returns).
type upstream struct {
	addr     string
	accepted atomic.Int32
}

func rawUpstream(t *testing.T, serve func(n int32, c net.Conn, br *bufio.Reader)) *upstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: l.Addr().String()}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n := u.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(n, c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return u
}

// cannedUpstream answers every request on a connection with resp,
// closing the connection after each answer when closeAfter.
func cannedUpstream(t *testing.T, resp string, closeAfter bool) *upstream {
	return rawUpstream(t, func(_ int32, c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, resp); err != nil || closeAfter {
				return
			}
		}
	})
}

// httpUpstream is a net/http server counting its connections.
func httpUpstream(t *testing.T, h http.Handler) *upstream {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: l.Addr().String()}
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.accepted.Add(1)
		}
	}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return u
}

func leanRequest(t *testing.T, ctx context.Context, method, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// fetch does what ReverseProxy does with a response: read it all, close.
func fetch(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string, error) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

func TestLeanResponses(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	tests := []struct {
		name       string
		method     string
		resp       string
		closeAfter bool   // the upstream closes after each answer
		status     int    // default 200
		body       string // of each response
		conns      int32  // accepted for three requests in a row
		n1xx       int    // informational responses seen by the trace, per request
		trailer    string // X-T trailer
	}{
		{name: "keep-alive reuse", resp: ok, body: "ok", conns: 1},
		{name: "content-length zero", resp: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", conns: 1},
		{name: "chunked with trailer", resp: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" +
			"3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: done\r\n\r\n", body: "abcde", conns: 1, trailer: "done"},
		{name: "HEAD", method: http.MethodHead, resp: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", conns: 1},
		{name: "304 without body", resp: "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", status: 304, conns: 1},
		{name: "204 without body", resp: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, conns: 1},
		{name: "early hints forwarded", resp: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok, body: "ok", conns: 1, n1xx: 1},
		{name: "100 continue skipped", resp: "HTTP/1.1 100 Continue\r\n\r\n" + ok, body: "ok", conns: 1, n1xx: 1},
		{name: "upstream Connection close", resp: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", closeAfter: true, body: "ok", conns: 3},
		{name: "upstream says close but keeps it open", resp: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", body: "ok", conns: 3},
		{name: "HTTP/1.0", resp: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", body: "ok", conns: 3},
		{name: "HTTP/1.0 keep-alive", resp: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", body: "ok", conns: 3},
		{name: "body until close", resp: "HTTP/1.1 200 OK\r\n\r\nuntil-close", closeAfter: true, body: "until-close", conns: 3},
		// A second response in the same segment: never read as the next
		// request's answer, the connection is not reused.
		{name: "bytes after the body", resp: ok + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL", body: "ok", conns: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt, spy, _ := newLean(t)
			up := cannedUpstream(t, tc.resp, tc.closeAfter)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			status := tc.status
			if status == 0 {
				status = http.StatusOK
			}
			for i := range 3 {
				var n1xx int
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
					Got1xxResponse: func(int, textproto.MIMEHeader) error { n1xx++; return nil },
				})
				resp, body, err := fetch(t, lt, leanRequest(t, ctx, method, "http://"+up.addr+"/x?y=1"))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if resp.StatusCode != status || body != tc.body || n1xx != tc.n1xx {
					t.Fatalf("request %d: status %d body %q 1xx %d, want %d %q %d", i, resp.StatusCode, body, n1xx, status, tc.body, tc.n1xx)
				}
				if got := resp.Trailer.Get("X-T"); got != tc.trailer {
					t.Fatalf("trailer %q, want %q", got, tc.trailer)
				}
			}
			if n := spy.n.Load(); n != 0 {
				t.Fatalf("%d requests went to the fallback", n)
			}
			assertConns(t, lt, up, tc.conns)
		})
	}
}

// assertConns checks how many connections the upstream accepted, and the
// pool's accounting.
func assertConns(t *testing.T, lt *leanTransport, up *upstream, want int32) {
	t.Helper()
	if got := up.accepted.Load(); got != want {
		t.Fatalf("upstream accepted %d connections, want %d", got, want)
	}
	assertPoolAccounting(t, lt, up.addr)
}

// assertPoolAccounting checks that, with no request in flight, every open
// connection is an idle one (nothing leaked, nothing counted twice).
func assertPoolAccounting(t *testing.T, lt *leanTransport, host string) {
	t.Helper()
	if open, idle := poolCounts(lt, host); open != idle {
		t.Fatalf("pool: %d open, %d idle; want equal with no request in flight", open, idle)
	}
}

// poolCounts returns the open and idle connections to host.
func poolCounts(lt *leanTransport, host string) (open, idle int) {
	p := lt.pool(&url.URL{Host: host})
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open, len(p.idle)
}

func TestLeanUpstreamFaults(t *testing.T) {
	tests := []struct {
		name    string
		resp    string
		want    error // nil: any error
		inBody  bool  // the error comes from reading the body
		retries bool  // a fresh connection is tried (accepted 2)
	}{
		{name: "101 without upgrade", resp: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", want: errSwitch},
		{name: "endless 1xx", resp: strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", max1xxResponses+1), want: errNo1xxEnd},
		{name: "head too large", resp: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxResponseHeaderBytes) + "\r\n\r\n", want: errHeadTooLarge},
		{name: "malformed status line", resp: "HTTP/1.1 abc\r\n\r\n"},
		{name: "not HTTP", resp: "SSH-2.0-OpenSSH\r\n\r\n"},
		{name: "conflicting lengths", resp: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"},
		{name: "short body", resp: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", inBody: true, want: io.ErrUnexpectedEOF},
		// A connection dialled for this request is not retried: only a
		// pooled one may have been closed while idle.
		{name: "fresh connection closed without answer", resp: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt, _, _ := newLean(t)
			up := cannedUpstream(t, tc.resp, true)
			resp, err := lt.RoundTrip(leanRequest(t, context.Background(), http.MethodGet, "http://"+up.addr+"/"))
			if tc.inBody {
				if err != nil {
					t.Fatalf("RoundTrip: %v", err)
				}
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			} else if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip succeeded with status %d", resp.StatusCode)
			}
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			assertConns(t, lt, up, 1)
			if p := lt.pool(&url.URL{Host: up.addr}); len(p.idle) != 0 {
				t.Fatal("a failed connection went back to the pool")
			}
		})
	}
}

// A pooled connection the upstream closed as we reused it (it read the
// request, then hung up without a byte) is retried once on a fresh one.
func TestLeanStaleConnectionRetried(t *testing.T) {
	lt, _, _ := newLean(t)
	up := rawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if n == 1 && i == 1 {
				return // the first connection dies on its second request
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", n)
		}
	})
	for i, want := range []string{"1", "2", "2"} {
		_, body, err := fetch(t, lt, leanRequest(t, context.Background(), http.MethodGet, "http://"+up.addr+"/"))
		if err != nil || body != want {
			t.Fatalf("request %d: %q, %v; want %q", i, body, err, want)
		}
	}
	assertConns(t, lt, up, 2)
}

// The upstream closes an idle connection, or writes to it unasked, while
// it sits in the pool: the next request gets a fresh connection and the
// right answer.
func TestLeanIdleConnectionSpoiled(t *testing.T) {
	tests := []struct {
		name  string
		spoil func(c net.Conn)
	}{
		{"closed by upstream", func(c net.Conn) { c.Close() }},
		{"unsolicited response", func(c net.Conn) { io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt, _, _ := newLean(t)
			spoiled := make(chan struct{})
			up := rawUpstream(t, func(n int32, c net.Conn, br *bufio.Reader) {
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d", n)
					if n == 1 {
						tc.spoil(c)
						close(spoiled)
						io.Copy(io.Discard, br) // hold the connection until we close it
						return
					}
				}
			})
			target := "http://" + up.addr + "/"
			if _, body, err := fetch(t, lt, leanRequest(t, context.Background(), http.MethodGet, target)); err != nil || body != "1" {
				t.Fatalf("first request: %q, %v", body, err)
			}
			<-spoiled
			// Wait until the socket shows it (loopback delivery is not
			// instantaneous; alive only peeks, it consumes nothing) — or
			// the connection never went back to the pool because the
			// stray bytes arrived with the response.
			p := lt.pool(&url.URL{Host: up.addr})
			waitUntil(t, "the pooled connection to look spoiled", func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				return len(p.idle) == 0 || !p.idle[0].alive()
			})
			_, body, err := fetch(t, lt, leanRequest(t, context.Background(), http.MethodGet, target))
			if err != nil || body != "2" {
				t.Fatalf("second request: %q, %v; want the fresh connection's answer", body, err)
			}
			assertConns(t, lt, up, 2)
		})
	}
}

// waitUntil polls cond, failing after an absurdly long time (a hang
// guard, not a timing assertion).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A client that goes away mid-body (context cancelled, or the body closed
// early) costs the connection: it is never reused with unread bytes.
func TestLeanAbandonedBody(t *testing.T) {
	tests := []struct {
		name    string
		abandon func(cancel context.CancelFunc, body io.ReadCloser) error
		want    error
	}{
		{"context cancelled", func(cancel context.CancelFunc, body io.ReadCloser) error {
			cancel()
			_, err := body.Read(make([]byte, 10))
			body.Close()
			return err
		}, context.Canceled},
		{"closed before EOF", func(_ context.CancelFunc, body io.ReadCloser) error {
			return body.Close()
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt, _, _ := newLean(t)
			release := make(chan struct{})
			defer close(release)
			up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/fast" {
					io.WriteString(w, "fast")
					return
				}
				io.WriteString(w, "part1")
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err := lt.RoundTrip(leanRequest(t, ctx, http.MethodGet, "http://"+up.addr+"/slow"))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "part1" {
				t.Fatalf("first part %q, %v", buf, err)
			}
			if err := tc.abandon(cancel, resp.Body); !errors.Is(err, tc.want) {
				t.Fatalf("abandon: %v, want %v", err, tc.want)
			}
			if _, body, err := fetch(t, lt, leanRequest(t, context.Background(), http.MethodGet, "http://"+up.addr+"/fast")); err != nil || body != "fast" {
				t.Fatalf("next request: %q, %v", body, err)
			}
			assertConns(t, lt, up, 2)
		})
	}
}

// An upstream that never answers: the header timeout or the request's
// context ends the wait, and the connection is dropped.
func TestLeanUpstreamSilent(t *testing.T) {
	tests := []struct {
		name          string
		headerTimeout time.Duration
		cancel        bool
		check         func(error) bool
	}{
		{"header timeout", 20 * time.Millisecond, false, func(err error) bool {
			var ne net.Error
			return errors.As(err, &ne) && ne.Timeout()
		}},
		{"context cancelled", time.Minute, true, func(err error) bool { return errors.Is(err, context.Canceled) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt, _, _ := newLean(t)
			lt.headerTimeout = tc.headerTimeout
			got := make(chan struct{}, 1)
			up := rawUpstream(t, func(_ int32, c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				got <- struct{}{}
				io.Copy(io.Discard, br) // never answers
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				go func() { <-got; cancel() }()
			}
			_, err := lt.RoundTrip(leanRequest(t, ctx, http.MethodGet, "http://"+up.addr+"/"))
			if err == nil || !tc.check(err) {
				t.Fatalf("error %v", err)
			}
			assertPoolAccounting(t, lt, up.addr)
			if p := lt.pool(&url.URL{Host: up.addr}); p.open != 0 {
				t.Fatalf("%d connections still open", p.open)
			}
		})
	}
	t.Run("context done before start", func(t *testing.T) {
		lt, _, _ := newLean(t)
		up := cannedUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := lt.RoundTrip(leanRequest(t, ctx, http.MethodGet, "http://"+up.addr+"/")); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
		if n := up.accepted.Load(); n != 0 {
			t.Fatalf("dialled %d connections for a cancelled request", n)
		}
	})
}

// Everything the lean path does not handle goes to the fallback
// http.Transport untouched; the common GET does not.
func TestLeanFallsBack(t *testing.T) {
	up := cannedUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	base := "http://" + up.addr + "/"
	tests := []struct {
		name     string
		req      func() *http.Request
		fallback bool
	}{
		{"GET", func() *http.Request { return leanRequest(t, context.Background(), http.MethodGet, base) }, false},
		{"HEAD", func() *http.Request { return leanRequest(t, context.Background(), http.MethodHead, base) }, false},
		{"POST with body", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, base, strings.NewReader("a=1"))
			return r
		}, true},
		{"POST without body", func() *http.Request { return leanRequest(t, context.Background(), http.MethodPost, base) }, true},
		{"OPTIONS", func() *http.Request { return leanRequest(t, context.Background(), http.MethodOptions, base) }, true},
		{"GET with body", func() *http.Request {
			r, _ := http.NewRequest(http.MethodGet, base, bytes.NewReader([]byte("x")))
			return r
		}, true},
		{"GET chunked", func() *http.Request {
			r := leanRequest(t, context.Background(), http.MethodGet, base)
			r.TransferEncoding = []string{"chunked"}
			return r
		}, true},
		{"WebSocket upgrade", func() *http.Request {
			r := leanRequest(t, context.Background(), http.MethodGet, base)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			return r
		}, true},
		{"Expect", func() *http.Request {
			r := leanRequest(t, context.Background(), http.MethodGet, base)
			r.Header.Set("Expect", "100-continue")
			return r
		}, true},
		{"wants close", func() *http.Request {
			r := leanRequest(t, context.Background(), http.MethodGet, base)
			r.Close = true
			return r
		}, true},
		{"https upstream", func() *http.Request {
			return leanRequest(t, context.Background(), http.MethodGet, "https://"+up.addr+"/")
		}, true},
		{"unroutable scheme", func() *http.Request {
			r := leanRequest(t, context.Background(), http.MethodGet, base)
			r.URL.Scheme = "invalid"
			return r
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt, spy, _ := newLean(t)
			resp, err := lt.RoundTrip(tc.req())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := spy.n.Load() == 1; got != tc.fallback || (resp.StatusCode == http.StatusTeapot) != tc.fallback {
				t.Fatalf("fallback used: %v (status %d), want %v", got, resp.StatusCode, tc.fallback)
			}
		})
	}
}

// Header names and values net/http would refuse to send are refused here
// too (http.Transport checks them; Request.Write alone does not).
func TestLeanRefusesInvalidHeaders(t *testing.T) {
	up := cannedUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
	tests := []struct{ name, key, value string }{
		{"space in name", "Bad Name", "v"},
		{"colon in name", "Bad:Name", "v"},
		{"newline in value", "X-Ok", "a\r\nX-Injected: 1"},
		{"NUL in value", "X-Ok", "a\x00b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lt, _, _ := newLean(t)
			r := leanRequest(t, context.Background(), http.MethodGet, "http://"+up.addr+"/")
			r.Header[tc.key] = []string{tc.value}
			if resp, err := lt.RoundTrip(r); err == nil {
				resp.Body.Close()
				t.Fatal("request with an invalid header was sent")
			}
		})
	}
	if n := up.accepted.Load(); n != 0 {
		t.Fatalf("upstream saw %d connections", n)
	}
}

func TestLeanIdleExpiry(t *testing.T) {
	lt, _, clock := newLean(t)
	up := cannedUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	target := "http://" + up.addr + "/"
	get := func() {
		t.Helper()
		if _, body, err := fetch(t, lt, leanRequest(t, context.Background(), http.MethodGet, target)); err != nil || body != "ok" {
			t.Fatalf("%q, %v", body, err)
		}
	}
	get()
	clock.Advance(lt.idleTimeout - time.Second)
	get() // still young: reused
	assertConns(t, lt, up, 1)
	clock.Advance(lt.idleTimeout)
	get() // too old: closed, a fresh one dialled
	assertConns(t, lt, up, 2)
	// The reaper closes what aged in the pool without traffic.
	p := lt.pool(&url.URL{Host: up.addr})
	clock.Advance(lt.idleTimeout)
	p.reap()
	if open, idle := poolCounts(lt, up.addr); open != 0 || idle != 0 {
		t.Fatalf("after reap: %d open, %d idle", open, idle)
	}
}

// maxConns bounds the lean path (beyond it the fallback serves) and
// maxIdle what is kept.
func TestLeanLimits(t *testing.T) {
	lt, spy, _ := newLean(t)
	lt.maxConns, lt.maxIdle = 2, 1
	up := cannedUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	target := "http://" + up.addr + "/"
	var held []*http.Response
	for range 3 {
		resp, err := lt.RoundTrip(leanRequest(t, context.Background(), http.MethodGet, target))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, resp)
	}
	if n := spy.n.Load(); n != 1 {
		t.Fatalf("fallback served %d, want 1 (the third, beyond maxConns)", n)
	}
	for _, r := range held {
		io.ReadAll(r.Body)
		r.Body.Close()
	}
	if open, idle := poolCounts(lt, up.addr); open != 1 || idle != 1 {
		t.Fatalf("%d open, %d idle; want 1 and 1 (maxIdle)", open, idle)
	}
}

// Many goroutines share the pool: every response belongs to its request.
func TestLeanConcurrent(t *testing.T) {
	lt, spy, _ := newLean(t)
	up := httpUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				path := fmt.Sprintf("/w%d/r%d", w, i)
				method := http.MethodGet
				if i%5 == 0 {
					method = http.MethodHead
				}
				resp, body, err := fetch(t, lt, leanRequest(t, context.Background(), method, "http://"+up.addr+path))
				if err != nil {
					t.Error(err)
					return
				}
				want := path
				if method == http.MethodHead {
					want = ""
				}
				if resp.StatusCode != http.StatusOK || body != want {
					t.Errorf("%s %s: %d %q", method, path, resp.StatusCode, body)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := up.accepted.Load(); n > workers {
		t.Fatalf("upstream accepted %d connections for %d concurrent clients", n, workers)
	}
	if n := spy.n.Load(); n != 0 {
		t.Fatalf("%d requests went to the fallback", n)
	}
	assertPoolAccounting(t, lt, up.addr)
}

func TestLeanConnAlive(t *testing.T) {
	lt, _, _ := newLean(t)
	tests := []struct {
		name  string
		spoil func(c net.Conn)
	}{
		{"peer closed", func(c net.Conn) { c.Close() }},
		{"peer wrote", func(c net.Conn) { c.Write([]byte("x")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			client, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			server, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			p := lt.pool(&url.URL{Host: l.Addr().String()})
			p.reserve()
			c := newLeanConn(client, p)
			defer c.close()
			if !c.alive() {
				t.Fatal("a silent open connection is not alive")
			}
			tc.spoil(server)
			waitUntil(t, "the peek to see it", func() bool { return !c.alive() })
		})
	}
}

func TestDialAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://upstream", "upstream:80"},
		{"http://upstream:8080/x", "upstream:8080"},
		{"http://10.0.0.1", "10.0.0.1:80"},
		{"http://[::1]", "[::1]:80"},
		{"http://[::1]:81", "[::1]:81"},
		{"http://upstream:", "upstream:80"},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := dialAddr(u); got != tc.want {
			t.Errorf("dialAddr(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// BenchmarkUpstreamRoundTrip compares the lean path with http.Transport
// against the same loopback upstream (1 KiB responses), as ReverseProxy
// uses them: round trip, read the body, close.
func BenchmarkUpstreamRoundTrip(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	target := "http://" + l.Addr().String() + "/"
	d := &net.Dialer{}
	std := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64, DisableCompression: true}
	lean := &leanTransport{fallback: std, dial: d.DialContext, now: time.Now,
		headerTimeout: time.Minute, idleTimeout: time.Minute, maxIdle: 64, maxConns: 64}
	b.Cleanup(lean.CloseIdleConnections)
	for _, rt := range []struct {
		name string
		rt   http.RoundTripper
	}{{"lean", lean}, {"http.Transport", std}} {
		b.Run(rt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 32<<10)
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, target, nil)
					resp, err := rt.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					for {
						if _, err := resp.Body.Read(buf); err != nil {
							break
						}
					}
					resp.Body.Close()
				}
			})
		})
	}
}
