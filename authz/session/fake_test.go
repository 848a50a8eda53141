package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// fakeStore is an in-memory Store with fault injection and interleaving
// hooks. Every subscriber gets every published event (like Redis pub/sub).
type fakeStore struct {
	mu       sync.Mutex
	sessions map[string]store.Session
	subs     map[chan store.Event]struct{}

	down          atomic.Bool // every call fails with ErrUnavailable
	subscribeDown atomic.Bool // Subscribe fails (feed outage)
	gets          atomic.Int64
	puts          atomic.Int64
	subscribes    atomic.Int64

	// Hooks (set before use). afterGet runs after a read, before it is
	// returned; beforePut runs before a put is applied.
	afterGet  atomic.Pointer[func(id string)]
	beforePut atomic.Pointer[func(s store.Session)]
}

var _ Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{sessions: map[string]store.Session{}, subs: map[chan store.Event]struct{}{}}
}

var errFakeDown = errors.New("fake: connection refused")

func (f *fakeStore) fail() error {
	if f.down.Load() {
		return errors.Join(store.ErrUnavailable, errFakeDown)
	}
	return nil
}

func (f *fakeStore) PutSession(_ context.Context, s store.Session) error {
	if err := f.fail(); err != nil {
		return err
	}
	if h := f.beforePut.Load(); h != nil {
		(*h)(s)
	}
	f.puts.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	s.Data = append([]byte(nil), s.Data...)
	f.sessions[s.ID] = s
	return nil
}

func (f *fakeStore) GetSession(_ context.Context, id string) (store.Session, error) {
	f.gets.Add(1)
	if err := f.fail(); err != nil {
		return store.Session{}, err
	}
	f.mu.Lock()
	s, ok := f.sessions[id]
	f.mu.Unlock()
	if h := f.afterGet.Load(); h != nil {
		(*h)(id)
	}
	if !ok {
		return store.Session{}, store.ErrNotFound
	}
	return s, nil
}

func (f *fakeStore) DeleteSession(_ context.Context, id string) error {
	if err := f.fail(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions, id)
	return nil
}

func (f *fakeStore) ListSessions(_ context.Context, userID string) ([]store.Session, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Session
	for _, s := range f.sessions {
		if userID == "" || s.UserID == userID {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeStore) Publish(_ context.Context, e store.Event) error {
	if err := f.fail(); err != nil {
		return err
	}
	f.inject(e)
	return nil
}

// inject delivers e to every subscriber (as a remote publish would).
func (f *fakeStore) inject(e store.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		ch <- e // buffered generously; tests publish few events
	}
}

func (f *fakeStore) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	if f.subscribeDown.Load() {
		return nil, errors.Join(store.ErrUnavailable, errFakeDown)
	}
	f.subscribes.Add(1)
	ch := make(chan store.Event, 1024)
	ch <- store.Event{Kind: store.EventResync}
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.closeSub(ch)
	}()
	return ch, nil
}

func (f *fakeStore) closeSub(ch chan store.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[ch]; ok {
		delete(f.subs, ch)
		close(ch)
	}
}

// dropSubs ends every subscription (a lost Redis connection).
func (f *fakeStore) dropSubs() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
}

func (f *fakeStore) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.sessions[id]
	return ok
}

// gate installs a hook that, for the first call matching match, announces
// it on entered and waits for release; later calls pass straight through.
func gate[T any](hook *atomic.Pointer[func(T)], match func(T) bool) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	f := func(v T) {
		if match(v) && first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}
	hook.Store(&f)
	return entered, release
}

// set writes a raw record (corruption tests).
func (f *fakeStore) set(s store.Session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[s.ID] = s
}

func (f *fakeStore) raw(id string) store.Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions[id]
}

// clock is a settable clock shared by managers in a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// recorder collects feed events and feed state changes for waiting.
type recorder struct {
	events chan store.Event
	feed   chan bool
	writes chan string
}

func newRecorder() *recorder {
	return &recorder{events: make(chan store.Event, 1024), feed: make(chan bool, 16), writes: make(chan string, 1024)}
}

// waitTimeout only guards against a hung test; it is not a timing claim.
const waitTimeout = 20 * time.Second

func (r *recorder) waitEvent(t *testing.T, kind, subject string) store.Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case e := <-r.events:
			if e.Kind == kind && (subject == "" || e.Subject == subject) {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event for %q", kind, subject)
		}
	}
}

func (r *recorder) waitFeed(t *testing.T, up bool) {
	t.Helper()
	select {
	case got := <-r.feed:
		if got != up {
			t.Fatalf("feed state = %v, want %v", got, up)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no feed state change to %v", up)
	}
}

func (r *recorder) waitWrite(t *testing.T, id string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case got := <-r.writes:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("no write-back processed for %s", id)
		}
	}
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

type testEnv struct {
	m   *Manager
	st  Store
	clk *clock
	rec *recorder
}

// newTestManager builds a Manager on st with clock clk; started unless
// start is false.
func newTestManager(t *testing.T, st Store, clk *clock, start bool, mut ...func(*Config)) *testEnv {
	t.Helper()
	cfg := Config{CookieKey: testKey}
	for _, f := range mut {
		f(&cfg)
	}
	r := newRecorder()
	m, err := NewManager(cfg, st, Options{
		Now:     clk.Now,
		OnEvent: func(e store.Event) { r.events <- e },
		OnFeed:  func(up bool) { r.feed <- up },
	})
	if err != nil {
		t.Fatal(err)
	}
	m.wb.after = func(id string) { r.writes <- id }
	m.backoffMin, m.backoffMax = time.Millisecond, 5*time.Millisecond
	if start {
		if err := m.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		r.waitEvent(t, store.EventResync, "")
	}
	return &testEnv{m: m, st: st, clk: clk, rec: r}
}

func testRecord(user string) Record {
	return Record{
		UserID: user, Email: user + "@example.com", Name: "User " + user,
		Groups: []string{"engineers"}, Roles: []string{"engineer"}, MFA: true,
		AuthTime: time.Date(2026, 3, 1, 8, 59, 0, 0, time.UTC), SourceIP: "192.0.2.1", UserAgent: "test",
	}
}

// twoWays runs f as two named subtests, with true and with false.
func twoWays(t *testing.T, nameTrue, nameFalse string, f func(t *testing.T, v bool)) {
	t.Run(nameTrue, func(t *testing.T) { f(t, true) })
	t.Run(nameFalse, func(t *testing.T) { f(t, false) })
}

// twoInstances returns two started Managers sharing a fake store and clock.
func twoInstances(t *testing.T) (*fakeStore, *testEnv, *testEnv) {
	st := newFakeStore()
	a := newTestManager(t, st, newClock(), true)
	return st, a, newTestManager(t, st, a.clk, true)
}

// login creates a session and returns its cookie value and record.
func (e *testEnv) login(t *testing.T, user string) (string, Record) {
	t.Helper()
	tok, rec, err := e.m.Create(t.Context(), testRecord(user))
	if err != nil {
		t.Fatal(err)
	}
	return e.m.Cookie(tok, 0).Value, rec
}
