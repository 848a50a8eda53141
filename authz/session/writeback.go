package session

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// LastSeen write-back.
//
// Idle timeouts must hold across instances, so activity seen here is
// written to the store — but never on the request path: touch queues the
// entry (at most once per IdleTimeout/10 per session) and one background
// writer does a get-merge-put per queued session, coalescing repeats.
//
// The store has no compare-and-set, so a put can land after another
// instance deleted the session (revoked it) and resurrect it. The writer
// closes that race: under wb.mu it refuses IDs/users revoked recently,
// marks the ID in flight before its get-put, and afterwards checks whether
// a revocation arrived meanwhile; a revocation that arrives after a
// completed put finds the ID in `written`. Either way the writer deletes
// the record again and republishes the revocation, so any instance that
// read the resurrected copy drops it too.
//
// The memories only need to outlive the feed's delivery delay (well under
// a second) plus the queue's drain time, so they are kept for a couple of
// minutes. If they ever fill up, write-backs stop until they are pruned:
// idle timeouts on other instances then err towards ending sessions early,
// never towards resurrecting one.
const (
	maxPending    = 1 << 12         // queued write-backs; beyond it touches retry later
	maxRemembered = 1 << 18         // bound of written / revoked memories
	wbMemory      = 2 * time.Minute // how long written/revoked IDs are remembered
)

type writeBack struct {
	mu      sync.Mutex
	running bool
	pending map[string]*entry   // sessions whose LastSeen to write
	comp    map[string]struct{} // IDs to delete again (revoked after our put)
	wake    chan struct{}       // capacity 1: "there is work"

	inflight        string // ID being written, "" when idle
	inflightUser    string
	inflightRevoked bool

	written      map[string]writtenID // ID → our last put
	revokedIDs   map[string]int64     // ID → when we learnt it was revoked
	revokedUsers map[string]int64     // user → when we learnt all their sessions were revoked

	after func(id string) // test hook: called after each processed ID
}

type writtenID struct {
	user string
	at   int64
}

func (w *writeBack) init() {
	w.pending = make(map[string]*entry)
	w.comp = make(map[string]struct{})
	w.wake = make(chan struct{}, 1)
	w.written = make(map[string]writtenID)
	w.revokedIDs = make(map[string]int64)
	w.revokedUsers = make(map[string]int64)
}

func (w *writeBack) start() {
	w.mu.Lock()
	w.running = true
	w.mu.Unlock()
}

func (w *writeBack) stop() {
	w.mu.Lock()
	w.running = false
	clear(w.pending)
	clear(w.comp)
	w.mu.Unlock()
}

func (w *writeBack) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// enqueue queues e's LastSeen for writing; false when the queue is full
// or no writer runs (before Start).
func (w *writeBack) enqueue(e *entry) bool {
	w.mu.Lock()
	ok := w.running && (len(w.pending) < maxPending || w.pending[e.id] != nil)
	if ok {
		w.pending[e.id] = e
	}
	w.mu.Unlock()
	if ok {
		w.signal()
	}
	return ok
}

// noteRevoked records a revocation of session id or of every session of
// user (one of them is ""), and queues a compensating delete when our own
// put may have resurrected the record.
func (w *writeBack) noteRevoked(id, user string, now int64) {
	w.mu.Lock()
	if id != "" {
		w.revokedIDs[id] = now
	}
	if user != "" {
		w.revokedUsers[user] = now
	}
	if w.inflight != "" && ((id != "" && w.inflight == id) || (user != "" && w.inflightUser == user)) {
		w.inflightRevoked = true // the writer compensates when its put returns
	}
	queued := false
	if _, ok := w.written[id]; ok && id != "" {
		w.comp[id] = struct{}{}
		queued = true
	}
	if user != "" {
		for wid, wr := range w.written {
			if wr.user == user {
				w.comp[wid] = struct{}{}
				queued = true
			}
		}
	}
	w.mu.Unlock()
	if queued {
		w.signal()
	}
}

// mayWriteLocked reports whether e may be written back now.
func (w *writeBack) mayWriteLocked(e *entry) bool {
	if e.dead.Load() || len(w.revokedIDs) >= maxRemembered || len(w.written) >= maxRemembered {
		return false // dead, or memories full: skipping is the safe side
	}
	if _, ok := w.revokedIDs[e.id]; ok {
		return false
	}
	if at, ok := w.revokedUsers[e.rec.UserID]; ok && at >= e.rec.CreatedAt.UnixNano() {
		return false
	}
	return true
}

// prune forgets memories older than wbMemory.
func (w *writeBack) prune(now int64) {
	cut := now - int64(wbMemory)
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, wr := range w.written {
		if wr.at < cut {
			delete(w.written, id)
		}
	}
	for _, m := range []map[string]int64{w.revokedIDs, w.revokedUsers} {
		for k, at := range m {
			if at < cut {
				delete(m, k)
			}
		}
	}
}

// writer is the single background goroutine that writes LastSeen back and
// sweeps the cache.
func (m *Manager) writer(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	defer m.wb.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.wb.wake:
			m.flush(ctx)
		case <-t.C:
			now := m.now().UnixNano()
			m.cache.sweep(now, m.idle)
			m.wb.prune(now)
		}
	}
}

// flush processes everything queued so far.
func (m *Manager) flush(ctx context.Context) {
	w := &m.wb
	w.mu.Lock()
	pending, comp := w.pending, w.comp
	w.pending, w.comp = make(map[string]*entry), make(map[string]struct{})
	w.mu.Unlock()
	for id := range comp {
		m.compensate(ctx, id)
		m.afterWrite(id)
	}
	for _, e := range pending {
		if ctx.Err() != nil {
			return
		}
		m.writeOne(ctx, e)
		m.afterWrite(e.id)
	}
}

func (m *Manager) afterWrite(id string) {
	if m.wb.after != nil {
		m.wb.after(id)
	}
}

// writeOne writes e's LastSeen back (see the file comment for the
// resurrection guard).
func (m *Manager) writeOne(ctx context.Context, e *entry) {
	w := &m.wb
	w.mu.Lock()
	ok := w.mayWriteLocked(e)
	if ok {
		w.inflight, w.inflightUser, w.inflightRevoked = e.id, e.rec.UserID, false
	}
	w.mu.Unlock()
	if !ok {
		return
	}
	put := m.putSeen(ctx, e)
	w.mu.Lock()
	revoked := w.inflightRevoked
	w.inflight, w.inflightUser, w.inflightRevoked = "", "", false
	if put {
		w.written[e.id] = writtenID{user: e.rec.UserID, at: m.now().UnixNano()}
	}
	w.mu.Unlock()
	if put && revoked {
		m.compensate(ctx, e.id)
	}
}

// putSeen merges the stored LastSeen into e and, if ours is newer, puts
// the record back with it. It reports whether a put was attempted (a put
// that failed may still have landed).
func (m *Manager) putSeen(ctx context.Context, e *entry) bool {
	ctx, cancel := context.WithTimeout(ctx, storeOpTimeout)
	defer cancel()
	rec, err := m.read(ctx, e.id)
	if err != nil {
		if !errors.Is(err, ErrNoSession) {
			m.log.Warn("session: last-seen write-back: read failed", "session_id", e.id, "err", err)
		}
		return false
	}
	stored := rec.LastSeen.UnixNano()
	advance(&e.lastSeen, stored)
	advance(&e.storedSeen, stored)
	local := e.lastSeen.Load()
	if local <= stored {
		return false
	}
	rec.LastSeen = time.Unix(0, local).UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		m.log.Error("session: last-seen write-back: encoding", "session_id", e.id, "err", err)
		return false
	}
	if err := m.st.PutSession(ctx, store.Session{ID: rec.ID, UserID: rec.UserID, ExpiresAt: rec.ExpiresAt, Data: data}); err != nil {
		m.log.Warn("session: last-seen write-back failed", "session_id", e.id, "err", err)
	}
	return true
}

// compensate deletes a record our write-back may have resurrected after a
// revocation, and tells every instance again.
func (m *Manager) compensate(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, storeOpTimeout)
	defer cancel()
	if err := m.st.DeleteSession(ctx, id); err != nil {
		m.log.Error("session: re-deleting a revoked session after a concurrent write-back failed", "session_id", id, "err", err)
	}
	if err := m.st.Publish(ctx, store.Event{Kind: store.EventSessionRevoked, Subject: id, Reason: "revoked-during-write-back"}); err != nil {
		m.log.Error("session: republishing a revocation failed", "session_id", id, "err", err)
	}
}
