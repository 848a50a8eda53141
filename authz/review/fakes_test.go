package review

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// fakeStore is an in-memory Store with the semantics of store.Records
// (create-if-absent, byte-exact compare-and-swap, nil deletes).
type fakeStore struct {
	mu       sync.Mutex
	recs     map[string]map[string][]byte
	users    map[string][]byte
	locks    []store.Lock
	enrolled []string
	// yield makes every swap give up the processor first, so concurrent
	// deciders interleave between their Get and their Swap.
	yield bool
	// failList makes ListRecords of that kind fail.
	failList string
	// lostReplies makes every nth successful create or swap report
	// false, as a backend retrying a write whose reply was lost does.
	lostReplies, writes int
}

// lost reports whether this successful write's reply is "lost".
func (f *fakeStore) lost() bool {
	f.writes++
	return f.lostReplies > 0 && f.writes%f.lostReplies == 0
}

func newFakeStore() *fakeStore {
	return &fakeStore{recs: map[string]map[string][]byte{}, users: map[string][]byte{}}
}

var errFakeDown = fmt.Errorf("%w: fake outage", store.ErrUnavailable)

func (f *fakeStore) CreateRecord(_ context.Context, kind, id string, data []byte) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.recs[kind][id]; ok {
		return false, nil
	}
	if f.recs[kind] == nil {
		f.recs[kind] = map[string][]byte{}
	}
	f.recs[kind][id] = slices.Clone(data)
	return !f.lost(), nil
}

func (f *fakeStore) GetRecord(_ context.Context, kind, id string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.recs[kind][id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return slices.Clone(b), nil
}

func (f *fakeStore) SwapRecord(_ context.Context, kind, id string, old, new []byte) (bool, error) {
	if f.yield {
		runtime.Gosched()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.recs[kind][id]
	if !ok {
		return false, store.ErrNotFound
	}
	if string(cur) != string(old) {
		return false, nil
	}
	if new == nil {
		delete(f.recs[kind], id)
	} else {
		f.recs[kind][id] = slices.Clone(new)
	}
	return !f.lost(), nil
}

func (f *fakeStore) ListRecords(_ context.Context, kind string) (map[string][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == f.failList {
		return nil, errFakeDown
	}
	out := map[string][]byte{}
	for k, v := range f.recs[kind] {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

func (f *fakeStore) ListUsers(context.Context) (map[string][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.users), nil
}

func (f *fakeStore) ListLocks(context.Context) ([]store.Lock, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.locks), nil
}

func (f *fakeStore) ListEnrolled(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.enrolled), nil
}

// put writes a raw record (tests that fake crashes and corruption).
func (f *fakeStore) put(kind, id string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.recs[kind] == nil {
		f.recs[kind] = map[string][]byte{}
	}
	f.recs[kind][id] = slices.Clone(data)
}

func (f *fakeStore) get(t *testing.T, kind, id string, v any) {
	t.Helper()
	b, err := f.GetRecord(context.Background(), kind, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// fakeGrants stands in for *access.Manager.
type fakeGrants struct {
	mu        sync.Mutex
	grants    map[string]access.Grant
	revokes   []string // grant IDs RevokeGrant was called with
	revokeErr error    // RevokeGrant fails with it (the grant stays)
	goneErr   error    // RevokeGrant deletes the grant, then fails with it
}

func (g *fakeGrants) ListGrants(context.Context) ([]access.Grant, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := slices.Collect(maps.Values(g.grants))
	slices.SortFunc(out, func(a, b access.Grant) int { return a.Start.Compare(b.Start) })
	return out, nil
}

func (g *fakeGrants) RevokeGrant(_ context.Context, actor, id, reason string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.revokes = append(g.revokes, id)
	if g.revokeErr != nil {
		return g.revokeErr
	}
	if _, ok := g.grants[id]; !ok {
		return access.ErrNotFound
	}
	delete(g.grants, id)
	return g.goneErr
}

func (g *fakeGrants) calls() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.revokes)
}

// clock is an injectable, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// writeTrail writes events into dir as two instances would (gateway
// events and bastion events in separate files), with their own times.
func writeTrail(t *testing.T, dir string, evs []audit.Event) {
	t.Helper()
	logs := map[string]*audit.FileLog{}
	for _, inst := range []string{"gw-1", "bastion-1"} {
		l, err := audit.OpenFile(audit.FileConfig{Dir: dir, Instance: inst}, audit.Options{Now: func() time.Time { return ts("2026-10-01T00:00:00Z") }})
		if err != nil {
			t.Fatal(err)
		}
		logs[inst] = l
	}
	for _, e := range evs {
		inst := "gw-1"
		if e.Target != "" {
			inst = "bastion-1"
		}
		logs[inst].Emit(context.Background(), e)
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func mustPolicy(t *testing.T, cfg authz.PolicyConfig) *authz.Policy {
	t.Helper()
	p, err := authz.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func putUser(t *testing.T, f *fakeStore, u dirUser) {
	t.Helper()
	b, err := json.Marshal(u)
	if err != nil {
		t.Fatal(err)
	}
	f.users[u.UserID] = b
}

// findEvents returns the events of typ.
func findEvents(m *audit.Memory, typ string) []audit.Event {
	var out []audit.Event
	for _, e := range m.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func isErr(err, target error) bool { return errors.Is(err, target) }
