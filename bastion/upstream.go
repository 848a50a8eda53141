package bastion

// The upstream leg: for every connection the bastion makes a fresh
// ed25519 key and a certificate for it (principal = the requested login,
// valid for at most MaxUpstreamCertTTL), signed by the upstream CA that
// the target's sshd trusts (TrustedUserCAKeys). The key never leaves
// memory and is useless minutes later. The target's host key must match
// the configured key or carry a certificate from the configured host CA;
// anything else refuses the connection.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
)

// Upstream failure reason codes (audit).
const (
	ReasonHostKeyMismatch = "host-key-mismatch"
	ReasonDialFailed      = "dial-failed"
	ReasonUpstreamAuth    = "upstream-handshake-failed"
)

// upstreamFuture is the result of the background dial, ready when done is
// closed.
type upstreamFuture struct {
	done  chan struct{}
	conn  ssh.Conn
	chans <-chan ssh.NewChannel // what the target initiates (served by conn.run)
	reqs  <-chan *ssh.Request
	err   error
	msg   string // for the user, with a reference
}

// errHostKey marks a host key verification failure.
type errHostKey struct{ detail string }

func (e *errHostKey) Error() string { return "host key verification failed: " + e.detail }

// upstream waits for the dial started by setup.
func (c *conn) upstream() (ssh.Conn, error) {
	select {
	case <-c.up.done:
		return c.up.conn, c.up.err
	case <-c.ctx.Done():
		return nil, context.Cause(c.ctx)
	}
}

// dialUpstream connects to the target; it runs once per connection in the
// background so the target handshake overlaps the client's channel setup.
func (c *conn) dialUpstream() {
	defer close(c.up.done)
	uc, chans, reqs, err := c.b.connectTarget(c.ctx, c.tgt, c.login, c.upstreamKeyID(), *c.granted())
	if err != nil {
		ref := audit.NewRef(c.b.rand)
		reason, msg := ReasonDialFailed, fmt.Sprintf("cannot connect to target %s (%s)", c.tname, ref)
		var hk *errHostKey
		switch {
		case errors.As(err, &hk), strings.Contains(err.Error(), "no common algorithm for host key"):
			reason = ReasonHostKeyMismatch
			msg = fmt.Sprintf("the host key of target %s does not match the key configured for it; "+
				"refusing to connect (possible interception or a re-installed host; ask an administrator to verify and update it) (%s)",
				c.tname, ref)
		case c.ctx.Err() == nil && !isNetError(err):
			reason = ReasonUpstreamAuth
		}
		ev := c.event(TypeSSHUpstream)
		ev.Decision, ev.Reason, ev.Ref = audit.Deny, reason, ref
		ev.Attrs["addr"] = c.tgt.Addr
		c.b.audit.Emit(context.Background(), ev)
		c.b.log.Warn("upstream connection failed", "session", c.id, "target", c.tname, "reason", reason, "ref", ref, "err", err)
		c.up.err, c.up.msg = err, msg
		return
	}
	c.up.conn, c.up.chans, c.up.reqs = uc, chans, reqs
}

// upstreamChannel serves a channel the target opens: agent channels are
// relayed when agent forwarding was granted and requested, anything else
// is refused. (conn.run serves the target's channels and requests in its
// own loop instead of ssh.Client's three goroutines: idle sessions must
// stay cheap.)
func (c *conn) upstreamChannel(nc ssh.NewChannel) {
	if nc.ChannelType() == "auth-agent@openssh.com" && c.agentOn.Load() {
		c.channels.Add(1)
		go func() {
			defer c.channels.Done()
			c.relayAgent(nc)
		}()
		return
	}
	nc.Reject(ssh.Prohibited, "not allowed")
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// upstreamKeyID names the upstream certificate in the target's auth log:
// who, through which bastion session.
func (c *conn) upstreamKeyID() string {
	return "portcullis:" + c.userID + ":" + c.id
}

// closeUpstream closes the target connection once the dial is over.
func (c *conn) closeUpstream() {
	select {
	case <-c.up.done:
		if c.up.conn != nil {
			c.up.conn.Close()
		}
	default:
		// Still dialling: the context is cancelled, the dial will fail and
		// the client will never be used.
	}
}

// connectTarget dials t and authenticates as login with a fresh
// certificate.
func (b *Bastion) connectTarget(ctx context.Context, t *target, login, keyID string, g grant) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	signer, err := b.upstreamSigner(login, keyID, g)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.UpstreamDialTimeout)
	defer cancel()
	nc, err := b.dialer.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, nil, nil, err
	}
	// The handshake obeys the same deadline as the dial.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	cfg := &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: upstreamCiphers, Rand: b.rand},
		User:              login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   b.hostKeyCallback(t),
		HostKeyAlgorithms: hostKeyAlgorithms(t),
		ClientVersion:     "SSH-2.0-Portcullis",
	}
	sc, chans, reqs, err := ssh.NewClientConn(newReadConn(nc), t.Addr, cfg)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	return sc, chans, reqs, nil
}

// upstreamSigner makes the per-session key and certificate.
func (b *Bastion) upstreamSigner(login, keyID string, g grant) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(b.rand)
	if err != nil {
		return nil, err
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	var serial [8]byte
	if _, err := io.ReadFull(b.rand, serial[:]); err != nil {
		return nil, err
	}
	now := b.now()
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		Serial:          beUint64(serial[:]),
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{login},
		// Backdated a little for target clock skew; the whole window stays
		// within MaxUpstreamCertTTL.
		ValidAfter:  uint64(now.Add(-time.Minute).Unix()),
		ValidBefore: uint64(now.Add(MaxUpstreamCertTTL - time.Minute).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{}},
	}
	if g.pty {
		cert.Extensions["permit-pty"] = ""
	}
	if len(g.forwards) > 0 {
		cert.Extensions["permit-port-forwarding"] = ""
	}
	if g.agent {
		cert.Extensions["permit-agent-forwarding"] = ""
	}
	if err := cert.SignCert(b.rand, b.cfg.UpstreamCA); err != nil {
		return nil, err
	}
	return ssh.NewCertSigner(cert, key)
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// hostKeyCallback verifies the target strictly: the exact configured key,
// or a host certificate from the configured CA naming the target's host
// (or its configured name) as a principal.
func (b *Bastion) hostKeyCallback(t *target) ssh.HostKeyCallback {
	if t.hostKey != nil {
		want := t.hostKey.Marshal()
		return func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), want) {
				return &errHostKey{detail: "presented " + ssh.FingerprintSHA256(key) + ", configured " + ssh.FingerprintSHA256(t.hostKey)}
			}
			return nil
		}
	}
	ca := t.hostCA.Marshal()
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool { return bytes.Equal(auth.Marshal(), ca) },
		Clock:           b.now,
	}
	return func(addr string, remote net.Addr, key ssh.PublicKey) error {
		cert, ok := key.(*ssh.Certificate)
		if !ok {
			return &errHostKey{detail: "plain host key " + ssh.FingerprintSHA256(key) + " where a host certificate was expected"}
		}
		err := checker.CheckHostKey(addr, remote, key)
		if err != nil {
			// Also accept the target's configured name as principal.
			if err2 := checker.CheckHostKey(net.JoinHostPort(t.Name, "22"), remote, key); err2 == nil {
				return nil
			}
			return &errHostKey{detail: "host certificate " + strconv.FormatUint(cert.Serial, 10) + ": " + err.Error()}
		}
		return nil
	}
}

// hostKeyAlgorithms makes the target present the kind of key we can
// verify (its configured key type, or certificates).
func hostKeyAlgorithms(t *target) []string {
	if t.hostKey != nil {
		switch t.hostKey.Type() {
		case ssh.KeyAlgoRSA:
			return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
		default:
			return []string{t.hostKey.Type()}
		}
	}
	return []string{
		ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	}
}
