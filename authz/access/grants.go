package access

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// grantFor is the grant an approved request makes. It is a pure function
// of the stored request, so Approve and Run's reconcile write identical
// bytes and CreateRecord lets exactly one of them win.
func grantFor(r Request) Grant {
	last := r.Approvals[len(r.Approvals)-1] // the approval that reached the count
	return Grant{
		ID: r.ID, UserID: r.UserID, Role: r.Role, Source: SourceTemporary, RequestID: r.ID,
		Start: last.At, Expires: last.At.Add(r.Duration), CreatedBy: last.UserID, Reason: r.Reason,
	}
}

// createGrant writes the grant of approved request r unless it exists,
// and audits and announces it when this call created it.
func (m *Manager) createGrant(ctx context.Context, r Request, code string) error {
	g := grantFor(r)
	b, err := encode(g)
	if err != nil {
		return err
	}
	created, err := m.st.CreateRecord(ctx, KindGrant, g.ID, b)
	if err != nil {
		m.log.Error("creating grant for an approved request; Run will retry", "request_id", r.ID, "err", err)
		return err
	}
	if created {
		m.emit(ctx, audit.Event{Type: TypeGrant, UserID: g.UserID, Actor: g.CreatedBy, Reason: code, Attrs: grantAttrs(g, r)})
	}
	// Announced even when another writer won: false may also be our own
	// retried write, and a second event only costs a reload.
	m.changed(ctx, g.UserID)
	return nil
}

// AddGrant adds a local (admin-made) grant of role to userID from now
// until expires (zero: until revoked).
func (m *Manager) AddGrant(ctx context.Context, actor, userID, role string, expires time.Time, reason string) (Grant, error) {
	if !validUserID(actor) || !validUserID(userID) {
		return Grant{}, fmt.Errorf("%w: user ID", ErrInvalid)
	}
	if !validName(role) {
		return Grant{}, fmt.Errorf("%w: role name", ErrInvalid)
	}
	if m.pol != nil {
		if pol := m.pol(); pol != nil {
			if _, ok := pol.Role(role); !ok {
				return Grant{}, fmt.Errorf("%w: unknown role", ErrInvalid)
			}
		}
	}
	// An approver role handed out by an admin would let one admin build
	// the committee that approves their own requests (require_approval
	// for trail reads included): approvers come from the IdP or the
	// config file only.
	for _, rc := range m.cfg.Load().Roles {
		if slices.Contains(rc.Approvers, role) {
			return Grant{}, fmt.Errorf("%w: %s approves requests for %s and cannot be granted locally", ErrInvalid, role, rc.Role)
		}
	}
	reason, err := checkText("reason", reason, false)
	if err != nil {
		return Grant{}, err
	}
	now := m.now()
	if !expires.IsZero() && !expires.After(now) {
		return Grant{}, fmt.Errorf("%w: expiry is not in the future", ErrInvalid)
	}
	id, err := m.newID("lg-")
	if err != nil {
		return Grant{}, err
	}
	g := Grant{ID: id, UserID: userID, Role: role, Source: SourceLocal, Start: now, Expires: expires, CreatedBy: actor, Reason: reason}
	b, err := encode(g)
	if err != nil {
		return Grant{}, err
	}
	if err := m.create(ctx, KindGrant, id, b); err != nil {
		return Grant{}, err
	}
	m.emit(ctx, audit.Event{Type: TypeGrant, UserID: userID, Actor: actor, Attrs: grantAttrs(g, Request{})})
	m.changed(ctx, userID)
	return g, nil
}

// RevokeGrant ends grant grantID at once: the record is deleted, the
// request it came from is marked revoked (so Run never recreates it), and
// every instance hears of it through the feed. An unreadable grant record
// is deleted too (it granted nothing, but an admin must be able to clear
// it).
func (m *Manager) RevokeGrant(ctx context.Context, actor, grantID, reason string) error {
	if !validID(grantID) {
		return fmt.Errorf("%w: malformed grant ID", ErrInvalid)
	}
	if !validUserID(actor) {
		return fmt.Errorf("%w: user ID", ErrInvalid)
	}
	reason, err := checkText("reason", reason, false)
	if err != nil {
		return err
	}
	var tried *Grant
	for range maxSwaps {
		old, err := m.st.GetRecord(ctx, KindGrant, grantID)
		if errors.Is(err, store.ErrNotFound) && tried != nil {
			// Our delete reported false but took effect (a retried write
			// whose first reply was lost).
			m.revoked(ctx, *tried, nil, actor, reason)
			return nil
		}
		if errors.Is(err, store.ErrNotFound) {
			return m.revokeUnwritten(ctx, actor, grantID, reason)
		}
		if err != nil {
			return err
		}
		g, derr := decodeGrant(grantID, old)
		marked := false
		if derr == nil && g.Source == SourceTemporary {
			// Mark first: a reconcile that sees the grant missing must
			// already see the request revoked. A request record that does
			// not decode cannot be reconciled either, and must not keep
			// its grant from being revoked.
			if err := m.markRevoked(ctx, g.RequestID, actor, reason); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
				return err
			}
			marked = true
		}
		ok, err := m.st.SwapRecord(ctx, KindGrant, grantID, old, nil)
		if errors.Is(err, store.ErrNotFound) && marked {
			return nil // Run deleted it for the marked request and audited that
		}
		if err != nil {
			return notFound(err)
		}
		if derr != nil {
			g = Grant{ID: grantID}
		}
		if !ok {
			tried = &g
			continue
		}
		m.revoked(ctx, g, derr, actor, reason)
		return nil
	}
	return fmt.Errorf("%w: grant %s kept changing", store.ErrUnavailable, grantID)
}

func (m *Manager) revoked(ctx context.Context, g Grant, derr error, actor, reason string) {
	attrs := grantAttrs(g, Request{})
	if derr != nil {
		attrs = map[string]string{"grant_id": g.ID, "corrupt": "true"}
	}
	if reason != "" {
		attrs["reason"] = reason
	}
	m.emit(ctx, audit.Event{Type: TypeRevoke, UserID: g.UserID, Actor: actor, Reason: codeAdminRevoke, Attrs: attrs})
	m.changed(ctx, g.UserID)
}

// revokeUnwritten revokes the grant of an approved request that has no
// grant record yet (the approving instance failed before writing it), so
// Run does not create it afterwards. Anything else is ErrNotFound.
func (m *Manager) revokeUnwritten(ctx context.Context, actor, id, reason string) error {
	b, err := m.st.GetRecord(ctx, KindRequest, id)
	if err != nil {
		return notFound(err)
	}
	r, err := decodeRequest(id, b)
	if err != nil {
		return err
	}
	if r.State != StateApproved || r.Revoked != nil || !grantFor(r).Active(m.now()) {
		return ErrNotFound
	}
	if err := m.markRevoked(ctx, id, actor, reason); err != nil {
		return err
	}
	// The grant may have been written between the two reads: delete it.
	if gb, err := m.st.GetRecord(ctx, KindGrant, id); err == nil {
		if _, err := m.st.SwapRecord(ctx, KindGrant, id, gb, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	attrs := requestAttrs(r)
	attrs["grant_id"] = id
	if reason != "" {
		attrs["reason"] = reason
	}
	m.emit(ctx, audit.Event{Type: TypeRevoke, UserID: r.UserID, Actor: actor, Reason: codeAdminRevoke, Attrs: attrs})
	m.changed(ctx, r.UserID)
	return nil
}

// errUnchanged stops an update without writing.
var errUnchanged = errors.New("unchanged")

func (m *Manager) markRevoked(ctx context.Context, id, actor, reason string) error {
	_, err := m.update(ctx, "", Person{UserID: actor}, id, func(r *Request, now time.Time) error {
		if r.State != StateApproved || r.Revoked != nil {
			return errUnchanged
		}
		r.Revoked = &Decision{UserID: actor, At: now, Note: reason}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// ListGrants returns the grants active now, from the store, ordered by
// user, role and start. Unreadable records are logged and left out: they
// grant nothing (the cache skips them too).
func (m *Manager) ListGrants(ctx context.Context) ([]Grant, error) {
	raw, err := m.st.ListRecords(ctx, KindGrant)
	if err != nil {
		return nil, err
	}
	now := m.now()
	out := make([]Grant, 0, len(raw))
	for id, b := range raw {
		g, err := decodeGrant(id, b)
		if err != nil {
			m.log.Error("skipping unreadable grant record", "grant_id", safeID(id), "err", err)
			continue
		}
		if g.Active(now) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.Role, b.Role), a.Start.Compare(b.Start), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// DeleteUser removes every request (any state: they hold the user's
// reasons) and every grant of userID, and reports how many records it
// removed. Requests go first, so Run cannot recreate a grant from them.
func (m *Manager) DeleteUser(ctx context.Context, userID string) (int, error) {
	if !validUserID(userID) {
		return 0, fmt.Errorf("%w: user ID", ErrInvalid)
	}
	reqs, err := m.requests(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	now := m.now()
	for _, r := range reqs {
		if r.UserID != userID {
			continue
		}
		if err := m.st.DeleteRecord(ctx, KindRequest, r.ID); err != nil {
			return n, err
		}
		n++
		if r.view(now).State == StatePending {
			m.emit(ctx, audit.Event{Type: TypeCancel, UserID: userID, Reason: codeUserDeleted, Attrs: requestAttrs(r)})
		}
	}
	raw, err := m.st.ListRecords(ctx, KindGrant)
	if err != nil {
		return n, err
	}
	removed := false
	for id, b := range raw {
		g, err := decodeGrant(id, b)
		if err != nil || g.UserID != userID {
			continue
		}
		ok, err := m.st.SwapRecord(ctx, KindGrant, id, b, nil)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !ok) {
			continue // revoked or expired meanwhile, by someone who audited it
		}
		if err != nil {
			return n, err
		}
		n++
		removed = true
		m.emit(ctx, audit.Event{Type: TypeRevoke, UserID: userID, Reason: codeUserDeleted, Attrs: grantAttrs(g, Request{})})
	}
	if removed {
		m.changed(ctx, userID)
	}
	return n, nil
}

// changed announces a grant change of userID to every instance and
// applies it here at once.
func (m *Manager) changed(ctx context.Context, userID string) {
	if m.feed != nil && userID != "" {
		if err := m.feed.Publish(ctx, store.Event{Kind: EventGrantsChanged, Subject: userID}); err != nil {
			// Other instances catch up on their next tick.
			m.log.Error("publishing grants-changed", "err", err)
		}
	}
	m.refresh(ctx)
}

func grantAttrs(g Grant, r Request) map[string]string {
	a := map[string]string{"grant_id": g.ID, "role": g.Role, "source": g.Source}
	if g.RequestID != "" {
		a["request_id"] = g.RequestID
	}
	if !g.Expires.IsZero() {
		a["duration"] = g.Expires.Sub(g.Start).String()
		a["expires"] = g.Expires.UTC().Format(time.RFC3339)
	}
	if r.ID != "" {
		a["approvals"] = fmt.Sprintf("%d/%d", len(r.Approvals), r.Needed)
	}
	return a
}
