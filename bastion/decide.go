package bastion

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// grant is what an allowed connection may do beyond a plain shell/exec.
// Permissions are the union over the roles that themselves allow this
// login on this target (a role that grants nothing here lends nothing),
// intersected with what the certificate permits where the CA encodes it
// (pty, port forwarding).
type grant struct {
	roles        []string
	pty          bool
	fileTransfer bool
	agent        bool
	forwards     []fwdPattern
	// deadline is when the session must end: the auth time plus the
	// strictest max_session_ttl among the granting roles.
	deadline time.Time
}

// ReasonPerSessionMFA denies a connection when a granting role requires a
// per-connection TOTP code and none was verified for this connection.
const ReasonPerSessionMFA authz.Reason = "per-session-mfa-required"

// access is one question to decide: who (from the verified certificate),
// from where, which login on which target.
type access struct {
	sub        authz.Subject
	src        netip.Addr
	target     string
	login      string
	certExt    map[string]string
	sessionMFA bool // a TOTP code was verified on this connection
}

// accessFor builds the question from a verified certificate. MFA is true
// because the CA issues certificates only after a web login with TOTP;
// AuthTime is when the certificate was issued.
func accessFor(cert *ssh.Certificate, src netip.Addr, target, login string) access {
	return access{
		sub: authz.Subject{
			UserID: cert.KeyId, Roles: session.RolesFromCert(cert), MFA: true, AuthTime: session.IssuedAt(cert),
		},
		src: src, target: target, login: login, certExt: cert.Extensions,
	}
}

// decide asks the policy about a and derives the grant. Deny by default:
// a nil policy denies.
func (b *Bastion) decide(p *authz.Policy, a access) (authz.Decision, grant) {
	sub, certExt := a.sub, a.certExt
	req := authz.Request{Kind: authz.KindSSH, Subject: sub, SourceIP: a.src, Target: a.target, Login: a.login}
	now := b.now()
	dec := p.Evaluate(&req, now)
	if !dec.Allow {
		return dec, grant{}
	}
	var g grant
	for _, name := range sub.Roles {
		one := req
		one.Subject.Roles = []string{name}
		if !p.Evaluate(&one, now).Allow {
			continue
		}
		rc, ok := p.Role(name)
		if !ok {
			continue
		}
		if rc.PerSessionMFA && !a.sessionMFA {
			return authz.Decision{Reason: ReasonPerSessionMFA, Role: name}, grant{}
		}
		g.roles = append(g.roles, name)
		g.fileTransfer = g.fileTransfer || rc.FileTransfer
		g.agent = g.agent || rc.AgentForward
		for _, s := range rc.PortForwards {
			if fp, err := parseForwardPattern(s); err == nil {
				g.forwards = append(g.forwards, fp)
			}
		}
	}
	if len(g.roles) == 0 {
		// The roles only allow together (cannot happen with today's
		// policy semantics); never widen: deny.
		return authz.Decision{Reason: authz.ReasonNoMatchingRule}, grant{}
	}
	_, g.pty = certExt[session.ExtPermitPTY]
	if _, ok := certExt[session.ExtPermitPortForwarding]; !ok {
		g.forwards = nil
	}
	g.deadline = sub.AuthTime.Add(p.MaxSessionTTL(g.roles))
	return dec, g
}

// listChannel serves a connection without a target: on a session
// channel's shell/exec it prints the targets and logins the user may use.
func (c *conn) listChannel(nc ssh.NewChannel) {
	if nc.ChannelType() != "session" {
		nc.Reject(ssh.Prohibited, "no target given: connect as login@target")
		return
	}
	answerSession(nc, func(ch ssh.Channel) uint32 {
		fmt.Fprint(ch, c.targetList())
		return 0
	})
}

// targetList renders the targets the user may reach, with the logins of
// their certificate that policy allows on each.
func (c *conn) targetList() string {
	p := c.b.policy.Load()
	var sb strings.Builder
	var shown int
	fmt.Fprintf(&sb, "Targets you may reach (%s):\r\n", c.userID)
	host, port, _ := net.SplitHostPort(c.sconn.LocalAddr().String())
	for _, t := range c.b.targetSeq {
		var logins []string
		for _, login := range c.cert.ValidPrincipals {
			if !validLogin(login) {
				continue
			}
			req := authz.Request{Kind: authz.KindSSH, Subject: c.access().sub, SourceIP: c.src, Target: t.Name, Login: login}
			if p.Evaluate(&req, c.b.now()).Allow {
				logins = append(logins, login)
			}
		}
		if len(logins) == 0 {
			continue
		}
		slices.Sort(logins)
		shown++
		fmt.Fprintf(&sb, "  %-24s logins: %s\r\n", t.Name, strings.Join(logins, ", "))
	}
	if shown == 0 {
		sb.WriteString("  (none)\r\n")
	} else {
		fmt.Fprintf(&sb, "Connect with: ssh -p %s LOGIN@TARGET@%s\r\n", port, host)
	}
	ev := c.event(TypeSSHList)
	ev.Decision = audit.Allow
	ev.Attrs["targets"] = fmt.Sprint(shown)
	c.b.audit.Emit(context.Background(), ev)
	return sb.String()
}
