package session

import (
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

func TestCreateLookup(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	tok, rec, err := env.m.Create(t.Context(), testRecord("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != tokenLen || len(rec.ID) != idLen || rec.ID != IDFromToken(tok) {
		t.Fatalf("token %d chars, id %q", len(tok), rec.ID)
	}
	now := env.clk.Now()
	if !rec.CreatedAt.Equal(now) || !rec.LastSeen.Equal(now) || !rec.ExpiresAt.Equal(now.Add(DefaultAbsoluteTimeout)) {
		t.Fatalf("times: %+v", rec)
	}
	if !st.has(rec.ID) || st.raw(rec.ID).UserID != "alice" {
		t.Fatal("record not stored under its public ID")
	}
	if strings.Contains(string(st.raw(rec.ID).Data), tok) {
		t.Fatal("stored record contains the bearer token")
	}
	cookie := env.m.Cookie(tok, 0).Value
	got, err := env.m.Lookup(t.Context(), cookie)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rec.ID || got.UserID != "alice" || !slices.Equal(got.Roles, []string{"engineer"}) || !got.MFA || got.Email != "alice@example.com" {
		t.Fatalf("lookup = %+v", got)
	}
	// The instance that created it has it cached: no store read at all.
	if n := st.gets.Load(); n != 0 {
		t.Fatalf("store reads after create+lookup = %d, want 0", n)
	}

	other := newTestManager(t, st, env.clk, true)
	for i := range 3 {
		if _, err := other.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatalf("lookup %d on second instance: %v", i, err)
		}
	}
	if n := st.gets.Load(); n != 1 {
		t.Fatalf("store reads on second instance = %d, want 1 (then cached)", n)
	}
}

func TestCreateNewIDEachLogin(t *testing.T) {
	env := newTestManager(t, newFakeStore(), newClock(), true)
	seenTok, seenID := map[string]bool{}, map[string]bool{}
	for range 50 {
		tok, rec, err := env.m.Create(t.Context(), testRecord("alice"))
		if err != nil {
			t.Fatal(err)
		}
		if seenTok[tok] || seenID[rec.ID] {
			t.Fatal("token or ID reused across logins")
		}
		seenTok[tok], seenID[rec.ID] = true, true
	}
}

func TestCreateCopiesCallerSlices(t *testing.T) {
	env := newTestManager(t, newFakeStore(), newClock(), true)
	in := testRecord("alice")
	tok, _, err := env.m.Create(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	in.Roles[0] = "admin"
	got, err := env.m.Lookup(t.Context(), env.m.Cookie(tok, 0).Value)
	if err != nil || got.Roles[0] != "engineer" {
		t.Fatalf("caller's slice mutation reached the session: %v %v", got.Roles, err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestCreateErrors(t *testing.T) {
	clk := newClock()
	tests := []struct {
		name    string
		rec     func() Record
		setup   func(*fakeStore, *Manager)
		wantErr error
	}{
		{name: "empty user", rec: func() Record { return Record{} }},
		{name: "expiry in the past", rec: func() Record {
			r := testRecord("a")
			r.ExpiresAt = clk.Now().Add(-time.Second)
			return r
		}},
		{name: "expiry now", rec: func() Record {
			r := testRecord("a")
			r.ExpiresAt = clk.Now()
			return r
		}},
		{name: "auth time out of range", rec: func() Record {
			r := testRecord("a")
			r.AuthTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			return r
		}},
		{name: "randomness fails", rec: func() Record { return testRecord("a") },
			setup: func(_ *fakeStore, m *Manager) { m.rand = errReader{} }},
		{name: "store down", rec: func() Record { return testRecord("a") },
			setup:   func(st *fakeStore, _ *Manager) { st.down.Store(true) },
			wantErr: store.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore()
			env := newTestManager(t, st, clk, false)
			if tt.setup != nil {
				tt.setup(st, env.m)
			}
			tok, _, err := env.m.Create(t.Context(), tt.rec())
			if err == nil || tok != "" {
				t.Fatalf("Create = %q, %v; want error", tok, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n, _ := st.ListSessions(t.Context(), ""); len(n) != 0 {
				t.Fatal("a failed Create stored a session")
			}
		})
	}
}

func TestCreateExpiry(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	tests := []struct {
		name string
		req  time.Time
		want time.Time
	}{
		{"zero means absolute timeout", time.Time{}, now.Add(DefaultAbsoluteTimeout)},
		{"earlier role TTL wins", now.Add(time.Hour), now.Add(time.Hour)},
		{"later request capped", now.Add(48 * time.Hour), now.Add(DefaultAbsoluteTimeout)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestManager(t, newFakeStore(), clk, false)
			r := testRecord("a")
			r.ExpiresAt = tt.req
			_, rec, err := env.m.Create(t.Context(), r)
			if err != nil || !rec.ExpiresAt.Equal(tt.want) {
				t.Fatalf("ExpiresAt = %v, %v; want %v", rec.ExpiresAt, err, tt.want)
			}
		})
	}
}

// modes runs f with a Manager whose cache is on and with one whose feed is
// down (cache off: every lookup reads the store and LastSeen lives only
// in the store). settle waits for the LastSeen write-back a successful
// lookup after `since` of inactivity queued, so the next step sees it.
func modes(t *testing.T, f func(t *testing.T, env *testEnv, settle func(t *testing.T, id string, since time.Duration)), mut ...func(*Config)) {
	twoWays(t, "cached", "feed down, read-through", func(t *testing.T, cached bool) {
		st := newFakeStore()
		env := newTestManager(t, st, newClock(), true, mut...)
		if !cached {
			st.subscribeDown.Store(true)
			st.dropSubs()
			env.rec.waitFeed(t, false)
		}
		f(t, env, func(t *testing.T, id string, since time.Duration) {
			if since >= env.m.cfg.IdleTimeout/10 {
				env.rec.waitWrite(t, id)
			}
		})
	})
}

func TestIdleTimeoutBoundary(t *testing.T) {
	modes(t, func(t *testing.T, env *testEnv, settle func(*testing.T, string, time.Duration)) {
		cookie, rec := env.login(t, "alice")
		idle := DefaultIdleTimeout
		steps := []struct {
			advance time.Duration
			ok      bool
		}{
			{idle - time.Nanosecond, true}, // last moment
			{idle - time.Nanosecond, true}, // activity moved the deadline
			{idle / 2, true},
			{idle, false}, // exactly IdleTimeout after the last request
			{time.Nanosecond, false},
		}
		for i, s := range steps {
			env.clk.Add(s.advance)
			_, err := env.m.Lookup(t.Context(), cookie)
			if (err == nil) != s.ok {
				t.Fatalf("step %d (+%v): err = %v, want ok=%v", i, s.advance, err, s.ok)
			}
			if err != nil && !errors.Is(err, ErrNoSession) {
				t.Fatalf("step %d: err = %v, want ErrNoSession", i, err)
			}
			if err == nil {
				settle(t, rec.ID, s.advance)
			}
		}
	})
}

func TestAbsoluteTimeoutBoundary(t *testing.T) {
	modes(t, func(t *testing.T, env *testEnv, settle func(*testing.T, string, time.Duration)) {
		cookie, rec := env.login(t, "alice")
		// Stay active so that only the absolute timeout can end it.
		for env.clk.Now().Before(rec.ExpiresAt.Add(-5 * time.Minute)) {
			env.clk.Add(5 * time.Minute)
			if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
				t.Fatalf("at %v: %v", env.clk.Now(), err)
			}
			settle(t, rec.ID, 5*time.Minute)
		}
		env.clk.Add(rec.ExpiresAt.Sub(env.clk.Now()) - time.Nanosecond)
		if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatalf("1ns before ExpiresAt: %v", err)
		}
		env.clk.Add(time.Nanosecond)
		if _, err := env.m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) {
			t.Fatalf("at ExpiresAt: err = %v, want ErrNoSession", err)
		}
	}, func(c *Config) { c.IdleTimeout, c.AbsoluteTimeout = 10*time.Minute, time.Hour })
}

func TestLookupReturnsLastSeen(t *testing.T) {
	env := newTestManager(t, newFakeStore(), newClock(), true)
	cookie, _ := env.login(t, "alice")
	now := env.clk.Add(7 * time.Minute)
	got, err := env.m.Lookup(t.Context(), cookie)
	if err != nil || !got.LastSeen.Equal(now) {
		t.Fatalf("LastSeen = %v, %v; want %v", got.LastSeen, err, now)
	}
}

func TestLookupStoreFailures(t *testing.T) {
	tests := []struct {
		name  string
		start bool
		prep  func(t *testing.T, env *testEnv, st *fakeStore, id string)
	}{
		{name: "store down on miss", prep: func(_ *testing.T, _ *testEnv, st *fakeStore, _ string) { st.down.Store(true) }},
		{name: "store down on idle refresh", start: true, prep: func(t *testing.T, env *testEnv, st *fakeStore, _ string) {
			env.clk.Add(DefaultIdleTimeout) // looks idle: must ask the store
			st.down.Store(true)
		}},
		{name: "corrupt JSON", prep: func(_ *testing.T, _ *testEnv, st *fakeStore, id string) {
			st.set(store.Session{ID: id, UserID: "alice", Data: []byte("{not json")})
		}},
		{name: "record for another ID", prep: func(_ *testing.T, _ *testEnv, st *fakeStore, id string) {
			s := st.raw(id)
			s.Data = []byte(strings.Replace(string(s.Data), id, "AAAAAAAAAAAAAAAAAAAAAA", 1))
			st.set(s)
		}},
		{name: "user mismatch", prep: func(_ *testing.T, _ *testEnv, st *fakeStore, id string) {
			s := st.raw(id)
			s.UserID = "mallory"
			st.set(s)
		}},
		{name: "missing expiry", prep: func(_ *testing.T, _ *testEnv, st *fakeStore, id string) {
			st.set(store.Session{ID: id, UserID: "alice", Data: []byte(`{"id":"` + id + `","user_id":"alice"}`)})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore()
			creator := newTestManager(t, st, newClock(), false)
			cookie, rec := creator.login(t, "alice")
			env := newTestManager(t, st, creator.clk, tt.start)
			if tt.start {
				if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
					t.Fatal(err)
				}
			}
			tt.prep(t, env, st, rec.ID)
			_, err := env.m.Lookup(t.Context(), cookie)
			if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrNoSession) {
				t.Fatalf("err = %v; want ErrUnavailable and not ErrNoSession", err)
			}
		})
	}
}

func TestNegativeCache(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	// A MAC-valid cookie for a session that does not exist (e.g. a stale
	// cookie after logout): one store read, then answered from memory.
	tok, err := newToken(env.m.rand)
	if err != nil {
		t.Fatal(err)
	}
	cookie := env.m.Cookie(tok, 0).Value
	for range 5 {
		if _, err := env.m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := st.gets.Load(); n != 1 {
		t.Fatalf("store reads = %d, want 1", n)
	}
	env.clk.Add(negativeTTL)
	if _, err := env.m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) || st.gets.Load() != 2 {
		t.Fatalf("after negative TTL: err=%v reads=%d; want a fresh store read", err, st.gets.Load())
	}
}

func TestNegativeCacheBounded(t *testing.T) {
	c := newCache()
	for i := range 3 * maxNegPerShard {
		c.remember("A"+strconv.Itoa(i), 1) // all in the shard of 'A'

	}
	if n := len(c.shards[0].neg); n > maxNegPerShard {
		t.Fatalf("negative cache shard holds %d > %d", n, maxNegPerShard)
	}
}

func TestGet(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	cookie, rec := env.login(t, "alice")
	now := env.clk.Add(2 * time.Minute)
	if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
		t.Fatal(err)
	}
	got, err := env.m.Get(t.Context(), rec.ID)
	if err != nil || got.ID != rec.ID || !got.LastSeen.Equal(now) {
		t.Fatalf("Get = %+v, %v (want LastSeen %v from local activity)", got, err, now)
	}
	for _, id := range []string{"", "short", rec.ID + "A", strings.Repeat("!", idLen), cookie} {
		before := st.gets.Load()
		if _, err := env.m.Get(t.Context(), id); !errors.Is(err, ErrNoSession) || st.gets.Load() != before {
			t.Fatalf("Get(%q) = %v; want ErrNoSession without a store read", id, err)
		}
	}
	if _, err := env.m.Get(t.Context(), "AAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("unknown ID: %v", err)
	}
	env.clk.Add(DefaultAbsoluteTimeout)
	if _, err := env.m.Get(t.Context(), rec.ID); !errors.Is(err, ErrNoSession) {
		t.Fatalf("expired: %v", err)
	}
	st.down.Store(true)
	if _, err := env.m.Get(t.Context(), rec.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("store down: %v", err)
	}
}

func TestList(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	_, a1 := env.login(t, "alice")
	env.clk.Add(time.Minute)
	_, b1 := env.login(t, "bob")
	env.clk.Add(time.Minute)
	_, a2 := env.login(t, "alice")
	st.set(store.Session{ID: "broken", UserID: "bob", ExpiresAt: env.clk.Now().Add(time.Hour), Data: []byte("garbage")})
	st.set(store.Session{ID: "old", UserID: "bob", ExpiresAt: env.clk.Now().Add(-time.Hour), Data: []byte("garbage")})

	ids := func(rs []Record) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		user string
		want []string
	}{
		{"alice", []string{a1.ID, a2.ID}},
		{"bob", []string{"broken", b1.ID}}, // unreadable record still listed (zero CreatedAt sorts first); expired omitted
		{"", []string{"broken", a1.ID, b1.ID, a2.ID}},
		{"nobody", nil},
	}
	for _, tt := range tests {
		t.Run("user="+tt.user, func(t *testing.T) {
			got, err := env.m.List(t.Context(), tt.user)
			if err != nil || !slices.Equal(ids(got), tt.want) {
				t.Fatalf("List = %v, %v; want %v", ids(got), err, tt.want)
			}
		})
	}
	st.down.Store(true)
	if _, err := env.m.List(t.Context(), ""); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("store down: %v", err)
	}
}

func TestNewManagerErrors(t *testing.T) {
	if _, err := NewManager(Config{CookieKey: testKey}, nil, Options{}); err == nil {
		t.Fatal("nil store accepted")
	}
	if _, err := NewManager(Config{CookieKey: testKey[:31]}, newFakeStore(), Options{}); err == nil {
		t.Fatal("short key accepted")
	}
	m, err := NewManager(Config{CookieKey: testKey}, newFakeStore(), Options{})
	if err != nil || m.now == nil || m.rand == nil || m.log == nil {
		t.Fatalf("defaults not applied: %v", err)
	}
}
