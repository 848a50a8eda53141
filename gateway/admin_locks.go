package gateway

// Admin API for locks (the risk engine's): list, lock a user, lift a lock
// or an IP block.
//
//	GET  /api/admin/locks                           → 200 LocksResponse
//	POST /api/admin/locks/lock   LockRequest        → 200 LockResponse; 404 unknown user
//	POST /api/admin/locks/unlock UnlockRequest      → 200 LockResponse; 404 not locked
//
// A reason is required for both changes: it goes into the lock's detail,
// the audit trail and the alert, next to the acting admin.

import (
	"errors"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/store"
)

// LockView is one lock or block as the admin API shows it.
type LockView struct {
	// Subject is "user:<user ID>", "ip:<address>" or "ip:<prefix>".
	Subject string `json:"subject"`
	// Reason is the stable reason code (e.g. "totp-failures",
	// "canary-touched", "admin-lock", "source-failures").
	Reason string `json:"reason"`
	// Ref is the incident reference the locked user was shown.
	Ref       string    `json:"ref"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is set for IP blocks only: user locks never expire.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Detail says which signal fired, with its numbers, or who locked.
	Detail string `json:"detail"`
}

// LocksResponse is the answer of GET /api/admin/locks.
type LocksResponse struct {
	Locks []LockView `json:"locks"`
}

// LockRequest is the body of POST /api/admin/locks/lock.
type LockRequest struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

// UnlockRequest is the body of POST /api/admin/locks/unlock. Subject is
// a user ID, "user:<user ID>", or "ip:<address or prefix>".
type UnlockRequest struct {
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
}

// LockResponse is the answer of lock and unlock: the lock set, or the one
// lifted.
type LockResponse struct {
	Lock LockView `json:"lock"`
}

func lockView(l store.Lock) LockView {
	return LockView{Subject: l.Subject, Reason: l.Reason, Ref: l.Ref, CreatedAt: l.CreatedAt.UTC(),
		ExpiresAt: utcOrZero(l.ExpiresAt), Detail: l.Detail}
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func (a *adminAPI) locks(c *adminCall, _ []string) {
	ev := a.callEvent(c, "locks.list")
	ls, err := a.g.deps.Risk.Locks(c.r.Context())
	if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	out := LocksResponse{Locks: make([]LockView, 0, len(ls))}
	for _, l := range ls {
		out.Locks = append(out.Locks, lockView(l))
	}
	sort.Slice(out.Locks, func(i, j int) bool {
		x, y := out.Locks[i], out.Locks[j]
		if !x.CreatedAt.Equal(y.CreatedAt) {
			return x.CreatedAt.Before(y.CreatedAt)
		}
		return x.Subject < y.Subject
	})
	ev.Decision = audit.Allow
	ev.Attrs["count"] = strconv.Itoa(len(out.Locks))
	a.succeed(c, out, ev)
}

// lockReason checks the required reason of a lock change.
func (a *adminAPI) lockReason(c *adminCall, ev audit.Event, reason string) bool {
	if !validText(reason, maxReasonLen) {
		a.fail(c.w, c.r, http.StatusBadRequest, "a reason is required (printable, at most 200 bytes)", "bad-request", nil, ev)
		return false
	}
	return true
}

func (a *adminAPI) lock(c *adminCall, _ []string) {
	ctx := c.r.Context()
	ev := a.callEvent(c, "lock")
	var req LockRequest
	if err := decodeBody(c.w, c.r, &req); err != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev)
		return
	}
	if !validText(req.UserID, maxUserIDLen) {
		a.fail(c.w, c.r, http.StatusBadRequest, "user_id is required", "bad-request", nil, ev)
		return
	}
	ev.Target = req.UserID
	if !a.lockReason(c, ev, req.Reason) {
		return
	}
	ev.Attrs["note"] = req.Reason
	// Only users the gateway has seen (every user signs in on the web at
	// least once, SSH included): a mistyped ID must not "succeed" while
	// the real account stays open.
	if _, err := getUser(ctx, a.g.deps.Store, req.UserID); isNotFound(err) {
		a.fail(c.w, c.r, http.StatusNotFound, "no such user", "not-found", err, ev)
		return
	} else if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	// The engine revokes the user's web sessions and SSH certificates on
	// every instance, audits risk.lock and alerts. Locking a locked user
	// keeps (and returns) the existing lock.
	l, err := a.g.deps.Risk.Lock(ctx, req.UserID, req.Reason, c.actor)
	if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	ev.Decision, ev.Ref = audit.Allow, l.Ref
	a.succeed(c, LockResponse{Lock: lockView(l)}, ev)
}

func (a *adminAPI) unlock(c *adminCall, _ []string) {
	ev := a.callEvent(c, "unlock")
	var req UnlockRequest
	if err := decodeBody(c.w, c.r, &req); err != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev)
		return
	}
	subject, ok := lockSubject(req.Subject)
	if !ok {
		a.fail(c.w, c.r, http.StatusBadRequest, "subject must be a user ID, user:<id> or ip:<address or prefix>", "bad-request", nil, ev)
		return
	}
	ev.Target = subject
	if !a.lockReason(c, ev, req.Reason) {
		return
	}
	ev.Attrs["note"] = req.Reason
	l, err := a.g.deps.Risk.Unlock(c.r.Context(), subject, req.Reason, c.actor)
	if errors.Is(err, risk.ErrNotLocked) {
		a.fail(c.w, c.r, http.StatusNotFound, "not locked", "not-found", err, ev)
		return
	} else if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	ev.Decision, ev.Ref = audit.Allow, l.Ref
	a.succeed(c, LockResponse{Lock: lockView(l)}, ev)
}

// lockSubject validates an unlock subject and spells it as the engine
// stores it (risk.LockSubject): a bare ID is a user, an "ip:" subject
// must be an address or a prefix, so a typo is a 400, not a "not locked".
func lockSubject(s string) (string, bool) {
	if !validText(s, maxUserIDLen+len("user:")) {
		return "", false
	}
	if raw, isIP := strings.CutPrefix(s, "ip:"); isIP {
		_, aerr := netip.ParseAddr(raw)
		_, perr := netip.ParsePrefix(raw)
		if aerr != nil && perr != nil {
			return "", false
		}
	} else if strings.TrimPrefix(s, "user:") == "" {
		return "", false
	}
	sub := risk.LockSubject(s)
	return sub, strings.HasPrefix(sub, "user:") || strings.HasPrefix(sub, "ip:")
}
