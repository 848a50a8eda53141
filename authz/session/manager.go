package session

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// Store is what the session manager needs from the state store.
type Store interface {
	store.Sessions
	store.Feed
}

var _ Store = (store.Store)(nil)

// Options carries the Manager's injected dependencies.
type Options struct {
	Now    func() time.Time // default time.Now
	Rand   io.Reader        // default crypto/rand.Reader
	Logger *slog.Logger     // default: discard

	// OnEvent, if set, is called on the feed goroutine after each feed
	// event has been applied to the cache (tests wait on it instead of
	// sleeping; metrics may count events). It must not block for long.
	OnEvent func(store.Event)
	// OnFeed, if set, is called when the feed subscription is lost
	// (up=false: caching is off, every lookup reads the store) and when it
	// is re-established (up=true).
	OnFeed func(up bool)
	// FeedLossGrace is how long sessions already in the cache are still
	// answered from it after the revocation feed is lost (the gateway's
	// store_grace). Zero, the default, clears the cache at once so every
	// lookup reads the store. During the grace nothing new is cached and a
	// revocation made elsewhere may go unseen: that is the trade-off an
	// operator accepts by configuring a grace.
	FeedLossGrace time.Duration
}

// Timing knobs that are not configuration.
const (
	// negativeTTL is how long an ID the store did not know (or that was
	// revoked or expired) is answered from memory. IDs are 132-bit hashes
	// of 256-bit random tokens and a token only reaches a browser after its
	// record is written, so an ID that is unknown now never becomes valid
	// later: a negative entry cannot hide a session created on another
	// instance, and its length only trades memory for store reads.
	negativeTTL = 30 * time.Second
	// sweepInterval is how often expired entries are forgotten.
	sweepInterval = time.Minute
	// storeOpTimeout bounds each background store operation.
	storeOpTimeout = 5 * time.Second
)

// Manager creates, looks up and revokes sessions. Lookups are served from
// an in-memory cache that the revocation feed invalidates. Start must be
// called before serving: until then nothing is cached (every lookup reads
// the store) and activity is not written back, so sessions idle out
// IdleTimeout after their last stored LastSeen.
//
// Across instances idle timeouts are exact to within IdleTimeout/10 (the
// write-back interval), erring towards ending a session early.
//
// Lock order: cache shard locks and wb.mu are never held together, and
// no lock is held across a store call.
type Manager struct {
	cfg        Config
	st         Store
	now        func() time.Time
	rand       io.Reader
	log        *slog.Logger
	onEvent    func(store.Event)
	onFeed     func(bool)
	feedGrace  time.Duration
	graceMu    sync.Mutex // orders grace start/end against feed restore
	idle       int64      // ns
	writeEvery int64      // ns between LastSeen write-backs of one session
	cache      *cache
	scratch    sync.Pool // *scratch
	wb         writeBack

	started                bool
	startMu                sync.Mutex
	backoffMin, backoffMax time.Duration
}

// NewManager validates cfg (after defaults) and returns a Manager.
func NewManager(cfg Config, st Store, opts Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("session: nil store")
	}
	cfg = cfg.withDefaults()
	cfg.CookieKey = slices.Clone(cfg.CookieKey)
	m := &Manager{
		cfg:        cfg,
		st:         st,
		now:        opts.Now,
		rand:       opts.Rand,
		log:        opts.Logger,
		onEvent:    opts.OnEvent,
		onFeed:     opts.OnFeed,
		feedGrace:  opts.FeedLossGrace,
		idle:       int64(cfg.IdleTimeout),
		writeEvery: int64(cfg.IdleTimeout / 10),
		cache:      newCache(),
		backoffMin: 100 * time.Millisecond,
		backoffMax: 5 * time.Second,
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	key := cfg.CookieKey
	m.scratch.New = func() any { return newScratch(key) }
	m.wb.init()
	return m, nil
}

// unavailable makes sure a store failure reads as ErrUnavailable: any
// error we cannot classify is a failure to answer, never "no session".
func unavailable(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// Create stores a new session for r and returns its bearer token (for
// Cookie) and the stored record. Every call draws a fresh 256-bit token,
// so every login gets a new session ID. The server sets ID, CreatedAt and
// LastSeen; ExpiresAt is the earlier of now+AbsoluteTimeout and
// r.ExpiresAt (when set, e.g. the role's max_session_ttl).
func (m *Manager) Create(ctx context.Context, r Record) (string, Record, error) {
	if r.UserID == "" {
		return "", Record{}, errors.New("session: create: empty user ID")
	}
	tok, err := newToken(m.rand)
	if err != nil {
		return "", Record{}, fmt.Errorf("session: create: reading randomness: %w", err)
	}
	now := m.now().UTC()
	exp := now.Add(m.cfg.AbsoluteTimeout)
	if !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(exp) {
		exp = r.ExpiresAt.UTC()
	}
	if !exp.After(now) {
		return "", Record{}, errors.New("session: create: expiry is not in the future")
	}
	r.ID = IDFromToken(tok)
	r.CreatedAt, r.LastSeen, r.ExpiresAt = now, now, exp
	r.AuthTime = r.AuthTime.UTC()
	r.Groups, r.Roles = slices.Clone(r.Groups), slices.Clone(r.Roles) // never alias the caller's slices
	if _, ok := nanos(r.AuthTime); !ok && !r.AuthTime.IsZero() {
		return "", Record{}, errors.New("session: create: auth time out of range")
	}
	data, err := json.Marshal(r)
	if err != nil {
		return "", Record{}, fmt.Errorf("session: create: encoding: %w", err)
	}
	epoch0 := m.cache.epoch.Load()
	if err := m.st.PutSession(ctx, store.Session{ID: r.ID, UserID: r.UserID, ExpiresAt: exp, Data: data}); err != nil {
		return "", Record{}, fmt.Errorf("session: create: %w", unavailable(err))
	}
	m.cache.insert(newEntry(r), epoch0)
	return tok, r, nil
}

// Lookup returns the live session named by a cookie value. It answers
// ErrNoSession for anything that is not a valid, unexpired, unrevoked
// session (forged cookies are refused before any lookup), and an error
// wrapping store.ErrUnavailable when the store cannot answer (callers
// answer 503, never "logged out").
//
// A cache hit performs no store round trip and no allocation. The
// returned Record's slices are shared with the cache: treat them as
// read-only.
func (m *Manager) Lookup(ctx context.Context, cookieValue string) (Record, error) {
	sc := m.scratch.Get().(*scratch)
	if !sc.parse(cookieValue) {
		m.scratch.Put(sc)
		return Record{}, ErrNoSession
	}
	now := m.now().UnixNano()
	epoch0 := m.cache.epoch.Load() // before reading the cache or the store
	if su := m.cache.staleUntil.Load(); su != 0 && now >= su {
		m.graceOver(su)
	}
	e, negUntil := m.cache.get(sc.id[:idLen])
	if e != nil {
		m.scratch.Put(sc)
		return m.use(ctx, e, now)
	}
	id := string(sc.id[:idLen])
	m.scratch.Put(sc)
	if now < negUntil {
		return Record{}, ErrNoSession
	}
	return m.miss(ctx, id, now, epoch0)
}

// use answers from a cached entry.
func (m *Manager) use(ctx context.Context, e *entry, now int64) (Record, error) {
	if now >= e.expires {
		m.cache.drop(e.id, now+int64(negativeTTL))
		return Record{}, ErrNoSession
	}
	if now >= e.lastSeen.Load()+m.idle {
		// Idle here, but the user may have been active on another
		// instance since we cached the record: its write-back is in the
		// store. Rare (once per idle expiry), so a round trip is fine.
		rec, err := m.read(ctx, e.id)
		if err != nil {
			if errors.Is(err, ErrNoSession) {
				m.cache.drop(e.id, now+int64(negativeTTL))
			}
			return Record{}, err
		}
		stored := rec.LastSeen.UnixNano()
		advance(&e.lastSeen, stored)
		advance(&e.storedSeen, stored)
		if now >= e.lastSeen.Load()+m.idle {
			m.cache.drop(e.id, now+int64(negativeTTL))
			return Record{}, ErrNoSession
		}
	}
	m.touch(e, now)
	rec := e.rec
	rec.LastSeen = time.Unix(0, e.lastSeen.Load()).UTC()
	return rec, nil
}

// miss reads the store, checks expiry and caches the session.
func (m *Manager) miss(ctx context.Context, id string, now int64, epoch0 uint64) (Record, error) {
	rec, err := m.read(ctx, id)
	if err != nil {
		if errors.Is(err, ErrNoSession) {
			m.cache.remember(id, now+int64(negativeTTL))
		}
		return Record{}, err
	}
	e := newEntry(rec)
	if now >= e.expires || now >= e.lastSeen.Load()+m.idle {
		m.cache.remember(id, now+int64(negativeTTL))
		return Record{}, ErrNoSession
	}
	return m.use(ctx, m.cache.insert(e, epoch0), now)
}

// touch records activity in memory and, at most once per IdleTimeout/10
// per session, queues a LastSeen write-back so that idle timeouts hold
// across instances. It never waits on the store.
func (m *Manager) touch(e *entry, now int64) {
	advance(&e.lastSeen, now)
	ss := e.storedSeen.Load()
	if now-ss >= m.writeEvery && e.storedSeen.CompareAndSwap(ss, now) && !m.wb.enqueue(e) {
		e.storedSeen.CompareAndSwap(now, ss) // queue full or no writer: try again later
	}
}

// read fetches and decodes one session from the store.
func (m *Manager) read(ctx context.Context, id string) (Record, error) {
	s, err := m.st.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return Record{}, ErrNoSession
	}
	if err != nil {
		return Record{}, fmt.Errorf("session: lookup: %w", unavailable(err))
	}
	return decode(s, id)
}

// decode parses a stored record and checks it is self-consistent. A record
// that does not decode is a store fault (fail closed with ErrUnavailable),
// not a missing session.
func decode(s store.Session, id string) (Record, error) {
	var r Record
	if err := json.Unmarshal(s.Data, &r); err != nil {
		return Record{}, fmt.Errorf("session: corrupt record %s: %w", id, store.ErrUnavailable)
	}
	_, okE := nanos(r.ExpiresAt)
	_, okL := nanos(r.LastSeen)
	if r.ID != id || s.ID != id || r.UserID == "" || r.UserID != s.UserID || !okE || !okL {
		return Record{}, fmt.Errorf("session: inconsistent record %s: %w", id, store.ErrUnavailable)
	}
	if !s.ExpiresAt.IsZero() && s.ExpiresAt.Before(r.ExpiresAt) {
		r.ExpiresAt = s.ExpiresAt.UTC()
	}
	return r, nil
}

// nanos converts t to unix nanoseconds when it is representable (the
// years 1678–2262; we accept a comfortable subset).
func nanos(t time.Time) (int64, bool) {
	if y := t.Year(); y < 1700 || y > 2200 {
		return 0, false
	}
	return t.UnixNano(), true
}

// validID reports whether id has the shape of a public session ID.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if b64dec[id[i]] < 0 {
			return false
		}
	}
	return true
}

// Get returns the session with public ID id (for the admin API), with
// LastSeen including activity seen by this instance. Unknown, malformed
// and expired IDs give ErrNoSession.
func (m *Manager) Get(ctx context.Context, id string) (Record, error) {
	if !validID(id) {
		return Record{}, ErrNoSession
	}
	rec, err := m.read(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if !m.now().Before(rec.ExpiresAt) {
		return Record{}, ErrNoSession
	}
	return m.withLocalSeen(rec), nil
}

func (m *Manager) withLocalSeen(rec Record) Record {
	if e := m.cache.peek(rec.ID); e != nil {
		if ls := e.lastSeen.Load(); ls > rec.LastSeen.UnixNano() {
			rec.LastSeen = time.Unix(0, ls).UTC()
		}
	}
	return rec
}

// List returns the live sessions of userID ("" = everyone), oldest first.
// A record that does not decode is still listed by ID and user (so an
// admin can revoke it) and logged.
func (m *Manager) List(ctx context.Context, userID string) ([]Record, error) {
	ss, err := m.st.ListSessions(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("session: list: %w", unavailable(err))
	}
	now := m.now()
	out := make([]Record, 0, len(ss))
	for _, s := range ss {
		if userID != "" && s.UserID != userID {
			continue
		}
		rec, err := decode(s, s.ID)
		if err != nil {
			m.log.Warn("session: unreadable session record", "session_id", s.ID, "err", err)
			rec = Record{ID: s.ID, UserID: s.UserID, ExpiresAt: s.ExpiresAt}
		}
		if !now.Before(rec.ExpiresAt) {
			continue
		}
		out = append(out, m.withLocalSeen(rec))
	}
	slices.SortFunc(out, func(a, b Record) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}
