package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
)

// Defaults for zero Config fields.
const (
	DefaultListen       = ":443"
	DefaultAssertionTTL = 5 * time.Minute
	DefaultLoginTimeout = 5 * time.Minute
)

// Server timeouts. Reads of the header are bounded (slowloris); bodies and
// responses are not, because uploads, SSE and WebSockets are long-lived.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 10 * time.Second
)

// Gateway is the HTTPS enforcement point. Build it with New.
//
// Ownership inside this package: server.go, proxy*.go, clientip.go,
// headers.go, assertion.go, redirect.go, errors.go, tls.go, hop.go belong to
// the core; login*.go, mfa_pages.go, admin*.go, templates/ belong to the
// login/admin pages.
//
// After New, cfg has its defaults applied and deps.Logger, deps.Now and
// deps.Rand are never nil, so page handlers may use them directly.
// Everything here is read-only after New.
type Gateway struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	login       *loginHandler // access-host pages (login.go)
	admin       *adminAPI     // admin JSON API (admin.go)
	adminRemote func() http.Handler

	sessions   sessionAPI
	cookieName string
	trusted    trustedProxies
	hosts      map[string]*hostRoutes // route hosts only (not the access host)
	signer     *signer
	assertions *assertionCache
	buffers    *bufferPool

	hsts       []string
	csp        []string
	portSuffix string // ":8443", or "" for 443

	// Exactly one certificate source is set.
	acme       *acmeManager
	files      *fileCert
	selfSigned *tls.Certificate

	health storeHealth // store pinger (storehealth.go)
	// streams are the live WebSocket and event-stream requests, ended
	// when their session or user is revoked or locked (livestreams.go).
	streams liveStreams
}

// New validates cfg and builds a Gateway and starts its store pinger
// (Close stops it). Deps.Policy, Sessions, Store, Audit, AuditHealth,
// Risk and SigningKey are required; Logger, Now and Rand default to a
// discarding logger, time.Now and crypto/rand.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if deps.Sessions == nil {
		return nil, errors.New("gateway: Deps.Sessions is required")
	}
	return newGateway(cfg, deps, deps.Sessions)
}

// newGateway is New with the session seam exposed to tests.
func newGateway(cfg Config, deps Deps, sessions sessionAPI) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Policy == nil:
		return nil, errors.New("gateway: Deps.Policy is required")
	case deps.Store == nil:
		return nil, errors.New("gateway: Deps.Store is required")
	case deps.Audit == nil:
		return nil, errors.New("gateway: Deps.Audit is required")
	case deps.Risk == nil:
		// Never a silent "lockdown off": locks must hold on every door.
		return nil, errors.New("gateway: Deps.Risk is required")
	case deps.AuditHealth == nil:
		// Never a silent "the trail is always fine": fail closed needs it.
		return nil, errors.New("gateway: Deps.AuditHealth is required")
	}
	cfg = cfg.withDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Rand == nil {
		deps.Rand = rand.Reader
	}
	g := &Gateway{
		cfg:        cfg,
		deps:       deps,
		log:        deps.Logger.With("component", "gateway"),
		sessions:   sessions,
		cookieName: sessions.CookieName(),
		trusted:    newTrustedProxies(cfg.TrustedProxies),
		assertions: newAssertionCache(),
		buffers:    newBufferPool(),
		hsts:       hstsValue(cfg.HSTSMaxAge),
	}
	if p := g.publicPort(); p != 443 {
		g.portSuffix = ":" + strconv.Itoa(p)
	}
	var err error
	if g.signer, err = newSigner(deps.SigningKey, g.externalURL(cfg.AccessHost, ""), cfg.AssertionTTL, deps.Rand); err != nil {
		return nil, err
	}
	if err := g.buildRoutes(); err != nil {
		return nil, err
	}
	var formTargets []string
	for _, h := range g.certHosts()[1:] {
		formTargets = append(formTargets, g.externalURL(h, ""))
	}
	g.csp = contentSecurityPolicy(formTargets)
	if err := g.initTLS(); err != nil {
		return nil, err
	}
	if g.login, err = newLoginHandler(g); err != nil {
		g.Close()
		return nil, err
	}
	g.admin = newAdminAPI(g)
	g.adminRemote = sync.OnceValue(g.admin.remoteHandler)
	if err := g.startLiveStreams(); err != nil {
		return nil, fmt.Errorf("gateway: following the revocation feed: %w", err)
	}
	g.startStoreHealth()
	return g, nil
}

func (g *Gateway) initTLS() error {
	var err error
	switch g.cfg.TLS.Mode {
	case ModeFiles:
		g.files, err = newFileCert(g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile, g.deps.Now, g.log)
		if err != nil {
			return &authz.FieldError{Path: "tls.cert_file", Msg: err.Error()}
		}
	case ModeSelfSigned:
		if g.selfSigned, err = selfSignedCert(g.certHosts(), g.cfg.TLS.SelfSignedDir, g.now()); err != nil {
			return fmt.Errorf("gateway: self-signed certificate: %w", err)
		}
	case ModeACME:
		if g.acme, err = newACME(g.cfg.TLS.ACME, g.certHosts(), g.log); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	return nil
}

// Close releases background resources (the store pinger, certmagic's
// maintenance). The gateway must not serve afterwards.
func (g *Gateway) Close() error {
	g.stopStoreHealth()
	g.stopLiveStreams()
	if g.acme != nil {
		g.acme.stop()
	}
	return nil
}

// Handler is the whole HTTPS handler.
func (g *Gateway) Handler() http.Handler { return http.HandlerFunc(g.serveHTTP) }

// serveHTTP dispatches by Host. Every response, whoever writes it, carries
// HSTS and nosniff.
func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	g.setTransportHeaders(w.Header())
	if r.URL.Path == jwksPath {
		g.serveJWKS(w, r)
		return
	}
	host := canonicalHost(r.Host)
	if host == g.cfg.AccessHost {
		g.serveAccess(w, r)
		return
	}
	if hr := g.hosts[host]; hr != nil {
		g.serveRoute(w, r, hr)
		return
	}
	if len(host) > 255 {
		host = host[:255]
	}
	g.fail(w, r, http.StatusNotFound, reasonUnknownHost, fmt.Errorf("no route for host %q", host), audit.Event{})
}

// serveAccess serves the access host: health, the admin API, and the login
// pages for everything else.
func (g *Gateway) serveAccess(w http.ResponseWriter, r *http.Request) {
	g.setPageHeaders(w.Header())
	// The admin API routes on the escaped path and unescapes each segment
	// on its own (user IDs are "issuer#subject" and carry an escaped "/"),
	// so it is dispatched before the normaliser, which rightly refuses %2F
	// everywhere else. Its router answers 404 to any segment it does not
	// know, "." and ".." included.
	if strings.HasPrefix(r.URL.EscapedPath(), "/api/admin/") {
		g.adminRemote().ServeHTTP(w, r)
		return
	}
	if _, err := authz.NormalizePath(r.URL.EscapedPath()); err != nil {
		// Dispatch below is by prefix: a path that could be read two ways
		// must not reach it.
		g.fail(w, r, http.StatusBadRequest, reasonInvalidPath, err, audit.Event{})
		return
	}
	switch p := r.URL.Path; {
	case p == "/healthz":
		g.serveHealth(w, r)
	case strings.HasPrefix(p, pathAPIAccess), strings.HasPrefix(p, pathAPIAudit):
		// The user API (access_api.go): bearer tokens, never cookies.
		g.admin.serveUser(w, r)
	default:
		g.login.ServeHTTP(w, r)
	}
}

// serveJWKS publishes the assertion verification key on every host.
func (g *Gateway) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		g.fail(w, r, http.StatusMethodNotAllowed, reasonMethod, nil, audit.Event{})
		return
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(g.signer.jwks)
}

// AdminHandler serves the admin API to the trusted local Unix socket.
func (g *Gateway) AdminHandler() http.Handler { return g.admin.localHandler() }

func (g *Gateway) now() time.Time { return g.deps.Now() }

// Serve runs the listeners until ctx ends, then shuts down gracefully.
func (g *Gateway) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", g.cfg.Listen, err)
	}
	var hl net.Listener
	if g.cfg.HTTPListen != "" {
		if hl, err = net.Listen("tcp", g.cfg.HTTPListen); err != nil {
			ln.Close()
			return fmt.Errorf("gateway: listen %s: %w", g.cfg.HTTPListen, err)
		}
	}
	return g.ServeListeners(ctx, ln, hl)
}

// ServeListeners is Serve on listeners the caller opened (tests and
// socket activation): TLS (HTTP/2 and HTTP/1.1) on tlsLn and, when
// httpLn is not nil, the plain-HTTP redirector on it. It closes both
// listeners and returns nil after a graceful shutdown when ctx ends, or
// the first serving error.
func (g *Gateway) ServeListeners(ctx context.Context, tlsLn, httpLn net.Listener) error {
	tcfg, err := g.TLSConfig(ctx)
	if err != nil {
		tlsLn.Close()
		if httpLn != nil {
			httpLn.Close()
		}
		return err
	}
	errLog := slog.NewLogLogger(serverLogHandler{g.log.Handler()}, slog.LevelWarn)
	ts := &http.Server{
		Handler:           g.Handler(),
		TLSConfig:         tcfg,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
	servers := []*http.Server{ts}
	errc := make(chan error, 2)
	go func() { errc <- ts.ServeTLS(tlsLn, "", "") }()
	if httpLn != nil {
		hs := &http.Server{
			Handler:           g.RedirectHandler(),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          errLog,
		}
		servers = append(servers, hs)
		go func() { errc <- hs.Serve(httpLn) }()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			g.log.Warn("graceful shutdown incomplete", "err", err)
			s.Close()
		}
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("gateway: %w", serveErr)
	}
	return nil
}

// serverLogHandler demotes net/http's per-connection noise (failed TLS
// handshakes from scanners and old clients) to Debug while keeping
// everything else (handler panics) at the level it was logged with.
type serverLogHandler struct{ slog.Handler }

func (h serverLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "TLS handshake error") {
		r.Level = slog.LevelDebug
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h serverLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return serverLogHandler{h.Handler.WithAttrs(as)}
}

func (h serverLogHandler) WithGroup(name string) slog.Handler {
	return serverLogHandler{h.Handler.WithGroup(name)}
}

// Enabled admits Debug so that demoted records can be re-checked in Handle.
func (h serverLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, l)
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.PublicPort == 0 {
		c.PublicPort = 443
	}
	if c.HSTSMaxAge == 0 {
		c.HSTSMaxAge = minHSTS
	}
	if c.AssertionTTL == 0 {
		c.AssertionTTL = DefaultAssertionTTL
	}
	if c.LoginTimeout == 0 {
		c.LoginTimeout = DefaultLoginTimeout
	}
	return c
}

// Validate checks c. Errors are *authz.FieldError joined with errors.Join;
// paths use the config file's key names (cmd prefixes them with
// "gateway").
func (c Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case c.AccessHost == "":
		bad("access_host", "required")
	default:
		if msg := hostnameProblem(c.AccessHost); msg != "" {
			bad("access_host", "%s", msg)
		}
	}
	if c.PublicPort < 0 || c.PublicPort > 65535 {
		bad("public_port", "must be between 1 and 65535")
	}
	for _, a := range []struct{ path, addr string }{{"listen", c.Listen}, {"http_listen", c.HTTPListen}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			bad(a.path, "invalid address %q (want host:port or :port)", a.addr)
		}
	}
	if c.HTTPListen != "" && c.HTTPListen == c.withDefaults().Listen {
		bad("http_listen", "must differ from listen")
	}
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "invalid CIDR")
		}
	}
	if c.HSTSMaxAge != 0 && c.HSTSMaxAge < minHSTS {
		bad("hsts_max_age", "must be at least one year (8760h)")
	}
	if c.AssertionTTL != 0 && (c.AssertionTTL < time.Minute || c.AssertionTTL > time.Hour) {
		bad("assertion_ttl", "must be between 1m and 1h")
	}
	if c.LoginTimeout < 0 {
		bad("login_timeout", "must be positive")
	}
	if c.StoreGrace < 0 || c.StoreGrace > maxStoreGrace {
		bad("store_grace", "must be between 0 and 24h")
	}
	errs = append(errs, c.validateRoutes()...)
	errs = append(errs, c.TLS.validate()...)
	return errors.Join(errs...)
}

func (c Config) validateRoutes() []error {
	var errs []error
	bad := func(i int, key, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: fmt.Sprintf("routes[%d].%s", i, key), Msg: fmt.Sprintf(format, args...)})
	}
	names := map[string]int{}
	type hostPrefix struct{ host, prefix string }
	seen := map[hostPrefix]int{}
	for i, r := range c.Routes {
		switch {
		case r.Name == "":
			bad(i, "name", "required")
		case strings.IndexFunc(r.Name, func(c rune) bool { return c <= ' ' || c == 0x7f }) >= 0:
			bad(i, "name", "must not contain spaces or control characters")
		default:
			if j, dup := names[r.Name]; dup {
				bad(i, "name", "duplicate of routes[%d].name", j)
			} else {
				names[r.Name] = i
			}
		}
		hostOK := false
		switch {
		case r.Host == "":
			bad(i, "host", "required")
		case hostnameProblem(r.Host) != "":
			bad(i, "host", "%s", hostnameProblem(r.Host))
		case r.Host == c.AccessHost:
			bad(i, "host", "must differ from access_host (the access host serves only the login pages)")
		default:
			hostOK = true
		}
		prefixOK := true
		if r.PathPrefix != "" {
			if msg := prefixProblem(r.PathPrefix); msg != "" {
				bad(i, "path_prefix", "%s", msg)
				prefixOK = false
			}
		}
		if hostOK && prefixOK {
			k := hostPrefix{r.Host, routePrefix(r.PathPrefix)}
			if j, dup := seen[k]; dup {
				bad(i, "host", "routes[%d] already serves host %q with path_prefix %q", j, r.Host, k.prefix)
			} else {
				seen[k] = i
			}
		}
		if msg := upstreamProblem(r.Upstream); msg != "" {
			bad(i, "upstream", "%s", msg)
		} else if r.UpstreamCAFile != "" && !strings.HasPrefix(r.Upstream, "https://") {
			bad(i, "upstream_ca_file", "only applies to an https upstream")
		}
	}
	return errs
}

func (t TLSConfig) validate() []error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	switch t.Mode {
	case ModeFiles:
		if t.CertFile == "" {
			bad("tls.cert_file", "required when tls.mode is files")
		}
		if t.KeyFile == "" {
			bad("tls.key_file", "required when tls.mode is files")
		}
	case ModeSelfSigned:
	case ModeACME:
		a := t.ACME
		if a.StoragePath == "" {
			bad("tls.acme.storage_path", "required when tls.mode is acme")
		}
		if a.DirectoryURL != "" {
			if u, err := url.Parse(a.DirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
				bad("tls.acme.directory_url", "must be an absolute https URL")
			}
		}
		if a.Email != "" && !strings.Contains(a.Email, "@") {
			bad("tls.acme.email", "invalid email address")
		}
		if a.AltHTTPPort < 0 || a.AltHTTPPort > 65535 {
			bad("tls.acme.alt_http_port", "must be a port number")
		}
		if a.AltTLSALPNPort < 0 || a.AltTLSALPNPort > 65535 {
			bad("tls.acme.alt_tls_alpn_port", "must be a port number")
		}
		if a.DisableHTTP01 && a.DisableTLSALPN {
			bad("tls.acme", "at least one of the HTTP-01 and TLS-ALPN-01 challenges must stay enabled")
		}
	case "":
		bad("tls.mode", "required: acme, files or self-signed")
	default:
		bad("tls.mode", "unknown mode %q: want acme, files or self-signed", t.Mode)
	}
	return errs
}

// hostnameProblem describes what is wrong with a configured host name, or
// returns "". Names must be lower-case DNS names without port or dot at
// the end: they are compared byte for byte with canonicalised Host headers.
func hostnameProblem(h string) string {
	if len(h) > 253 {
		return "host name too long"
	}
	if strings.ContainsAny(h, ":/") {
		return "must be a bare host name (no scheme, port or path)"
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return "invalid host name " + strconv.Quote(h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			case c == '-' && i > 0 && i < len(label)-1:
			case 'A' <= c && c <= 'Z':
				return "must be lower case"
			default:
				return "invalid host name " + strconv.Quote(h)
			}
		}
	}
	return ""
}

// prefixProblem requires a canonical path prefix: "/" or "/a/b" (no
// trailing slash, no empty, "." or ".." segments, no escapes), the form
// request paths are normalised to before matching.
func prefixProblem(p string) string {
	if p == "/" {
		return ""
	}
	if !strings.HasPrefix(p, "/") {
		return `must start with "/"`
	}
	if strings.HasSuffix(p, "/") {
		return `must not end with "/"`
	}
	if strings.ContainsAny(p, "%;?#\\") {
		return `must not contain "%", ";", "?", "#" or "\\"`
	}
	if n, err := authz.NormalizePath(p); err != nil || n != p {
		return "must be a normalised path (no empty, \".\" or \"..\" segments)"
	}
	return ""
}

// upstreamProblem requires an absolute http(s) URL without credentials,
// query or fragment.
func upstreamProblem(s string) string {
	if s == "" {
		return "required"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "invalid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an absolute http:// or https:// URL"
	case u.Host == "" || u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not contain credentials"
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "must not have a query or fragment"
	}
	return ""
}
