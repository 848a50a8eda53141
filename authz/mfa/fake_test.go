package mfa

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/portcullis/portcullis/authz/store"
)

// fakeStore is an in-memory Store with expiry on an injected clock and
// per-method failure injection. It is atomic under one mutex, like the
// real backends' Lua/transactions.
type fakeStore struct {
	mu       sync.Mutex
	now      func() time.Time
	enrol    map[string][]byte
	steps    map[string]time.Time // user|step → expiry
	codes    map[string]map[string]bool
	counters map[string]counter
	eph      map[string]ephemeral
	calls    map[string]int
	lastTTL  time.Duration
	failing  map[string]error // method name → error ("*" = all)
}

type counter struct {
	n   int64
	exp time.Time
}

type ephemeral struct {
	val []byte
	exp time.Time
}

var _ Store = (*fakeStore)(nil)

func newFakeStore(now func() time.Time) *fakeStore {
	return &fakeStore{
		now:      now,
		enrol:    map[string][]byte{},
		steps:    map[string]time.Time{},
		codes:    map[string]map[string]bool{},
		counters: map[string]counter{},
		eph:      map[string]ephemeral{},
		calls:    map[string]int{},
		failing:  map[string]error{},
	}
}

// enter records a call and returns the injected failure, if any. Callers
// hold f.mu.
func (f *fakeStore) enter(method string) error {
	f.calls[method]++
	if err, ok := f.failing[method]; ok {
		return err
	}
	return f.failing["*"]
}

func (f *fakeStore) fail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing[method] = err
}

func (f *fakeStore) callCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeStore) GetEnrolment(_ context.Context, userID string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetEnrolment"); err != nil {
		return nil, err
	}
	b, ok := f.enrol[userID]
	if !ok {
		return nil, store.ErrNotFound
	}
	return slices.Clone(b), nil
}

func (f *fakeStore) PutEnrolment(_ context.Context, userID string, blob []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("PutEnrolment"); err != nil {
		return err
	}
	f.enrol[userID] = slices.Clone(blob)
	return nil
}

func (f *fakeStore) DeleteEnrolment(_ context.Context, userID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeleteEnrolment"); err != nil {
		return err
	}
	delete(f.enrol, userID)
	return nil
}

func (f *fakeStore) ClaimStep(_ context.Context, userID string, step uint64, ttl time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ClaimStep"); err != nil {
		return false, err
	}
	f.lastTTL = ttl
	k := userID + "|" + strconv.FormatUint(step, 10)
	if exp, ok := f.steps[k]; ok && f.now().Before(exp) {
		return false, nil
	}
	f.steps[k] = f.now().Add(ttl)
	return true, nil
}

func (f *fakeStore) PutRecoveryCodes(_ context.Context, userID string, hashes []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("PutRecoveryCodes"); err != nil {
		return err
	}
	set := map[string]bool{}
	for _, h := range hashes {
		set[h] = true
	}
	f.codes[userID] = set
	return nil
}

func (f *fakeStore) ConsumeRecoveryCode(_ context.Context, userID, hash string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("ConsumeRecoveryCode"); err != nil {
		return false, err
	}
	if !f.codes[userID][hash] {
		return false, nil
	}
	delete(f.codes[userID], hash)
	return true, nil
}

func (f *fakeStore) RecoveryCodesLeft(_ context.Context, userID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("RecoveryCodesLeft"); err != nil {
		return 0, err
	}
	return len(f.codes[userID]), nil
}

func (f *fakeStore) Incr(_ context.Context, key string, delta int64, window time.Duration) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Incr"); err != nil {
		return 0, err
	}
	c, ok := f.counters[key]
	if !ok || !f.now().Before(c.exp) {
		c = counter{exp: f.now().Add(window)}
	}
	c.n += delta
	f.counters[key] = c
	return c.n, nil
}

func (f *fakeStore) Count(_ context.Context, key string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Count"); err != nil {
		return 0, err
	}
	c, ok := f.counters[key]
	if !ok || !f.now().Before(c.exp) {
		return 0, nil
	}
	return c.n, nil
}

func (f *fakeStore) PutEphemeral(_ context.Context, key string, val []byte, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("PutEphemeral"); err != nil {
		return err
	}
	f.eph[key] = ephemeral{val: slices.Clone(val), exp: f.now().Add(ttl)}
	return nil
}

func (f *fakeStore) getEph(key string, del bool) ([]byte, error) {
	e, ok := f.eph[key]
	if !ok || !f.now().Before(e.exp) {
		return nil, store.ErrNotFound
	}
	if del {
		delete(f.eph, key)
	}
	return slices.Clone(e.val), nil
}

func (f *fakeStore) GetEphemeral(_ context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetEphemeral"); err != nil {
		return nil, err
	}
	return f.getEph(key, false)
}

func (f *fakeStore) TakeEphemeral(_ context.Context, key string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("TakeEphemeral"); err != nil {
		return nil, err
	}
	return f.getEph(key, true)
}

func (f *fakeStore) DeleteEphemeral(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DeleteEphemeral"); err != nil {
		return err
	}
	delete(f.eph, key)
	return nil
}

// clock is an injected, manually advanced clock (safe for concurrent use).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	// Mid-step, so ±1 step offsets stay clear of step boundaries.
	return &clock{t: time.Date(2025, 3, 4, 5, 6, 15, 0, time.UTC)}
}

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

var testKey = []byte("0123456789abcdef0123456789abcdef")

type fixture struct {
	clk *clock
	st  *fakeStore
	m   *Manager
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureConfig(t, Config{Key: testKey})
}

func newFixtureConfig(t *testing.T, cfg Config) *fixture {
	t.Helper()
	clk := newClock()
	st := newFakeStore(clk.Now)
	return &fixture{clk: clk, st: st, m: newManagerConfig(t, st, clk, cfg)}
}

func newManager(t *testing.T, st Store, clk *clock, key []byte) *Manager {
	t.Helper()
	return newManagerConfig(t, st, clk, Config{Key: key})
}

// newManagerConfig seeds the manager's randomness from the test name, so a
// failure reproduces with the same secrets.
func newManagerConfig(t *testing.T, st Store, clk *clock, cfg Config) *Manager {
	t.Helper()
	var seed [32]byte
	copy(seed[:], t.Name())
	m, err := New(cfg, st, Options{Now: clk.Now, Rand: rand.NewChaCha8(seed)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// codeAt is what the user's authenticator shows at t.
func codeAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatalf("GenerateCode: %v", err)
	}
	return c
}

// enrol runs a full enrolment for user and moves the clock past the step
// used to confirm it, returning the base32 secret and recovery codes.
func (fx *fixture) enrol(t *testing.T, user string) (string, []string) {
	t.Helper()
	e, err := fx.m.BeginEnrolment(context.Background(), user, user+"@example.com")
	if err != nil {
		t.Fatalf("BeginEnrolment: %v", err)
	}
	codes, err := fx.m.ConfirmEnrolment(context.Background(), user, codeAt(t, e.Secret, fx.clk.Now()))
	if err != nil {
		t.Fatalf("ConfirmEnrolment: %v", err)
	}
	fx.clk.Advance(10 * period * time.Second)
	return e.Secret, codes
}

func mustFailures(t *testing.T, m *Manager, user string) int64 {
	t.Helper()
	n, err := m.Failures(context.Background(), user)
	if err != nil {
		t.Fatalf("Failures: %v", err)
	}
	return n
}

var errBoom = errors.New("connection refused")
