package session

import (
	"testing"
	"time"
)

func entryAt(id string, lastSeen, expires time.Time) *entry {
	return newEntry(Record{ID: id, UserID: "u-" + id, LastSeen: lastSeen, ExpiresAt: expires})
}

func TestCacheInsert(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		enabled   bool
		bumpEpoch bool
		existing  bool
		cached    bool
	}{
		{name: "caches", enabled: true, cached: true},
		{name: "disabled (no feed)", enabled: false},
		{name: "removal since the read began", enabled: true, bumpEpoch: true},
		{name: "existing entry wins", enabled: true, existing: true, cached: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache()
			c.enabled.Store(tt.enabled)
			var old *entry
			if tt.existing {
				old = entryAt("AAAA", now, now.Add(time.Hour))
				c.insert(old, c.epoch.Load())
			}
			epoch0 := c.epoch.Load()
			if tt.bumpEpoch {
				c.drop("BBBB", 0)
			}
			e := entryAt("AAAA", now, now.Add(time.Hour))
			got := c.insert(e, epoch0)
			if tt.existing && got != old {
				t.Fatal("insert replaced the cached entry")
			}
			if inCache := c.peek("AAAA") != nil; inCache != tt.cached {
				t.Fatalf("cached = %v, want %v", inCache, tt.cached)
			}
		})
	}
}

func TestCacheSweep(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	idle := 30 * time.Minute
	c := newCache()
	c.enabled.Store(true)
	live := entryAt("live", now.Add(-time.Minute), now.Add(time.Hour))
	for _, e := range []*entry{
		live,
		entryAt("expired", now.Add(-time.Minute), now),
		entryAt("idle", now.Add(-idle), now.Add(time.Hour)),
	} {
		c.insert(e, c.epoch.Load())
	}
	c.remember("neg-old", now.UnixNano())
	c.remember("neg-new", now.Add(time.Second).UnixNano())
	c.sweep(now.UnixNano(), int64(idle))
	if c.len() != 1 || c.peek("live") != live {
		t.Fatalf("after sweep %d entries; want only the live one", c.len())
	}
	if _, neg := c.get([]byte("neg-new")); neg == 0 {
		t.Fatal("unexpired negative entry swept")
	}
	if _, neg := c.get([]byte("neg-old")); neg != 0 {
		t.Fatal("expired negative entry kept")
	}
}

func TestWriteBackPrune(t *testing.T) {
	var w writeBack
	w.init()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixNano()
	old, recent := now-int64(wbMemory)-1, now-int64(wbMemory)+1
	w.written["old"], w.written["new"] = writtenID{user: "u", at: old}, writtenID{user: "u", at: recent}
	w.revokedIDs["old"], w.revokedIDs["new"] = old, recent
	w.revokedUsers["old"], w.revokedUsers["new"] = old, recent
	w.prune(now)
	for name, n := range map[string]int{"written": len(w.written), "revokedIDs": len(w.revokedIDs), "revokedUsers": len(w.revokedUsers)} {
		if n != 1 {
			t.Fatalf("%s holds %d after prune, want 1", name, n)
		}
	}
	if _, ok := w.written["new"]; !ok {
		t.Fatal("recent memory pruned")
	}
}
