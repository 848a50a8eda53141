package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// route is a compiled Route.
type route struct {
	name         string
	prefix       string // "/" or "/x" (no trailing slash)
	target       *url.URL
	targetPath   string // upstream base path without trailing slash; "" for none
	preserveHost bool
	proxy        *httputil.ReverseProxy
}

// hostRoutes are the routes of one host, longest prefix first.
type hostRoutes struct {
	host   string
	routes []*route
}

// match returns the route whose prefix covers path on a segment boundary
// (longest first), or nil.
func (h *hostRoutes) match(path string) *route {
	for _, rt := range h.routes {
		if rt.prefix == "/" {
			return rt
		}
		if strings.HasPrefix(path, rt.prefix) &&
			(len(path) == len(rt.prefix) || path[len(rt.prefix)] == '/') {
			return rt
		}
	}
	return nil
}

// proxyState carries one request's verified facts from the handler to
// Rewrite. It is itself the proxied request's context (wrapping the
// client's), so handing it over costs no context.WithValue allocation;
// Value still answers proxyStateKey for code that only sees a derived
// context (ReverseProxy's error handler gets its own outgoing request).
// The one-element arrays let Rewrite assign header values without
// allocating.
type proxyState struct {
	context.Context
	route *route
	id    *upstreamIdentity // nil for an anonymous request to a public app
	path  string            // normalised path the decision was made on
	xff   [1]string         // derived client IP
	host  [1]string         // X-Forwarded-Host
	// Usage accounting of a signed-in user's request (risk.Engine.Usage):
	// bytes of the response body, from its Content-Length or, when the
	// upstream sent none, counted by body as ReverseProxy copies it. Set
	// and read on the handler's goroutine only.
	user  string
	bytes int64
	body  countingBody
}

// countingBody counts what ReverseProxy reads of a response body of
// unknown length. It lives inside proxyState: wrapping costs no
// allocation.
type countingBody struct {
	io.ReadCloser
	n *int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	*c.n += int64(n)
	return n, err
}

type proxyStateKey struct{}

// Value implements context.Context.
func (st *proxyState) Value(key any) any {
	if key == (proxyStateKey{}) {
		return st
	}
	return st.Context.Value(key)
}

// proxyStateOf returns the state of a proxied request, or nil.
func proxyStateOf(ctx context.Context) *proxyState {
	if st, ok := ctx.(*proxyState); ok {
		return st
	}
	st, _ := ctx.Value(proxyStateKey{}).(*proxyState)
	return st
}

// buildRoutes compiles cfg.Routes, sharing one Transport among routes with
// the same trust roots.
func (g *Gateway) buildRoutes() error {
	g.hosts = make(map[string]*hostRoutes)
	transports := map[string]http.RoundTripper{}
	errLog := slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)
	var errs []error
	for i, rc := range g.cfg.Routes {
		target, err := url.Parse(rc.Upstream)
		if err != nil {
			errs = append(errs, &authz.FieldError{Path: fmt.Sprintf("routes[%d].upstream", i), Msg: err.Error()})
			continue
		}
		rt, ok := transports[rc.UpstreamCAFile]
		if !ok {
			if rt, err = g.newTransport(rc.UpstreamCAFile); err != nil {
				errs = append(errs, &authz.FieldError{Path: fmt.Sprintf("routes[%d].upstream_ca_file", i), Msg: err.Error()})
				continue
			}
			transports[rc.UpstreamCAFile] = rt
		}
		r := &route{
			name:         rc.Name,
			prefix:       routePrefix(rc.PathPrefix),
			target:       target,
			targetPath:   strings.TrimSuffix(target.EscapedPath(), "/"),
			preserveHost: rc.PreserveHost,
		}
		r.proxy = &httputil.ReverseProxy{
			Rewrite:        g.rewrite,
			Transport:      rt,
			FlushInterval:  rc.FlushInterval,
			ErrorLog:       errLog,
			BufferPool:     g.buffers,
			ModifyResponse: g.modifyResponse,
			ErrorHandler:   g.proxyError,
		}
		hr := g.hosts[rc.Host]
		if hr == nil {
			hr = &hostRoutes{host: rc.Host}
			g.hosts[rc.Host] = hr
		}
		hr.routes = append(hr.routes, r)
	}
	for _, hr := range g.hosts {
		slices.SortStableFunc(hr.routes, func(a, b *route) int { return len(b.prefix) - len(a.prefix) })
	}
	return errors.Join(errs...)
}

// routePrefix maps "" to "/" and drops a trailing slash.
func routePrefix(p string) string {
	if p == "" || p == "/" {
		return "/"
	}
	return strings.TrimSuffix(p, "/")
}

// newTransport is the tuned upstream transport: the lean path for the
// common bodiless GET/HEAD to a plain-http upstream (transport.go), and
// for everything else an http.Transport with pooled keep-alive
// connections (enough idle ones per host for a busy dashboard behind 64+
// concurrent clients), bounded dials, header waits and header sizes,
// HTTP/2 to https upstreams, and never a proxy from the environment (an
// HTTPS_PROXY variable must not silently route internal traffic
// elsewhere).
func (g *Gateway) newTransport(caFile string) (http.RoundTripper, error) {
	if g.deps.UpstreamTransport != nil {
		return g.deps.UpstreamTransport, nil
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no PEM certificate found")
		}
		tlsCfg.RootCAs = pool
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	fallback := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSClientConfig:        tlsCfg,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    upstreamMaxIdlePerHost,
		IdleConnTimeout:        upstreamIdleTimeout,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  upstreamHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		// Pass the client's Accept-Encoding through untouched instead of
		// decompressing upstream responses ourselves.
		DisableCompression: true,
		ReadBufferSize:     32 << 10,
		WriteBufferSize:    32 << 10,
	}
	// GET/HEAD without a body to a plain-http upstream takes the lean
	// path (transport.go); everything else this Transport.
	return &leanTransport{
		fallback:      fallback,
		dial:          d.DialContext,
		now:           time.Now,
		headerTimeout: upstreamHeaderTimeout,
		idleTimeout:   upstreamIdleTimeout,
		maxIdle:       upstreamMaxIdlePerHost,
		maxConns:      upstreamMaxConnsPerHost,
	}, nil
}

// Upstream connection limits, shared by both transports.
const (
	upstreamMaxIdlePerHost = 512
	// upstreamMaxConnsPerHost bounds the lean transport's connections per
	// host; requests beyond it use the fallback Transport's pool.
	upstreamMaxConnsPerHost = 1024
	upstreamIdleTimeout     = 90 * time.Second
	upstreamHeaderTimeout   = 60 * time.Second
)

// serveRoute enforces policy for a request to a route host and proxies it
// on allow.
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, hr *hostRoutes) {
	raw := r.URL.EscapedPath()
	if raw == hopPath {
		g.serveHop(w, r, hr.host)
		return
	}
	path, err := authz.NormalizePath(raw)
	if err != nil {
		g.fail(w, r, http.StatusBadRequest, reasonInvalidPath, err, audit.Event{})
		return
	}
	// Canaries first: a honeypot path need not be under any route, and
	// no policy may make touching one harmless. A map lookup, no
	// allocation, when the host has none.
	if name, ok := g.deps.Risk.CanaryRoute(hr.host, path); ok {
		g.canaryTouched(w, r, name, path)
		return
	}
	if strings.HasPrefix(path, reservedPath) {
		g.fail(w, r, http.StatusNotFound, reasonNotFound, nil, audit.Event{Path: path})
		return
	}
	rt := hr.match(path)
	if rt == nil {
		g.fail(w, r, http.StatusNotFound, reasonNotFound, nil, audit.Event{Path: path})
		return
	}
	pol := g.deps.Policy.Load()
	if pol == nil {
		g.fail(w, r, http.StatusForbidden, reasonNoPolicy, errors.New("no policy loaded"),
			audit.Event{Type: audit.TypeDecision, App: rt.name, Path: path})
		return
	}
	ctx := r.Context()
	now := g.now()
	ip := g.clientIP(r)
	req := authz.Request{Kind: authz.KindHTTP, SourceIP: ip, App: rt.name, Method: r.Method, Path: path}

	// Session: from the manager's in-memory cache; the store is only
	// consulted on a cache miss.
	var authed bool
	var rec session.Record
	if tok, ok := cookieValue(r, g.cookieName); ok {
		if g.storeDown(now) {
			// The cache can no longer learn of revocations and locks.
			g.fail(w, r, http.StatusServiceUnavailable, reasonStoreDown, errStoreDown, audit.Event{App: rt.name, Path: path})
			return
		}
		s, err := g.sessions.Lookup(ctx, tok)
		switch {
		case err == nil:
			rec, authed = s, true
			// Base roles plus active just-in-time grants, from memory:
			// s.Roles itself, without allocating, when there are none.
			req.Subject = authz.Subject{UserID: s.UserID, Roles: g.effectiveRoles(s.UserID, s.Roles, now), MFA: s.MFA, AuthTime: s.AuthTime}
		case errors.Is(err, store.ErrUnavailable):
			g.fail(w, r, http.StatusServiceUnavailable, reasonStoreDown, err, audit.Event{App: rt.name, Path: path})
			return
		default:
			if !g.publicAllows(pol, &req, now) {
				g.unauthenticated(w, r, hr.host, reasonInvalidSession, err, rt.name, path)
				return
			}
		}
	} else if !g.publicAllows(pol, &req, now) {
		g.unauthenticated(w, r, hr.host, reasonNoSession, nil, rt.name, path)
		return
	}

	dec := pol.Evaluate(&req, now)
	ev := audit.Event{
		Time: now, Instance: g.cfg.Instance, Type: audit.TypeDecision,
		UserID: rec.UserID, SessionID: rec.ID, App: rt.name, Method: r.Method, Path: path,
	}
	if ip.IsValid() {
		ev.SourceIP = ipString(ip, r.RemoteAddr)
	}
	if !dec.Allow {
		if dec.Rule != "" || dec.Role != "" {
			ev.Attrs = map[string]string{"role": dec.Role, "rule": dec.Rule}
		}
		if authed && userInitiated(r) {
			// Only denied requests pay for this (store round trips);
			// allowed ones never do. The answer stays a denial either
			// way: a store failure here only loses the count. Requests
			// another site caused are not counted (see userInitiated).
			v, err := g.deps.Risk.Fail(ctx, risk.SignalDenied, rec.UserID, ip)
			if err != nil {
				g.log.ErrorContext(ctx, "counting a denied decision", "user_id", rec.UserID, "err", err)
			} else if !v.Allow {
				g.denyVerdict(w, r, v, ev)
				return
			}
		}
		g.fail(w, r, http.StatusForbidden, string(dec.Reason), nil, ev)
		return
	}
	st := &proxyState{Context: ctx, route: rt, path: path}
	if authed {
		id, err := g.identityFor(&rec, rt.name, now)
		if err != nil {
			g.fail(w, r, http.StatusInternalServerError, reasonInternal, err, ev)
			return
		}
		st.id = id
	}
	ev.Decision = audit.Allow
	ev.Reason = string(dec.Reason)
	ev.Role = dec.Role
	g.deps.Audit.Emit(ctx, ev)

	st.xff[0] = ev.SourceIP
	st.host[0] = r.Host
	st.user = rec.UserID
	if authed && longLived(r) {
		// A WebSocket or event stream must end with its session, not
		// whenever the client hangs up (livestreams.go).
		sctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		// A stream admitted by a role held only through a grant also
		// ends with the grant: at its expiry, and on any change of the
		// user's grants (livestreams.go).
		viaGrant := dec.Role != "" && !slices.Contains(rec.Roles, dec.Role)
		if viaGrant {
			if until, ok := g.deps.Access.GrantedUntil(rec.UserID, dec.Role, now); ok && !until.IsZero() {
				dctx, dcancel := context.WithDeadlineCause(sctx, until, errGrantEnded)
				defer dcancel()
				sctx = dctx
			}
		}
		defer g.streams.add(rec.UserID, rec.ID, viaGrant, cancel)()
		st.Context = sctx
	}
	rt.proxy.ServeHTTP(w, r.WithContext(st))
	if authed {
		// In memory only (atomics): the engine flushes to the store in
		// the background.
		g.deps.Risk.Usage(rec.UserID, 1, st.bytes)
	}
}

// canaryTouched answers a request for a canary route: whoever touched it
// is locked (a signed-in user; their sessions end on every instance) and
// the source is blocked, and the request gets the locked page.
func (g *Gateway) canaryTouched(w http.ResponseWriter, r *http.Request, name, path string) {
	ctx := r.Context()
	ev := audit.Event{Type: audit.TypeDecision, Path: path, Attrs: map[string]string{"canary": name}}
	if tok, ok := cookieValue(r, g.cookieName); ok {
		// A session that cannot be read leaves the toucher anonymous:
		// the source is still blocked.
		if s, err := g.sessions.Lookup(ctx, tok); err == nil {
			ev.UserID, ev.SessionID = s.UserID, s.ID
		}
	}
	if !userInitiated(r) {
		// Another site made the browser ask: deny and alert, but lock
		// and block nobody (a link must not lock its victim out).
		g.deps.Risk.CanaryUnattributed(ctx, "route "+name, ev.UserID, g.clientIP(r))
		g.fail(w, r, http.StatusForbidden, risk.ReasonCanary, errors.New("canary touched by a request another site caused"), ev)
		return
	}
	v, err := g.deps.Risk.Canary(ctx, "route "+name, ev.UserID, g.clientIP(r))
	if err != nil {
		g.storeFail(w, r, err, ev)
		return
	}
	if v.Allow { // never: a canary always denies
		v = risk.Verdict{Reason: risk.ReasonSourceBlocked}
	}
	g.denyVerdict(w, r, v, ev)
}

// ipString is ip.String(), reusing the host part of the socket peer
// address when that is byte for byte the same string (an IPv4 client
// reached directly: the common case), which saves an allocation per
// request. ParseAddr accepts only canonical dotted quads, so equality of
// the parsed values implies equality of the strings.
func ipString(ip netip.Addr, remoteAddr string) string {
	if ip.Is4() {
		if i := strings.LastIndexByte(remoteAddr, ':'); i > 0 {
			host := remoteAddr[:i]
			if a, err := netip.ParseAddr(host); err == nil && a == ip {
				return host
			}
		}
	}
	return ip.String()
}

// publicAllows evaluates req without a subject: it allows only for apps
// the policy marks public (and whose allowlists pass).
func (g *Gateway) publicAllows(pol *authz.Policy, req *authz.Request, now time.Time) bool {
	req.Subject = authz.Subject{}
	return pol.Evaluate(req, now).Allow
}

// unauthenticated answers a request without a usable session: scripts get
// 401 JSON, browsers a redirect to the login page that will bring them
// back here.
func (g *Gateway) unauthenticated(w http.ResponseWriter, r *http.Request, host, reason string, cause error, app, path string) {
	ev := audit.Event{Type: audit.TypeRequestRejected, App: app, Path: path}
	if wantsJSON(r) {
		g.fail(w, r, http.StatusUnauthorized, reason, cause, ev)
		return
	}
	g.fillEvent(r, &ev)
	ev.Reason, ev.Decision = reason, audit.Deny
	g.deps.Audit.Emit(r.Context(), ev)
	original := g.externalURL(host, r.URL.RequestURI())
	h := w.Header()
	g.setPageHeaders(h)
	h["Cache-Control"] = noStoreValue
	h.Set("Location", g.externalURL(g.cfg.AccessHost, "/login?rd="+url.QueryEscape(original)))
	w.WriteHeader(http.StatusFound)
}

// rewrite builds the upstream request. Trust boundary: everything a client
// could use to claim an identity or an address is removed here, and only
// what the gateway verified is added back.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	out := pr.Out
	h := out.Header
	stripIdentityHeaders(h)
	stripCookies(h, g.cookieName)
	st := proxyStateOf(pr.In.Context())
	if st == nil {
		// Unreachable: proxies are only called from serveRoute. Fail
		// closed towards the upstream: an unroutable URL makes the
		// transport refuse it, and the ErrorHandler answers 502.
		out.URL = &url.URL{Scheme: "invalid"}
		return
	}
	if id := st.id; id != nil {
		h["X-Portcullis-User"] = id.user
		if id.email[0] != "" {
			h["X-Portcullis-Email"] = id.email
		}
		h["X-Portcullis-Groups"] = id.groups
		h["X-Portcullis-Jwt-Assertion"] = id.jwt
	}
	if st.xff[0] != "" {
		h["X-Forwarded-For"] = st.xff[:]
	}
	h["X-Forwarded-Host"] = st.host[:]
	h["X-Forwarded-Proto"] = forwardedProtoHTTPS

	rt := st.route
	u := out.URL
	u.Scheme = rt.target.Scheme
	u.Host = rt.target.Host
	// Send the path the decision was made on: an upstream must never see
	// "/public/../admin" after we allowed "/public".
	if st.path != pr.In.URL.Path || rt.targetPath != "" {
		u.Path = rt.targetPath + st.path
		u.RawPath = ""
	}
	if !rt.preserveHost {
		out.Host = ""
	}
}

// modifyResponse keeps upstream headers from overriding ours and stops an
// upstream from planting a Portcullis cookie on its host.
func (g *Gateway) modifyResponse(res *http.Response) error {
	if res.Request != nil {
		if st := proxyStateOf(res.Request.Context()); st != nil && st.user != "" {
			st.countBody(res)
		}
	}
	h := res.Header
	delete(h, "Strict-Transport-Security")
	delete(h, "X-Content-Type-Options")
	if sc := h["Set-Cookie"]; len(sc) > 0 {
		kept := sc[:0:0]
		dropped := false
		for _, c := range sc {
			if strings.HasPrefix(strings.TrimSpace(c), portcullisCookiePrefix) {
				dropped = true
				continue
			}
			kept = append(kept, c)
		}
		if dropped {
			h["Set-Cookie"] = kept
		}
	}
	return nil
}

// countBody sets up the usage count of res's body: its declared length,
// or a count of what is copied when the length is unknown. A switch of
// protocols (WebSocket) is not counted: its body is the raw connection,
// which ReverseProxy needs unwrapped.
func (st *proxyState) countBody(res *http.Response) {
	switch {
	case res.StatusCode == http.StatusSwitchingProtocols, res.Request.Method == http.MethodHead, res.Body == nil:
	case res.ContentLength >= 0:
		st.bytes = res.ContentLength
	default:
		st.body = countingBody{ReadCloser: res.Body, n: &st.bytes}
		res.Body = &st.body
	}
}

// proxyError answers upstream failures with the generic 502 page.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	ev := audit.Event{}
	if st := proxyStateOf(r.Context()); st != nil {
		ev.App, ev.Path = st.route.name, st.path
		ev.SourceIP = st.xff[0]
	}
	g.fail(w, r, http.StatusBadGateway, reasonUpstream, err, ev)
}

// bufferPool recycles ReverseProxy copy buffers (it would otherwise
// allocate 32 KiB per request). It pools array pointers so that neither
// Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

func (b *bufferPool) Put(x []byte) {
	if cap(x) >= copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(x[:copyBufferSize]))
	}
}

var _ httputil.BufferPool = (*bufferPool)(nil)
