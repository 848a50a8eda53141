package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The lean upstream transport.
//
// http.Transport runs two goroutines per upstream connection (readLoop and
// writeLoop) and hands every request and response between them and the
// handler over channels: a proxied request costs several goroutine
// switches and futex wakes, which on a busy gateway weighed more than the
// authentication. leanTransport performs the common request — an HTTP/1.1
// GET or HEAD without a body or upgrade to a plain-http upstream —
// synchronously on the handler's goroutine over a pooled connection, with
// net/http's own request writer (Request.Write, the function http.Transport
// uses) and response parser (http.ReadResponse): nothing about the wire
// format is hand-written. Everything else (bodies, upgrades, https
// upstreams, other platforms) goes to the fallback http.Transport.
//
// Desync safety: a connection goes back to the pool only after its
// response body was read to the end, the response allowed keep-alive, and
// no byte beyond the response is buffered; before reuse a non-blocking
// MSG_PEEK proves the upstream neither closed it nor sent anything
// unsolicited while it sat idle. Otherwise one user's leftover bytes could
// be read as the next user's response.

const (
	leanReadBufferSize  = 8 << 10
	leanWriteBufferSize = 4 << 10
	// maxResponseHeaderBytes bounds an upstream's response head (1xx
	// responses included); both transports use it.
	maxResponseHeaderBytes = 1 << 20
	// max1xxResponses: more informational responses than this before the
	// final one is an upstream fault (http.Transport uses the same bound).
	max1xxResponses = 5
)

var (
	errStaleConn = errors.New("gateway: upstream closed an idle connection")
	errNo1xxEnd  = errors.New("gateway: too many 1xx responses from upstream")
	errSwitch    = errors.New("gateway: upstream switched protocols without an upgrade request")
)

// leanTransport is an http.RoundTripper; see the comment above.
type leanTransport struct {
	fallback http.RoundTripper
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	now      func() time.Time

	headerTimeout time.Duration // ResponseHeaderTimeout; 0 = none
	idleTimeout   time.Duration // an idle connection older than this is closed
	maxIdle       int           // idle connections kept per upstream host
	maxConns      int           // connections per upstream host; beyond, the fallback serves

	pools sync.Map // URL.Host → *connPool
}

var _ http.RoundTripper = (*leanTransport)(nil)

// leanCapable reports whether this platform can check an idle connection
// without blocking (see connAlive); without it every request falls back.
var leanCapable = peekSupported

// RoundTrip implements http.RoundTripper.
func (t *leanTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !leanCapable || !leanEligible(req) {
		return t.fallback.RoundTrip(req)
	}
	if err := validHeaderFields(req.Header); err != nil {
		return nil, err
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := t.pool(req.URL)
	c, dial := p.get(t.now())
	if c == nil && !dial {
		return t.fallback.RoundTrip(req) // at maxConns
	}
	for retried := false; ; retried = true {
		if c == nil {
			var err error
			if c, err = p.dial(ctx); err != nil {
				return nil, err
			}
		}
		resp, err := c.roundTrip(req, t.headerTimeout)
		if err == nil {
			return resp, nil
		}
		// roundTrip closed c. Only a pooled connection that turned out to
		// be closed before answering is retried, once, on a fresh one:
		// GET and HEAD are idempotent and nothing reached the client yet.
		if retried || !errors.Is(err, errStaleConn) || !p.reserve() {
			return nil, err
		}
		c = nil
	}
}

// leanEligible reports whether req is one leanTransport handles.
// ReverseProxy has already removed hop-by-hop headers, so a Connection or
// Upgrade header here means a protocol upgrade it is forwarding.
func leanEligible(r *http.Request) bool {
	if r.URL == nil || r.URL.Scheme != "http" || r.URL.Host == "" {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Body != nil && r.Body != http.NoBody || r.ContentLength != 0 ||
		len(r.TransferEncoding) != 0 || len(r.Trailer) != 0 || r.Close || r.Cancel != nil {
		return false
	}
	h := r.Header
	return len(h["Connection"]) == 0 && len(h["Upgrade"]) == 0 && len(h["Expect"]) == 0
}

// validHeaderFields is http.Transport's check before it writes a request:
// Request.Write alone does not refuse invalid names or values.
func validHeaderFields(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

func (t *leanTransport) pool(u *url.URL) *connPool {
	if p, ok := t.pools.Load(u.Host); ok {
		return p.(*connPool)
	}
	p, _ := t.pools.LoadOrStore(u.Host, &connPool{t: t, addr: dialAddr(u)})
	return p.(*connPool)
}

// dialAddr is host:port of an http URL, with the default port when the
// URL has none (as http.Transport dials it).
func dialAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// CloseIdleConnections closes every idle pooled connection (and the
// fallback's).
func (t *leanTransport) CloseIdleConnections() {
	t.pools.Range(func(_, v any) bool {
		v.(*connPool).closeIdle()
		return true
	})
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// connPool holds one upstream host's connections: an idle stack (most
// recently used on top, so a warm connection is reused and the cold ones
// at the bottom age out) and a count of open ones.
type connPool struct {
	t    *leanTransport
	addr string

	mu     sync.Mutex
	idle   []*leanConn
	open   int         // connections dialled and not yet closed (idle or in use)
	reaper *time.Timer // closes aged idle connections; nil until first needed
	reapOn bool        // reaper is armed
}

// get returns an idle connection that is still usable, or (nil, true)
// with a slot reserved for the caller to dial, or (nil, false) when the
// host is at maxConns.
func (p *connPool) get(now time.Time) (*leanConn, bool) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil, p.reserve()
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(c.idleSince) >= p.t.idleTimeout {
			// The top is the youngest: everything is too old.
			old := p.idle
			p.idle = nil
			p.mu.Unlock()
			c.close()
			closeAll(old)
			continue
		}
		p.mu.Unlock()
		if c.alive() {
			c.reused = true
			return c, false
		}
		c.close()
	}
}

// reserve takes a connection slot for a dial.
func (p *connPool) reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open >= p.t.maxConns {
		return false
	}
	p.open++
	return true
}

// dial opens a connection in a slot the caller reserved.
func (p *connPool) dial(ctx context.Context) (*leanConn, error) {
	nc, err := p.t.dial(ctx, "tcp", p.addr)
	if err != nil {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
		return nil, err
	}
	return newLeanConn(nc, p), nil
}

// put makes c idle again, or closes it when the pool is full.
func (p *connPool) put(c *leanConn) {
	c.idleSince = p.t.now()
	p.mu.Lock()
	if len(p.idle) >= p.t.maxIdle {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	if !p.reapOn {
		p.reapOn = true
		if p.reaper == nil {
			p.reaper = time.AfterFunc(p.t.idleTimeout, p.reap)
		} else {
			p.reaper.Reset(p.t.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// reap closes idle connections past idleTimeout (an upstream that stopped
// getting traffic must not keep sockets open forever) and re-arms itself
// while any remain.
func (p *connPool) reap() {
	now := p.t.now()
	p.mu.Lock()
	k := 0
	for k < len(p.idle) && now.Sub(p.idle[k].idleSince) >= p.t.idleTimeout {
		k++
	}
	old := make([]*leanConn, k)
	copy(old, p.idle[:k])
	p.idle = append(p.idle[:0], p.idle[k:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	if len(p.idle) > 0 {
		p.reaper.Reset(p.t.idleTimeout - now.Sub(p.idle[0].idleSince))
	} else {
		p.reapOn = false
	}
	p.mu.Unlock()
	closeAll(old)
}

func (p *connPool) closeIdle() {
	p.mu.Lock()
	old := p.idle
	p.idle = nil
	p.mu.Unlock()
	closeAll(old)
}

// closeAll closes connections taken out of the pool (never under p.mu:
// close takes it).
func closeAll(cs []*leanConn) {
	for _, c := range cs {
		c.close()
	}
}

// closed accounts for a connection that was closed.
func (p *connPool) closed() {
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}
