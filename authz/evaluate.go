package authz

import (
	"net/netip"
	"strings"
	"time"
)

// MaxAuthTimeSkew is how far in the future a Subject's AuthTime may lie
// (clock differences between gateway instances sharing sessions). Beyond it
// the auth time is not believable and the session counts as too old.
const MaxAuthTimeSkew = 2 * time.Minute

// Evaluate decides one request. It is deny by default and never panics,
// also on a nil Policy or Request.
//
// Order: invalid request (kind, fields, canonical path) → no subject →
// source IP against the global allowlist → unknown app/target → app/target
// allowlist → no known role → deny rules of ALL the subject's known roles
// (deny wins, whatever the role's other conditions) → allow rules, where a
// role whose rule matches still has to pass its own allowlist, MFA and
// max_session_ttl → default deny. When an allow rule matched but its role's
// conditions failed, that condition is the reason (so the enforcement point
// can ask for a fresh login); otherwise the reason is no-matching-rule.
//
// A public app skips the subject and role steps: only the allowlists apply.
//
// The allow path for HTTP does not allocate: every string in a Decision is
// precomputed by Compile.
func (p *Policy) Evaluate(req *Request, now time.Time) Decision {
	if p == nil {
		return Decision{Reason: ReasonNoMatchingRule}
	}
	if req == nil {
		return Decision{Reason: ReasonInvalidRequest}
	}
	switch req.Kind {
	case KindHTTP:
		return p.evalHTTP(req, now)
	case KindSSH:
		return p.evalSSH(req, now)
	}
	return Decision{Reason: ReasonInvalidRequest}
}

func (p *Policy) evalHTTP(req *Request, now time.Time) Decision {
	if req.App == "" || !validMethod(req.Method) {
		return Decision{Reason: ReasonInvalidRequest}
	}
	// Callers are meant to pass NormalizePath output; re-checking is cheap
	// and keeps a forgotten normalisation from becoming a bypass.
	if !isCanonicalPath(req.Path) {
		return Decision{Reason: ReasonInvalidPath}
	}
	idx, known := p.appIdx[req.App]
	var a *app
	if known {
		a = p.apps[idx]
	}
	public := known && a.cfg.Public
	if !public && req.Subject.UserID == "" {
		return Decision{Reason: ReasonNoSubject}
	}
	ip, d, ok := p.source(req.SourceIP)
	if !ok {
		return d
	}
	if !known {
		return Decision{Reason: ReasonUnknownApp}
	}
	if !allowedBy(a.cidrs, ip) {
		return Decision{Reason: ReasonSourceIPNotAllowed, Rule: a.ruleCIDRs}
	}
	if public {
		return Decision{Allow: true, Reason: ReasonAllowed, Rule: a.rulePublic}
	}
	return p.decide(req, ip, now, kindIdxHTTP, idx)
}

func (p *Policy) evalSSH(req *Request, now time.Time) Decision {
	if req.Target == "" || req.Login == "" {
		return Decision{Reason: ReasonInvalidRequest}
	}
	if req.Subject.UserID == "" {
		return Decision{Reason: ReasonNoSubject}
	}
	ip, d, ok := p.source(req.SourceIP)
	if !ok {
		return d
	}
	idx, known := p.tgtIdx[req.Target]
	if !known {
		return Decision{Reason: ReasonUnknownTarget}
	}
	t := p.targets[idx]
	if !allowedBy(t.cidrs, ip) {
		return Decision{Reason: ReasonSourceIPNotAllowed, Rule: t.ruleCIDRs}
	}
	return p.decide(req, ip, now, kindIdxSSH, idx)
}

// source validates and unmaps the client address and applies the global
// allowlist.
func (p *Policy) source(a netip.Addr) (netip.Addr, Decision, bool) {
	if !a.IsValid() {
		return a, Decision{Reason: ReasonInvalidSourceIP}, false
	}
	a = UnmapAddr(a)
	if !allowedBy(p.global, a) {
		return a, Decision{Reason: ReasonSourceIPNotAllowed, Rule: "allowed_cidrs"}, false
	}
	return a, Decision{}, true
}

// decide runs the role steps for app or target idx of kind k.
func (p *Policy) decide(req *Request, ip netip.Addr, now time.Time, k, idx int) Decision {
	s := &req.Subject
	known := false
	for _, name := range s.Roles {
		r := p.roleIdx[name]
		if r == nil {
			continue // a role removed by a reload grants nothing
		}
		known = true
		for _, ru := range r.deny[k][idx] {
			if ru.match(req) {
				return Decision{Reason: ReasonDenyRule, Role: r.name, Rule: ru.name}
			}
		}
	}
	if !known {
		return Decision{Reason: ReasonNoRoles}
	}
	var blocked Decision
	for _, name := range s.Roles {
		r := p.roleIdx[name]
		if r == nil {
			continue
		}
		ru := firstMatch(r.allow[k][idx], req)
		if ru == nil {
			continue
		}
		if why, rule := r.conditions(s, ip, now); why != "" {
			if blocked.Reason == "" {
				blocked = Decision{Reason: why, Role: r.name, Rule: rule}
			}
			continue
		}
		return Decision{Allow: true, Reason: ReasonAllowed, Role: r.name, Rule: ru.name}
	}
	if blocked.Reason != "" {
		return blocked
	}
	return Decision{Reason: ReasonNoMatchingRule}
}

func firstMatch(rules []*rule, req *Request) *rule {
	for _, ru := range rules {
		if ru.match(req) {
			return ru
		}
	}
	return nil
}

// conditions checks the role's own allowlist, MFA and session age. A zero
// AuthTime is treated as infinitely old; a session is too old from the
// instant its age reaches max_session_ttl.
func (r *role) conditions(s *Subject, ip netip.Addr, now time.Time) (Reason, string) {
	if !allowedBy(r.cidrs, ip) {
		return ReasonSourceIPNotAllowed, r.ruleCIDRs
	}
	if r.mfa && !s.MFA {
		return ReasonMFARequired, r.ruleMFA
	}
	if s.AuthTime.IsZero() {
		return ReasonSessionTooOld, r.ruleTTL
	}
	if age := now.Sub(s.AuthTime); age >= r.ttl || age < -MaxAuthTimeSkew {
		return ReasonSessionTooOld, r.ruleTTL
	}
	return "", ""
}

// match tests the parts of a rule not already settled by the per-app or
// per-target index: method and path for HTTP, login for SSH.
func (ru *rule) match(req *Request) bool {
	if req.Kind == KindSSH {
		if ru.allLogins {
			return true
		}
		for _, l := range ru.logins {
			if l == req.Login {
				return true
			}
		}
		return false
	}
	if len(ru.methods) > 0 {
		hit := false
		for _, m := range ru.methods {
			// HTTP methods are case-sensitive, but upstreams are not
			// always; folding can only widen a deny, and an allow for
			// "GET" admitting "get" grants nothing new.
			if strings.EqualFold(m, req.Method) {
				hit = true
				break
			}
		}
		if !hit {
			return false
		}
	}
	if len(ru.prefixes) == 0 {
		return true
	}
	for _, pfx := range ru.prefixes {
		if pathHasPrefix(req.Path, pfx, ru.deny) {
			return true
		}
	}
	return false
}
