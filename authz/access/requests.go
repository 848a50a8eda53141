package access

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// maxSwaps bounds a Get → change → Swap loop. Every failed swap means
// another instance's change landed, so contention this long means the
// store is misbehaving rather than busy.
const maxSwaps = 64

// Submit records who's request for role for d with reason, and notifies
// the approvers' webhooks (asynchronously: never waits on them).
func (m *Manager) Submit(ctx context.Context, who Person, role string, d time.Duration, reason string) (Request, error) {
	if !validUserID(who.UserID) {
		return Request{}, fmt.Errorf("%w: user ID", ErrInvalid)
	}
	r, rc, err := m.submit(ctx, who, role, d, reason)
	if err != nil {
		m.refused(ctx, TypeRequest, who.UserID, who.UserID, map[string]string{"role": boundedRole(role), "duration": d.String()}, err)
		return Request{}, err
	}
	attrs := requestAttrs(r)
	attrs["reason"] = r.Reason
	m.emit(ctx, audit.Event{Type: TypeRequest, UserID: r.UserID, Actor: who.UserID, Decision: audit.Allow, Attrs: attrs})
	m.notify(NotifyRequest, r, who.UserID, rc.Approvers)
	return r, nil
}

func (m *Manager) submit(ctx context.Context, who Person, role string, d time.Duration, reason string) (Request, *RoleConfig, error) {
	cfg := m.cfg.Load()
	rc, ok := cfg.roles[role]
	if !ok {
		return Request{}, nil, ErrNotRequestable
	}
	if d <= 0 || d > rc.MaxDuration {
		return Request{}, nil, fmt.Errorf("%w: duration must be positive and at most %s", ErrInvalid, rc.MaxDuration)
	}
	reason, err := checkText("reason", reason, true)
	if err != nil {
		return Request{}, nil, err
	}
	now := m.now()
	if err := m.checkPending(ctx, who.UserID, role, now); err != nil {
		return Request{}, nil, err
	}
	id, err := m.newID("rq-")
	if err != nil {
		return Request{}, nil, err
	}
	r := Request{
		ID: id, UserID: who.UserID, Role: role, Duration: d, Reason: reason,
		CreatedAt: now, ExpiresAt: now.Add(cfg.PendingTTL), State: StatePending, Needed: rc.Approvals,
	}
	b, err := m.encodeRequest(r)
	if err != nil {
		return Request{}, nil, err
	}
	if err := m.create(ctx, KindRequest, id, b); err != nil {
		return Request{}, nil, err
	}
	return r, rc, nil
}

// checkPending refuses a second pending request for the same role and
// bounds how many one user may have pending (each notifies approvers).
func (m *Manager) checkPending(ctx context.Context, userID, role string, now time.Time) error {
	all, err := m.requests(ctx)
	if err != nil {
		return err
	}
	n, recent := 0, 0
	for _, r := range all {
		if r.UserID != userID {
			continue
		}
		if now.Sub(r.CreatedAt) < 24*time.Hour {
			recent++
		}
		if r.view(now).State != StatePending {
			continue
		}
		if r.Role == role {
			return ErrAlreadyPending
		}
		n++
	}
	if n >= MaxPendingPerUser {
		return fmt.Errorf("%w (%d pending requests)", ErrAlreadyPending, n)
	}
	// Submit and cancel in a loop would otherwise create records (kept
	// for KeepRequests) and approver notifications without bound.
	if recent >= MaxRequestsPerDay {
		return fmt.Errorf("%w (%d requests in the last 24h)", ErrAlreadyPending, recent)
	}
	return nil
}

// Approve records who's approval of request id. The approval that reaches
// the role's required count flips the request to approved and creates the
// grant, which starts now and lasts the requested duration (clipped to the
// role's current MaxDuration). If the grant cannot be written after the
// approval was recorded, the approved request is returned with the error
// and Run creates the grant later.
func (m *Manager) Approve(ctx context.Context, who Person, id, note string) (Request, error) {
	note, err := checkText("note", note, false)
	if err != nil {
		return Request{}, err
	}
	var approvers []string
	r, err := m.update(ctx, TypeApprove, who, id, func(r *Request, now time.Time) error {
		rc, err := m.canApprove(who, *r, now, true)
		if err != nil {
			return err
		}
		approvers = rc.Approvers
		r.Approvals = append(slices.Clip(r.Approvals), Decision{UserID: who.UserID, At: now, Note: note})
		// The policy in force decides how many approvals are enough.
		r.Needed = rc.Approvals
		if len(r.Approvals) >= r.Needed {
			r.State, r.ClosedAt, r.GrantID = StateApproved, now, r.ID
			r.Duration = min(r.Duration, rc.MaxDuration)
		}
		return nil
	})
	if err != nil {
		return Request{}, err
	}
	attrs := requestAttrs(r)
	if note != "" {
		attrs["note"] = note
	}
	attrs["state"] = string(r.State)
	m.emit(ctx, audit.Event{Type: TypeApprove, UserID: r.UserID, Actor: who.UserID, Decision: audit.Allow, Attrs: attrs})
	if r.State != StateApproved {
		return r, nil
	}
	m.notify(NotifyApproved, r, who.UserID, approvers)
	if err := m.createGrant(ctx, r, ""); err != nil {
		return r, err
	}
	return r, nil
}

// Deny closes request id: one eligible approver's denial wins over any
// number of approvals.
func (m *Manager) Deny(ctx context.Context, who Person, id, note string) (Request, error) {
	note, err := checkText("note", note, false)
	if err != nil {
		return Request{}, err
	}
	var approvers []string
	r, err := m.update(ctx, TypeDeny, who, id, func(r *Request, now time.Time) error {
		rc, err := m.canApprove(who, *r, now, false)
		if err != nil {
			return err
		}
		approvers = rc.Approvers
		r.State, r.ClosedAt = StateDenied, now
		r.Denial = &Decision{UserID: who.UserID, At: now, Note: note}
		return nil
	})
	if err != nil {
		return Request{}, err
	}
	attrs := requestAttrs(r)
	if note != "" {
		attrs["note"] = note
	}
	m.emit(ctx, audit.Event{Type: TypeDeny, UserID: r.UserID, Actor: who.UserID, Decision: audit.Deny, Attrs: attrs})
	m.notify(NotifyDenied, r, who.UserID, approvers)
	return r, nil
}

// Cancel withdraws a pending request; only its requester may.
func (m *Manager) Cancel(ctx context.Context, who Person, id string) (Request, error) {
	var approvers []string
	r, err := m.update(ctx, TypeCancel, who, id, func(r *Request, now time.Time) error {
		if r.UserID != who.UserID {
			return ErrNotRequester
		}
		if r.view(now).State != StatePending {
			return ErrAlreadyDecided
		}
		if rc, ok := m.cfg.Load().roles[r.Role]; ok {
			approvers = rc.Approvers
		}
		r.State, r.ClosedAt = StateCancelled, now
		r.Cancelled = &Decision{UserID: who.UserID, At: now}
		return nil
	})
	if err != nil {
		return Request{}, err
	}
	m.emit(ctx, audit.Event{Type: TypeCancel, UserID: r.UserID, Actor: who.UserID, Attrs: requestAttrs(r)})
	if approvers != nil {
		m.notify(NotifyCancelled, r, who.UserID, approvers)
	}
	return r, nil
}

// GetRequest returns request id; a pending request past its deadline is
// shown as expired even before Run marks it.
func (m *Manager) GetRequest(ctx context.Context, id string) (Request, error) {
	if !validID(id) {
		return Request{}, fmt.Errorf("%w: malformed request ID", ErrInvalid)
	}
	b, err := m.st.GetRecord(ctx, KindRequest, id)
	if err != nil {
		return Request{}, notFound(err)
	}
	r, err := decodeRequest(id, b)
	if err != nil {
		return Request{}, err
	}
	return r.view(m.now()), nil
}

// ListRequests returns every stored request, newest first. Unreadable
// records are logged and left out (GetRequest on one reports ErrCorrupt).
func (m *Manager) ListRequests(ctx context.Context) ([]Request, error) {
	all, err := m.requests(ctx)
	if err != nil {
		return nil, err
	}
	now := m.now()
	for i := range all {
		all[i] = all[i].view(now)
	}
	slices.SortFunc(all, func(a, b Request) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return all, nil
}

func (m *Manager) requests(ctx context.Context) ([]Request, error) {
	raw, err := m.st.ListRecords(ctx, KindRequest)
	if err != nil {
		return nil, err
	}
	out := make([]Request, 0, len(raw))
	for id, b := range raw {
		r, err := decodeRequest(id, b)
		if err != nil {
			m.log.Error("skipping unreadable request record", "request_id", safeID(id), "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// CanApprove reports whether who may approve r now: nil, or ErrAlreadyDecided,
// ErrSelfApproval, ErrNotRequestable, ErrNotApprover or ErrDuplicateApproval
// (for pages: which buttons to show).
func (m *Manager) CanApprove(who Person, r Request) error {
	_, err := m.canApprove(who, r, m.now(), true)
	return err
}

// canApprove checks, in this order: pending, not the requester, role still
// requestable, who holds an approver role, and (for approvals) has not
// approved already. The order makes a requester who is also an approver
// hear ErrSelfApproval.
func (m *Manager) canApprove(who Person, r Request, now time.Time, approving bool) (*RoleConfig, error) {
	if r.view(now).State != StatePending {
		return nil, ErrAlreadyDecided
	}
	if who.UserID == "" || who.UserID == r.UserID {
		return nil, ErrSelfApproval
	}
	rc, ok := m.cfg.Load().roles[r.Role]
	if !ok {
		return nil, ErrNotRequestable
	}
	if !slices.ContainsFunc(who.Roles, func(role string) bool { return slices.Contains(rc.Approvers, role) }) {
		return nil, ErrNotApprover
	}
	if approving && slices.ContainsFunc(r.Approvals, func(d Decision) bool { return d.UserID == who.UserID }) {
		return nil, ErrDuplicateApproval
	}
	return rc, nil
}

// update applies change to request id in a Get → change → Swap loop, so
// concurrent decisions on several instances each see the others' result.
// A refusal from change is audited (typ, decision deny) and returned.
func (m *Manager) update(ctx context.Context, typ string, who Person, id string, change func(*Request, time.Time) error) (Request, error) {
	if !validID(id) {
		return Request{}, fmt.Errorf("%w: malformed request ID", ErrInvalid)
	}
	if !validUserID(who.UserID) {
		return Request{}, fmt.Errorf("%w: user ID", ErrInvalid)
	}
	var written []byte
	for range maxSwaps {
		old, err := m.st.GetRecord(ctx, KindRequest, id)
		if err != nil {
			return Request{}, notFound(err)
		}
		r, err := decodeRequest(id, old)
		if err != nil {
			return Request{}, err
		}
		if written != nil && bytes.Equal(old, written) {
			// The last swap took effect although it reported false (a
			// retried write whose first reply was lost).
			return r, nil
		}
		orig := r
		if err := change(&r, m.now()); err != nil {
			m.refused(ctx, typ, orig.UserID, who.UserID, requestAttrs(orig), err)
			return Request{}, err
		}
		b, err := m.encodeRequest(r)
		if err != nil {
			return Request{}, err
		}
		ok, err := m.st.SwapRecord(ctx, KindRequest, id, old, b)
		if err != nil {
			return Request{}, notFound(err)
		}
		if ok {
			return r, nil
		}
		written = b
	}
	return Request{}, fmt.Errorf("%w: request %s kept changing", store.ErrUnavailable, id)
}

// view is r as seen at now: a pending request past its deadline is expired.
func (r Request) view(now time.Time) Request {
	if r.State == StatePending && !now.Before(r.ExpiresAt) {
		r.State = StateExpired
		r.ClosedAt = r.ExpiresAt
	}
	return r
}

// refusalCodes are the stable reason codes of refused actions.
var refusalCodes = []struct {
	err  error
	code string
}{
	{ErrSelfApproval, codeSelfApproval},
	{ErrNotApprover, codeNotApprover},
	{ErrDuplicateApproval, codeDuplicate},
	{ErrAlreadyDecided, codeDecided},
	{ErrNotRequestable, codeNotRequestable},
	{ErrNotRequester, codeNotRequester},
	{ErrAlreadyPending, codeAlreadyPending},
	{ErrInvalid, codeInvalid},
}

// refused audits an action refused by the rules (not a store failure).
func (m *Manager) refused(ctx context.Context, typ, userID, actor string, attrs map[string]string, err error) {
	if typ == "" {
		return
	}
	for _, rc := range refusalCodes {
		if errors.Is(err, rc.err) {
			m.emit(ctx, audit.Event{Type: typ, UserID: userID, Actor: actor, Decision: audit.Deny, Reason: rc.code, Attrs: attrs})
			return
		}
	}
}

func requestAttrs(r Request) map[string]string {
	return map[string]string{
		"request_id": r.ID,
		"role":       r.Role,
		"duration":   r.Duration.String(),
		"approvals":  strconv.Itoa(len(r.Approvals)) + "/" + strconv.Itoa(r.Needed),
	}
}

// boundedRole is a caller-supplied role name fit for an audit attribute.
func boundedRole(role string) string {
	if validName(role) {
		return role
	}
	return "(malformed)"
}

func (m *Manager) emit(ctx context.Context, e audit.Event) {
	m.audit.Emit(ctx, e)
}

// create stores a record under a fresh random ID. CreateRecord may report
// false for a write that took effect (a retried write whose first reply
// was lost): finding exactly our bytes there means it did.
func (m *Manager) create(ctx context.Context, kind, id string, b []byte) error {
	created, err := m.st.CreateRecord(ctx, kind, id, b)
	if err != nil || created {
		return err
	}
	cur, err := m.st.GetRecord(ctx, kind, id)
	if err == nil && bytes.Equal(cur, b) {
		return nil
	}
	return fmt.Errorf("%w: %s ID collision", store.ErrUnavailable, kind)
}
