package authz

import "slices"

// SSHLogins returns the SSH logins that the allow rules of roles name, for
// the certificate principals of a user holding roles: sorted, without
// duplicates. Unknown roles lend nothing, and only rules that can match
// at least one configured target count (a rule whose labels select no
// target grants no login anywhere).
//
// The wildcard login "*" is never returned: a certificate principal is an
// exact login (x/crypto and OpenSSH compare it byte for byte), so a role
// that allows any login contributes no principal. Such a role still
// allows any login to users who connect through the keyboard-interactive
// approval, where the principal is the one login being approved.
//
// This is a convenience for issuing credentials; every connection is
// still decided by Evaluate (deny rules, allowlists, time limits).
func (p *Policy) SSHLogins(roles []string) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, name := range roles {
		r := p.roleIdx[name]
		if r == nil {
			continue
		}
		for _, rules := range r.allow[kindIdxSSH] {
			for _, ru := range rules {
				out = append(out, ru.logins...)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
