package bastion

// Keyboard-interactive approval: login for SSH clients without the
// portcullis tool.
//
// When a client has no acceptable certificate (its public keys were
// refused, or it offered none), OpenSSH falls back to keyboard-interactive.
// The bastion then records a pending approval — source IP, target, login —
// in the shared store under a random 128-bit one-time code
// (session.SSHApprovals), shows the user an URL on the gateway with a short
// display code, and waits. The user signs in there (OIDC + TOTP) and
// approves or denies that exact connection; the gateway writes the
// decision with the approver's verified identity (user ID, roles, web
// session ID), and the bastion collects it (polling the store: any
// instance may serve the page).
//
// Trust: the approval is the proof of identity here, in place of a
// certificate signature. The bastion turns it into a certificate signed by
// an in-memory key of its own (never a trusted user CA, so such a
// certificate can never authenticate a client) and hands it to the same
// Permissions binding and policy decision as a certificate login:
// identity still comes only from what was verified, and the decision
// (login, target, source allowlists, time limits, per-session TOTP) runs
// as usual. The decision must name this connection's own pending record
// (source, target, login, creation time).
//
// Deadlines: a person needs minutes, the handshake gets seconds. The
// connection's deadline is lifted to ApprovalTimeout for this step only
// and set back to a fresh HandshakeTimeout afterwards.

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
)

// Audit event types of the approval (stable keys). The gateway emits
// ssh.approval.approve and ssh.approval.deny.
const (
	TypeSSHApprovalRequest = "ssh.approval.request" // pending approval created (or refused)
	TypeSSHApprovalExpire  = "ssh.approval.expire"  // the connection stopped waiting without a decision
)

// Approval reason codes (stable).
const (
	ReasonApprovalRequested   = "approval-requested"
	ReasonApproved            = "approved"
	ReasonApprovalDenied      = "approval-denied"
	ReasonApprovalTimeout     = "approval-timeout"
	ReasonApprovalClosed      = "connection-closed"
	ReasonApprovalUnavailable = "approval-unavailable"
	ReasonApprovalRate        = "approval-rate-limited"
	ReasonApprovalMismatch    = "approval-mismatch"
)

// Approval defaults.
const (
	DefaultApprovalTimeout = 3 * time.Minute
	// MaxApprovalTimeout is the longest a connection may wait.
	MaxApprovalTimeout = session.MaxApprovalTTL
	// approvalGrace is how far the connection deadline lies beyond the
	// approval deadline, so the injected clock (not the socket) decides
	// expiry while the bastion is polling.
	approvalGrace = 10 * time.Second
)

// Approvals is the shared store of pending approvals
// (session.SSHApprovals).
type Approvals interface {
	Create(ctx context.Context, req session.SSHApproval, ttl time.Duration) (string, session.SSHApproval, error)
	Outcome(ctx context.Context, code string) (session.SSHApprovalDecision, bool, error)
	Cancel(ctx context.Context, code string) error
}

var _ Approvals = (*session.SSHApprovals)(nil)

// approver is the bastion's approval state.
type approver struct {
	store Approvals
	// signer certifies approved connections. It lives in memory only and
	// is never among the trusted user CAs.
	signer ssh.Signer
	url    string        // https://access.example.com/ssh/approve?c=
	poll   time.Duration // store polling interval
	ping   time.Duration // how often a silent client is probed while waiting
}

// initApprovals enables approvals when Config.ApprovalURL is set.
func (b *Bastion) initApprovals(store Approvals) error {
	if b.cfg.ApprovalURL == "" {
		return nil
	}
	if store == nil {
		return errors.New("bastion: approvals (Deps.Approvals) are required with approval_url")
	}
	_, priv, err := ed25519.GenerateKey(b.rand)
	if err != nil {
		return fmt.Errorf("bastion: approval key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	b.appr = &approver{
		store: store, signer: signer,
		url:  strings.TrimSuffix(b.cfg.ApprovalURL, "/") + "/ssh/approve?c=",
		poll: 500 * time.Millisecond, ping: 5 * time.Second,
	}
	return nil
}

// validateApproval checks the approval settings (called by Validate).
func validateApproval(c Config) []error {
	var errs []error
	if c.ApprovalURL != "" {
		u, err := url.Parse(c.ApprovalURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
			strings.Trim(u.Path, "/") != "" {
			errs = append(errs, &authz.FieldError{Path: "approval_url", Msg: "must be the gateway's access URL, https://HOST[:PORT]"})
		}
	}
	if c.ApprovalTimeout < 0 || c.ApprovalTimeout > MaxApprovalTimeout {
		errs = append(errs, &authz.FieldError{Path: "approval_timeout", Msg: fmt.Sprintf("must be between 0 (default %v) and %v", DefaultApprovalTimeout, MaxApprovalTimeout)})
	}
	return errs
}

// approve runs one approval (the connection's KeyboardInteractiveCallback):
// create, show, wait, and on approval build the connection's Permissions.
// The connection's deadline is lifted for the wait.
//
// A failed approval (denied, timed out, abandoned, not matching, or
// refused for creating too many) counts against the source only. Not
// against the user who denied it: that user is the one an attacker sends
// approval links to, and counting their denials would turn phishing
// attempts into a way to lock them out.
func (a *authConn) approve(meta ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
	b, nc := a.b, a.nc
	if a.refused {
		return nil, errAuth
	}
	a.noteUser(meta)
	src := a.src
	login, tgt, ok := splitUser(meta.User())
	if !ok || !src.IsValid() {
		b.auditApproval(meta, src, TypeSSHAuth, audit.Deny, ReasonBadUsername, nil)
		return nil, errAuth
	}
	if a.canary != "" {
		// Nobody would be identified before a person approves: no
		// approval for a canary name.
		return nil, a.fireCanary(meta, "")
	}
	timeout := b.cfg.ApprovalTimeout
	_ = nc.SetDeadline(time.Now().Add(timeout + approvalGrace))
	defer func() { _ = nc.SetDeadline(time.Now().Add(b.cfg.HandshakeTimeout)) }()

	ctx, cancel := context.WithTimeout(context.Background(), revocationTimeout)
	code, rec, err := b.appr.store.Create(ctx, session.SSHApproval{
		SourceIP: src.String(), Target: tgt, Login: login, Instance: b.cfg.Instance,
	}, max(timeout, session.DefaultApprovalTTL))
	cancel()
	if err != nil {
		reason := ReasonApprovalUnavailable
		if errors.Is(err, session.ErrApprovalRate) {
			reason = ReasonApprovalRate
		}
		b.log.Warn("ssh approval not created", "reason", reason, "source_ip", src.String(), "err", err)
		b.auditApproval(meta, src, TypeSSHApprovalRequest, audit.Deny, reason, nil)
		return nil, a.approvalFailure(meta, reason)
	}
	attrs := map[string]string{"approval": session.ApprovalRef(code), "display_code": rec.Display}
	b.auditApproval(meta, src, TypeSSHApprovalRequest, audit.Allow, ReasonApprovalRequested, attrs)

	deadline := rec.Created.Add(timeout)
	instruction := fmt.Sprintf("Portcullis: open this page, sign in and approve the connection (code %s):\n\n  %s%s\n\nthen press Enter.",
		rec.Display, b.appr.url, code)
	d, reason := session.SSHApprovalDecision{}, ""
	if _, err := client("", instruction, []string{"Press Enter once approved: "}, []bool{true}); err != nil {
		reason = ReasonApprovalClosed
	} else {
		d, reason = b.awaitApproval(code, rec, deadline, client)
	}
	if reason == "" && !d.Approved {
		reason = ReasonApprovalDenied
		attrs["approver"] = d.UserID
	}
	if reason != "" {
		b.approvalFailed(meta, src, code, reason, attrs, client)
		return nil, a.approvalFailure(meta, reason)
	}
	// The approver is who is connecting: locked, or blocked here?
	v, err := a.gate(d.UserID)
	if err := a.obey(meta, d.UserID, v, err); err != nil {
		return nil, err
	}
	cert, err := b.approvalCert(d, login, tgt)
	if err != nil {
		b.log.Error("ssh approval: certificate", "err", err)
		b.approvalFailed(meta, src, code, ReasonApprovalUnavailable, attrs, client)
		return nil, errAuth
	}
	fp := ssh.FingerprintSHA256(cert)
	perms := &ssh.Permissions{
		CriticalOptions: map[string]string{},
		// The same binding as a verified certificate login (auth.go):
		// newConn accepts these Permissions because they carry exactly
		// this certificate, marked verified — by the approval.
		Extensions: map[string]string{permKeyFP: fp, permVerified: fp},
		ExtraData:  map[any]any{certKey{}: cert},
	}
	attrs["cert_serial"] = fmt.Sprint(cert.Serial)
	b.auditApproval(meta, src, TypeSSHAuth, audit.Allow, ReasonApproved, attrs, cert.KeyId)
	a.accepted = true
	return a.secondFactor(meta, cert, perms)
}

// approvalFailure reports a failed approval to the risk engine (the
// source's failure; see approve) and returns the error for x/crypto.
// Failures of our own (the store) are not the client's.
func (a *authConn) approvalFailure(meta ssh.ConnMetadata, reason string) error {
	if reason == ReasonApprovalUnavailable {
		return errAuth
	}
	v, err := a.fail(risk.SignalApprovalFailure, "")
	if err == nil && !v.Allow {
		return a.obey(meta, "", v, nil)
	}
	return errAuth
}

// awaitApproval polls the store until the approval is decided, the
// deadline (injected clock) passes, the store fails, or the client is
// gone. The reason is "" when a decision arrived.
func (b *Bastion) awaitApproval(code string, rec session.SSHApproval, deadline time.Time, client ssh.KeyboardInteractiveChallenge) (session.SSHApprovalDecision, string) {
	tick := time.NewTicker(b.appr.poll)
	defer tick.Stop()
	var lastProbe time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), revocationTimeout)
		d, ok, err := b.appr.store.Outcome(ctx, code)
		cancel()
		switch {
		case err != nil:
			b.log.Warn("ssh approval: store", "err", err)
			return d, ReasonApprovalUnavailable
		case ok && !d.Same(rec):
			return d, ReasonApprovalMismatch
		case ok:
			return d, ""
		case !b.now().Before(deadline):
			return d, ReasonApprovalTimeout
		}
		// Nobody reads the connection while we poll: an empty
		// keyboard-interactive round trip now and then notices a client
		// that went away (the first one also tells the user we wait).
		if time.Since(lastProbe) >= b.appr.ping {
			msg := ""
			if lastProbe.IsZero() {
				msg = "Waiting for the approval..."
			}
			if _, err := client("", msg, nil, nil); err != nil {
				return d, ReasonApprovalClosed
			}
			lastProbe = time.Now()
		}
		<-tick.C
	}
}

// approvalFailed forgets the pending approval, audits why, and tells the
// client (best effort: it may be gone).
func (b *Bastion) approvalFailed(meta ssh.ConnMetadata, src netip.Addr, code, reason string, attrs map[string]string, client ssh.KeyboardInteractiveChallenge) {
	ctx, cancel := context.WithTimeout(context.Background(), revocationTimeout)
	if err := b.appr.store.Cancel(ctx, code); err != nil {
		b.log.Warn("ssh approval: cancel", "err", err)
	}
	cancel()
	typ, msg := TypeSSHApprovalExpire, "the approval request expired"
	switch reason {
	case ReasonApprovalDenied, ReasonApprovalMismatch:
		typ, msg = TypeSSHAuth, "the connection was denied"
	case ReasonApprovalUnavailable:
		typ, msg = TypeSSHAuth, "approvals are unavailable right now"
	}
	ref := audit.NewRef(b.rand)
	attrs["ref"] = ref
	b.auditApproval(meta, src, typ, audit.Deny, reason, attrs)
	if reason != ReasonApprovalClosed {
		_, _ = client("", fmt.Sprintf("Portcullis: %s (%s).", msg, ref), nil, nil)
	}
}

// approvalCert certifies an approved connection with the bastion's
// in-memory approval key, in the shape the CA gives certificates (key ID =
// user ID, roles and web session in extensions, issued now), so the
// connection is decided, recorded, listed and revoked like any other.
// Principals: the approved login, or for a target listing the logins the
// roles allow. PTY and port forwarding are left to the roles (the bastion
// derives both from the granting roles).
func (b *Bastion) approvalCert(d session.SSHApprovalDecision, login, tgt string) (*ssh.Certificate, error) {
	if d.UserID == "" {
		return nil, errors.New("approval without a user")
	}
	p := b.policy.Load()
	now := b.now()
	// The approval carries the approver's base roles; their grants count
	// too (the decision adds them again from the cache, grants.go).
	roles := b.effectiveRoles(d.UserID, d.Roles, now)
	principals := []string{login}
	if tgt == "" {
		if l := p.SSHLogins(roles); len(l) > 0 {
			principals = l
		}
	}
	var sb [8]byte
	serial := uint64(0)
	for serial == 0 {
		if _, err := io.ReadFull(b.rand, sb[:]); err != nil {
			return nil, err
		}
		serial = binary.BigEndian.Uint64(sb[:])
	}
	ext := map[string]string{
		session.ExtRoles:                strings.Join(d.Roles, ","),
		session.ExtPermitPTY:            "",
		session.ExtPermitPortForwarding: "",
	}
	if d.WebSessionID != "" {
		ext[session.ExtWebSession] = d.WebSessionID
	}
	cert := &ssh.Certificate{
		Key: b.appr.signer.PublicKey(), Serial: serial, CertType: ssh.UserCert, KeyId: d.UserID,
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-session.CertBackdate).Unix()),
		ValidBefore:     uint64(now.Add(min(p.MaxSessionTTL(roles), session.MaxCertTTL)).Unix()),
		Permissions:     ssh.Permissions{CriticalOptions: map[string]string{}, Extensions: ext},
	}
	if err := cert.SignCert(b.rand, b.appr.signer); err != nil {
		return nil, err
	}
	return cert, nil
}

// auditApproval emits one approval-related event. userID is set only for
// a verified (approved) identity.
func (b *Bastion) auditApproval(meta ssh.ConnMetadata, src netip.Addr, typ, decision, reason string, attrs map[string]string, userID ...string) {
	login, tgt, _ := splitUser(meta.User())
	ev := audit.Event{
		Type: typ, SourceIP: addrString(src), Target: tgt, Decision: decision, Reason: reason,
		Instance: b.cfg.Instance, Attrs: map[string]string{"login": login, "method": "keyboard-interactive"},
	}
	for k, v := range attrs {
		ev.Attrs[k] = v
	}
	if len(userID) > 0 {
		ev.UserID = userID[0]
	}
	b.audit.Emit(context.Background(), ev)
}
