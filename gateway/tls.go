package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TLS modes.
const (
	ModeACME       = "acme"
	ModeFiles      = "files"
	ModeSelfSigned = "self-signed"
)

// acmeTLSALPN is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const acmeTLSALPN = "acme-tls/1"

// modernCipherSuites are the TLS 1.2 suites offered: forward secret AEADs
// only. (TLS 1.3 suites are not configurable and all qualify.)
var modernCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// TLSConfig returns the server TLS configuration (TLS 1.2+, h2 and
// http/1.1). In acme mode the first call starts certificate management;
// ctx bounds that management.
func (g *Gateway) TLSConfig(ctx context.Context) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		CipherSuites: modernCipherSuites,
	}
	switch {
	case g.acme != nil:
		if err := g.acme.start(ctx); err != nil {
			return nil, err
		}
		cfg.GetCertificate = g.acme.magic.GetCertificate
		cfg.NextProtos = append(cfg.NextProtos, acmeTLSALPN)
	case g.files != nil:
		cfg.GetCertificate = g.files.get
	case g.selfSigned != nil:
		cfg.Certificates = []tls.Certificate{*g.selfSigned}
	default:
		return nil, errors.New("gateway: no certificate source configured")
	}
	return cfg, nil
}

// SelfSignedCertificatePEM returns the self-signed certificate (PEM) in
// self-signed mode, so the demo and tests can trust it; nil otherwise.
func (g *Gateway) SelfSignedCertificatePEM() []byte {
	if g.selfSigned == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: g.selfSigned.Certificate[0]})
}

// certHosts is every name the gateway answers for: the access host first,
// then the route hosts in config order.
func (g *Gateway) certHosts() []string {
	names := []string{g.cfg.AccessHost}
	for _, r := range g.cfg.Routes {
		if !slices.Contains(names, r.Host) {
			names = append(names, r.Host)
		}
	}
	return names
}

// ---- files ----

// fileCert serves a certificate from files and picks up renewals: at most
// every fileCertCheck it compares modification times and reloads. A reload
// that fails keeps the previous certificate (a half-written pair during a
// renewal must not take the site down).
type fileCert struct {
	certFile, keyFile string
	now               func() time.Time
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	modCert  time.Time
	modKey   time.Time
	lastScan time.Time
}

const fileCertCheck = 10 * time.Second

func newFileCert(certFile, keyFile string, now func() time.Time, log *slog.Logger) (*fileCert, error) {
	f := &fileCert{certFile: certFile, keyFile: keyFile, now: now, log: log}
	if err := f.load(); err != nil {
		return nil, err
	}
	f.lastScan = now()
	return f, nil
}

func (f *fileCert) load() error {
	mc, mk, err := f.mtimes()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return err
	}
	f.cert, f.modCert, f.modKey = &c, mc, mk
	return nil
}

func (f *fileCert) mtimes() (cert, key time.Time, err error) {
	sc, err := os.Stat(f.certFile)
	if err != nil {
		return cert, key, err
	}
	sk, err := os.Stat(f.keyFile)
	if err != nil {
		return cert, key, err
	}
	return sc.ModTime(), sk.ModTime(), nil
}

func (f *fileCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); now.Sub(f.lastScan) >= fileCertCheck || now.Before(f.lastScan) {
		f.lastScan = now
		mc, mk, err := f.mtimes()
		if err == nil && (!mc.Equal(f.modCert) || !mk.Equal(f.modKey)) {
			if err := f.load(); err != nil {
				f.log.Warn("TLS certificate files changed but do not load; keeping the previous certificate",
					"cert_file", f.certFile, "err", err)
			} else {
				f.log.Info("TLS certificate reloaded", "cert_file", f.certFile)
			}
		}
	}
	return f.cert, nil
}

// ---- self-signed ----

const (
	selfSignedCertName = "selfsigned.crt"
	selfSignedKeyName  = "selfsigned.key"
	selfSignedValidity = 365 * 24 * time.Hour
)

// selfSignedCert returns a certificate for names plus localhost and the
// loopback addresses. With dir set it reuses the pair stored there while
// it still covers every name for another 30 days (so browsers' exceptions
// survive restarts), and otherwise generates and stores a new one.
func selfSignedCert(names []string, dir string, now time.Time) (*tls.Certificate, error) {
	all := append(slices.Clone(names), "localhost")
	if dir != "" {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, selfSignedCertName), filepath.Join(dir, selfSignedKeyName))
		if err == nil && covers(c.Leaf, all, now.Add(30*24*time.Hour)) {
			return &c, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"Portcullis self-signed"}},
		DNSNames:              all,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, // an end-entity certificate (IsCA false): browsers refuse CA certs as leaves
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(filepath.Join(dir, selfSignedKeyName), keyPEM, 0o600); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(filepath.Join(dir, selfSignedCertName), certPEM, 0o644); err != nil {
			return nil, err
		}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func covers(leaf *x509.Certificate, names []string, until time.Time) bool {
	if leaf == nil || until.After(leaf.NotAfter) {
		return false
	}
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ---- ACME ----

// acmeManager wraps a certmagic config private to this gateway (its own
// cache, not certmagic's package-level default) so two gateways in one
// process — tests, the demo — never share state.
type acmeManager struct {
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	cache  *certmagic.Cache
	names  []string

	once     sync.Once
	startErr error
}

func newACME(c ACMEConfig, names []string, log *slog.Logger) (*acmeManager, error) {
	zl := zap.New(&slogCore{h: log.Handler()})
	allowed := make(map[string]bool, len(names))
	for _, n := range names {
		allowed[n] = true
	}
	var roots *x509.CertPool
	if c.CARootFile != "" {
		pemBytes, err := os.ReadFile(c.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root_file: %w", err)
		}
		if roots, err = x509.SystemCertPool(); err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, errors.New("tls.acme.ca_root_file: no PEM certificate found")
		}
	}
	m := &acmeManager{names: names}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		Logger:           zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: c.StoragePath},
		// On-demand issuance is limited to our own names: a client sending
		// an arbitrary SNI must not make us ask the CA for it (rate limits,
		// and certificates for names we do not serve).
		OnDemand: &certmagic.OnDemandConfig{
			DecisionFunc: func(_ context.Context, name string) error {
				if allowed[strings.ToLower(strings.TrimSuffix(name, "."))] {
					return nil
				}
				return fmt.Errorf("%q is not a configured host", name)
			},
		},
		Logger: zl,
	})
	ca := c.DirectoryURL
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:                      ca,
		Email:                   c.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		AltHTTPPort:             c.AltHTTPPort,
		AltTLSALPNPort:          c.AltTLSALPNPort,
		DisableHTTPChallenge:    c.DisableHTTP01,
		DisableTLSALPNChallenge: c.DisableTLSALPN,
		Logger:                  zl,
	})
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	return m, nil
}

// start registers the names with certmagic once. With on-demand enabled
// this allowlists them and defers issuance to the first handshake for each.
func (m *acmeManager) start(ctx context.Context) error {
	m.once.Do(func() { m.startErr = m.magic.ManageAsync(ctx, m.names) })
	return m.startErr
}

func (m *acmeManager) stop() { m.cache.Stop() }

// slogCore forwards certmagic's zap logs to our slog handler.
type slogCore struct {
	h slog.Handler
}

var _ zapcore.Core = (*slogCore)(nil)

func zapToSlog(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), zapToSlog(l))
}

func fieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h.WithAttrs(fieldsToAttrs(fields))}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	rec := slog.NewRecord(e.Time, zapToSlog(e.Level), e.Message, 0)
	rec.AddAttrs(fieldsToAttrs(fields)...)
	if e.LoggerName != "" {
		rec.AddAttrs(slog.String("logger", e.LoggerName))
	}
	return c.h.Handle(context.Background(), rec)
}

func (c *slogCore) Sync() error { return nil }
