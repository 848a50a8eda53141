package session

import (
	"sync"
	"sync/atomic"
)

// Cache sizing. Bounds keep memory finite whatever arrives; when a bound
// is hit the cache simply stops adding (the store stays authoritative).
const (
	shardCount      = 64      // a power of two ≤ 64: indexed by the ID's first base64 digit
	maxLivePerShard = 1 << 14 // ≈1M cached sessions per instance
	maxNegPerShard  = 1 << 10 // ≈64k remembered unknown IDs
)

// entry is one cached session. rec, id and expires never change; lastSeen
// and storedSeen only move forward.
type entry struct {
	id      string
	rec     Record // immutable (slices shared with every caller: read-only)
	expires int64  // absolute expiry, unix ns

	// lastSeen is max(local activity, LastSeen read from the store).
	lastSeen atomic.Int64
	// storedSeen is the newest LastSeen known to be in, or queued for,
	// the store; it rate-limits write-backs.
	storedSeen atomic.Int64
	// dead is set once the entry has left the cache (revoked, expired,
	// cleared); the write-back writer skips dead entries.
	dead atomic.Bool
}

func newEntry(r Record) *entry {
	e := &entry{id: r.ID, rec: r, expires: r.ExpiresAt.UnixNano()}
	ls := r.LastSeen.UnixNano()
	e.lastSeen.Store(ls)
	e.storedSeen.Store(ls)
	return e
}

// advance moves v forward to t (never backwards).
func advance(v *atomic.Int64, t int64) {
	for {
		cur := v.Load()
		if t <= cur || v.CompareAndSwap(cur, t) {
			return
		}
	}
}

// shard is one lock domain of the cache. Padding keeps two shards' locks
// off one cache line.
type shard struct {
	mu   sync.RWMutex
	live map[string]*entry
	neg  map[string]int64 // unknown/dead ID → until (unix ns)
	_    [64]byte
}

// cache maps public session IDs to entries, plus a bounded negative cache.
//
// Insert-vs-revoke invariant: every removal bumps epoch BEFORE taking the
// shard lock, and insert only adds while holding the shard lock if epoch
// still equals the value loaded before the store read that produced the
// entry. So a store read that started before a revocation can never put
// the revoked session back into the cache: either the insert happens
// first and the removal (which comes after it under the same lock) deletes
// it, or the removal's epoch bump comes first and the insert is refused.
type cache struct {
	shards [shardCount]shard
	epoch  atomic.Uint64
	// enabled is false until the revocation feed is subscribed and again
	// whenever it is lost: without the feed, a cached session could outlive
	// its revocation, so every lookup reads the store.
	enabled atomic.Bool
	// staleUntil is non-zero while the feed is lost and the configured
	// grace lets cached entries be served until then (UnixNano). Nothing
	// is inserted meanwhile.
	staleUntil atomic.Int64
}

func newCache() *cache {
	c := &cache{}
	for i := range c.shards {
		c.shards[i].live = make(map[string]*entry)
		c.shards[i].neg = make(map[string]int64)
	}
	return c
}

// shardOf picks the shard from the ID's first character (IDs are base64 of
// a hash, so this is uniform). Other strings land somewhere harmless.
func (c *cache) shardOf(first byte) *shard {
	return &c.shards[uint8(b64dec[first])%shardCount]
}

func (c *cache) shardFor(id string) *shard {
	if id == "" {
		return &c.shards[0]
	}
	return c.shardOf(id[0])
}

// get returns the live entry for id, or the negative-cache deadline.
// id is a byte slice so the hit path does not allocate (the string(id) map
// index is optimised by the compiler).
func (c *cache) get(id []byte) (e *entry, negUntil int64) {
	sh := c.shardOf(id[0])
	sh.mu.RLock()
	e = sh.live[string(id)]
	if e == nil {
		negUntil = sh.neg[string(id)]
	}
	sh.mu.RUnlock()
	return e, negUntil
}

// peek returns the live entry for id without touching it.
func (c *cache) peek(id string) *entry {
	sh := c.shardFor(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.live[id]
}

// insert caches e unless caching is off or a removal happened since
// epoch0 (see the type comment). It returns the entry callers should use:
// an already cached one for the same ID wins.
func (c *cache) insert(e *entry, epoch0 uint64) *entry {
	sh := c.shardFor(e.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !c.enabled.Load() || c.staleUntil.Load() != 0 || c.epoch.Load() != epoch0 {
		return e
	}
	if cur := sh.live[e.id]; cur != nil {
		return cur
	}
	if len(sh.live) >= maxLivePerShard {
		return e
	}
	sh.live[e.id] = e
	delete(sh.neg, e.id)
	return e
}

// remember adds id to the negative cache until the given time.
func (c *cache) remember(id string, until int64) {
	sh := c.shardFor(id)
	sh.mu.Lock()
	sh.rememberLocked(id, until)
	sh.mu.Unlock()
}

func (sh *shard) rememberLocked(id string, until int64) {
	if _, ok := sh.neg[id]; !ok && len(sh.neg) >= maxNegPerShard {
		for k := range sh.neg { // evict an arbitrary one: it is only an optimisation
			delete(sh.neg, k)
			break
		}
	}
	sh.neg[id] = until
}

// drop removes id (and remembers it as dead until negUntil) and returns
// the removed entry, if any, marked dead.
func (c *cache) drop(id string, negUntil int64) *entry {
	c.epoch.Add(1) // before the lock: see the type comment
	sh := c.shardFor(id)
	sh.mu.Lock()
	e := sh.live[id]
	delete(sh.live, id)
	sh.rememberLocked(id, negUntil)
	sh.mu.Unlock()
	if e != nil {
		e.dead.Store(true)
	}
	return e
}

// dropUser removes every entry of userID.
func (c *cache) dropUser(userID string, negUntil int64) {
	c.epoch.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for id, e := range sh.live {
			if e.rec.UserID == userID {
				delete(sh.live, id)
				sh.rememberLocked(id, negUntil)
				e.dead.Store(true)
			}
		}
		sh.mu.Unlock()
	}
}

// clear drops every live entry (events may have been missed). The
// negative cache survives: an unknown random ID does not become known
// later, and revoked ones stay revoked.
func (c *cache) clear() {
	c.epoch.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		old := sh.live
		sh.live = make(map[string]*entry)
		sh.mu.Unlock()
		for _, e := range old {
			e.dead.Store(true)
		}
	}
}

// sweep forgets expired entries so memory does not grow with sessions that
// are never presented again. An entry that only looks idle is dropped too:
// a later lookup re-reads the store, which may know of newer activity.
func (c *cache) sweep(now, idle int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for id, e := range sh.live {
			if now >= e.expires || now >= e.lastSeen.Load()+idle {
				delete(sh.live, id)
				e.dead.Store(true)
			}
		}
		for id, until := range sh.neg {
			if now >= until {
				delete(sh.neg, id)
			}
		}
		sh.mu.Unlock()
	}
}

// len reports the number of live entries (tests and metrics).
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.live)
		sh.mu.RUnlock()
	}
	return n
}
