package authz

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// DefaultMaxSessionTTL applies to roles whose max_session_ttl is zero.
const DefaultMaxSessionTTL = 8 * time.Hour

// Policy is a compiled, immutable policy. Build it with Compile; a nil
// *Policy denies everything. Its methods are safe for concurrent use, and
// callers swap whole policies atomically on reload.
type Policy struct {
	global []netip.Prefix // empty = any source

	apps     []*app
	appIdx   map[string]int
	targets  []*target
	tgtIdx   map[string]int
	roleIdx  map[string]*role
	byGroup  map[string][]string // IdP group → role names (sorted)
	byUser   map[string][]string // user ID → role names (sorted)
	byEmail  map[string][]string // lower-cased email → role names (sorted)
	hasEmail bool
}

type app struct {
	cfg        AppConfig
	cidrs      []netip.Prefix
	ruleCIDRs  string // "apps[grafana].allowed_cidrs"
	rulePublic string // "apps[grafana].public"
}

type target struct {
	cfg       TargetConfig
	cidrs     []netip.Prefix
	ruleCIDRs string
}

// Indexes into role.deny / role.allow: rules are pre-sorted per enforcement
// kind and per app/target so Evaluate never scans rules that cannot apply.
const (
	kindIdxHTTP = 0
	kindIdxSSH  = 1
)

type role struct {
	cfg   RoleConfig
	name  string
	cidrs []netip.Prefix
	ttl   time.Duration
	mfa   bool
	// deny[k][i] / allow[k][i]: the rules of kind k that can match app or
	// target i, in config order (so the reported rule is the first one).
	deny, allow [2][][]*rule

	ruleCIDRs, ruleMFA, ruleTTL string
}

// rule is a compiled Rule. Lists are nil when they do not restrict.
type rule struct {
	name       string // "roles[engineer].allow[0]"
	deny       bool
	allApps    bool
	apps       []string
	prefixes   []string // canonical, no trailing slash except "/"
	methods    []string // upper case
	allTargets bool
	targets    []string
	labels     map[string]string
	allLogins  bool
	logins     []string
}

func (r *rule) namesHTTP() bool { return r.allApps || len(r.apps) > 0 }
func (r *rule) namesSSH() bool  { return r.allTargets || len(r.targets) > 0 || len(r.labels) > 0 }

// RolesFor maps a verified identity to role names: a role applies when one
// of groups is among its groups, or its users list names userID or (for
// entries that look like an email address) email, compared
// case-insensitively. The result is sorted and deduplicated.
func (p *Policy) RolesFor(userID, email string, groups []string) []string {
	if p == nil {
		return nil
	}
	var out []string
	if userID != "" {
		out = append(out, p.byUser[userID]...)
	}
	if p.hasEmail && strings.Contains(email, "@") {
		out = append(out, p.byEmail[strings.ToLower(email)]...)
	}
	for _, g := range groups {
		out = append(out, p.byGroup[g]...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// IsAdmin reports whether any of roles grants the admin API.
func (p *Policy) IsAdmin(roles []string) bool {
	if p == nil {
		return false
	}
	for _, n := range roles {
		if r := p.roleIdx[n]; r != nil && r.cfg.Admin {
			return true
		}
	}
	return false
}

// MaxSessionTTL is the smallest max_session_ttl among the known roles in
// roles, or DefaultMaxSessionTTL when none is known: a session must not
// outlive the strictest role it carries.
func (p *Policy) MaxSessionTTL(roles []string) time.Duration {
	ttl := time.Duration(0)
	if p != nil {
		for _, n := range roles {
			if r := p.roleIdx[n]; r != nil && (ttl == 0 || r.ttl < ttl) {
				ttl = r.ttl
			}
		}
	}
	if ttl == 0 {
		return DefaultMaxSessionTTL
	}
	return ttl
}

// RequiresMFA reports whether a login holding roles must complete a second
// factor. It is true when any known role requires it, and also when no role
// is known (fail closed).
func (p *Policy) RequiresMFA(roles []string) bool {
	if p == nil {
		return true
	}
	known := false
	for _, n := range roles {
		if r := p.roleIdx[n]; r != nil {
			if r.mfa {
				return true
			}
			known = true
		}
	}
	return !known
}

// App returns the configuration of the named app (a copy).
func (p *Policy) App(name string) (AppConfig, bool) {
	if p == nil {
		return AppConfig{}, false
	}
	i, ok := p.appIdx[name]
	if !ok {
		return AppConfig{}, false
	}
	return cloneApp(p.apps[i].cfg), true
}

// Role returns the configuration of the named role (a copy, with defaults
// applied: MaxSessionTTL and RequireMFA are always set).
func (p *Policy) Role(name string) (RoleConfig, bool) {
	if p == nil {
		return RoleConfig{}, false
	}
	r, ok := p.roleIdx[name]
	if !ok {
		return RoleConfig{}, false
	}
	return cloneRole(r.cfg), true
}

// Roles lists the configured roles sorted by name (copies, with defaults
// applied as in Role). Access reviews read the groups and users of every
// role from it.
func (p *Policy) Roles() []RoleConfig {
	if p == nil {
		return nil
	}
	out := make([]RoleConfig, 0, len(p.roleIdx))
	for _, r := range p.roleIdx {
		out = append(out, cloneRole(r.cfg))
	}
	slices.SortFunc(out, func(a, b RoleConfig) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Apps lists the configured apps in config order (copies).
func (p *Policy) Apps() []AppConfig {
	if p == nil {
		return nil
	}
	out := make([]AppConfig, len(p.apps))
	for i, a := range p.apps {
		out[i] = cloneApp(a.cfg)
	}
	return out
}

// Targets lists the configured SSH targets in config order (copies).
func (p *Policy) Targets() []TargetConfig {
	if p == nil {
		return nil
	}
	out := make([]TargetConfig, len(p.targets))
	for i, t := range p.targets {
		out[i] = cloneTarget(t.cfg)
	}
	return out
}

// The clone helpers keep the compiled policy immutable: nothing a caller
// does with a returned config can change a later decision.

func cloneApp(a AppConfig) AppConfig {
	a.AllowedCIDRs = slices.Clone(a.AllowedCIDRs)
	return a
}

func cloneTarget(t TargetConfig) TargetConfig {
	t.Labels = maps.Clone(t.Labels)
	t.AllowedCIDRs = slices.Clone(t.AllowedCIDRs)
	return t
}

func cloneRole(r RoleConfig) RoleConfig {
	r.Groups = slices.Clone(r.Groups)
	r.Users = slices.Clone(r.Users)
	r.AllowedCIDRs = slices.Clone(r.AllowedCIDRs)
	r.PortForwards = slices.Clone(r.PortForwards)
	if r.RequireMFA != nil {
		v := *r.RequireMFA
		r.RequireMFA = &v
	}
	r.Allow = cloneRules(r.Allow)
	r.Deny = cloneRules(r.Deny)
	return r
}

func cloneRules(rs []Rule) []Rule {
	if rs == nil {
		return nil
	}
	out := make([]Rule, len(rs))
	for i, r := range rs {
		out[i] = Rule{
			Apps:         slices.Clone(r.Apps),
			PathPrefixes: slices.Clone(r.PathPrefixes),
			Methods:      slices.Clone(r.Methods),
			Logins:       slices.Clone(r.Logins),
			Targets:      slices.Clone(r.Targets),
			TargetLabels: maps.Clone(r.TargetLabels),
		}
	}
	return out
}
