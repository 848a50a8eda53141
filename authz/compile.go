package authz

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Compile validates cfg and builds the immutable Policy used by Evaluate.
//
// Errors are an errors.Join of *FieldError whose paths are relative to the
// policy section and use the config file's key names, e.g.
// "roles[1].allow[0].apps[0]". Besides malformed values (bad CIDRs, methods,
// paths, negative durations, duplicate or empty names, unknown app/target
// references) Compile rejects rules and roles that are unreachable by
// construction — they can only mislead a reviewer into believing some access
// is granted:
//   - an allow rule that deny rules of the same role cover entirely;
//   - a role, app or target whose allowed_cidrs share no address with the
//     global allowed_cidrs;
//   - a role with neither groups nor users, unless it is Requestable
//     (held only through just-in-time grants);
//   - a rule that names no app, target or target label;
//   - path_prefixes/methods without apps, logins without targets, and an
//     SSH rule without logins (an empty list never means "any").
func Compile(cfg PolicyConfig) (*Policy, error) {
	c := compiler{seen: map[string]map[string]int{}, p: &Policy{
		appIdx:  map[string]int{},
		tgtIdx:  map[string]int{},
		roleIdx: map[string]*role{},
		byGroup: map[string][]string{},
		byUser:  map[string][]string{},
		byEmail: map[string][]string{},
	}}
	c.p.global = c.cidrs("allowed_cidrs", cfg.AllowedCIDRs)
	c.apps(cfg.Apps)
	c.targets(cfg.Targets)
	for i, rc := range cfg.Roles {
		c.role(i, rc)
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	for _, m := range []map[string][]string{c.p.byGroup, c.p.byUser, c.p.byEmail} {
		for k, v := range m {
			slices.Sort(v)
			m[k] = slices.Compact(v)
		}
	}
	c.p.hasEmail = len(c.p.byEmail) > 0
	return c.p, nil
}

type compiler struct {
	p    *Policy
	errs []error
	// seen maps "app"/"target"/"role" → name → config index of its first
	// definition, for duplicate messages.
	seen map[string]map[string]int
}

func (c *compiler) fail(path, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// at builds the key path base.key[i] ("key[i]" when base is empty).
func at(base, key string, i int) string {
	return join(base, key) + "[" + strconv.Itoa(i) + "]"
}

func join(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// cidrs parses an allowlist, reporting each bad entry at path[i].
func (c *compiler) cidrs(path string, list []string) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range list {
		p, err := parseCIDR(s)
		if err != nil {
			c.fail(at("", path, i), "%v", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// scopedCIDRs parses a role/app/target allowlist and refuses one that shares
// no address with the global allowlist: every request would fail the global
// check or this one, so whatever it guards could never be reached.
func (c *compiler) scopedCIDRs(base string, list []string, what string) []netip.Prefix {
	path := join(base, "allowed_cidrs")
	n := len(c.errs)
	out := c.cidrs(path, list)
	if len(c.errs) == n && len(out) > 0 && len(c.p.global) > 0 && !overlapsAny(out, c.p.global) {
		c.fail(path, "no entry overlaps the global allowed_cidrs, so the %s could never be reached", what)
	}
	return out
}

// name checks a role/app/target name. Names appear in decision rule paths
// ("roles[x].deny[0]"), audit events and identity headers, so brackets,
// commas, quotes, "*" (the wildcard), whitespace and control characters are
// refused.
func (c *compiler) name(listKey string, i int, kind, n string) bool {
	path := at("", listKey, i) + ".name"
	if n == "" {
		c.fail(path, "%s name is required", kind)
		return false
	}
	if k := strings.IndexFunc(n, badNameRune); k >= 0 {
		r, _ := utf8.DecodeRuneInString(n[k:])
		c.fail(path, "%s name %q contains %q; use ASCII letters, digits and punctuation other than *[],'\"`\\/", kind, n, r)
		return false
	}
	seen := c.seen[kind]
	if seen == nil {
		seen = map[string]int{}
		c.seen[kind] = seen
	}
	if j, dup := seen[n]; dup {
		c.fail(path, "duplicate %s name %q (first defined at %s)", kind, n, at("", listKey, j))
		return false
	}
	seen[n] = i
	return true
}

func badNameRune(r rune) bool {
	return r <= ' ' || r == 0x7f || strings.ContainsRune("*[],\"'`\\/", r) || r > 0x7e
}

func (c *compiler) apps(list []AppConfig) {
	for i, ac := range list {
		base := at("", "apps", i)
		ok := c.name("apps", i, "app", ac.Name)
		a := &app{
			cfg:        cloneApp(ac),
			cidrs:      c.scopedCIDRs(base, ac.AllowedCIDRs, "app"),
			ruleCIDRs:  "apps[" + ac.Name + "].allowed_cidrs",
			rulePublic: "apps[" + ac.Name + "].public",
		}
		if ok {
			c.p.appIdx[ac.Name] = len(c.p.apps)
			c.p.apps = append(c.p.apps, a)
		}
	}
}

func (c *compiler) targets(list []TargetConfig) {
	for i, tc := range list {
		base := at("", "targets", i)
		ok := c.name("targets", i, "target", tc.Name)
		for _, k := range sortedKeys(tc.Labels) {
			if k == "" || tc.Labels[k] == "" {
				c.fail(labelPath(base, "labels", k), "label %q=%q: keys and values must be non-empty", k, tc.Labels[k])
			}
		}
		t := &target{
			cfg:       cloneTarget(tc),
			cidrs:     c.scopedCIDRs(base, tc.AllowedCIDRs, "target"),
			ruleCIDRs: "targets[" + tc.Name + "].allowed_cidrs",
		}
		if ok {
			c.p.tgtIdx[tc.Name] = len(c.p.targets)
			c.p.targets = append(c.p.targets, t)
		}
	}
}

func (c *compiler) role(i int, rc RoleConfig) {
	base := at("", "roles", i)
	n := len(c.errs)
	nameOK := c.name("roles", i, "role", rc.Name)
	c.nonEmpty(base, "groups", rc.Groups)
	c.nonEmpty(base, "users", rc.Users)
	if len(rc.Groups) == 0 && len(rc.Users) == 0 && !rc.Requestable {
		c.fail(base, "role has no groups and no users, so nobody can ever hold it")
	}
	r := &role{
		cfg:   cloneRole(rc),
		name:  rc.Name,
		cidrs: c.scopedCIDRs(base, rc.AllowedCIDRs, "role"),
		ttl:   rc.MaxSessionTTL,
		mfa:   rc.RequireMFA == nil || *rc.RequireMFA,
	}
	switch {
	case rc.MaxSessionTTL < 0:
		c.fail(join(base, "max_session_ttl"), "must not be negative")
	case rc.MaxSessionTTL == 0:
		r.ttl = DefaultMaxSessionTTL
	}
	r.cfg.MaxSessionTTL = r.ttl
	r.cfg.RequireMFA = &r.mfa
	for j, pf := range rc.PortForwards {
		if err := checkPortForward(pf); err != nil {
			c.fail(at(base, "port_forwards", j), "%v", err)
		}
	}
	prefix := "roles[" + rc.Name + "]."
	allow := c.rules(base, prefix, "allow", rc.Allow)
	deny := c.rules(base, prefix, "deny", rc.Deny)
	for j, a := range allow {
		if a == nil || slices.Contains(deny, nil) {
			continue
		}
		if by := c.coveredBy(a, deny); by != nil {
			c.fail(at(base, "allow", j), "unreachable: everything it allows is denied by %s of the same role", strings.Join(by, ", "))
		}
	}
	if len(c.errs) > n || !nameOK {
		return
	}
	r.ruleCIDRs = prefix + "allowed_cidrs"
	r.ruleMFA = prefix + "require_mfa"
	r.ruleTTL = prefix + "max_session_ttl"
	c.index(r, allow, deny)
	c.p.roleIdx[rc.Name] = r
	for _, g := range rc.Groups {
		c.p.byGroup[g] = append(c.p.byGroup[g], rc.Name)
	}
	for _, u := range rc.Users {
		c.p.byUser[u] = append(c.p.byUser[u], rc.Name)
		if strings.Contains(u, "@") {
			e := strings.ToLower(u)
			c.p.byEmail[e] = append(c.p.byEmail[e], rc.Name)
		}
	}
}

// index sorts a role's rules by enforcement kind and app/target, so that
// Evaluate does one slice index per role instead of scanning every rule.
func (c *compiler) index(r *role, allow, deny []*rule) {
	for k := range 2 {
		n := len(c.p.apps)
		if k == kindIdxSSH {
			n = len(c.p.targets)
		}
		r.deny[k] = make([][]*rule, n)
		r.allow[k] = make([][]*rule, n)
		for idx := range n {
			r.deny[k][idx] = c.applicable(k, idx, deny)
			r.allow[k][idx] = c.applicable(k, idx, allow)
		}
	}
}

func (c *compiler) nonEmpty(base, key string, list []string) {
	for j, s := range list {
		if strings.TrimSpace(s) == "" {
			c.fail(at(base, key, j), "must not be empty")
		}
	}
}

// applicable returns the rules (config order) that can match app or target
// idx, so Evaluate looks at nothing else.
func (c *compiler) applicable(k, idx int, rules []*rule) []*rule {
	var out []*rule
	for _, ru := range rules {
		var hit bool
		if k == kindIdxHTTP {
			hit = ru.allApps || slices.Contains(ru.apps, c.p.apps[idx].cfg.Name)
		} else {
			t := c.p.targets[idx].cfg
			hit = ru.allTargets || slices.Contains(ru.targets, t.Name) || labelsMatch(ru.labels, t.Labels)
		}
		if hit {
			out = append(out, ru)
		}
	}
	return out
}

// labelsMatch reports whether a non-empty selector is a subset of labels.
func labelsMatch(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// checkPortForward validates a direct-tcpip pattern "host:port" (the
// bastion matches them); host may be "*" or a bracketed IPv6 address, port
// "*" or 1-65535.
func checkPortForward(s string) error {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("port forward %q must be host:port (host or port may be \"*\")", s)
	}
	if port := s[i+1:]; port != "*" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("port forward %q: port must be 1-65535 or \"*\"", s)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
