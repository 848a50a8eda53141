package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz"
)

// policy builds authz.PolicyConfig and compiles it. Apps are the routes:
// every route name is an app, and policy.apps only adds settings
// (allowed_cidrs, public) to one of them. Apps are built policy.apps first
// (so "apps[i]" in a Compile error is policy.apps[i]), then the remaining
// route names, whose errors are reported at their route.
//
// Targets work the same way: every bastion target is a policy target with
// its labels, and policy.targets only adds allowed_cidrs to one of them.
func (b *builder) policy(s PolicySection, routes []RouteSection, bastionTargets []BastionTargetSection, requestable []RequestableSection) (authz.PolicyConfig, *authz.Policy) {
	pc := authz.PolicyConfig{AllowedCIDRs: cidrStrings(s.AllowedCIDRs)}
	var routeNames []string
	routeIdx := map[string]int{}
	for i, r := range routes {
		if _, dup := routeIdx[r.Name]; !dup && r.Name != "" {
			routeIdx[r.Name] = i
			routeNames = append(routeNames, r.Name)
		}
	}
	listed := map[string]bool{}
	for i, a := range s.Apps {
		if _, ok := routeIdx[a.Name]; !ok && a.Name != "" {
			msg := fmt.Sprintf("no route named %q in gateway.routes", a.Name)
			if sug := suggest(a.Name, routeNames); sug != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", sug)
			}
			b.errAt(fmt.Sprintf("policy.apps[%d].name", i), "%s", msg)
		}
		listed[a.Name] = true
		pc.Apps = append(pc.Apps, authz.AppConfig{Name: a.Name, AllowedCIDRs: cidrStrings(a.AllowedCIDRs), Public: a.Public})
	}
	fromRoute := map[int]int{} // index in pc.Apps → index in gateway.routes
	for _, name := range routeNames {
		if !listed[name] {
			fromRoute[len(pc.Apps)] = routeIdx[name]
			pc.Apps = append(pc.Apps, authz.AppConfig{Name: name})
		}
	}
	fromBastion := b.policyTargets(&pc, s.Targets, bastionTargets)
	// A role listed under access.requestable may be held only through
	// grants: no standing groups or users needed.
	grantable := map[string]bool{}
	for _, r := range requestable {
		grantable[r.Role] = true
	}
	for _, r := range s.Roles {
		pc.Roles = append(pc.Roles, authz.RoleConfig{
			Requestable:   grantable[r.Name],
			Name:          r.Name,
			Groups:        r.Groups,
			Users:         r.Users,
			AllowedCIDRs:  cidrStrings(r.AllowedCIDRs),
			MaxSessionTTL: time.Duration(r.MaxSessionTTL),
			RequireMFA:    r.RequireMFA,
			Allow:         rules(r.Allow),
			Deny:          rules(r.Deny),
			Admin:         r.Admin,
			PerSessionMFA: r.PerSessionMFA,
			FileTransfer:  r.FileTransfer,
			PortForwards:  r.PortForwards,
			AgentForward:  r.AgentForward,
		})
	}
	if len(s.Roles) == 0 && lineOf(b.root, "policy") > 0 {
		b.errAt("policy.roles", "no roles: nobody could reach anything (define at least one role)")
	}
	compiled, err := authz.Compile(pc)
	b.fieldErrors("policy", err, func(p string) string {
		// "policy.apps[7].name" for an app that came from a route is
		// reported at that route's name, and "policy.targets[3]…" for a
		// target that came from the bastion at that bastion target.
		if i, _, ok := listIndex(p, "policy.apps"); ok {
			if r, ok := fromRoute[i]; ok {
				return fmt.Sprintf("gateway.routes[%d].name", r)
			}
		}
		if i, rest, ok := listIndex(p, "policy.targets"); ok {
			if j, ok := fromBastion[i]; ok {
				return fmt.Sprintf("bastion.targets[%d]%s", j, rest)
			}
		}
		return p
	})
	return pc, compiled
}

// policyTargets adds policy.targets (first, so Compile paths match the
// file) and then the other bastion targets to pc. It returns, for each
// target added from the bastion, its index in bastion.targets.
func (b *builder) policyTargets(pc *authz.PolicyConfig, listed []TargetSection, bastionTargets []BastionTargetSection) map[int]int {
	idx := map[string]int{}
	var names []string
	for i, t := range bastionTargets {
		if _, dup := idx[t.Name]; !dup && t.Name != "" {
			idx[t.Name] = i
			names = append(names, t.Name)
		}
	}
	seen := map[string]bool{}
	for i, t := range listed {
		p := fmt.Sprintf("policy.targets[%d]", i)
		j, ok := idx[t.Name]
		if !ok && t.Name != "" {
			msg := fmt.Sprintf("no target named %q in bastion.targets", t.Name)
			if sug := suggest(t.Name, names); sug != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", sug)
			}
			b.errAt(p+".name", "%s", msg)
		}
		if t.Labels != nil {
			where := "bastion.targets[].labels"
			if ok {
				where = fmt.Sprintf("bastion.targets[%d].labels", j)
			}
			b.errAt(p+".labels", "labels are set on the bastion target (%s); policy.targets only adds allowed_cidrs", where)
		}
		var labels map[string]string
		if ok {
			labels = bastionTargets[j].Labels
		}
		seen[t.Name] = true
		pc.Targets = append(pc.Targets, authz.TargetConfig{Name: t.Name, Labels: labels, AllowedCIDRs: cidrStrings(t.AllowedCIDRs)})
	}
	fromBastion := map[int]int{}
	for _, name := range names {
		if !seen[name] {
			fromBastion[len(pc.Targets)] = idx[name]
			pc.Targets = append(pc.Targets, authz.TargetConfig{Name: name, Labels: bastionTargets[idx[name]].Labels})
		}
	}
	return fromBastion
}

// listIndex splits "list[3].rest" into 3 and ".rest".
func listIndex(p, list string) (int, string, bool) {
	rest, ok := strings.CutPrefix(p, list+"[")
	if !ok {
		return 0, "", false
	}
	end := strings.IndexByte(rest, ']')
	if end < 0 {
		return 0, "", false
	}
	i, err := strconv.Atoi(rest[:end])
	if err != nil {
		return 0, "", false
	}
	return i, rest[end+1:], true
}

func cidrStrings(in []CIDR) []string {
	if in == nil {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, c := range in {
		if c != "" { // invalid entries were reported and left empty
			out = append(out, string(c))
		}
	}
	return out
}

func rules(in []RuleSection) []authz.Rule {
	var out []authz.Rule
	for _, r := range in {
		out = append(out, authz.Rule{
			Apps:         r.Apps,
			PathPrefixes: r.PathPrefixes,
			Methods:      slices.Clone(r.Methods),
			Logins:       r.Logins,
			Targets:      r.Targets,
			TargetLabels: r.TargetLabels,
		})
	}
	return out
}
