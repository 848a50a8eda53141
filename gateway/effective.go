package gateway

import (
	"slices"
	"time"

	"github.com/portcullis/portcullis/authz"
)

// Just-in-time grants at the HTTPS door.
//
// A session records the roles its login mapped (base roles). Every
// decision the gateway makes (proxy, SSH certificate principals and
// target hints, the app list, approver eligibility) uses the effective
// roles: base plus the user's active grants, read from the access
// manager's in-memory cache (no store round trip) and compared with the
// clock at use time, so a grant counts from the moment it is made and
// stops counting the moment it is revoked (the cache follows the feed) or
// expires (no event needed).
//
// Base roles, never effective ones, go wherever roles are written down
// for later: new sessions (API tokens), the SSH certificate's roles
// extension and keyboard-interactive approvals. The bastion adds grants
// from its own cache at every decision, so a grant frozen into a
// credential would outlive its revocation.

// effectiveRoles is base plus userID's active grants at now; base itself
// (no allocation) when JIT access is off or the user holds no grant that
// adds a role.
func (g *Gateway) effectiveRoles(userID string, base []string, now time.Time) []string {
	return g.deps.Access.Roles(userID, base, now) // a nil *access.Manager returns base
}

// isAdmin decides admin rights (admin API, admin token page). A grant
// makes someone an admin only when the role is configured requestable:
// then it came through approvers (or an admin added it deliberately); a
// role nobody configured for just-in-time access never makes an admin by
// grant.
func (g *Gateway) isAdmin(pol *authz.Policy, userID string, base []string, now time.Time) bool {
	if pol == nil {
		return false
	}
	if pol.IsAdmin(base) {
		return true
	}
	m := g.deps.Access
	if m == nil {
		return false
	}
	for _, rc := range m.Config().Roles {
		if slices.Contains(base, rc.Role) || !pol.IsAdmin([]string{rc.Role}) {
			continue
		}
		if _, ok := m.GrantedUntil(userID, rc.Role, now); ok {
			return true
		}
	}
	return false
}
