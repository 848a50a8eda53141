package access

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// memStore is a small in-memory Records + Feed shared by several Managers
// (several instances), with failure injection.
type memStore struct {
	mu      sync.Mutex
	recs    map[string]map[string][]byte
	subs    []chan store.Event
	fail    error  // returned by every call while set
	swaps   int    // successful swaps, for contention checks
	onSwap  func() // called before each swap compares (to force races)
	publish []store.Event
	// failOp, when set, is asked before each call (op is the method name)
	// and its error returned.
	failOp func(op, kind string) error
}

var _ Records = (*memStore)(nil)
var _ Feed = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{recs: map[string]map[string][]byte{}} }

func (s *memStore) err() error {
	return s.fail
}

func (s *memStore) opErr(op, kind string) error {
	if s.fail != nil {
		return s.fail
	}
	if s.failOp != nil {
		return s.failOp(op, kind)
	}
	return nil
}

func (s *memStore) setFailOp(f func(op, kind string) error) {
	s.mu.Lock()
	s.failOp = f
	s.mu.Unlock()
}

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *memStore) PutRecord(_ context.Context, kind, id string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.opErr("PutRecord", kind); err != nil {
		return err
	}
	if s.recs[kind] == nil {
		s.recs[kind] = map[string][]byte{}
	}
	s.recs[kind][id] = bytes.Clone(data)
	return nil
}

func (s *memStore) CreateRecord(_ context.Context, kind, id string, data []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.opErr("CreateRecord", kind); err != nil {
		return false, err
	}
	if _, ok := s.recs[kind][id]; ok {
		return false, nil
	}
	if s.recs[kind] == nil {
		s.recs[kind] = map[string][]byte{}
	}
	s.recs[kind][id] = bytes.Clone(data)
	return true, nil
}

func (s *memStore) GetRecord(_ context.Context, kind, id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.opErr("GetRecord", kind); err != nil {
		return nil, err
	}
	b, ok := s.recs[kind][id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(b), nil
}

func (s *memStore) SwapRecord(_ context.Context, kind, id string, old, new []byte) (bool, error) {
	s.mu.Lock()
	hook := s.onSwap
	s.mu.Unlock()
	// Called without the lock: a hook may run another instance's work.
	if hook != nil {
		hook()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.opErr("SwapRecord", kind); err != nil {
		return false, err
	}
	cur, ok := s.recs[kind][id]
	if !ok {
		return false, store.ErrNotFound
	}
	if !bytes.Equal(cur, old) {
		return false, nil
	}
	if new == nil {
		delete(s.recs[kind], id)
	} else {
		s.recs[kind][id] = bytes.Clone(new)
	}
	s.swaps++
	return true, nil
}

func (s *memStore) DeleteRecord(_ context.Context, kind, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.opErr("DeleteRecord", kind); err != nil {
		return err
	}
	delete(s.recs[kind], id)
	return nil
}

func (s *memStore) ListRecords(_ context.Context, kind string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.opErr("ListRecords", kind); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(s.recs[kind]))
	for k, v := range s.recs[kind] {
		out[k] = bytes.Clone(v)
	}
	return out, nil
}

func (s *memStore) Publish(_ context.Context, e store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.err(); err != nil {
		return err
	}
	s.publish = append(s.publish, e)
	for _, c := range s.subs {
		select {
		case c <- e:
		default:
		}
	}
	return nil
}

func (s *memStore) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan store.Event, 64)
	c <- store.Event{Kind: store.EventResync}
	s.subs = append(s.subs, c)
	return c, nil
}

func (s *memStore) published() []store.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Event(nil), s.publish...)
}

func (s *memStore) raw(kind, id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.recs[kind][id])
}

func (s *memStore) put(kind, id string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs[kind] == nil {
		s.recs[kind] = map[string][]byte{}
	}
	s.recs[kind][id] = b
}

func (s *memStore) count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs[kind])
}

func (s *memStore) keys(kind string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range maps.Keys(s.recs[kind]) {
		out = append(out, k)
	}
	return out
}

var errDown = errors.New("store down: " + store.ErrUnavailable.Error())

// clock is an injectable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testConfig: "db-admin" needs 1 approval by "sre-lead"; "prod-root" needs
// 2 by "security" or "sre-lead"; "auditor" needs 2 by "security".
func testConfig() Config {
	return Config{
		Roles: []RoleConfig{
			{Role: "db-admin", Approvers: []string{"sre-lead"}, MaxDuration: 4 * time.Hour},
			{Role: "prod-root", Approvers: []string{"security", "sre-lead"}, Approvals: 2},
			{Role: "auditor", Approvers: []string{"security"}, Approvals: 2},
		},
		PendingTTL: time.Hour,
	}
}

type env struct {
	st    Records
	feed  Feed
	mem   *memStore // nil when st is a real backend
	clk   *clock
	audit *audit.Memory
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mem := newMemStore()
	return &env{st: mem, feed: mem, mem: mem, clk: newClock(), audit: &audit.Memory{}}
}

func (e *env) manager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m, err := New(cfg, Deps{Store: e.st, Feed: e.feed, Audit: e.audit, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	alice = Person{UserID: "https://idp|alice", Roles: []string{"engineer"}}
	bob   = Person{UserID: "https://idp|bob", Roles: []string{"sre-lead"}}
	carol = Person{UserID: "https://idp|carol", Roles: []string{"security"}}
	dave  = Person{UserID: "https://idp|dave", Roles: []string{"security", "sre-lead"}}
	erin  = Person{UserID: "https://idp|erin", Roles: []string{"engineer", "viewer"}}
)

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}

var contextCanceled = context.Canceled

// waitFor waits for something another goroutine does (not for time to
// pass: clocks are injected). The deadline only turns a hang into a
// failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type nopEmitter struct{}

func (nopEmitter) Emit(context.Context, audit.Event) {}
