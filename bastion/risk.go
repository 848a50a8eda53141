package bastion

// Lockdown at the SSH door. Every decision is the risk engine's
// (authz/risk); the bastion reports what happened and obeys the verdicts.
// Where each call sits:
//
//	TCP accept              Gate("", ip) before the key exchange: a blocked source (or a
//	                        store that cannot answer) gets its message as the auth banner
//	                        at the first request and nothing else; nothing it sends counts
//	first auth request      the user name (login@target) is checked for canaries
//	certificate signed      (VerifiedPublicKeyCallback: the client proved it holds the key,
//	                        so the key ID is who is trying) Canary(user) for a canary name;
//	                        Gate(user, ip); Fail(ssh-auth, user) when the certificate is
//	                        our CA's but refused (revoked, expired, wrong principal …);
//	                        Assess → per-connection TOTP on StepUp
//	keyboard-interactive    Fail(approval, "", ip) per failed approval; Gate(user, ip) and
//	                        Assess once the approver is known
//	TOTP prompt             Gate(user, ip) before the code; Fail(totp, user) per wrong code
//	all factors passed      Record(user, ip)
//	end of authentication   Fail(ssh-auth, "", ip) once for a connection that got nowhere
//	                        (plain keys, foreign CAs …: OpenSSH offers every agent key, so
//	                        per key would block a user with a full agent); Canary("", ip)
//	                        when a canary name was used and no certificate identified anyone
//	decisions               Fail(denied, user) per denied target/login, port forward and
//	                        file transfer
//	relay                   Usage(user, 0, bytes to the client) every usageChunk and at the end
//	feed                    a lock of "user:<id>" ends the user's live sessions with the
//	                        locked message (registry.go)
//
// A certificate from our CA that is refused is not refused at once: its
// Permissions are marked refused (permRefused) and the refusal is
// counted only in VerifiedPublicKeyCallback, after the client signed with
// it. A certificate is public; counting it when merely offered would let
// anyone holding a copy of someone's expired certificate lock them out.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
)

// Risk is what the bastion needs of the risk engine (risk.Engine).
type Risk interface {
	// Gate with an invalid address asks about the user alone.
	Gate(ctx context.Context, userID string, ip netip.Addr) (risk.Verdict, error)
	Fail(ctx context.Context, sig risk.Signal, userID string, ip netip.Addr) (risk.Verdict, error)
	Canary(ctx context.Context, what, userID string, ip netip.Addr) (risk.Verdict, error)
	CanaryTarget(name string) bool
	CanaryLogin(login string) bool
	Assess(ctx context.Context, userID string, ip netip.Addr, via string) (risk.LoginRisk, error)
	Record(ctx context.Context, userID string, ip netip.Addr) error
	Usage(userID string, requests, bytes int64)
}

var _ Risk = (*risk.Engine)(nil)

// Risk reason codes of the bastion's audit events (stable).
const (
	ReasonAccountLocked    = risk.ReasonAccountLocked // the user is locked
	ReasonSourceBlocked    = risk.ReasonSourceBlocked // the source address or network is blocked
	ReasonCanary           = risk.ReasonCanary        // a canary target or login was used
	ReasonStoreUnavailable = "store-unavailable"      // the risk engine could not answer: deny
	ReasonStepUpNoTOTP     = "step-up-not-enrolled"   // a TOTP step-up was due, and the user has no TOTP
)

// EndLocked ends a live session whose user was locked.
const EndLocked = "account-locked"

// usageChunk is how many bytes sent to a client are gathered before they
// are reported to the risk engine: the relay's per-chunk work stays one
// atomic add.
const usageChunk = 4 << 20

// User-facing texts (the gateway shows the same ones).
const (
	lockedLead       = "This account is locked. Contact your administrator"
	blockedLead      = "Access from your network is temporarily blocked."
	storeDownMessage = "state store unavailable; try again later."
	stepUpNoTOTP     = "this login comes from a network new for your account and needs a one-time code, " +
		"but your account has no authenticator enrolled. Enrol one on the access portal, or connect from your usual network."
	stepUpNoVerifier = "this login comes from a network new for your account and needs a one-time code, which this bastion cannot check."
)

// lockedMessage is what a locked user is told.
func lockedMessage(ref string) string {
	if ref == "" {
		return lockedLead + "."
	}
	return lockedLead + " with reference " + ref + "."
}

// verdictMessage is what a client refused by v is told.
func verdictMessage(v risk.Verdict) string {
	if v.Reason == risk.ReasonSourceBlocked {
		if v.Ref == "" {
			return blockedLead
		}
		return blockedLead + " Reference " + v.Ref + "."
	}
	return lockedMessage(v.Ref)
}

// lockCause ends a session of a locked user.
func lockCause(ref string) *EndCause {
	return &EndCause{Code: EndLocked, Message: lockedMessage(ref)}
}

// riskCtx bounds one risk engine call (a store round trip or two).
func riskCtx(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, revocationTimeout)
}

// canaryTouched returns the canary resource a user name names ("target
// backup-db", "login oracle"), or "".
func (b *Bastion) canaryTouched(user string) string {
	login, tgt, ok := splitUser(user)
	if !ok {
		return ""
	}
	if tgt != "" && b.risk.CanaryTarget(tgt) {
		return "target " + tgt
	}
	if b.risk.CanaryLogin(login) {
		return "login " + login
	}
	return ""
}

// authConn is one connection's authentication state. x/crypto runs every
// authentication callback of a connection on one goroutine (the one in
// ssh.NewServerConn), so the state needs no lock.
type authConn struct {
	b   *Bastion
	ctx context.Context
	nc  net.Conn // the raw connection: half-closed to end a refused one
	src netip.Addr
	pre ssh.ServerPreAuthConn // sends banners at any point of authentication

	// admission is the message for a connection refused at accept time
	// (source blocked, store down): sent at the first request.
	admission string

	started     bool   // an authentication request arrived
	user        string // the last user name checked for canaries
	canary      string // the canary a user name touched ("" none)
	canaryFired bool
	counted     bool // a failure was reported for this connection
	accepted    bool // a first factor (certificate or approval) was accepted
	refused     bool // refused with a message: every later request fails
	failedCerts map[string]bool
}

func (b *Bastion) newAuthConn(ctx context.Context, nc net.Conn) *authConn {
	a := &authConn{b: b, ctx: ctx, nc: nc, failedCerts: map[string]bool{}}
	if nc != nil {
		a.src = sourceAddr(nc.RemoteAddr())
	}
	return a
}

// admit asks the risk engine whether the source may try at all, before
// the key exchange. A refusal is delivered as a banner once the client
// asks to authenticate (an SSH client shows nothing sent before that).
func (a *authConn) admit() {
	if a.auditRefused() { // the trail cannot be written (audithealth.go)
		return
	}
	ctx, cancel := riskCtx(a.ctx)
	v, err := a.b.risk.Gate(ctx, "", a.src)
	cancel()
	switch {
	case err != nil:
		a.b.log.Error("risk engine unavailable: refusing the connection", "source_ip", addrString(a.src), "err", err)
		a.admission = storeDownMessage
		a.auditRefusal(nil, "", ReasonStoreUnavailable, "")
	case !v.Allow:
		a.admission = verdictMessage(v)
		a.auditRefusal(nil, "", v.Reason, v.Ref)
	}
}

// serverConfig is the connection's server configuration: the bastion's,
// with callbacks bound to this connection's state.
func (a *authConn) serverConfig() *ssh.ServerConfig {
	sc := *a.b.server
	sc.PreAuthConnCallback = func(c ssh.ServerPreAuthConn) { a.pre = c }
	sc.BannerCallback = a.banner
	sc.PublicKeyCallback = a.publicKey
	sc.VerifiedPublicKeyCallback = a.verifiedKey
	if a.b.appr != nil {
		sc.KeyboardInteractiveCallback = a.approve
	}
	return &sc
}

// banner runs at the first authentication request, whatever its method:
// the user name is known now.
func (a *authConn) banner(meta ssh.ConnMetadata) string {
	a.started = true
	if a.admission != "" {
		a.refuse(a.admission)
		return ""
	}
	a.noteUser(meta)
	return ""
}

// noteUser checks a user name (it may change between requests) for
// canaries. A touch sticks to the connection; it fires when a certificate
// identifies the client, or when authentication ends without one.
func (a *authConn) noteUser(meta ssh.ConnMetadata) {
	if u := meta.User(); u != a.user {
		a.user = u
		if what := a.b.canaryTouched(u); what != "" && a.canary == "" {
			a.canary = what
		}
	}
}

// fireCanary reports the canary touch by userID ("" when nobody was
// identified) and refuses the connection. A canary name never
// authenticates.
func (a *authConn) fireCanary(meta ssh.ConnMetadata, userID string) error {
	a.canaryFired = true
	a.counted = true
	ctx, cancel := riskCtx(a.ctx)
	v, err := a.b.risk.Canary(ctx, a.canary, userID, a.src)
	cancel()
	attrs := map[string]string{"canary": a.canary}
	if err != nil {
		a.b.log.Error("reporting a canary touch", "canary", a.canary, "user_id", userID, "err", err)
		a.auditRefusal(meta, userID, ReasonStoreUnavailable, "", attrs)
		return a.refuse(storeDownMessage)
	}
	a.auditRefusal(meta, userID, ReasonCanary, v.Ref, attrs)
	return a.refuse(verdictMessage(v))
}

// gate asks whether userID may go on from this connection's source.
func (a *authConn) gate(userID string) (risk.Verdict, error) {
	ctx, cancel := riskCtx(a.ctx)
	defer cancel()
	return a.b.risk.Gate(ctx, userID, a.src)
}

// fail reports one failure of this connection.
func (a *authConn) fail(sig risk.Signal, userID string) (risk.Verdict, error) {
	a.counted = true
	ctx, cancel := riskCtx(a.ctx)
	defer cancel()
	v, err := a.b.risk.Fail(ctx, sig, userID, a.src)
	if err != nil {
		a.b.log.Error("reporting a failure to the risk engine", "signal", string(sig), "user_id", userID, "err", err)
	}
	return v, err
}

// obey refuses the connection unless v allows (a store error refuses
// too: fail closed). It returns nil when the connection may go on.
func (a *authConn) obey(meta ssh.ConnMetadata, userID string, v risk.Verdict, err error) error {
	switch {
	case err != nil:
		a.auditRefusal(meta, userID, ReasonStoreUnavailable, "")
		return a.refuse(storeDownMessage)
	case !v.Allow:
		a.auditRefusal(meta, userID, v.Reason, v.Ref)
		return a.refuse(verdictMessage(v))
	}
	return nil
}

// refuse shows msg to the client as an authentication banner and ends the
// connection: the write side is shut after the banner, so the client
// reads the message and then the end, and x/crypto's next write fails.
func (a *authConn) refuse(msg string) error {
	a.refused = true
	if a.pre != nil {
		_ = a.pre.SendAuthBanner("portcullis: " + msg + "\r\n")
	}
	if cw, ok := a.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else if a.nc != nil {
		_ = a.nc.Close()
	}
	return errAuth
}

// ended runs when authentication ended without success: a connection
// that tried and got nowhere counts once against its source; a canary
// name used without any certificate identifying the client blocks the
// source.
func (a *authConn) ended() {
	if a.refused || !a.started {
		return
	}
	if a.canary != "" && !a.canaryFired {
		a.canaryFired = true
		ctx, cancel := riskCtx(a.ctx)
		v, err := a.b.risk.Canary(ctx, a.canary, "", a.src)
		cancel()
		if err != nil {
			a.b.log.Error("reporting a canary touch", "canary", a.canary, "err", err)
		}
		a.auditRefusal(nil, "", ReasonCanary, v.Ref, map[string]string{"canary": a.canary})
		return
	}
	if a.counted || a.accepted {
		return
	}
	a.fail(risk.SignalSSHAuthFailure, "")
}

// auditRefusal audits a connection refused on the risk engine's word.
// userID is set only for a verified identity.
func (a *authConn) auditRefusal(meta ssh.ConnMetadata, userID, reason, ref string, attrs ...map[string]string) {
	ev := audit.Event{
		Type: TypeSSHAuth, UserID: userID, SourceIP: addrString(a.src), Decision: audit.Deny,
		Reason: reason, Ref: ref, Instance: a.b.cfg.Instance, Attrs: map[string]string{},
	}
	if meta != nil {
		login, tgt, _ := splitUser(meta.User())
		ev.Target, ev.Attrs["login"] = tgt, login
	}
	for _, m := range attrs {
		for k, v := range m {
			ev.Attrs[k] = v
		}
	}
	a.b.audit.Emit(context.Background(), ev)
}

// record adds a login that passed every factor to the user's history.
func (a *authConn) record(userID string) {
	ctx, cancel := riskCtx(a.ctx)
	defer cancel()
	if err := a.b.risk.Record(ctx, userID, a.src); err != nil {
		// Bookkeeping only: the login itself was decided already.
		a.b.log.Error("recording a login in the user's history", "user_id", userID, "err", err)
	}
}

// denied reports a denied authorization decision of a live connection.
// It returns the cause to end the connection with when the user is
// locked now (by this very denial or before), else nil.
func (c *conn) denied() *EndCause {
	ctx, cancel := riskCtx(c.ctx)
	defer cancel()
	v, err := c.b.risk.Fail(ctx, risk.SignalDenied, c.userID, c.src)
	if err != nil {
		// The request was denied anyway.
		c.b.log.Error("reporting a denied decision to the risk engine", "user_id", c.userID, "err", err)
		return nil
	}
	if !v.Allow && v.Reason == risk.ReasonAccountLocked {
		return lockCause(v.Ref)
	}
	return nil
}

// canaryChannel reports a direct-tcpip channel to a canary target name
// (ssh -J bastion backup-db asks the bastion itself for one): the
// authenticated user is locked and the connection ends.
func (c *conn) canaryChannel(nc ssh.NewChannel) bool {
	var m directTCPIPMsg
	if ssh.Unmarshal(nc.ExtraData(), &m) != nil {
		return false
	}
	host := strings.ToLower(strings.TrimSuffix(strings.Trim(m.Host, "[]"), "."))
	if host == "" || !c.b.risk.CanaryTarget(host) {
		return false
	}
	what := "target " + host
	ctx, cancel := riskCtx(c.ctx)
	v, err := c.b.risk.Canary(ctx, what, c.userID, c.src)
	cancel()
	c.auditChannel("direct-tcpip", ReasonCanary, map[string]string{"canary": what})
	nc.Reject(ssh.Prohibited, "port forwarding to this destination is not allowed")
	cause := lockCause(v.Ref)
	if err != nil {
		c.b.log.Error("reporting a canary touch", "canary", what, "user_id", c.userID, "err", err)
		cause = &EndCause{Code: ReasonStoreUnavailable, Message: storeDownMessage}
	}
	c.cancel(cause)
	return true
}

// sent counts bytes delivered to the client; every usageChunk they go to
// the risk engine (in memory there too: no store round trip).
func (c *conn) sent(n int) {
	if c.download.Add(int64(n)) >= usageChunk {
		if v := c.download.Swap(0); v > 0 {
			c.b.risk.Usage(c.userID, 0, v)
		}
	}
}

// flushUsage reports what sent gathered since the last report.
func (c *conn) flushUsage() {
	if v := c.download.Swap(0); v > 0 {
		c.b.risk.Usage(c.userID, 0, v)
	}
}

// endLocked ends userID's live sessions on this instance with the locked
// message, after a lock from any instance (the feed's EventLocked).
func (b *Bastion) endLocked(ctx context.Context, userID string) {
	var live []*conn
	for _, c := range b.registry.snapshot() {
		if c.userID == userID {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		return
	}
	// The reference the user quotes to the admin is the lock's.
	cctx, cancel := riskCtx(ctx)
	v, err := b.risk.Gate(cctx, userID, netip.Addr{})
	cancel()
	ref := ""
	if err == nil && !v.Allow {
		ref = v.Ref
	} else if err != nil && !errors.Is(err, context.Canceled) {
		b.log.Error("looking up a lock's reference", "user_id", userID, "err", err)
	}
	cause := lockCause(ref)
	for _, c := range live {
		c.cancel(cause)
	}
}

// recheckLock ends a just-registered session whose user was locked after
// authentication but before the registry could see the lock event.
func (c *conn) recheckLock() {
	ctx, cancel := riskCtx(c.ctx)
	v, err := c.b.risk.Gate(ctx, c.userID, netip.Addr{})
	cancel()
	switch {
	case err != nil:
		c.b.log.Error("risk engine unavailable: ending the session", "session", c.id, "err", err)
		c.cancel(&EndCause{Code: ReasonStoreUnavailable, Message: storeDownMessage})
	case !v.Allow:
		c.cancel(lockCause(v.Ref))
	}
}
