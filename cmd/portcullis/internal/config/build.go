package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/identity"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/gateway"
)

// Defaults that belong to the file format (package defaults stay in their
// packages).
const (
	DefaultDataDir = "/var/lib/portcullis"
	// maxSocketPath leaves room under the 108-byte sun_path limit.
	maxSocketPath = 100
)

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// builder turns the decoded File into package configurations. Every
// message it reports names a key path; the line comes from the node tree.
type builder struct {
	d    *diags
	root *yaml.Node
	base string
	opts Options
}

func (b *builder) errAt(path, format string, args ...any) {
	b.d.add(lineOf(b.root, path), path, format, args...)
}

func (b *builder) warnAt(path, format string, args ...any) {
	b.d.warn(lineOf(b.root, path), path, format, args...)
}

// abs resolves a path from the file against the file's directory.
func (b *builder) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(b.base, p)
}

// fieldErrors maps a package's Validate (or Compile) result, whose paths
// are relative to section, onto the file. remap may rewrite a path (policy
// apps that come from routes) or drop it (return "") when it only repeats
// a consequence of an error already reported elsewhere.
func (b *builder) fieldErrors(section string, err error, remap func(string) string) {
	for _, e := range authz.Flatten(authz.Prefix(section, err)) {
		var fe *authz.FieldError
		if !errors.As(e, &fe) {
			b.errAt(section, "%v", e)
			continue
		}
		p := fe.Path
		if remap != nil {
			p = remap(p)
		}
		if p == "" || b.d.hasPath(p) {
			continue // the decoder already said what is wrong here
		}
		b.errAt(p, "%s", fe.Msg)
	}
}

func (b *builder) build(f *File) *Config {
	c := &Config{}
	c.Instance = b.instance(f.Instance)
	c.DataDir = b.abs(f.DataDir)
	if f.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	c.AdminSocket = b.abs(f.AdminSocket)
	if f.AdminSocket == "" {
		c.AdminSocket = filepath.Join(c.DataDir, "admin.sock")
	}
	if len(c.AdminSocket) > maxSocketPath {
		b.errAt("admin_socket", "socket path %s is longer than %d bytes (a Unix socket limit)", c.AdminSocket, maxSocketPath)
	}
	c.Log = b.log(f.Log)

	c.Gateway = b.gateway(f.Gateway, c)
	// The bastion's approval URL and public address come from the gateway
	// section, and it sets the gateway's SSH certificate options.
	c.Bastion, c.SSHUserCA = b.bastion(f.Bastion, c)
	b.fieldErrors("gateway", c.Gateway.Validate(), nil)

	c.Identity = b.identity(f.Identity, c.Gateway)
	b.fieldErrors("identity", c.Identity.Validate(), func(p string) string {
		if p == "identity.redirect_url" && f.Identity.RedirectURL == "" && c.Gateway.AccessHost == "" {
			return "" // its default comes from gateway.access_host, reported missing
		}
		return p
	})

	c.MFA = mfa.Config{Issuer: f.MFA.Issuer, Key: b.symmetricKey(f.MFA.Key), RecoveryCodes: f.MFA.RecoveryCodes}
	if f.MFA.Skew < 0 {
		b.errAt("mfa.skew", "must not be negative")
	} else {
		c.MFA.Skew = uint(f.MFA.Skew)
	}
	b.fieldErrors("mfa", c.MFA.Validate(), nil)

	c.Session = session.Config{
		IdleTimeout:     time.Duration(f.Session.IdleTimeout),
		AbsoluteTimeout: time.Duration(f.Session.AbsoluteTimeout),
		CookieName:      f.Session.CookieName,
		CookieKey:       b.symmetricKey(f.Session.CookieKey),
	}
	b.fieldErrors("session", c.Session.Validate(), nil)
	c.AssertionKey = b.ecKey(f.Session.AssertionKey)

	c.Store = b.store(f.Store, c.DataDir)
	c.Audit, c.AuditSinks = b.auditSection(f.Audit, c)

	var targets []BastionTargetSection
	if f.Bastion != nil {
		targets = f.Bastion.Targets
	}
	c.Policy, c.Compiled = b.policy(f.Policy, f.Gateway.Routes, targets, f.Access.Requestable)
	c.Risk = b.risk(f.Risk)
	c.Retention = b.retention(f.Retention)
	c.Access = b.access(f.Access, c.Compiled, c.Policy)
	c.Reviews = b.reviews(f.Reviews, c.Retention)
	return c
}

// instance validates the instance name; it names the audit file
// (audit-<instance>.jsonl), so it is kept to a safe file-name alphabet.
func (b *builder) instance(s string) string {
	if s == "" {
		h, err := b.opts.Hostname()
		if err != nil || h == "" {
			b.errAt("instance", "cannot determine the host name: set instance")
			return ""
		}
		s = h
	}
	if len(s) > 64 || s[0] == '.' || s[0] == '-' || strings.ContainsFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) {
		b.errAt("instance", "instance name %s must be 1-64 letters, digits, '.', '_' or '-' (not starting with '.' or '-')", quoteShort(s))
	}
	return s
}

func (b *builder) log(s LogSection) LogConfig {
	lc := LogConfig{Level: slog.LevelInfo, JSON: true}
	switch s.Level {
	case "", "info":
	case "debug":
		lc.Level = slog.LevelDebug
	case "warn":
		lc.Level = slog.LevelWarn
	case "error":
		lc.Level = slog.LevelError
	default:
		b.errAt("log.level", "must be one of debug, info, warn, error")
	}
	switch s.Format {
	case "", "json":
	case "text":
		lc.JSON = false
	default:
		b.errAt("log.format", "must be json or text")
	}
	return lc
}

func (b *builder) gateway(s GatewaySection, c *Config) gateway.Config {
	g := gateway.Config{
		Listen:       s.Listen,
		HTTPListen:   s.HTTPListen,
		AccessHost:   s.AccessHost,
		PublicPort:   s.PublicPort,
		HSTSMaxAge:   time.Duration(s.HSTSMaxAge),
		AssertionTTL: time.Duration(s.AssertionTTL),
		LoginTimeout: time.Duration(s.LoginTimeout),
		StoreGrace:   time.Duration(s.StoreGrace),
		Instance:     c.Instance,
	}
	for _, p := range s.TrustedProxies {
		if pfx, err := netip.ParsePrefix(string(p)); err == nil {
			g.TrustedProxies = append(g.TrustedProxies, pfx)
		}
	}
	g.TLS = gateway.TLSConfig{Mode: s.TLS.Mode}
	switch s.TLS.Mode {
	case "":
	case "files":
		g.TLS.CertFile, g.TLS.KeyFile = b.keyPair("gateway.tls", s.TLS.CertFile, s.TLS.KeyFile)
	case "acme":
		a := s.TLS.ACME
		g.TLS.ACME = gateway.ACMEConfig{
			Email:          a.Email,
			DirectoryURL:   a.DirectoryURL,
			StoragePath:    b.abs(a.StoragePath),
			AltHTTPPort:    a.AltHTTPPort,
			AltTLSALPNPort: a.AltTLSALPNPort,
			DisableHTTP01:  a.DisableHTTP01,
			DisableTLSALPN: a.DisableTLSALPN,
		}
		if a.StoragePath == "" {
			g.TLS.ACME.StoragePath = filepath.Join(c.DataDir, "acme")
		}
		_, g.TLS.ACME.CARootFile = b.certPool("gateway.tls.acme.ca_root_file", a.CARootFile)
	case "self-signed":
		b.errAt("gateway.tls.mode", "self-signed certificates are only for `portcullis demo`; use acme or files")
	default:
		b.errAt("gateway.tls.mode", "must be acme or files")
	}
	if s.TLS.Mode != "files" && (s.TLS.CertFile != "" || s.TLS.KeyFile != "") {
		b.errAt("gateway.tls.cert_file", "cert_file and key_file are only used with mode: files")
	}
	for i, r := range s.Routes {
		p := fmt.Sprintf("gateway.routes[%d]", i)
		_, caFile := b.certPool(p+".upstream_ca_file", r.UpstreamCAFile)
		if r.UpstreamCAFile == "" {
			caFile = ""
		}
		g.Routes = append(g.Routes, gateway.Route{
			Name:           r.Name,
			Host:           r.Host,
			PathPrefix:     r.PathPrefix,
			Upstream:       r.Upstream,
			PreserveHost:   r.PreserveHost,
			FlushInterval:  time.Duration(r.FlushInterval),
			UpstreamCAFile: caFile,
		})
	}
	return g
}

// ExternalURL is https://host[:port]path, the form the gateway uses in
// redirects (port left out when it is 443 or unset).
func ExternalURL(host string, port int, path string) string {
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	return "https://" + host + path
}

// CallbackPath is where the gateway serves the OIDC callback.
const CallbackPath = "/oauth2/callback"

func (b *builder) identity(s IdentitySection, g gateway.Config) identity.Config {
	ic := identity.Config{
		Issuer:       s.Issuer,
		ClientID:     s.ClientID,
		ClientSecret: b.textSecret(s.ClientSecret),
		RedirectURL:  s.RedirectURL,
		Scopes:       s.Scopes,
		GroupsClaim:  s.GroupsClaim,
		EmailClaim:   s.EmailClaim,
		AllowedAlgs:  s.AllowedAlgs,
	}
	// The only issuer that can live on the access host is the built-in
	// development IdP of `portcullis demo` (serve mounts no IdP there), so
	// an issuer on the access host is that IdP, and serve refuses it.
	if u, err := url.Parse(s.Issuer); err == nil && g.AccessHost != "" && strings.EqualFold(u.Hostname(), g.AccessHost) {
		b.errAt("identity.issuer", "the issuer is on the gateway's own access host: the built-in development IdP is only for `portcullis demo`; use your organisation's IdP")
	}
	if g.AccessHost != "" {
		want := ExternalURL(g.AccessHost, g.PublicPort, CallbackPath)
		switch s.RedirectURL {
		case "":
			ic.RedirectURL = want
		case want:
		default:
			b.errAt("identity.redirect_url", "must be %s (the gateway serves the callback there), or left out", want)
		}
	}
	return ic
}

func (b *builder) store(s StoreSection, dataDir string) StoreConfig {
	sc := StoreConfig{Backend: s.Backend}
	if sc.Backend == "" {
		sc.Backend = BackendEmbedded
	}
	redisGiven := !reflect.ValueOf(s.Redis).IsZero()
	switch sc.Backend {
	case BackendEmbedded:
		sc.Path = b.abs(s.Path)
		if s.Path == "" {
			sc.Path = filepath.Join(dataDir, "state.db")
		}
		if redisGiven {
			b.errAt("store.redis", "redis settings are ignored with backend: embedded (set backend: redis, or remove them)")
		}
		return sc
	case BackendRedis:
		if s.Path != "" {
			b.errAt("store.path", "path is only used with backend: embedded")
		}
	default:
		b.errAt("store.backend", "must be embedded or redis")
		return sc
	}
	r := s.Redis
	rc := store.RedisConfig{
		Addr:             r.Addr,
		Username:         r.Username,
		Password:         b.textSecret(r.Password),
		DB:               r.DB,
		SentinelMaster:   r.Sentinel.Master,
		SentinelAddrs:    r.Sentinel.Addrs,
		SentinelPassword: b.textSecret(r.Sentinel.Password),
		KeyPrefix:        r.KeyPrefix,
		DialTimeout:      time.Duration(r.DialTimeout),
		ReadTimeout:      time.Duration(r.ReadTimeout),
		WriteTimeout:     time.Duration(r.WriteTimeout),
	}
	t := r.TLS
	if t.Enabled {
		rc.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		rc.TLS.RootCAs, _ = b.certPool("store.redis.tls.ca_file", t.CAFile)
		if t.CertFile != "" || t.KeyFile != "" {
			if t.CertFile == "" || t.KeyFile == "" {
				b.errAt("store.redis.tls", "cert_file and key_file go together (client certificate)")
			} else if cert, key := b.keyPair("store.redis.tls", t.CertFile, t.KeyFile); !b.opts.FakeSecrets {
				if pair, err := tls.LoadX509KeyPair(cert, key); err == nil {
					rc.TLS.Certificates = []tls.Certificate{pair}
				}
			}
		}
	} else if t != (RedisTLSSection{}) {
		b.errAt("store.redis.tls.enabled", "TLS settings are given but enabled is false")
	}
	if r.Addr == "" && r.Sentinel.Master == "" {
		b.errAt("store.redis.addr", "required with backend: redis (or configure sentinel)")
	}
	b.fieldErrors("store.redis", rc.Validate(), nil)
	sc.Redis = rc
	return sc
}
