package session

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

func storedLastSeen(t *testing.T, st Store, id string) time.Time {
	t.Helper()
	s, err := st.GetSession(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decode(s, id)
	if err != nil {
		t.Fatal(err)
	}
	return rec.LastSeen
}

// TestIdleAcrossInstances: activity on one instance keeps the session
// alive on another (through the LastSeen write-back), and inactivity
// everywhere ends it everywhere at the idle boundary.
func TestIdleAcrossInstances(t *testing.T) {
	backends(t, func(t *testing.T, st Store, clk *clock) {
		a := newTestManager(t, st, clk, true)
		b := newTestManager(t, st, clk, true)
		cookie, rec := a.login(t, "alice")
		t0 := clk.Now()
		if _, err := b.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatal(err) // cached on b with LastSeen t0
		}
		for _, at := range []time.Duration{10 * time.Minute, 20 * time.Minute, 30 * time.Minute} {
			clk.Add(t0.Add(at).Sub(clk.Now()))
			if _, err := a.m.Lookup(t.Context(), cookie); err != nil {
				t.Fatalf("a at +%v: %v", at, err)
			}
			a.rec.waitWrite(t, rec.ID)
			if got := storedLastSeen(t, st, rec.ID); !got.Equal(t0.Add(at)) {
				t.Fatalf("stored LastSeen = %v, want %v", got, t0.Add(at))
			}
		}
		// b last saw it at t0: idle by its own view, alive by the store's.
		clk.Add(5 * time.Minute)
		if _, err := b.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatalf("b at +35m after activity on a: %v", err)
		}
		b.rec.waitWrite(t, rec.ID)
		// Now nobody uses it: a's view (+30m) is older than the store's (+35m).
		clk.Add(DefaultIdleTimeout - time.Nanosecond)
		if _, err := a.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatalf("a 1ns before idle expiry: %v", err)
		}
		clk.Add(DefaultIdleTimeout)
		for name, env := range map[string]*testEnv{"a": a, "b": b} {
			if _, err := env.m.Lookup(t.Context(), cookie); err == nil {
				t.Fatalf("%s: idle session still accepted", name)
			}
		}
	})
}

// gatePut blocks the first put of id until release is closed.
func gatePut(st *fakeStore, id string) (entered, release chan struct{}) {
	return gate(&st.beforePut, func(s store.Session) bool { return s.ID == id })
}

func TestWriteBackOffRequestPathAndCoalesced(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	cookie, rec := env.login(t, "alice")
	entered, release := gatePut(st, rec.ID)
	env.clk.Add(10 * time.Minute)
	if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
		t.Fatal(err)
	}
	<-entered // the writer is stuck in the store…
	for range 3 {
		env.clk.Add(10 * time.Minute)
		// …and requests do not wait for it.
		if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatal(err)
		}
	}
	env.m.wb.mu.Lock()
	queued := len(env.m.wb.pending)
	env.m.wb.mu.Unlock()
	if queued != 1 {
		t.Fatalf("queued write-backs = %d, want 1 (coalesced)", queued)
	}
	close(release)
	env.rec.waitWrite(t, rec.ID)
	env.rec.waitWrite(t, rec.ID)
	if got := storedLastSeen(t, st, rec.ID); !got.Equal(env.clk.Now()) {
		t.Fatalf("stored LastSeen = %v, want the latest activity %v", got, env.clk.Now())
	}
	if n := st.puts.Load(); n != 3 {
		t.Fatalf("puts = %d, want 3 (create + 2 coalesced write-backs)", n)
	}
}

// TestWriteBackCannotResurrect: a write-back put that lands after another
// instance deleted (revoked) the session is undone and re-announced,
// whether the revocation event arrives during or after the put.
func TestWriteBackCannotResurrect(t *testing.T) {
	twoWays(t, "event during put", "event after put", func(t *testing.T, eventDuringPut bool) {
		st, a, b := twoInstances(t)
		cookie, rec := a.login(t, "alice")
		entered, release := gatePut(st, rec.ID)
		a.clk.Add(10 * time.Minute)
		if _, err := a.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatal(err)
		}
		<-entered // a's writer has read the record and is about to put it back
		if eventDuringPut {
			if err := b.m.Revoke(t.Context(), rec.ID, "logout"); err != nil {
				t.Fatal(err)
			}
			a.rec.waitEvent(t, store.EventSessionRevoked, rec.ID)
			close(release)
		} else {
			// b's delete lands now; its event is slow to reach a.
			if err := st.DeleteSession(t.Context(), rec.ID); err != nil {
				t.Fatal(err)
			}
			close(release)
			a.rec.waitWrite(t, rec.ID)
			if !st.has(rec.ID) {
				t.Fatal("test setup: the put did not resurrect the record")
			}
			st.inject(store.Event{Kind: store.EventSessionRevoked, Subject: rec.ID})
		}
		ev := b.rec.waitEvent(t, store.EventSessionRevoked, rec.ID)
		for ev.Reason != "revoked-during-write-back" {
			ev = b.rec.waitEvent(t, store.EventSessionRevoked, rec.ID)
		}
		if st.has(rec.ID) {
			t.Fatal("revoked session resurrected by a write-back")
		}
		for _, env := range []*testEnv{a, b} {
			if _, err := env.m.Lookup(t.Context(), cookie); err == nil {
				t.Fatal("revoked session accepted")
			}
		}
	})
}

func TestWriteBackSkipsRevoked(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), false)
	env.m.wb.start() // queue without a writer goroutine: flush by hand
	env.m.cache.enabled.Store(true)
	cookieOld, old := env.login(t, "alice")
	cookieOther, other := env.login(t, "bob")
	env.clk.Add(10 * time.Minute)
	for _, c := range []string{cookieOld, cookieOther} {
		if _, err := env.m.Lookup(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	// An event says all of alice's sessions were revoked (the store copy is
	// left in place here, so only the guard can stop the put).
	env.m.dropRevokedUser("alice")
	env.clk.Add(time.Minute)
	cookieNew, fresh := env.login(t, "alice") // logged in again afterwards
	env.clk.Add(10 * time.Minute)
	if _, err := env.m.Lookup(t.Context(), cookieNew); err != nil {
		t.Fatal(err)
	}
	env.m.flush(t.Context())
	tests := []struct {
		name string
		id   string
		want time.Time
	}{
		{"revoked user's old session not written", old.ID, old.LastSeen},
		{"other user written", other.ID, old.LastSeen.Add(10 * time.Minute)},
		{"session created after the revocation written", fresh.ID, env.clk.Now()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := storedLastSeen(t, st, tt.id); !got.Equal(tt.want) {
				t.Fatalf("stored LastSeen = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBeforeStart: until Start subscribes to the feed nothing is cached
// (a revocation could not reach the cache) and nothing is queued (no
// writer runs yet).
func TestBeforeStart(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), false)
	cookie, _ := env.login(t, "alice")
	for i := range 3 {
		env.clk.Add(5 * time.Minute)
		if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatal(err)
		}
		if got := st.gets.Load(); got != int64(i+1) {
			t.Fatalf("store reads = %d, want %d (read-through)", got, i+1)
		}
	}
	env.m.wb.mu.Lock()
	defer env.m.wb.mu.Unlock()
	if len(env.m.wb.pending) != 0 {
		t.Fatal("write-backs queued with no writer to drain them")
	}
}
