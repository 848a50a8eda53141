package bastion

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// sharedStore is the state two bastion instances share in a test.
type sharedStore interface {
	Store
	Presence
}

// presenceBackends open, per test, a store shared by two instances: one
// embedded handle used by both (in-process), or one Redis handle each.
var presenceBackends = []struct {
	name string
	open func(t *testing.T) (a, b sharedStore)
}{
	{"embedded", func(t *testing.T) (sharedStore, sharedStore) {
		st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "shared.db"), store.EmbeddedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st, st
	}},
	{"redis", func(t *testing.T) (sharedStore, sharedStore) {
		addr := os.Getenv("PORTCULLIS_TEST_REDIS")
		if addr == "" {
			addr = "127.0.0.1:6379"
		}
		// A fresh prefix: the instances' presence keys are deleted as
		// their sessions end and expire with them anyway.
		var b [8]byte
		rand.Read(b[:])
		cfg := store.RedisConfig{Addr: addr, KeyPrefix: "portcullis-test:" + hex.EncodeToString(b[:]) + ":"}
		open := func() sharedStore {
			st, err := store.OpenRedis(t.Context(), cfg, store.RedisOptions{})
			if err != nil {
				t.Fatalf("no redis-server at %s (start one with `redis-server --daemonize yes` or set PORTCULLIS_TEST_REDIS): %v", addr, err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}
		return open(), open()
	}},
}

// presenceEnv starts a bastion named instance on st, announcing every
// 20 ms so refreshes are observable quickly.
func presenceEnv(t *testing.T, instance string, st Store, opts envOptions) *env {
	t.Helper()
	opts.config = func(c *Config) { c.Instance = instance }
	opts.deps = func(d *Deps) { d.Store = st }
	e := newEnv(t, opts)
	reg := e.b.registry
	reg.mu.Lock()
	reg.presEvery = 20 * time.Millisecond
	reg.mu.Unlock()
	return e
}

// adminGet GETs path from h and decodes the JSON answer into v (when
// non-nil); it returns the response.
func adminGet(t *testing.T, h http.Handler, path string, v any) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if v != nil && rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, rec.Body)
		}
	}
	return rec.Result()
}

// listed returns the sessions h lists, by ID.
func listed(t *testing.T, h http.Handler, path string) map[string]SessionInfo {
	t.Helper()
	var list []SessionInfo
	if resp := adminGet(t, h, path, &list); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	out := map[string]SessionInfo{}
	for _, s := range list {
		if _, dup := out[s.ID]; dup {
			t.Fatalf("GET %s lists %s twice: %+v", path, s.ID, list)
		}
		out[s.ID] = s
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within 15s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionsAcrossInstances: a session on instance a is listed, found
// and killable through instance b's admin API, naming instance a; it
// disappears from every listing when it ends.
func TestSessionsAcrossInstances(t *testing.T) {
	for _, backend := range presenceBackends {
		t.Run(backend.name, func(t *testing.T) {
			stA, stB := backend.open(t)
			a := presenceEnv(t, "a", stA, envOptions{})
			b := presenceEnv(t, "b", stB, envOptions{noTarget: true})
			actor := func(*http.Request) string { return "admin" }
			adminA, adminB := a.b.AdminHandler(actor), b.b.AdminHandler(actor)

			ls := a.startCat(a.alice())
			eventually(t, "b lists a's session", func() bool {
				_, ok := listed(t, adminB, "/sessions")[ls.id]
				return ok
			})
			got := listed(t, adminB, "/sessions")[ls.id]
			if got.Instance != "a" || got.UserID != "alice" || got.Login != "root" || got.Target != "db-1" || got.Start.IsZero() {
				t.Fatalf("b lists %+v", got)
			}
			if l := listed(t, adminB, "/sessions?local=1"); len(l) != 0 {
				t.Fatalf("b's own sessions: %+v", l)
			}
			// a lists its session once (registry and announcement deduplicated).
			if l := listed(t, adminA, "/sessions"); len(l) != 1 || l[ls.id].Instance != "a" {
				t.Fatalf("a lists %+v", l)
			}
			var page SessionList
			adminGet(t, adminB, "/sessions?envelope=1", &page)
			if page.Instance != "b" || page.Warning != "" || len(page.Sessions) != 1 || page.Sessions[0].ID != ls.id {
				t.Fatalf("envelope %+v", page)
			}
			var one SessionInfo
			if resp := adminGet(t, adminB, "/sessions/"+ls.id, &one); resp.StatusCode != http.StatusOK || one.Instance != "a" || one.ID != ls.id {
				t.Fatalf("b's GET /sessions/{id}: %d %+v", resp.StatusCode, one)
			}
			if resp := adminGet(t, adminB, "/sessions/"+ls.id+"/watch", nil); resp.StatusCode != http.StatusConflict {
				t.Fatalf("b's watch of a's session: %d, want 409", resp.StatusCode)
			}
			if resp := adminGet(t, adminB, "/sessions/nope", nil); resp.StatusCode != http.StatusNotFound {
				t.Fatalf("unknown session: %d", resp.StatusCode)
			}

			// An announcement lost from the store comes back at the next refresh.
			if err := stA.DeletePresence(t.Context(), PresenceKind, ls.id); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the announcement is refreshed", func() bool {
				_, ok := listed(t, adminB, "/sessions")[ls.id]
				return ok
			})

			// Killed through b, it ends on a and leaves every listing.
			req := httptest.NewRequest(http.MethodPost, "/sessions/"+ls.id+"/kill", strings.NewReader(`{"reason":"incident 9"}`))
			rec := httptest.NewRecorder()
			adminB.ServeHTTP(rec, req)
			if rec.Code != http.StatusNoContent {
				t.Fatalf("kill through b: %d %s", rec.Code, rec.Body)
			}
			ls.waitEnded(t)
			if end := a.waitSessionEnd(ls.id); end.Reason != EndKilled {
				t.Fatalf("end %+v", end)
			}
			eventually(t, "the ended session leaves b's listing", func() bool { return len(listed(t, adminB, "/sessions")) == 0 })
			if l := listed(t, adminA, "/sessions"); len(l) != 0 {
				t.Fatalf("a still lists %+v", l)
			}
			if m, err := stB.ListPresence(t.Context(), PresenceKind); err != nil || len(m) != 0 {
				t.Fatalf("announcements left after the end: %q, %v", m, err)
			}
		})
	}
}

// TestSessionsAnnouncementsExpire: a crashed instance's announcements
// drop out of listings once their TTL passes; damaged ones are skipped.
func TestSessionsAnnouncementsExpire(t *testing.T) {
	clock := &testClock{}
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "shared.db"), store.EmbeddedOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := presenceEnv(t, "b", st, envOptions{noTarget: true})
	admin := b.b.AdminHandler(func(*http.Request) string { return "admin" })
	ctx := t.Context()
	crashed, _ := json.Marshal(SessionInfo{ID: "c1", UserID: "bob", Instance: "c", Start: time.Unix(100, 0)})
	for _, e := range []struct {
		id   string
		data string
	}{
		{"c1", string(crashed)},
		{"bad-json", "{"},
		{"wrong-id", `{"id":"other"}`},
	} {
		if err := st.PutPresence(ctx, PresenceKind, e.id, []byte(e.data), presenceTTL); err != nil {
			t.Fatal(err)
		}
	}
	if l := listed(t, admin, "/sessions"); len(l) != 1 || l["c1"].Instance != "c" || l["c1"].UserID != "bob" {
		t.Fatalf("listed %+v, want only c's session", l)
	}
	clock.Advance(presenceTTL)
	if l := listed(t, admin, "/sessions"); len(l) != 0 {
		t.Fatalf("expired announcements listed: %+v", l)
	}
}

// flakyStore is a shared store whose presence calls fail (List) or hang
// (Put, until their deadline or the recovery) while it is down.
type flakyStore struct {
	*store.Embedded
	down      atomic.Bool
	puts      atomic.Int64  // hung puts
	recovered chan struct{} // closed by recover
}

func (f *flakyStore) PutPresence(ctx context.Context, kind, id string, data []byte, ttl time.Duration) error {
	if f.down.Load() {
		f.puts.Add(1)
		select {
		case <-ctx.Done():
		case <-f.recovered:
		}
		return fmt.Errorf("%w: timed out", store.ErrUnavailable)
	}
	return f.Embedded.PutPresence(ctx, kind, id, data, ttl)
}

func (f *flakyStore) recover() {
	f.down.Store(false)
	close(f.recovered)
}

func (f *flakyStore) ListPresence(ctx context.Context, kind string) (map[string][]byte, error) {
	if f.down.Load() {
		return nil, fmt.Errorf("%w: connection refused", store.ErrUnavailable)
	}
	return f.Embedded.ListPresence(ctx, kind)
}

// TestSessionsStoreDown: with the store hanging and failing, sessions
// start and relay as usual, and the admin API still lists this
// instance's sessions, with a warning.
func TestSessionsStoreDown(t *testing.T) {
	emb, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "shared.db"), store.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	st := &flakyStore{Embedded: emb, recovered: make(chan struct{})}
	st.down.Store(true)
	a := presenceEnv(t, "a", st, envOptions{})
	admin := a.b.AdminHandler(func(*http.Request) string { return "admin" })

	ls := a.startCat(a.alice())
	eventually(t, "an announcement is attempted", func() bool { return st.puts.Load() > 0 })
	// The announcement hangs; the relay does not.
	ls.echo(t, "still relaying")

	var page SessionList
	adminGet(t, admin, "/sessions?envelope=1", &page)
	if page.Warning == "" || len(page.Sessions) != 1 || page.Sessions[0].ID != ls.id || page.Sessions[0].Instance != "a" {
		t.Fatalf("envelope %+v, want a's session and a warning", page)
	}
	resp := adminGet(t, admin, "/sessions", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Portcullis-Warning") == "" {
		t.Fatalf("plain list: %d, warning header %q", resp.StatusCode, resp.Header.Get("Portcullis-Warning"))
	}
	if l := listed(t, admin, "/sessions"); len(l) != 1 {
		t.Fatalf("plain list %+v", l)
	}
	if resp := adminGet(t, admin, "/sessions/"+ls.id, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("local session while the store is down: %d", resp.StatusCode)
	}
	if resp := adminGet(t, admin, "/sessions/elsewhere", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unknown session while the store is down: %d, want 503", resp.StatusCode)
	}

	// The store recovers: the session is announced at the next refresh.
	st.recover()
	eventually(t, "announced after recovery", func() bool {
		m, err := emb.ListPresence(t.Context(), PresenceKind)
		return err == nil && m[ls.id] != nil
	})
	if err := a.b.Kill(t.Context(), ls.id, "admin", "done"); err != nil {
		t.Fatal(err)
	}
	ls.waitEnded(t)
	eventually(t, "withdrawn after the end", func() bool {
		m, err := emb.ListPresence(t.Context(), PresenceKind)
		return err == nil && len(m) == 0
	})
}
