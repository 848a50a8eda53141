package risk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// The tests run the engine against the real backends with one fake clock
// shared by the engine and the store, so windows, block expiries and
// baselines move only when a test advances the clock: no sleeps.

// t0 is a Monday, 00:00 UTC: tests that care about hours of the day and
// working days count from it.
var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// clock is a manual clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// backend is one store implementation under test.
type backend struct {
	name string
	// multi: every handle() is a separate connection to shared state, as
	// two instances would have (Redis). The embedded file is single-node:
	// handle() returns the same store.
	multi bool
	// serverTTL: counter windows and ephemeral records expire by the
	// server's clock, not the fake one (Redis). Locks always follow the
	// fake clock.
	serverTTL bool
	// handle opens a handle on this test's fresh backend.
	handle func() store.Store
}

// redisAddr is the real redis-server the tests use (as in authz/store).
func redisAddr() string {
	if a := os.Getenv("PORTCULLIS_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// newBackend prepares a fresh, isolated backend named name ("embedded" or
// "redis") whose handles use now.
func newBackend(t testing.TB, name string, now func() time.Time) backend {
	t.Helper()
	switch name {
	case "embedded":
		st, err := store.OpenEmbedded(filepath.Join(fastDir(t), "state.db"), store.EmbeddedOptions{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return backend{name: name, handle: func() store.Store { return st }}
	case "redis":
		prefix := redisPrefix(t)
		cfg := store.RedisConfig{Addr: redisAddr(), KeyPrefix: prefix}
		return backend{name: name, multi: true, serverTTL: true, handle: func() store.Store {
			st, err := store.OpenRedis(context.Background(), cfg, store.RedisOptions{Now: now})
			if err != nil {
				t.Fatalf("no redis-server at %s (start one with `redis-server --daemonize yes` or set PORTCULLIS_TEST_REDIS): %v", redisAddr(), err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}}
	}
	t.Fatalf("unknown backend %q", name)
	return backend{}
}

// fastDir is a temporary directory in memory when the machine has one:
// bbolt syncs every write, and the engine writes on every failure, so on
// a disk the long replays would take minutes.
func fastDir(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "risk-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// redisPrefix is a fresh key prefix whose keys are deleted after the test,
// so tests share one server without seeing each other.
func redisPrefix(t testing.TB) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	prefix := "portcullis-test:risk:" + hex.EncodeToString(b[:]) + ":"
	admin := redis.NewClient(&redis.Options{Addr: redisAddr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := admin.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			admin.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleaning up %s*: %v", prefix, err)
		}
	})
	return prefix
}

var backendNames = []string{"embedded", "redis"}

// forEachBackend runs fn as a subtest per backend: the small conformance
// suite of the engine's decisions.
func forEachBackend(t *testing.T, fn func(t *testing.T, b string)) {
	for _, b := range backendNames {
		t.Run(b, func(t *testing.T) { fn(t, b) })
	}
}

// revokeCounter is a Revoker that counts calls per user.
type revokeCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (r *revokeCounter) RevokeUser(_ context.Context, userID, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[userID]++
	return nil
}

func (r *revokeCounter) count(userID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[userID]
}

// env is an engine on a backend, with a fake clock, an audit memory and
// a revocation counter. Engines made by peer share all of them (two
// instances of one deployment).
type env struct {
	t       testing.TB
	b       backend
	clock   *clock
	audit   *audit.Memory
	revoked *revokeCounter
	cfg     Config
	opts    Options
	st      store.Store
	e       *Engine
}

func newEnv(t testing.TB, backendName string, cfg Config, mods ...func(*Options)) *env {
	t.Helper()
	c := newClock(t0)
	ev := &env{t: t, clock: c, audit: &audit.Memory{Now: c.Now}, revoked: &revokeCounter{}, cfg: cfg}
	ev.b = newBackend(t, backendName, c.Now)
	ev.opts = Options{Instance: "i1", Now: c.Now, Audit: ev.audit, Revokers: []Revoker{ev.revoked}}
	for _, m := range mods {
		m(&ev.opts)
	}
	ev.st = ev.b.handle()
	ev.e = ev.engine(ev.st, "i1")
	return ev
}

// engine builds another engine on st with the env's config and options.
func (ev *env) engine(st Store, instance string) *Engine {
	ev.t.Helper()
	opts := ev.opts
	opts.Instance = instance
	e, err := New(ev.cfg, st, opts)
	if err != nil {
		ev.t.Fatal(err)
	}
	return e
}

// peer is a second instance: its own engine on its own store handle
// (Redis) or on the same store (embedded).
func (ev *env) peer() *Engine {
	ev.t.Helper()
	return ev.engine(ev.b.handle(), "i2")
}

func (ev *env) ctx() context.Context {
	if t, ok := ev.t.(interface{ Context() context.Context }); ok {
		return t.Context()
	}
	return context.Background()
}

// events returns the audit events of type typ.
func (ev *env) events(typ string) []audit.Event { return ev.audit.Find(typ, "") }

// riskEvents counts risk.* audit events by type.
func (ev *env) riskEvents() map[string]int {
	out := map[string]int{}
	for _, e := range ev.audit.Events() {
		out[e.Type]++
	}
	return out
}

// queued is how many alerts wait in e's queues (no Run: nothing drains
// them), summed over its sinks.
func queued(e *Engine) int { return e.alerts.Queued() }

// drainAlerts empties e's queues and returns what was in them.
func drainAlerts(e *Engine) []Alert { return e.alerts.Drain() }

// alertSink is a webhook that nobody serves: with no Run, alerts stay
// queued where queued() and drainAlerts() see them.
var alertSink = []Webhook{{Name: "test", URL: "https://alerts.invalid/hook"}}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// hookStore wraps a Store; hook runs before every call and can fail it.
type hookStore struct {
	Store
	hook func(op string) error
}

func (h *hookStore) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error) {
	if err := h.hook("Incr"); err != nil {
		return 0, err
	}
	return h.Store.Incr(ctx, key, delta, window)
}

func (h *hookStore) Count(ctx context.Context, key string) (int64, error) {
	if err := h.hook("Count"); err != nil {
		return 0, err
	}
	return h.Store.Count(ctx, key)
}

func (h *hookStore) AddLock(ctx context.Context, l store.Lock) (bool, error) {
	if err := h.hook("AddLock"); err != nil {
		return false, err
	}
	return h.Store.AddLock(ctx, l)
}

func (h *hookStore) GetLock(ctx context.Context, subject string) (store.Lock, error) {
	if err := h.hook("GetLock"); err != nil {
		return store.Lock{}, err
	}
	return h.Store.GetLock(ctx, subject)
}

func (h *hookStore) DeleteLock(ctx context.Context, subject string) error {
	if err := h.hook("DeleteLock"); err != nil {
		return err
	}
	return h.Store.DeleteLock(ctx, subject)
}

func (h *hookStore) ListLocks(ctx context.Context) ([]store.Lock, error) {
	if err := h.hook("ListLocks"); err != nil {
		return nil, err
	}
	return h.Store.ListLocks(ctx)
}

func (h *hookStore) PutEphemeral(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := h.hook("PutEphemeral"); err != nil {
		return err
	}
	return h.Store.PutEphemeral(ctx, key, val, ttl)
}

func (h *hookStore) GetEphemeral(ctx context.Context, key string) ([]byte, error) {
	if err := h.hook("GetEphemeral"); err != nil {
		return nil, err
	}
	return h.Store.GetEphemeral(ctx, key)
}

func (h *hookStore) Publish(ctx context.Context, e store.Event) error {
	if err := h.hook("Publish"); err != nil {
		return err
	}
	return h.Store.Publish(ctx, e)
}

// countingStore counts calls per method.
func countingStore(s Store) (*hookStore, *opCounter) {
	c := &opCounter{}
	return &hookStore{Store: s, hook: func(op string) error { c.add(op); return nil }}, c
}

type opCounter struct {
	total atomic.Int64
	mu    sync.Mutex
	ops   map[string]int
}

func (c *opCounter) add(op string) {
	c.total.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ops == nil {
		c.ops = map[string]int{}
	}
	c.ops[op]++
}

func (c *opCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.ops))
	for k := range c.ops {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf("%s=%d ", k, c.ops[k])
	}
	return s
}

type nopAudit struct{}

func (nopAudit) Emit(context.Context, audit.Event) {}

// errDown is what a store that lost its backend returns.
var errDown = fmt.Errorf("%w: connection refused (injected)", store.ErrUnavailable)

// isUnavailable reports whether err wraps store.ErrUnavailable.
func isUnavailable(err error) bool { return errors.Is(err, store.ErrUnavailable) }
