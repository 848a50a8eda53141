package access

import (
	"context"
	"errors"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// reconcileMargin: Run recreates a missing grant only while more than this
// remains of it, so an instance whose clock runs a little behind does not
// resurrect a grant another instance just deleted as expired.
const reconcileMargin = time.Minute

// tick is Run's periodic work: delete expired grants and grants of revoked
// requests, expire pending requests past their deadline, create grants
// that approvals did not get to write, drop long-closed requests, and
// reload the cache. Every deletion goes through SwapRecord(old → nil), so
// of several instances doing this at once exactly one audits each change.
//
// Grants are listed before requests: RevokeGrant marks the request before
// deleting the grant, so a grant missing from the first list belongs to a
// request the second list already shows revoked, and reconcile never
// resurrects a revoked grant.
func (m *Manager) tick(ctx context.Context) {
	defer m.refresh(ctx)
	grants, err := m.st.ListRecords(ctx, KindGrant)
	if err != nil {
		m.log.Error("listing grants for expiry", "err", err)
		return
	}
	reqRaw, err := m.st.ListRecords(ctx, KindRequest)
	if err != nil {
		m.log.Error("listing requests for expiry", "err", err)
		return
	}
	now := m.now()
	cfg := m.cfg.Load()
	reqs := make(map[string]Request, len(reqRaw))
	for id, b := range reqRaw {
		r, err := decodeRequest(id, b)
		if err != nil {
			m.log.Error("skipping unreadable request record", "request_id", safeID(id), "err", err)
			continue
		}
		reqs[id] = r
		switch {
		case r.State == StatePending && !now.Before(r.ExpiresAt):
			m.expireRequest(ctx, r, b)
		case r.State == StateApproved && r.Revoked == nil && grants[id] == nil &&
			grantFor(r).Expires.Sub(now) > reconcileMargin && !now.Before(grantFor(r).Start):
			if err := m.createGrant(ctx, r, codeReconciled); err != nil {
				m.log.Error("reconciling grant", "request_id", id, "err", err)
			}
		case r.State != StatePending && !r.ClosedAt.IsZero() && now.Sub(r.ClosedAt) >= cfg.KeepRequests:
			if _, err := m.st.SwapRecord(ctx, KindRequest, id, b, nil); err != nil && !errors.Is(err, store.ErrNotFound) {
				m.log.Error("deleting closed request", "request_id", id, "err", err)
			}
		}
	}
	for id, b := range grants {
		g, err := decodeGrant(id, b)
		if err != nil {
			m.log.Error("skipping unreadable grant record", "grant_id", safeID(id), "err", err)
			continue
		}
		var typ, code string
		if !g.Expires.IsZero() && !now.Before(g.Expires) {
			typ, code = TypeExpire, codeGrantExpired
		} else if r, ok := reqs[g.RequestID]; ok && g.Source == SourceTemporary && r.Revoked != nil {
			typ, code = TypeRevoke, codeRequestRevoked
		} else {
			continue
		}
		ok, err := m.st.SwapRecord(ctx, KindGrant, id, b, nil)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			m.log.Error("deleting grant", "grant_id", id, "err", err)
			continue
		}
		if !ok {
			continue // another instance got there first and audited it
		}
		m.emit(ctx, audit.Event{Type: typ, UserID: g.UserID, Reason: code, Attrs: grantAttrs(g, reqs[g.RequestID])})
		if m.feed != nil {
			if err := m.feed.Publish(ctx, store.Event{Kind: EventGrantsChanged, Subject: g.UserID}); err != nil {
				m.log.Error("publishing grants-changed", "err", err)
			}
		}
	}
}

// expireRequest marks pending request r (stored as b) expired, once.
func (m *Manager) expireRequest(ctx context.Context, r Request, b []byte) {
	r = r.view(r.ExpiresAt)
	nb, err := m.encodeRequest(r)
	if err != nil {
		return
	}
	ok, err := m.st.SwapRecord(ctx, KindRequest, r.ID, b, nb)
	if err != nil || !ok {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			m.log.Error("expiring request", "request_id", r.ID, "err", err)
		}
		return
	}
	m.emit(ctx, audit.Event{Type: TypeExpire, UserID: r.UserID, Reason: codeRequestExpired, Attrs: requestAttrs(r)})
}
