package bastion

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
)

// EventSSHSessionKill is the feed event that ends a live SSH session on
// whichever instance runs it. Subject is the session ID, Reason the
// admin's reason.
const EventSSHSessionKill = "ssh-session-kill"

// Registry is this instance's set of live relayed sessions. Every end it
// causes goes through the session's cancel-with-cause path. It announces
// its sessions to the other instances through the store (presence.go).
type Registry struct {
	mu sync.Mutex
	m  map[string]*conn
	// pub announces the sessions; nil until the first session, and
	// without a presence store. Guarded by mu, like its queues.
	pub *publisher
	// presEvery and presTTL tune the announcements (tests shorten them
	// before the first session).
	presEvery, presTTL time.Duration
}

func newRegistry() *Registry {
	return &Registry{m: map[string]*conn{}, presEvery: presenceEvery, presTTL: presenceTTL}
}

// SessionInfo describes a live session (for `admin sessions`).
type SessionInfo struct {
	ID         string   `json:"id"`
	UserID     string   `json:"user_id"`
	Login      string   `json:"login"`
	Target     string   `json:"target"`
	SourceIP   string   `json:"source_ip"`
	Roles      []string `json:"roles,omitempty"`
	CertSerial uint64   `json:"cert_serial"`
	// WebSessionID is the web session the certificate was issued from.
	WebSessionID string    `json:"web_session_id,omitempty"`
	Start        time.Time `json:"start"`
	LastActive   time.Time `json:"last_active"`
	Deadline     time.Time `json:"deadline"`
	Recording    string    `json:"recording"`
	Instance     string    `json:"instance,omitempty"`
}

// ErrNoSuchSession is returned for an ID this instance does not run.
var ErrNoSuchSession = errors.New("bastion: no such live session")

func (r *Registry) add(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[c.id] = c
	r.announceLocked(c)
}

func (r *Registry) remove(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[c.id] != c {
		return
	}
	delete(r.m, c.id)
	r.withdrawLocked(c)
}

func (r *Registry) snapshot() []*conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*conn, 0, len(r.m))
	for _, c := range r.m {
		out = append(out, c)
	}
	return out
}

// List returns this instance's live sessions, oldest first
// (Bastion.Sessions lists every instance's).
func (r *Registry) List() []SessionInfo {
	conns := r.snapshot()
	out := make([]SessionInfo, 0, len(conns))
	for _, c := range conns {
		out = append(out, c.info())
	}
	sortSessions(out)
	return out
}

func (c *conn) info() SessionInfo {
	g := c.granted()
	return SessionInfo{
		ID: c.id, UserID: c.userID, Login: c.login, Target: c.tname, SourceIP: addrString(c.src),
		Roles: g.roles, CertSerial: c.cert.Serial, WebSessionID: c.cert.Extensions[session.ExtWebSession], Start: c.start,
		LastActive: time.Unix(0, c.lastActive.Load()), Deadline: g.deadline,
		Recording: c.rec.Path(), Instance: c.b.cfg.Instance,
	}
}

// Get returns one live session.
func (r *Registry) Get(id string) (SessionInfo, error) {
	r.mu.Lock()
	c := r.m[id]
	r.mu.Unlock()
	if c == nil {
		return SessionInfo{}, ErrNoSuchSession
	}
	return c.info(), nil
}

// Kill ends session id on this instance with cause (see KillCause). It
// returns once the cancel is issued; the teardown closes both connections
// immediately.
func (r *Registry) Kill(id string, cause *EndCause) error {
	r.mu.Lock()
	c := r.m[id]
	r.mu.Unlock()
	if c == nil {
		return ErrNoSuchSession
	}
	c.cancel(cause)
	return nil
}

// KillWhere ends every session for which match returns true and returns
// how many it ended.
func (r *Registry) KillWhere(match func(SessionInfo) bool, cause *EndCause) int {
	n := 0
	for _, c := range r.snapshot() {
		if match(c.info()) {
			c.cancel(cause)
			n++
		}
	}
	return n
}

// killAll ends every session at shutdown.
func (r *Registry) killAll(cause *EndCause) {
	r.stopAnnouncing()
	r.KillWhere(func(SessionInfo) bool { return true }, cause)
}

// Watch streams session id's frames live (read-only) from now on.
func (r *Registry) Watch(id string, depth int) (*recording.Watch, error) {
	r.mu.Lock()
	c := r.m[id]
	r.mu.Unlock()
	if c == nil {
		return nil, ErrNoSuchSession
	}
	return c.rec.Watch(depth), nil
}

// Kill ends session id wherever it runs: locally at once, and on every
// other instance through the feed (when a store is configured). actor is
// the admin, audited with the reason.
func (b *Bastion) Kill(ctx context.Context, id, actor, reason string) error {
	cause := KillCause(reason)
	local := b.registry.Kill(id, cause)
	b.audit.Emit(ctx, audit.Event{
		Type: audit.TypeAdmin, SessionID: id, Actor: actor, Reason: "ssh-session-kill",
		Attrs: map[string]string{"detail": reason, "local": strconv.FormatBool(local == nil)},
	})
	if b.feed == nil {
		return local
	}
	if err := b.feed.Publish(ctx, store.Event{Kind: EventSSHSessionKill, Subject: id, Reason: reason}); err != nil {
		return fmt.Errorf("bastion: publishing kill: %w", err)
	}
	return nil
}

// follow subscribes to the feed and ends live sessions on kills,
// revocations and locks from any instance. It returns once subscribed.
func (b *Bastion) follow(ctx context.Context) error {
	ch, err := b.feed.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("bastion: subscribing to the feed: %w", err)
	}
	go func() {
		for ev := range ch {
			b.apply(ctx, ev)
		}
	}()
	return nil
}

// Cause codes for feed-driven ends.
var (
	causeCertRevoked   = &EndCause{Code: EndCertRevoked, Message: "your certificate was revoked"}
	causeUserRevoked   = &EndCause{Code: EndUserRevoked, Message: "your access was revoked"}
	causePolicyChanged = &EndCause{Code: "policy-changed", Message: "your access changed; log in again"}
)

// apply reacts to one feed event.
func (b *Bastion) apply(ctx context.Context, ev store.Event) {
	reg := b.registry
	switch ev.Kind {
	case EventSSHSessionKill:
		reg.Kill(ev.Subject, KillCause(ev.Reason))
	case session.EventSSHCertRevoked:
		if s, ok := strings.CutPrefix(ev.Subject, session.RevokedSerialPrefix); ok {
			serial, err := strconv.ParseUint(s, 10, 64)
			if err == nil {
				reg.KillWhere(func(i SessionInfo) bool { return i.CertSerial == serial }, causeCertRevoked)
			}
		} else if id, ok := strings.CutPrefix(ev.Subject, session.RevokedKeyIDPrefix); ok {
			b.recheck(ctx, func(i SessionInfo) bool { return i.UserID == id })
		}
	case store.EventSessionRevoked:
		if ev.Subject != "" {
			reg.KillWhere(func(i SessionInfo) bool { return i.WebSessionID == ev.Subject }, causeUserRevoked)
		}
	case store.EventUserRevoked:
		reg.KillWhere(func(i SessionInfo) bool { return i.UserID == ev.Subject }, causeUserRevoked)
	case store.EventLocked:
		// A user lock (risk engine, any instance) ends the user's
		// sessions with the locked message. Source blocks do not: they
		// throttle authentication, and live sessions are authenticated.
		if id, ok := strings.CutPrefix(ev.Subject, "user:"); ok {
			b.endLocked(ctx, id)
		}
	case store.EventPolicyChanged:
		b.Reevaluate()
	case store.EventGrantsChanged:
		// Decided again once the grant cache has reloaded (grants.go).
		if b.grants != nil && ev.Subject != "" {
			b.grantQ.push(ev.Subject, false)
		}
	case store.EventResync:
		// Events may have been missed: re-check every live certificate,
		// and every live user against the lock records (a lost `locked`
		// event must not leave a locked user's session running) and
		// against their grants.
		b.recheck(ctx, func(SessionInfo) bool { return true })
		for _, c := range b.registry.snapshot() {
			c.recheckLock()
		}
		if b.grants != nil {
			b.grantQ.push("", true)
		}
	}
}

// recheck ends the matching sessions whose certificate is now revoked (or
// cannot be checked: fail closed).
func (b *Bastion) recheck(ctx context.Context, match func(SessionInfo) bool) {
	for _, c := range b.registry.snapshot() {
		if !match(c.info()) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, revocationTimeout)
		err := b.rev.Check(cctx, c.cert)
		cancel()
		if err != nil {
			c.cancel(causeCertRevoked)
		}
	}
}

// Reevaluate asks the current policy again about every live session and
// ends those it no longer allows in full (role removed, rule changed,
// allowlist narrowed, a permission withdrawn), deciding only on the roles
// each session started with (conn.reevaluate). cmd calls it after
// swapping the policy.
func (b *Bastion) Reevaluate() int {
	n := 0
	for _, c := range b.registry.snapshot() {
		if !c.reevaluate() {
			n++
		}
	}
	return n
}
