package access

import (
	"context"
	"slices"
	"time"
)

// snapshot is an immutable view of every stored grant, by user. It is
// replaced whole, never modified, so readers need no lock.
type snapshot struct {
	byUser map[string][]cachedGrant
}

// cachedGrant is what enforcement needs of a Grant.
type cachedGrant struct {
	role        string
	start, exp  time.Time // exp zero = until revoked
	fromRequest bool      // source temporary: came from an approved request
}

func (g *cachedGrant) active(now time.Time) bool {
	return !now.Before(g.start) && (g.exp.IsZero() || now.Before(g.exp))
}

var emptySnapshot = &snapshot{byUser: map[string][]cachedGrant{}}

// reload reads every grant from the store and installs a new snapshot.
// Corrupt records are skipped (logged): a record that cannot be read grants
// nothing, and one bad record must not keep a revocation from applying to
// the others.
func (m *Manager) reload(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	raw, err := m.st.ListRecords(ctx, KindGrant)
	if err != nil {
		return err
	}
	s := &snapshot{byUser: make(map[string][]cachedGrant, len(raw))}
	for id, b := range raw {
		g, err := decodeGrant(id, b)
		if err != nil {
			m.log.Error("skipping unreadable grant record", "grant_id", safeID(id), "err", err)
			continue
		}
		s.byUser[g.UserID] = append(s.byUser[g.UserID], cachedGrant{
			role: g.Role, start: g.Start, exp: g.Expires, fromRequest: g.Source == SourceTemporary,
		})
	}
	m.snap.Store(s)
	m.ready.Store(true)
	return nil
}

// refresh reloads after a local change, so this instance enforces it at
// once even before its own feed event arrives.
func (m *Manager) refresh(ctx context.Context) {
	if err := m.reload(ctx); err != nil {
		m.log.Error("reloading grants after a local change", "err", err)
	}
}

func (m *Manager) grantsOf(userID string) []cachedGrant {
	if m == nil {
		return nil
	}
	s := m.snap.Load()
	if s == nil {
		return nil
	}
	return s.byUser[userID]
}

// Roles returns the sorted union of base and the roles of userID's grants
// active at now. With no active grant adding a role it returns base itself
// (not a copy, not sorted) without allocating. Memory only: no store call.
func (m *Manager) Roles(userID string, base []string, now time.Time) []string {
	gs := m.grantsOf(userID)
	if len(gs) == 0 {
		return base
	}
	extra := false
	for i := range gs {
		if gs[i].active(now) && !slices.Contains(base, gs[i].role) {
			extra = true
			break
		}
	}
	if !extra {
		return base
	}
	out := make([]string, 0, len(base)+len(gs))
	out = append(out, base...)
	for i := range gs {
		if gs[i].active(now) {
			out = append(out, gs[i].role)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// GrantedUntil reports whether userID holds role through an active grant
// at now and until when: the latest expiry among those grants, or the
// zero time when one of them never expires. Memory only.
func (m *Manager) GrantedUntil(userID, role string, now time.Time) (time.Time, bool) {
	var until time.Time
	found := false
	for _, g := range m.grantsOf(userID) {
		if g.role != role || !g.active(now) {
			continue
		}
		if g.exp.IsZero() {
			return time.Time{}, true
		}
		if !found || g.exp.After(until) {
			until = g.exp
		}
		found = true
	}
	return until, found
}

// CanReadAudit decides whether userID, holding the base roles base (the
// session's roles, not Roles' result), may read other users' recordings
// and search the trail. It needs the audit-read role; with RequireApproval
// that role must come from an active grant made from an approved request:
// a standing role or an admin-added grant is refused with
// "approval-required". A nil Manager (JIT off) looks at base only, with
// the default role "auditor". Memory only.
func (m *Manager) CanReadAudit(userID string, base []string, now time.Time) ReadVerdict {
	if m == nil {
		if slices.Contains(base, DefaultAuditorRole) {
			return ReadVerdict{Allow: true, Reason: ReasonAllowed}
		}
		return ReadVerdict{Reason: ReasonAuditorRequired}
	}
	cfg := m.cfg.Load().AuditRead
	standing := slices.Contains(base, cfg.Role)
	for _, g := range m.grantsOf(userID) {
		if g.role != cfg.Role || !g.active(now) {
			continue
		}
		if g.fromRequest || !cfg.RequireApproval {
			return ReadVerdict{Allow: true, Reason: ReasonAllowed}
		}
		standing = true // a local grant is standing access
	}
	switch {
	case !standing:
		return ReadVerdict{Reason: ReasonAuditorRequired}
	case cfg.RequireApproval:
		return ReadVerdict{Reason: ReasonApprovalRequired}
	}
	return ReadVerdict{Allow: true, Reason: ReasonAllowed}
}
