// Package gateway is Portcullis's HTTPS policy enforcement point. It
// terminates TLS, serves the login pages (OIDC + TOTP) and the admin API on
// the access host, and reverse-proxies every other configured host to its
// upstream after asking authz for a decision.
//
// Trust boundaries: the client IP is the socket peer unless that peer is a
// configured trusted proxy; identity headers arriving from clients are
// always stripped and replaced by ones derived from the verified session.
// Per request there is no state-store round trip: sessions come from the
// session manager's cache and the policy from an atomic pointer.
package gateway

import (
	"crypto/ecdsa"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/identity"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// Config is the gateway's part of the configuration. cmd builds it from the
// config file; Validate reports *authz.FieldError with paths relative to it.
type Config struct {
	// Listen is the HTTPS address; zero value ":443".
	Listen string
	// HTTPListen is the plain-HTTP address that only redirects to HTTPS and
	// answers ACME HTTP-01 challenges; "" disables it.
	HTTPListen string
	// AccessHost is the host name serving login, TOTP and admin pages
	// (e.g. "access.example.com"); required.
	AccessHost string
	// PublicPort is appended to redirect URLs when not 443 (demo uses 8443).
	PublicPort int
	TLS        TLSConfig
	Routes     []Route
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed; empty =
	// trust no one (client IP is always the socket peer).
	TrustedProxies []netip.Prefix
	// HSTSMaxAge zero value: 365 days. Never below one year.
	HSTSMaxAge time.Duration
	// AssertionTTL is the lifetime of the JWT assertion sent upstream;
	// zero value 5m.
	AssertionTTL time.Duration
	// LoginTimeout bounds a half-finished login (OIDC done, TOTP not);
	// zero value 5m.
	LoginTimeout time.Duration
	// Instance names this instance in audit events.
	Instance string
	// SSHCertBindSourceIP binds SSH certificates issued for
	// `portcullis login` to the address the client exchanged its code
	// from (OpenSSH source-address critical option). Off by default:
	// laptops change networks.
	SSHCertBindSourceIP bool
	// SSHAddr is the bastion's public address ("host:port"), returned to
	// `portcullis login` for its ssh command hints; "" lets the client
	// assume the access host on port 2222.
	SSHAddr string
	// StoreGrace is how long established sessions are still served while
	// the state store is down (as seen by the background pinger). Zero,
	// the default, means no grace: as soon as the store is known to be
	// down, every request that needs a session gets 503 "state store
	// unavailable". Logins always fail closed, whatever the grace: they
	// need the store. At most 24h.
	StoreGrace time.Duration
}

// TLSConfig selects where certificates come from.
type TLSConfig struct {
	// Mode is "acme", "files" or "self-signed" (demo only).
	Mode     string
	CertFile string // Mode "files"
	KeyFile  string // Mode "files"
	ACME     ACMEConfig
	// SelfSignedDir (mode "self-signed", optional) keeps the generated
	// certificate and key (selfsigned.crt/.key) so they survive restarts;
	// "" keeps them in memory only.
	SelfSignedDir string
}

// ACMEConfig configures certmagic. Certificates are only ever obtained for
// the access host and the configured route hosts (on-demand is limited to
// those).
type ACMEConfig struct {
	Email        string
	DirectoryURL string // zero value: Let's Encrypt production
	// CARootFile trusts an extra root for the ACME server (pebble in tests).
	CARootFile  string
	StoragePath string // certificate storage directory; required for acme
	// AltTLSALPNPort/AltHTTPPort let tests run challenges on high ports.
	AltHTTPPort    int
	AltTLSALPNPort int
	DisableHTTP01  bool
	DisableTLSALPN bool
}

// Route maps a host (and optional path prefix) to an upstream.
type Route struct {
	Name       string // also the authz app name
	Host       string // lower case, no port
	PathPrefix string // "" or "/x"; longest prefix wins within a host
	Upstream   string // absolute http(s) URL
	// PreserveHost sends the client's Host upstream instead of the upstream's.
	PreserveHost bool
	// FlushInterval for streaming; zero = net/http default, -1 = immediate.
	FlushInterval time.Duration
	// UpstreamCAFile trusts an extra root for an https upstream.
	UpstreamCAFile string
}

// PolicySource returns the current compiled policy (an atomic pointer).
type PolicySource interface {
	Load() *authz.Policy
}

var _ PolicySource = (*atomic.Pointer[authz.Policy])(nil)

// Deps are the gateway's collaborators, injected so tests can control
// time, randomness and logs.
type Deps struct {
	Policy   PolicySource
	Sessions *session.Manager
	MFA      *mfa.Manager
	Identity *identity.Provider
	Store    store.Store
	Audit    audit.Emitter
	// SigningKey signs the upstream JWT assertion (ES256). Its public part
	// is served at /.well-known/portcullis/jwks.json.
	SigningKey *ecdsa.PrivateKey
	Logger     *slog.Logger
	Now        func() time.Time
	Rand       io.Reader
	// UpstreamTransport overrides the tuned default (tests).
	UpstreamTransport http.RoundTripper
	// SSHCA issues SSH user certificates for `portcullis login`
	// (/ssh/login, /api/ssh/cert); nil turns those endpoints off (404).
	SSHCA *session.SSHCA
	// Risk decides lockdown (authz/risk); required. The gateway only
	// reports signals to it and obeys its verdicts.
	Risk RiskEngine
	// StoreTick paces the background store pings (tests); nil = every
	// storePingInterval.
	StoreTick <-chan time.Time
	// AuditHealth says whether the audit trail can be written (the
	// *audit.FileLog); required: while it cannot, new logins and
	// credentials are refused (audithealth.go).
	AuditHealth AuditHealth
	// HealthNotes, optional, adds lines to /healthz (audit sinks that
	// fall behind); it is called per /healthz request only.
	HealthNotes func() []string
	// Access is just-in-time access (authz/access); nil turns it off:
	// effective roles are the session's roles, /access and /api/access/*
	// answer 404, and audit reads use base roles only.
	Access *access.Manager
	// TrailDir is the audit trail directory searched by
	// /api/audit/events (audit.Search); "" turns that endpoint off (404).
	TrailDir string
	// Recordings serves /api/audit/recordings; nil turns it off (404).
	Recordings RecordingStore
	// Reviews runs access reviews (/api/admin/reviews…, /reviews pages);
	// nil means not configured: the API answers 404, the pages say so.
	Reviews *review.Manager
}
