package authz

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// rules compiles one allow or deny list. The result has one entry per
// config rule, nil where the rule had errors.
func (c *compiler) rules(base, rolePrefix, key string, list []Rule) []*rule {
	out := make([]*rule, len(list))
	for j, r := range list {
		k := key + "[" + strconv.Itoa(j) + "]"
		out[j] = c.rule(join(base, k), rolePrefix+k, key == "deny", r)
	}
	return out
}

func (c *compiler) rule(path, name string, deny bool, r Rule) *rule {
	n := len(c.errs)
	if len(r.Apps) == 0 && len(r.Targets) == 0 && len(r.TargetLabels) == 0 {
		c.fail(path, "rule names no apps, targets or target_labels, so it can never match")
		return nil
	}
	ru := &rule{name: name, deny: deny}
	for j, a := range r.Apps {
		switch _, known := c.p.appIdx[a]; {
		case a == "*":
			ru.allApps = true
		case a == "":
			c.fail(at(path, "apps", j), "must not be empty")
		case !known:
			c.fail(at(path, "apps", j), "unknown app %q", a)
		case !slices.Contains(ru.apps, a):
			ru.apps = append(ru.apps, a)
		}
	}
	if len(r.Apps) == 0 {
		for _, k := range []struct {
			key  string
			list []string
		}{{"path_prefixes", r.PathPrefixes}, {"methods", r.Methods}} {
			if len(k.list) > 0 {
				c.fail(join(path, k.key), "%s apply only to apps and this rule names none", k.key)
			}
		}
	}
	for j, p := range r.PathPrefixes {
		canon, err := canonicalPrefix(p)
		if err != nil {
			c.fail(at(path, "path_prefixes", j), "%v", err)
			continue
		}
		ru.prefixes = append(ru.prefixes, canon)
	}
	for j, m := range r.Methods {
		if !validMethod(m) || m == "*" {
			c.fail(at(path, "methods", j), "invalid HTTP method %q (omit methods to match all)", m)
			continue
		}
		ru.methods = append(ru.methods, strings.ToUpper(m))
	}
	for j, t := range r.Targets {
		switch _, known := c.p.tgtIdx[t]; {
		case t == "*":
			ru.allTargets = true
		case t == "":
			c.fail(at(path, "targets", j), "must not be empty")
		case !known:
			c.fail(at(path, "targets", j), "unknown target %q", t)
		case !slices.Contains(ru.targets, t):
			ru.targets = append(ru.targets, t)
		}
	}
	for _, k := range sortedKeys(r.TargetLabels) {
		if k == "" || r.TargetLabels[k] == "" {
			c.fail(labelPath(path, "target_labels", k), "label %q=%q: keys and values must be non-empty", k, r.TargetLabels[k])
		}
	}
	if len(r.TargetLabels) > 0 {
		ru.labels = maps.Clone(r.TargetLabels)
	}
	c.logins(path, r, ru)
	if len(c.errs) > n {
		return nil
	}
	return ru
}

// logins compiles the SSH login list. Like certificate principals, an empty
// list never means "any": a rule that names targets must list logins or "*".
func (c *compiler) logins(path string, r Rule, ru *rule) {
	ssh := len(r.Targets) > 0 || len(r.TargetLabels) > 0
	switch {
	case ssh && len(r.Logins) == 0:
		c.fail(join(path, "logins"), "rule names SSH targets but no logins; list them or use \"*\" (an empty list never means any)")
	case !ssh && len(r.Logins) > 0:
		c.fail(join(path, "logins"), "logins apply only to SSH targets and this rule names none")
	}
	for j, l := range r.Logins {
		switch {
		case l == "*":
			ru.allLogins = true
		case l == "" || strings.ContainsFunc(l, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			c.fail(at(path, "logins", j), "invalid login %q", l)
		case !slices.Contains(ru.logins, l):
			ru.logins = append(ru.logins, l)
		}
	}
}

// labelPath is base.key.label, or base.key for an empty label key.
func labelPath(base, key, label string) string {
	if label == "" {
		return join(base, key)
	}
	return join(join(base, key), label)
}

// canonicalPrefix checks that a configured path prefix is already in the
// form NormalizePath produces (ignoring one trailing slash) and returns it
// without the trailing slash. A prefix that normalises to something else
// ("/a/../b", "/a%20b") would silently match a different path than the one
// a reviewer reads, so it is refused rather than rewritten.
func canonicalPrefix(p string) (string, error) {
	n, err := NormalizePath(p)
	if err != nil || p == "" {
		return "", fmt.Errorf("path prefix %q is not a valid path (it must start with \"/\" and contain no backslash, control character, %%2F, %%5C, %%25, %%3B or invalid escape)", p)
	}
	canon := trimTrailingSlash(n)
	if trimTrailingSlash(p) != canon {
		return "", fmt.Errorf("path prefix %q is not canonical: it normalises to %q", p, canon)
	}
	return canon, nil
}

func trimTrailingSlash(p string) string {
	if len(p) > 1 && p[len(p)-1] == '/' {
		return p[:len(p)-1]
	}
	return p
}

// validMethod reports whether m is an RFC 9110 token of reasonable length.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c >= 0x80 || !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// coveredBy reports which deny rules of the same role together cover every
// request allow rule a could match, or nil if some request remains. It
// decomposes a into elements (app × path prefix × method, target × login)
// and needs one deny rule per element that covers it whole. It errs towards
// "not covered": a config is only refused when the rule is certainly dead.
func (c *compiler) coveredBy(a *rule, denies []*rule) []string {
	used := map[int]bool{}
	cover := func(match func(d *rule) bool) bool {
		for k, d := range denies {
			if match(d) {
				used[k] = true
				return true
			}
		}
		return false
	}
	if a.namesHTTP() {
		apps, prefixes, methods := a.apps, orAll(a.prefixes, "/"), orAll(a.methods, "")
		if a.allApps {
			apps = []string{"*"}
		}
		for _, app := range apps {
			for _, pfx := range prefixes {
				for _, m := range methods {
					if !cover(func(d *rule) bool { return d.coversHTTP(app, pfx, m) }) {
						return nil
					}
				}
			}
		}
	}
	if a.namesSSH() {
		logins := a.logins
		if a.allLogins {
			logins = []string{"*"}
		}
		var tgts []map[string]string // each element: a target's labels, or a's selector
		var names []string
		switch {
		case a.allTargets:
			tgts, names = []map[string]string{nil}, []string{"*"}
		default:
			for _, t := range a.targets {
				tgts, names = append(tgts, c.p.targets[c.p.tgtIdx[t]].cfg.Labels), append(names, t)
			}
			if len(a.labels) > 0 {
				tgts, names = append(tgts, a.labels), append(names, "")
			}
		}
		for i, name := range names {
			for _, l := range logins {
				if !cover(func(d *rule) bool { return d.coversSSH(name, tgts[i], l) }) {
					return nil
				}
			}
		}
	}
	var out []string
	for k := range denies {
		if used[k] {
			out = append(out, "deny["+strconv.Itoa(k)+"]")
		}
	}
	return out
}

func orAll(list []string, all string) []string {
	if len(list) == 0 {
		return []string{all}
	}
	return list
}

// coversHTTP: does deny rule d match every request to app under prefix pfx
// with method m? app "*" is all apps and m "" all methods: only an
// unrestricted deny covers those.
func (d *rule) coversHTTP(app, pfx, m string) bool {
	if !d.allApps && (app == "*" || !slices.Contains(d.apps, app)) {
		return false
	}
	if len(d.methods) > 0 && (m == "" || !slices.Contains(d.methods, m)) {
		return false
	}
	if len(d.prefixes) == 0 {
		return true
	}
	for _, dp := range d.prefixes {
		if pathHasPrefix(pfx, dp, true) {
			return true
		}
	}
	return false
}

// coversSSH: does deny rule d match every request by login l to the target
// element? name is a target name, "*" for all targets, or "" for a label
// selector (labels then holds the selector, otherwise the target's labels).
func (d *rule) coversSSH(name string, labels map[string]string, l string) bool {
	if !d.allLogins && (l == "*" || !slices.Contains(d.logins, l)) {
		return false
	}
	switch {
	case d.allTargets:
		return true
	case name == "*":
		return false
	case name != "" && slices.Contains(d.targets, name):
		return true
	}
	// A deny selector that is a subset of the target's labels (or of the
	// allow selector) matches every target the element stands for.
	return labelsMatch(d.labels, labels)
}
