package bastion

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// Presence: every instance announces its live sessions in the shared
// store, so `admin sessions` on any instance lists the sessions of all of
// them. Each live session is one entry of kind PresenceKind (its
// SessionInfo as JSON, naming the instance), written when the session
// starts, rewritten every presenceEvery with a TTL of presenceTTL, and
// deleted when it ends; the entries of a crashed instance expire on their
// own.
//
// The listing is informational: kills reach every instance through the
// feed whether or not a session was listed. So announcing never holds a
// session up: one goroutine per bastion (not per session) writes in the
// background, only while there are sessions or pending deletes, and a
// failing store is logged, never a reason to end or delay a session.

// PresenceKind is the store presence kind of live SSH sessions.
const PresenceKind = "ssh-session"

// Presence is where instances announce their live sessions
// (store.Presence). The bastion uses it when Deps.Store implements it, as
// every store.Store does.
type Presence interface {
	PutPresence(ctx context.Context, kind, id string, data []byte, ttl time.Duration) error
	DeletePresence(ctx context.Context, kind, id string) error
	ListPresence(ctx context.Context, kind string) (map[string][]byte, error)
}

var _ Presence = (store.Presence)(nil)

const (
	// presenceEvery is how often live sessions are re-announced, and
	// presenceTTL how long an announcement outlives its last refresh: two
	// refreshes may fail before a live session drops out of listings.
	presenceEvery = 20 * time.Second
	presenceTTL   = 60 * time.Second
	// presenceTimeout bounds each store call: a hung store delays the
	// announcements, never a session.
	presenceTimeout = 5 * time.Second
)

// ErrPartialList reports that only this instance's sessions could be
// listed: the store holding the other instances' announcements did not
// answer. It wraps store.ErrUnavailable.
var ErrPartialList = fmt.Errorf("bastion: live sessions of other instances are missing: %w", store.ErrUnavailable)

// presenceStore returns the store to announce sessions in, or nil when
// there is none (a single instance without a shared store).
func (b *Bastion) presenceStore() Presence {
	p, _ := b.feed.(Presence)
	return p
}

// publisher writes a registry's announcements. Its queues are guarded by
// the registry's mutex; only its goroutine (publish) talks to the store.
type publisher struct {
	st         Presence
	b          *Bastion
	every, ttl time.Duration

	running bool                 // the goroutine runs
	closing bool                 // shutting down: failed deletes are not retried
	refresh bool                 // re-announce every live session this round
	fresh   []*conn              // started since the last round
	gone    map[string]time.Time // ended sessions to delete → when (injected clock)
	wake    chan struct{}        // buffered(1): work was queued

	failing bool // the last round failed (publish goroutine only)
}

// announceLocked queues c's announcement. r.mu is held.
func (r *Registry) announceLocked(c *conn) {
	if r.pub == nil {
		st := c.b.presenceStore()
		if st == nil {
			return
		}
		r.pub = &publisher{st: st, b: c.b, every: r.presEvery, ttl: r.presTTL,
			gone: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	}
	r.pub.closing = false
	r.pub.fresh = append(r.pub.fresh, c)
	r.kickLocked()
}

// withdrawLocked queues the deletion of c's announcement. r.mu is held.
func (r *Registry) withdrawLocked(c *conn) {
	p := r.pub
	if p == nil {
		return
	}
	if i := slices.Index(p.fresh, c); i >= 0 {
		// Never written: nothing to delete.
		p.fresh = slices.Delete(p.fresh, i, i+1)
		return
	}
	p.gone[c.id] = c.b.now()
	r.kickLocked()
}

// kickLocked wakes the publisher goroutine, starting it if needed.
func (r *Registry) kickLocked() {
	p := r.pub
	if !p.running {
		p.running = true
		go r.publish(p)
		return
	}
	select {
	case p.wake <- struct{}{}:
	default: // already woken
	}
}

// stopAnnouncing marks the registry as shutting down: the announcements
// of the sessions now ending are deleted once, without retries.
func (r *Registry) stopAnnouncing() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pub != nil {
		r.pub.closing = true
	}
}

// publish is the publisher goroutine. It runs rounds — deletes, then
// puts — when woken and every p.every, and returns as soon as the
// registry is empty and nothing is pending.
func (r *Registry) publish(p *publisher) {
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		r.mu.Lock()
		puts := p.fresh
		if p.refresh {
			puts = make([]*conn, 0, len(r.m))
			for _, c := range r.m {
				puts = append(puts, c)
			}
		}
		gone := p.gone
		p.fresh, p.refresh, p.gone = nil, false, map[string]time.Time{}
		r.mu.Unlock()

		retry, err := p.round(puts, gone)
		p.report(err)

		r.mu.Lock()
		now := p.b.now()
		for id, ended := range retry {
			// A failed delete is retried until the entry has expired by
			// itself, except at shutdown.
			if !p.closing && now.Sub(ended) < p.ttl {
				p.gone[id] = ended
			}
		}
		if len(r.m) == 0 && len(p.fresh) == 0 && len(p.gone) == 0 {
			p.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()

		select {
		case <-p.wake:
		case <-t.C:
			r.mu.Lock()
			p.refresh = true
			r.mu.Unlock()
		}
	}
}

// round deletes the ended sessions' entries and writes the live ones'. At
// the first failure it stops (the store is likely down: each further call
// would wait for its timeout too) and returns the deletes still to do;
// the next refresh rewrites every live session anyway.
func (p *publisher) round(puts []*conn, gone map[string]time.Time) (map[string]time.Time, error) {
	for id := range gone {
		ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
		err := p.st.DeletePresence(ctx, PresenceKind, id)
		cancel()
		if err != nil {
			return gone, fmt.Errorf("withdrawing session %s: %w", id, err)
		}
		delete(gone, id)
	}
	for _, c := range puts {
		if c.ctx.Err() != nil {
			continue // ending: its delete is queued or about to be
		}
		data, err := json.Marshal(c.info())
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
		err = p.st.PutPresence(ctx, PresenceKind, c.id, data, p.ttl)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("announcing session %s: %w", c.id, err)
		}
	}
	return nil, nil
}

// report logs a round's outcome on changes only: a store outage logs
// once, not once per round.
func (p *publisher) report(err error) {
	switch {
	case err != nil && !p.failing:
		p.failing = true
		p.b.log.Warn("announcing live SSH sessions failed: other instances do not list them until the store answers "+
			"(sessions are unaffected)", "err", err)
	case err == nil && p.failing:
		p.failing = false
		p.b.log.Info("announcing live SSH sessions works again")
	}
}

// Sessions lists the live sessions of every instance, oldest first: this
// instance's from its registry, the others' from their announcements in
// the store. When the store does not answer it returns this instance's
// sessions and an error wrapping ErrPartialList.
func (b *Bastion) Sessions(ctx context.Context) ([]SessionInfo, error) {
	local := b.registry.List()
	remote, err := b.remoteSessions(ctx)
	if err != nil {
		return local, err
	}
	seen := make(map[string]bool, len(local))
	for _, s := range local {
		seen[s.ID] = true
	}
	out := local
	for _, s := range remote {
		// This instance's own registry is authoritative for its sessions
		// (an entry may be a moment behind it).
		if !seen[s.ID] {
			out = append(out, s)
		}
	}
	sortSessions(out)
	return out, nil
}

// Session returns one live session, on this instance or, read-only, as
// another instance announced it. It returns ErrNoSuchSession when no
// instance runs it, an error wrapping ErrPartialList when it is not
// local and the store does not answer.
func (b *Bastion) Session(ctx context.Context, id string) (SessionInfo, error) {
	if info, err := b.registry.Get(id); err == nil {
		return info, nil
	}
	remote, err := b.remoteSessions(ctx)
	if err != nil {
		return SessionInfo{}, err
	}
	for _, s := range remote {
		if s.ID == id {
			return s, nil
		}
	}
	return SessionInfo{}, ErrNoSuchSession
}

// remoteSessions reads every instance's announcements (this instance's
// included). Entries that do not decode are skipped and logged: one
// damaged entry must not hide every other session.
func (b *Bastion) remoteSessions(ctx context.Context) ([]SessionInfo, error) {
	st := b.presenceStore()
	if st == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	entries, err := st.ListPresence(ctx, PresenceKind)
	if err != nil {
		b.log.Warn("listing other instances' SSH sessions failed", "err", err)
		return nil, fmt.Errorf("%w: %v", ErrPartialList, err)
	}
	out := make([]SessionInfo, 0, len(entries))
	for id, data := range entries {
		var s SessionInfo
		if err := json.Unmarshal(data, &s); err != nil || s.ID != id {
			b.log.Warn("skipping a damaged SSH session announcement", "session", id, "err", err)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// sortSessions orders sessions oldest first, then by ID.
func sortSessions(s []SessionInfo) {
	slices.SortFunc(s, func(a, b SessionInfo) int {
		return cmp.Or(a.Start.Compare(b.Start), strings.Compare(a.ID, b.ID))
	})
}
