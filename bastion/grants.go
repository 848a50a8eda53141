package bastion

// Just-in-time grants at the SSH door.
//
// A user's roles for a decision are the certificate's roles (base roles,
// fixed when the certificate was issued) plus the roles of their active
// just-in-time grants, read from the grant cache (authz/access: memory
// only, no store round trip per connection). A grant is enforced three
// ways, all through the connection's one cancel-with-cause path:
//
//   - Deadline: a session whose granting roles are all held only through
//     grants with an expiry ends when the last of them ends
//     (grant.deadline). When one of several such grants ends earlier the
//     watchdog decides again at that moment (grant.recheck).
//   - Revocation: a grants-changed event for the user (any instance), or
//     a resync, first makes the cache reload (Grants.Refresh: the event
//     may reach this bastion before the cache has seen the change), then
//     decides every live session of the user again.
//   - A session decided again goes on only when the roles it started
//     with, minus those no longer held, still allow it and lend it
//     everything they lent before: channels already open cannot be
//     narrowed, so a session that would lose a permission (file transfer,
//     a port forward, agent forwarding, a pty) ends too. It never gains
//     anything either: roles granted since the start do not join it.
//
// If the cache cannot be reloaded after a grants-changed event, grants are
// treated as unknown (deny by default): the user's sessions are decided on
// their base roles alone.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// Grants is the just-in-time grant cache (access.Manager). The
// enforcement methods read memory only; a nil Deps.Grants means no
// just-in-time access (base roles only).
type Grants interface {
	// Roles returns base plus the roles of userID's grants active at now.
	Roles(userID string, base []string, now time.Time) []string
	// GrantedUntil returns the latest expiry of userID's grants of role
	// active at now (zero time: no expiry) and whether there is one.
	GrantedUntil(userID, role string, now time.Time) (time.Time, bool)
	// Refresh reloads the cache from the store before it returns, so that
	// a decision right after a grants-changed event sees the change.
	Refresh(ctx context.Context) error
}

// End messages for grant ends (the reference is appended).
const (
	grantRevokedMessage = "your access was revoked"
	grantExpiredMessage = "your temporary access expired"
)

// effectiveRoles is base plus userID's active grants (base alone without
// a grant cache).
func (b *Bastion) effectiveRoles(userID string, base []string, now time.Time) []string {
	if b.grants == nil {
		return base
	}
	return b.grants.Roles(userID, base, now)
}

// grantedUntil asks the grant cache about one role (nothing without one).
func (b *Bastion) grantedUntil(userID, role string, now time.Time) (time.Time, bool) {
	if b.grants == nil {
		return time.Time{}, false
	}
	return b.grants.GrantedUntil(userID, role, now)
}

// grantQueue gathers the users whose grants changed until the worker
// takes them: a burst of events costs one cache reload.
type grantQueue struct {
	mu    sync.Mutex
	users map[string]bool
	all   bool
	wake  chan struct{}
}

func newGrantQueue() *grantQueue {
	return &grantQueue{users: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// push queues userID, or every user when all.
func (q *grantQueue) push(userID string, all bool) {
	q.mu.Lock()
	if all {
		q.all = true
	} else {
		q.users[userID] = true
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns and clears what was queued.
func (q *grantQueue) take() (map[string]bool, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	users, all := q.users, q.all
	q.users, q.all = map[string]bool{}, false
	return users, all
}

// followGrants reloads the grant cache and decides the live sessions of
// the queued users again, until ctx ends. The feed goroutine only queues:
// a slow store never holds up kills and locks.
func (b *Bastion) followGrants(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.grantQ.wake:
		}
		users, all := b.grantQ.take()
		rctx, cancel := context.WithTimeout(ctx, revocationTimeout)
		err := b.grants.Refresh(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			b.log.Error("grant cache reload failed: deciding the users' sessions on their base roles", "err", err)
		}
		// Sessions registered from now on were decided on the reloaded
		// cache, or see the new generation and decide again (setup).
		b.grantsUnknown.Store(err != nil)
		b.grantGen.Add(1)
		for _, c := range b.registry.snapshot() {
			if all || users[c.userID] {
				c.redecide(EndGrantRevoked, err == nil)
			}
		}
	}
}

// redecide asks the policy again whether c may go on with the roles it
// started with that are still held (grants known: from the cache; else
// base roles only), and ends it with code when it may not or would lose a
// permission. It reports whether the session goes on.
func (c *conn) redecide(code string, grantsKnown bool) bool {
	c.redecideMu.Lock()
	defer c.redecideMu.Unlock()
	if c.ctx.Err() != nil {
		return false
	}
	old, reason, ok := c.decideAgainLocked(grantsKnown)
	if ok {
		return true
	}
	if !grantsKnown {
		code = ReasonStoreUnavailable
	}
	c.endForGrant(code, reason, old)
	return false
}

// reevaluate decides c again after a policy swap, by redecide's rules:
// only the roles the session started with may keep it (a role granted
// since, which may expire without any event, must not), and it ends when
// it would lose a permission (channels it opens later are checked against
// its grant, which must not lend what no role lends any more). It reports
// whether the session goes on (one already ending counts as going on:
// someone else ended it).
func (c *conn) reevaluate() bool {
	c.redecideMu.Lock()
	defer c.redecideMu.Unlock()
	if c.ctx.Err() != nil {
		return true
	}
	if _, _, ok := c.decideAgainLocked(!c.b.grantsUnknown.Load()); ok {
		return true
	}
	c.cancel(causePolicyChanged)
	return false
}

// decideAgainLocked is the shared re-decision (redecideMu held): on allow
// without a lost permission it installs the new grant, bounded by the
// start's maximum duration, and reports ok; otherwise it returns the
// grant the session had and the policy's reason.
func (c *conn) decideAgainLocked(grantsKnown bool) (old *grant, reason string, ok bool) {
	old = c.granted()
	a := c.access()
	if !grantsKnown {
		a.sub.Roles = a.base
	}
	a.within = old.roles
	dec, g := c.b.decide(c.b.policy.Load(), a)
	reason = string(dec.Reason)
	switch {
	case dec.Allow && !old.lendsMore(&g):
		// Never later than the start's maximum duration.
		g.maxEnd = minTime(g.maxEnd, old.maxEnd)
		g.setDeadline()
		c.perm.Store(&g)
		return old, reason, true
	case dec.Allow:
		reason = "permission-withdrawn"
	}
	return old, reason, false
}

// endForGrant ends c because a grant it needed is gone: the user is told
// with a reference, the audit trail gets a denied decision with the real
// cause and the same reference.
func (c *conn) endForGrant(code, policyReason string, old *grant) {
	ref := audit.NewRef(c.b.rand)
	ev := c.event(audit.TypeDecision)
	ev.Decision, ev.Reason, ev.Ref = audit.Deny, code, ref
	ev.Attrs["roles"] = strings.Join(old.roles, ",")
	if len(old.viaGrant) > 0 {
		ev.Attrs["granted_roles"] = strings.Join(old.viaGrant, ",")
	}
	if policyReason != "" {
		ev.Attrs["policy_reason"] = policyReason
	}
	c.b.audit.Emit(context.Background(), ev)
	msg := grantRevokedMessage
	switch code {
	case EndGrantExpired:
		msg = grantExpiredMessage
	case ReasonStoreUnavailable:
		msg = "your access could not be confirmed; try again later"
	}
	c.cancel(&EndCause{Code: code, Message: fmt.Sprintf("%s (%s)", msg, ref), Ref: ref})
}

// minTime returns the earlier of two times, ignoring zero ones.
func minTime(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}
