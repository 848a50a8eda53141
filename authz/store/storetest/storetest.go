// Package storetest is the conformance suite every store.Store backend
// must pass. Backends call Run from their own tests with a Harness that
// opens fresh, isolated instances (a new file, a new Redis key prefix).
//
// The suite asserts outcomes only: no sleeps, no timing assertions. Expiry
// is driven by an injected Clock; where a backend expires records by its
// server's own clock (Harness.ServerTTL), the suite uses millisecond TTLs
// and polls until the record is gone, within a generous deadline.
package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// Opener opens one handle on a backend prepared by Harness.Backend, with
// now as its injected clock. Every call addresses the same data.
type Opener func(t *testing.T, now func() time.Time) store.Store

// Harness describes a backend to the suite.
type Harness struct {
	// Backend prepares a fresh, empty backend for one subtest and returns
	// how to open handles on it. It registers its own cleanup (removing
	// files or keys); the suite closes every handle it opens.
	Backend func(t *testing.T) Opener
	// MultiInstance means Opener may be called while another handle is
	// open: several instances share the backend (Redis). The suite then
	// checks that claims, takes and feed events cross instances. A
	// single-node backend (the embedded file is locked by its process)
	// sets false and is only reopened after a Close.
	MultiInstance bool
	// ServerTTL means TTL-based records (ClaimStep marks, counter windows,
	// ephemeral records, presence entries) expire by the server's clock rather than the
	// injected one. Records with an absolute expiry (sessions, locks) must
	// still honour the injected clock.
	ServerTTL bool
}

// Run runs the whole suite against h.
func Run(t *testing.T, h Harness) {
	if h.Backend == nil {
		t.Fatal("storetest: Harness.Backend is nil")
	}
	groups := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Sessions", testSessions},
		{"MFA", testMFA},
		{"Counters", testCounters},
		{"Locks", testLocks},
		{"Ephemeral", testEphemeral},
		{"Users", testUsers},
		{"Presence", testPresence},
		{"Records", testRecords},
		{"Feed", testFeed},
		{"Concurrency", testConcurrency},
		{"Hostile", testHostile},
		{"Lifecycle", testLifecycle},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { g.fn(t, h) })
	}
}

// Clock is a manual clock for the injected Now of a backend.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at start.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one subtest's backend: a clock, the opener and a first handle.
type env struct {
	t     *testing.T
	h     Harness
	clock *Clock
	open  Opener
	s     store.Store
}

func newEnv(t *testing.T, h Harness) *env {
	t.Helper()
	// Start at the real time: a server-side TTL derived from an absolute
	// expiry (a session's ExpiresAt minus Now) must be sane for the server.
	e := &env{t: t, h: h, clock: NewClock(time.Now().UTC()), open: h.Backend(t)}
	e.s = e.handle()
	return e
}

// handle opens another handle on the env's backend; the suite closes it.
func (e *env) handle() store.Store {
	e.t.Helper()
	s := e.open(e.t, e.clock.Now)
	if s == nil {
		e.t.Fatal("storetest: Opener returned nil")
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// reopen closes the env's handle and opens a new one on the same backend.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.s.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	e.s = e.handle()
}

// peer returns a second live handle when the backend supports several
// instances, else the env's own handle.
func (e *env) peer() store.Store {
	if e.h.MultiInstance {
		return e.handle()
	}
	return e.s
}

const (
	hour = time.Hour
	// deadline bounds every wait for something asynchronous (a feed
	// event, a server-side expiry). It is not a timing assertion: success
	// usually comes in milliseconds; the deadline only stops a hung test.
	deadline = 15 * time.Second
	// shortTTL is used with ServerTTL backends, whose expiry the suite can
	// only observe by polling.
	shortTTL = 20 * time.Millisecond
)

func ok(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

// isNotFound asserts a clean ErrNotFound, never mixed with ErrUnavailable.
func isNotFound(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("%s: got %v, want ErrNotFound", what, err)
	}
}

func isInvalid(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: got %v, want ErrInvalid", what, err)
	}
}

func isUnavailable(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: got %v, want an error wrapping ErrUnavailable", what, err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not reached within %s", what, deadline)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// expire makes a record stored with ttl (now) expire: by the injected
// clock, or, for ServerTTL backends, by waiting until gone() holds.
// Callers must have stored the record with ttlFor(ttl).
func (e *env) expire(ttl time.Duration, what string, gone func() bool) {
	e.t.Helper()
	if e.h.ServerTTL {
		eventually(e.t, what, gone)
		return
	}
	e.clock.Advance(ttl - 1)
	if gone() {
		e.t.Fatalf("%s: gone before its TTL elapsed", what)
	}
	e.clock.Advance(1)
	if !gone() {
		e.t.Fatalf("%s: still there when its TTL elapsed", what)
	}
}

// ttlFor is the TTL to store a record with when the test will expire it.
func (e *env) ttlFor(ttl time.Duration) time.Duration {
	if e.h.ServerTTL {
		return shortTTL
	}
	return ttl
}

func recv(t *testing.T, ch <-chan store.Event, what string) store.Event {
	t.Helper()
	select {
	case ev, open := <-ch:
		if !open {
			t.Fatalf("%s: feed channel closed", what)
		}
		return ev
	case <-time.After(deadline):
		t.Fatalf("%s: no event within %s", what, deadline)
	}
	return store.Event{}
}

// recvNext returns the next event that is not a resync.
func recvNext(t *testing.T, ch <-chan store.Event, what string) store.Event {
	t.Helper()
	for {
		if ev := recv(t, ch, what); ev.Kind != store.EventResync {
			return ev
		}
	}
}

func waitClosed(t *testing.T, ch <-chan store.Event, what string) {
	t.Helper()
	end := time.After(deadline)
	for {
		select {
		case _, open := <-ch:
			if !open {
				return
			}
		case <-end:
			t.Fatalf("%s: feed channel not closed within %s", what, deadline)
		}
	}
}

func bg(t *testing.T) context.Context { return t.Context() }
