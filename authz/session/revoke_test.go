package session

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/authz/store"
)

// backends runs f against the fake store and the real embedded store
// (bbolt file, in-process feed), each shared by every Manager f makes.
func backends(t *testing.T, f func(t *testing.T, st Store, clk *clock)) {
	t.Run("fake", func(t *testing.T) { f(t, newFakeStore(), newClock()) })
	t.Run("embedded", func(t *testing.T) {
		clk := newClock()
		st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), store.EmbeddedOptions{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		f(t, st, clk)
	})
}

func TestRevokeAcrossInstances(t *testing.T) {
	backends(t, func(t *testing.T, st Store, clk *clock) {
		a := newTestManager(t, st, clk, true)
		b := newTestManager(t, st, clk, true)
		cookie, rec := a.login(t, "alice")
		for _, env := range []*testEnv{a, b} {
			if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
				t.Fatal(err) // now cached on both
			}
		}
		if err := a.m.Revoke(t.Context(), rec.ID, "logout"); err != nil {
			t.Fatal(err)
		}
		// Same instance: effective when Revoke returns.
		if _, err := a.m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) {
			t.Fatalf("revoking instance: %v", err)
		}
		// Other instance: effective once the feed event is delivered.
		ev := b.rec.waitEvent(t, store.EventSessionRevoked, rec.ID)
		if ev.Reason != "logout" {
			t.Fatalf("event reason = %q", ev.Reason)
		}
		if _, err := b.m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) {
			t.Fatalf("other instance after the event: %v", err)
		}
		if _, err := st.GetSession(t.Context(), rec.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record still stored: %v", err)
		}
	})
}

func TestRevokeUserAcrossInstances(t *testing.T) {
	backends(t, func(t *testing.T, st Store, clk *clock) {
		a := newTestManager(t, st, clk, true)
		b := newTestManager(t, st, clk, true)
		c1, _ := a.login(t, "alice")
		c2, _ := b.login(t, "alice")
		c3, _ := a.login(t, "bob")
		for _, env := range []*testEnv{a, b} {
			for _, c := range []string{c1, c2, c3} {
				if _, err := env.m.Lookup(t.Context(), c); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := b.m.RevokeUser(t.Context(), "alice", "locked"); err != nil {
			t.Fatal(err)
		}
		a.rec.waitEvent(t, store.EventUserRevoked, "alice")
		for name, env := range map[string]*testEnv{"a": a, "b": b} {
			for _, c := range []string{c1, c2} {
				if _, err := env.m.Lookup(t.Context(), c); !errors.Is(err, ErrNoSession) {
					t.Fatalf("instance %s: alice's session survived: %v", name, err)
				}
			}
			if _, err := env.m.Lookup(t.Context(), c3); err != nil {
				t.Fatalf("instance %s: bob's session was revoked too: %v", name, err)
			}
		}
		if left, err := st.ListSessions(t.Context(), "alice"); err != nil || len(left) != 0 {
			t.Fatalf("alice's records left: %d, %v", len(left), err)
		}
	})
}

func TestRevokeErrors(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	_, rec := env.login(t, "alice")
	tests := []struct {
		name    string
		run     func() error
		down    bool
		wantErr error
	}{
		{name: "malformed ID", run: func() error { return env.m.Revoke(t.Context(), "../../etc", "") }, wantErr: ErrNoSession},
		{name: "cookie instead of ID", run: func() error { return env.m.Revoke(t.Context(), "v1.x", "") }, wantErr: ErrNoSession},
		{name: "unknown ID", run: func() error { return env.m.Revoke(t.Context(), "AAAAAAAAAAAAAAAAAAAAAA", "") }, wantErr: ErrNoSession},
		{name: "store down", down: true, run: func() error { return env.m.Revoke(t.Context(), rec.ID, "") }, wantErr: store.ErrUnavailable},
		{name: "user store down", down: true, run: func() error { return env.m.RevokeUser(t.Context(), "alice", "") }, wantErr: store.ErrUnavailable},
		{name: "empty user would mean everyone", run: func() error { return env.m.RevokeUser(t.Context(), "", "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.down.Store(tt.down)
			defer st.down.Store(false)
			err := tt.run()
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if !st.has(rec.ID) {
		t.Fatal("a failed revoke deleted the session")
	}
}

func TestResyncClearsCache(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	cookie, _ := env.login(t, "alice")
	other := newTestManager(t, st, env.clk, true)
	if _, err := other.m.Lookup(t.Context(), cookie); err != nil || st.gets.Load() != 1 {
		t.Fatalf("first lookup: %v, reads %d", err, st.gets.Load())
	}
	st.inject(store.Event{Kind: store.EventResync})
	other.rec.waitEvent(t, store.EventResync, "")
	if other.m.cache.len() != 0 {
		t.Fatal("resync left entries in the cache")
	}
	if _, err := other.m.Lookup(t.Context(), cookie); err != nil || st.gets.Load() != 2 {
		t.Fatalf("after resync: %v, reads %d (want a fresh store read)", err, st.gets.Load())
	}
}

func TestFeedLossDisablesCache(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	cookie, rec := env.login(t, "alice")
	if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
		t.Fatal(err)
	}

	st.subscribeDown.Store(true)
	st.dropSubs()
	env.rec.waitFeed(t, false)
	if env.m.cache.len() != 0 {
		t.Fatal("cache kept entries after the feed was lost")
	}
	before := st.gets.Load()
	for range 3 {
		if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.gets.Load() - before; got != 3 {
		t.Fatalf("store reads without a feed = %d, want 3 (read-through)", got)
	}
	// A revocation whose event was lost with the connection still counts.
	if err := st.DeleteSession(t.Context(), rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := env.m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) {
		t.Fatalf("deleted session still accepted while the feed is down: %v", err)
	}

	cookie2, _ := env.login(t, "alice")
	st.subscribeDown.Store(false)
	env.rec.waitFeed(t, true)
	env.rec.waitEvent(t, store.EventResync, "")
	if st.subscribes.Load() < 2 {
		t.Fatal("no resubscription")
	}
	before = st.gets.Load()
	for range 3 {
		if _, err := env.m.Lookup(t.Context(), cookie2); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.gets.Load() - before; got != 1 {
		t.Fatalf("store reads after resubscribing = %d, want 1 (cached again)", got)
	}
}

// TestInflightReadCannotReinsert: a cache miss whose store read started
// before a revocation must not put the revoked session into the cache.
func TestInflightReadCannotReinsert(t *testing.T) {
	twoWays(t, "local revoke", "remote revoke", func(t *testing.T, local bool) {
		st, a, b := twoInstances(t)
		cookie, rec := a.login(t, "alice")
		entered, release := gate(&st.afterGet, func(id string) bool { return id == rec.ID })
		done := make(chan error, 1)
		go func() {
			_, err := b.m.Lookup(t.Context(), cookie) // reads the record, then waits
			done <- err
		}()
		<-entered
		if local {
			if err := b.m.Revoke(t.Context(), rec.ID, ""); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := a.m.Revoke(t.Context(), rec.ID, ""); err != nil {
				t.Fatal(err)
			}
			b.rec.waitEvent(t, store.EventSessionRevoked, rec.ID)
		}
		close(release)
		<-done // either answer is fine: it overlapped the revocation
		if _, err := b.m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) {
			t.Fatalf("stale read re-inserted the revoked session: %v", err)
		}
		if b.m.cache.len() != 0 {
			t.Fatal("revoked session is in the cache")
		}
	})
}

// TestConcurrentLookupRevoke (meant for -race): once Revoke has returned
// on an instance, no Lookup started afterwards on it returns the session;
// on another instance, none started after the event was delivered.
func TestConcurrentLookupRevoke(t *testing.T) {
	st := newFakeStore()
	creator := newTestManager(t, st, newClock(), true)
	a := newTestManager(t, st, creator.clk, true)
	b := newTestManager(t, st, creator.clk, true)
	for range 20 {
		cookie, rec := creator.login(t, "alice")
		var aDone, bDone atomic.Bool
		var wg sync.WaitGroup
		hammer := func(m *Manager, done *atomic.Bool) {
			for {
				after := done.Load()
				_, err := m.Lookup(t.Context(), cookie)
				if after {
					if err == nil {
						t.Error("revoked session returned")
					}
					return
				}
			}
		}
		for range 3 {
			wg.Go(func() { hammer(a.m, &aDone) })
			wg.Go(func() { hammer(b.m, &bDone) })
		}
		if err := a.m.Revoke(t.Context(), rec.ID, ""); err != nil {
			t.Fatal(err)
		}
		aDone.Store(true)
		b.rec.waitEvent(t, store.EventSessionRevoked, rec.ID)
		bDone.Store(true)
		wg.Wait()
	}
}

func TestStart(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), false)
	st.subscribeDown.Store(true)
	if err := env.m.Start(t.Context()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Start with the feed down: %v", err)
	}
	st.subscribeDown.Store(false)
	if err := env.m.Start(t.Context()); err != nil {
		t.Fatalf("Start after the feed came back: %v", err)
	}
	if err := env.m.Start(t.Context()); err == nil {
		t.Fatal("second Start accepted")
	}
}
