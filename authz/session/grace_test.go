package session

import (
	"errors"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// TestFeedLossGrace: with a grace configured (the gateway's store_grace),
// sessions already cached are served while the feed and the store are
// down, nothing new is cached, and once the grace is over every lookup
// goes to the store again (which fails closed while it is down).
func TestFeedLossGrace(t *testing.T) {
	st := newFakeStore()
	clk := newClock()
	r := newRecorder()
	m, err := NewManager(Config{CookieKey: testKey}, st, Options{
		Now:           clk.Now,
		OnEvent:       func(e store.Event) { r.events <- e },
		OnFeed:        func(up bool) { r.feed <- up },
		FeedLossGrace: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.backoffMin, m.backoffMax = time.Millisecond, 5*time.Millisecond
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.waitEvent(t, store.EventResync, "")
	env := &testEnv{m: m, st: st, clk: clk, rec: r}
	cookie, _ := env.login(t, "alice")
	uncached, bob := env.login(t, "bob")
	m.cache.drop(bob.ID, 0) // as if created on another instance
	if _, err := m.Lookup(t.Context(), cookie); err != nil {
		t.Fatal(err)
	}

	st.subscribeDown.Store(true)
	st.down.Store(true)
	st.dropSubs()
	r.waitFeed(t, false)

	before := st.gets.Load()
	for range 3 {
		if _, err := m.Lookup(t.Context(), cookie); err != nil {
			t.Fatalf("cached session refused during the grace: %v", err)
		}
	}
	if got := st.gets.Load() - before; got != 0 {
		t.Fatalf("store reads for a cached session during the grace = %d, want 0", got)
	}
	// A session that was not cached needs the store, which is down.
	if _, err := m.Lookup(t.Context(), uncached); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("uncached session during the outage: %v, want ErrUnavailable", err)
	}
	st.down.Store(false)
	if _, err := m.Lookup(t.Context(), uncached); err != nil {
		t.Fatal(err)
	}
	if m.cache.peek(bob.ID) != nil {
		t.Fatal("a session was cached while the feed was lost")
	}
	st.down.Store(true)

	clk.Add(2*time.Minute + time.Second)
	if _, err := m.Lookup(t.Context(), cookie); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("after the grace: %v, want the store's ErrUnavailable (fail closed)", err)
	}
	if m.cache.len() != 0 {
		t.Fatal("cache kept entries after the grace")
	}
}
