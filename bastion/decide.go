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
	// viaGrant are the granting roles held only through a just-in-time
	// grant (not in the certificate's base roles).
	viaGrant []string
	// maxEnd is the auth time plus the strictest max_session_ttl among
	// the granting roles.
	maxEnd time.Time
	// grantEnd is when the last granting role ends when every granting
	// role is held only through a grant with an expiry; zero when a base
	// role (or a grant without expiry) grants.
	grantEnd time.Time
	// recheck is the earliest expiry of a grant-only granting role (zero:
	// none): the watchdog decides again then, so that an expired grant
	// stops lending the session anything (grants.go).
	recheck time.Time
	// deadline is when the session must end: maxEnd, clipped to grantEnd.
	deadline time.Time
}

// setDeadline derives deadline from maxEnd and grantEnd.
func (g *grant) setDeadline() {
	g.deadline = g.maxEnd
	if !g.grantEnd.IsZero() && g.grantEnd.Before(g.deadline) {
		g.deadline = g.grantEnd
	}
}

// endsByGrant reports whether the deadline is a grant's expiry rather
// than the maximum session duration.
func (g *grant) endsByGrant() bool {
	return !g.grantEnd.IsZero() && g.deadline.Equal(g.grantEnd) && g.grantEnd.Before(g.maxEnd)
}

// lendsMore reports whether g allows something that n does not: a
// session can only go on under n when it loses nothing (channels already
// open cannot be narrowed, so losing a permission ends the session).
func (g *grant) lendsMore(n *grant) bool {
	if (g.pty && !n.pty) || (g.fileTransfer && !n.fileTransfer) || (g.agent && !n.agent) {
		return true
	}
	for _, f := range g.forwards {
		if !slices.Contains(n.forwards, f) {
			return true
		}
	}
	return false
}

// ReasonPerSessionMFA denies a connection when a granting role requires a
// per-connection TOTP code and none was verified for this connection.
const ReasonPerSessionMFA authz.Reason = "per-session-mfa-required"

// access is one question to decide: who (from the verified certificate,
// plus the just-in-time grants held now), from where, which login on which
// target.
type access struct {
	sub        authz.Subject
	base       []string // the certificate's roles (sub.Roles adds the active grants)
	src        netip.Addr
	target     string
	login      string
	certExt    map[string]string
	sessionMFA bool // a TOTP code was verified on this connection
	// within, when not nil, limits the roles that may grant to these: a
	// live session decided again never gains what it did not start with.
	within []string
}

// accessFor builds the question from a verified certificate. MFA is true
// because the CA issues certificates only after a web login with TOTP;
// AuthTime is when the certificate was issued. The subject's roles are the
// certificate's (base) roles and the roles of the user's active
// just-in-time grants (memory only: the grant cache, no store round trip).
func (b *Bastion) accessFor(cert *ssh.Certificate, src netip.Addr, target, login string) access {
	base := session.RolesFromCert(cert)
	return access{
		sub: authz.Subject{
			UserID: cert.KeyId, Roles: b.effectiveRoles(cert.KeyId, base, b.now()), MFA: true, AuthTime: session.IssuedAt(cert),
		},
		base: base, src: src, target: target, login: login, certExt: cert.Extensions,
	}
}

// decide asks the policy about a and derives the grant. Deny by default:
// a nil policy denies. Every role of the subject takes part in the
// decision (a deny rule of any role wins); only roles in a.within (when
// set) and roles still held when their grant is looked up may grant.
func (b *Bastion) decide(p *authz.Policy, a access) (authz.Decision, grant) {
	sub, certExt := a.sub, a.certExt
	req := authz.Request{Kind: authz.KindSSH, Subject: sub, SourceIP: a.src, Target: a.target, Login: a.login}
	now := b.now()
	dec := p.Evaluate(&req, now)
	if !dec.Allow {
		return dec, grant{}
	}
	var g grant
	unbounded := false // a base role or a grant without expiry grants
	for _, name := range sub.Roles {
		if a.within != nil && !slices.Contains(a.within, name) {
			continue
		}
		one := req
		one.Subject.Roles = []string{name}
		if !p.Evaluate(&one, now).Allow {
			continue
		}
		rc, ok := p.Role(name)
		if !ok {
			continue
		}
		var until time.Time
		viaGrant := !slices.Contains(a.base, name)
		if viaGrant {
			// Held only through a just-in-time grant: it grants until
			// the grant ends. Gone since the roles were read: nothing.
			if until, ok = b.grantedUntil(sub.UserID, name, now); !ok {
				continue
			}
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
		if viaGrant {
			g.viaGrant = append(g.viaGrant, name)
		}
		if !viaGrant || until.IsZero() {
			unbounded = true
			continue
		}
		if until.After(g.grantEnd) {
			g.grantEnd = until
		}
		if g.recheck.IsZero() || until.Before(g.recheck) {
			g.recheck = until
		}
	}
	if len(g.roles) == 0 {
		// No role that is still held allows alone (a grant ended between
		// reading the roles and now, or a re-decision's roles no longer
		// allow); never widen: deny.
		return authz.Decision{Reason: authz.ReasonNoMatchingRule}, grant{}
	}
	if unbounded {
		g.grantEnd = time.Time{}
	}
	if !slices.Contains(g.roles, dec.Role) {
		// The role the policy named first may not grant here (not
		// within, or its grant just ended): attribute the decision to
		// the roles that do.
		r := req
		r.Subject.Roles = g.roles
		if d := p.Evaluate(&r, now); d.Allow {
			dec.Role, dec.Rule = d.Role, d.Rule
		}
	}
	_, g.pty = certExt[session.ExtPermitPTY]
	if _, ok := certExt[session.ExtPermitPortForwarding]; !ok {
		g.forwards = nil
	}
	g.maxEnd = sub.AuthTime.Add(p.MaxSessionTTL(g.roles))
	g.setDeadline()
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
