// Package bastion is Portcullis's SSH policy enforcement point. Stock
// OpenSSH clients connect with "ssh -p 2222 login@target@bastion"; the
// bastion authenticates them by a short-lived user certificate from the
// Portcullis user CA (issued after OIDC + TOTP), asks authz for a decision,
// connects to the target with a fresh per-session certificate from its
// upstream CA, verifies the target's host key strictly, and relays the
// channels it allows — recording every one of them, or refusing it.
//
// Trust boundaries:
//   - The client is untrusted until its certificate verifies. Identity
//     (user ID, roles) comes only from the certificate whose signature was
//     verified (VerifiedPublicKeyCallback), never from a key that was merely
//     offered; see auth.go.
//   - Targets are trusted only after their host key matches the configured
//     key or host CA; there is no trust on first use.
//   - Every connection lives under one context whose cancel cause is the
//     single way a session ends on the bastion's initiative: kill, idle,
//     max duration, revocation, lock, recording failure, shutdown.
//   - A user's roles are the certificate's plus their active just-in-time
//     grants; a session a grant allowed ends when the grant expires or is
//     revoked (grants.go).
//   - Lockdown decisions are the risk engine's (authz/risk): the bastion
//     reports failures, canary touches, logins and download volume, and
//     obeys locks and source blocks from before the key exchange to the
//     end of a live session; see risk.go.
//
// A target's stock sshd trusts the bastion with one line in sshd_config,
// naming a file that holds the upstream CA's public key:
//
//	TrustedUserCAKeys /etc/ssh/portcullis_upstream_ca.pub
//
// (principal = the login, so no AuthorizedPrincipalsFile is needed).
package bastion

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
)

// PolicySource returns the current compiled policy (an atomic pointer).
type PolicySource interface {
	Load() *authz.Policy
}

var _ PolicySource = (*atomic.Pointer[authz.Policy])(nil)

// Revocations says whether a certificate was revoked (session.CertRevocations).
// Errors other than "revoked" must wrap store.ErrUnavailable; both deny.
type Revocations interface {
	Check(ctx context.Context, cert *ssh.Certificate) error
}

// Store is the shared state the bastion follows: the feed carries kills,
// certificate and user revocations from every instance.
type Store interface {
	store.Feed
}

// Dialer opens TCP connections to targets (net.Dialer in production).
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Resolver resolves port-forward destinations (net.Resolver in production).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var (
	_ Dialer   = (*net.Dialer)(nil)
	_ Resolver = (*net.Resolver)(nil)
)

// Deps are the bastion's collaborators, injected so tests control time,
// randomness, the network and failures.
type Deps struct {
	Policy      PolicySource
	Store       Store // optional: without it only local kills apply
	Audit       audit.Emitter
	Revocations Revocations
	// MFA verifies per-session TOTP codes for roles with per_session_mfa
	// (optional: without it such roles are denied).
	MFA      MFAVerifier
	Logger   *slog.Logger
	Now      func() time.Time
	Rand     io.Reader
	Dialer   Dialer
	Resolver Resolver
	// Recording overrides recording tuning and file creation (tests).
	Recording recording.Options
	// Approvals holds keyboard-interactive approvals
	// (session.SSHApprovals); required when Config.ApprovalURL is set.
	Approvals Approvals
	// Risk is the risk engine (risk.Engine, required): the bastion
	// reports failures, canary touches, logins and usage to it and obeys
	// its verdicts (risk.go).
	Risk Risk
	// AuditHealth says whether the audit trail can be written (the
	// *audit.FileLog, required): while it cannot, new connections are
	// refused (audithealth.go).
	AuditHealth AuditHealth
	// Grants is the just-in-time grant cache (access.Manager, optional:
	// without it the certificate's roles are all a user holds). See
	// grants.go.
	Grants Grants
	// RecordingClosed, optional, is told the path of each recording
	// once its writer is closed (the session ended, or the recording
	// failed for good): the file will not change any more. It is called
	// on the session's teardown path, so it must not block (the S3
	// uploader only queues).
	RecordingClosed func(path string)
}

// Bastion is the SSH enforcement point. Create it with New and run it with
// Serve.
type Bastion struct {
	cfg      Config
	policy   PolicySource
	feed     Store
	audit    audit.Emitter
	rev      Revocations
	mfa      MFAVerifier
	risk     Risk
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	dialer   Dialer
	resolver Resolver
	recOpts  recording.Options
	// recClosed is Deps.RecordingClosed (nil: nobody is told).
	recClosed func(path string)

	// auditHealth: new connections are refused while the trail cannot
	// be written (audithealth.go).
	auditHealth AuditHealth

	// grants is the just-in-time grant cache (nil: none); grantQ holds
	// the users whose grants changed, and grantGen counts the cache
	// reloads that were followed by a re-decision (grants.go).
	grants   Grants
	grantQ   *grantQueue
	grantGen atomic.Uint64
	// grantsUnknown: the last reload failed (grants.go).
	grantsUnknown atomic.Bool

	server    *ssh.ServerConfig
	userCAs   map[string]bool // marshalled trusted user CA keys
	targets   map[string]*target
	targetSeq []*target

	registry *Registry

	// appr runs keyboard-interactive approvals; nil when they are off
	// (approval.go).
	appr *approver

	// recBroken is set when a recording write failed; new sessions are
	// refused until a probe write succeeds.
	recBroken atomic.Bool

	// tick is how often the watchdog compares the injected clock with
	// each session's deadlines (idle, max duration) and sends keepalives
	// that are due. Tests shorten it.
	tick time.Duration
	// denyLinger is how long a denied connection stays open to deliver
	// its message to a client that opens no channel.
	denyLinger time.Duration

	conns sync.WaitGroup
}

// target is a Target with its parsed host key material.
type target struct {
	Target
	hostKey ssh.PublicKey // exactly one of hostKey / hostCA is set
	hostCA  ssh.PublicKey
}

// New validates cfg and returns a Bastion.
func New(cfg Config, deps Deps) (*Bastion, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	switch {
	case deps.Policy == nil:
		return nil, errors.New("bastion: a policy source is required")
	case deps.Audit == nil:
		return nil, errors.New("bastion: an audit emitter is required")
	case deps.Revocations == nil:
		return nil, errors.New("bastion: certificate revocations are required")
	case deps.Risk == nil:
		return nil, errors.New("bastion: a risk engine is required")
	case deps.AuditHealth == nil:
		return nil, errors.New("bastion: an audit health check is required (fail closed when the trail cannot be written)")
	}
	b := &Bastion{
		cfg:        cfg,
		policy:     deps.Policy,
		feed:       deps.Store,
		audit:      deps.Audit,
		rev:        deps.Revocations,
		mfa:        deps.MFA,
		risk:       deps.Risk,
		log:        deps.Logger,
		now:        deps.Now,
		rand:       deps.Rand,
		dialer:     deps.Dialer,
		resolver:   deps.Resolver,
		recOpts:    deps.Recording,
		recClosed:  deps.RecordingClosed,
		userCAs:    map[string]bool{},
		targets:    map[string]*target{},
		tick:       time.Second,
		denyLinger: 10 * time.Second,
	}
	b.auditHealth = deps.AuditHealth
	b.grants, b.grantQ = deps.Grants, newGrantQueue()
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.rand == nil {
		b.rand = rand.Reader
	}
	if b.dialer == nil {
		b.dialer = &net.Dialer{}
	}
	if b.resolver == nil {
		b.resolver = net.DefaultResolver
	}
	if b.recOpts.Now == nil {
		b.recOpts.Now = b.now
	}
	if b.recOpts.Key == nil {
		b.recOpts.Key = cfg.RecordingKey
	}
	if b.recOpts.Logger == nil {
		b.recOpts.Logger = b.log
	}
	for _, k := range cfg.UserCAKeys {
		b.userCAs[string(k.Marshal())] = true
	}
	for _, t := range cfg.Targets {
		tt := &target{Target: t}
		// Validate already parsed these; errors cannot happen here.
		if t.HostKey != "" {
			tt.hostKey, _ = parseAuthorizedKey(t.HostKey)
		} else {
			tt.hostCA, _ = parseAuthorizedKey(t.HostCA)
		}
		b.targets[t.Name] = tt
		b.targetSeq = append(b.targetSeq, tt)
	}
	b.registry = newRegistry()
	b.server = b.serverConfig()
	// Keyboard-interactive approvals (approval.go).
	if err := b.initApprovals(deps.Approvals); err != nil {
		return nil, err
	}
	return b, nil
}

// Ciphers. A client picks the first cipher of ITS list that the server
// offers, whatever the server's order, and OpenSSH lists
// chacha20-poly1305 and then AES-CTR (with an HMAC) before AES-GCM. So
// the bastion offers AES-GCM only: x/crypto's ChaCha20 has no assembly
// on amd64 and runs at about half AES-GCM's speed, and CTR+HMAC-SHA2
// costs more still. Every OpenSSH since 6.2 and PuTTY since 0.76 speak
// AES-GCM. Towards targets the bastion is the client and its own order
// applies.
var (
	serverCiphers   = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	upstreamCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"}
)

// serverConfig is the configuration every connection's own copy starts
// from; the authentication callbacks are bound per connection
// (authConn.serverConfig).
func (b *Bastion) serverConfig() *ssh.ServerConfig {
	sc := &ssh.ServerConfig{
		Config:        ssh.Config{Ciphers: serverCiphers, Rand: b.rand},
		MaxAuthTries:  b.cfg.MaxAuthTries,
		ServerVersion: "SSH-2.0-Portcullis",
	}
	for _, k := range b.cfg.HostKeys {
		sc.AddHostKey(k)
	}
	return sc
}

// Registry returns the live-session registry (list, kill, watch).
func (b *Bastion) Registry() *Registry { return b.registry }

// ListenAndServe listens on Config.Listen and serves until ctx ends.
func (b *Bastion) ListenAndServe(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", b.cfg.Listen)
	if err != nil {
		return fmt.Errorf("bastion: %w", err)
	}
	return b.Serve(ctx, ln)
}

// Serve accepts SSH connections on ln until ctx ends, then ends every live
// session (cause: shutdown), waits for them to close (recordings
// finished, audit emitted) and returns nil. It closes ln.
func (b *Bastion) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	if b.feed != nil {
		if err := b.follow(ctx); err != nil {
			ln.Close()
			if ctx.Err() != nil {
				// Stopped before the subscription was up: a shutdown,
				// not a failure (no session can have started).
				return nil
			}
			return err
		}
	}
	go b.watchdog(ctx)
	if b.grants != nil {
		go b.followGrants(ctx)
	}
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				b.registry.killAll(causeShutdown)
				b.conns.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			b.registry.killAll(causeShutdown)
			b.conns.Wait()
			return fmt.Errorf("bastion: accept: %w", err)
		}
		backoff = 0
		b.conns.Add(1)
		go func() {
			defer b.conns.Done()
			b.handle(ctx, nc)
		}()
	}
}

// watchdog checks every live session each tick (one goroutine for all
// sessions instead of timers each: idle sessions must stay cheap).
func (b *Bastion) watchdog(ctx context.Context) {
	t := time.NewTicker(b.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, wall := b.now(), time.Now()
		for _, c := range b.registry.snapshot() {
			c.check(now, wall)
		}
	}
}

// handle runs one TCP connection: admission, handshake and
// authentication under a deadline, then the session.
func (b *Bastion) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(b.cfg.HandshakeTimeout))
	a := b.newAuthConn(ctx, nc)
	// Before the key exchange: a blocked source costs one store read
	// and never reaches a callback that could count against a user.
	a.admit()
	sconn, chans, reqs, err := ssh.NewServerConn(newReadConn(nc), a.serverConfig())
	if err != nil {
		b.log.Debug("ssh handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		a.ended()
		return
	}
	nc.SetDeadline(time.Time{})
	c, err := b.newConn(ctx, sconn)
	if err != nil {
		// The verified-key binding did not hold: never proceed.
		sconn.Close()
		return
	}
	c.run(chans, reqs)
}

// sourceAddr returns the client's address, unmapped.
func sourceAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return authz.UnmapAddr(ip)
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return authz.UnmapAddr(ap.Addr())
	}
	return netip.Addr{}
}
