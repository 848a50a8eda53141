package risk

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// TestStoreUnavailable: when the store cannot answer, every decision is
// an error wrapping store.ErrUnavailable (the callers' 503 / SSH refusal)
// and never an allow.
func TestStoreUnavailable(t *testing.T) {
	ip := mustAddr("192.0.2.10")
	// call runs one engine method; allow is what it would let through.
	calls := []struct {
		name string
		call func(ctx context.Context, e *Engine) (allow bool, err error)
	}{
		{"Gate", func(ctx context.Context, e *Engine) (bool, error) {
			v, err := e.Gate(ctx, "alice", ip)
			return v.Allow, err
		}},
		{"Gate unknown user", func(ctx context.Context, e *Engine) (bool, error) { v, err := e.Gate(ctx, "", ip); return v.Allow, err }},
		{"Locked", func(ctx context.Context, e *Engine) (bool, error) {
			v, err := e.Locked(ctx, "alice")
			return v.Allow, err
		}},
		{"Fail", func(ctx context.Context, e *Engine) (bool, error) {
			v, err := e.Fail(ctx, SignalTOTPFailure, "carol", ip)
			return v.Allow, err
		}},
		{"Fail at the threshold", func(ctx context.Context, e *Engine) (bool, error) {
			v, err := e.Fail(ctx, SignalTOTPFailure, "alice", ip)
			return v.Allow, err
		}},
		{"Canary", func(ctx context.Context, e *Engine) (bool, error) {
			v, err := e.Canary(ctx, "target backup-db", "carol", ip)
			return v.Allow, err
		}},
		{"Assess", func(ctx context.Context, e *Engine) (bool, error) {
			lr, err := e.Assess(ctx, "alice", ip, "web")
			return !lr.StepUp, err
		}},
		{"Record", func(ctx context.Context, e *Engine) (bool, error) { return false, e.Record(ctx, "alice", ip) }},
		{"Lock", func(ctx context.Context, e *Engine) (bool, error) {
			_, err := e.Lock(ctx, "carol", "x", "admin")
			return false, err
		}},
		{"Unlock", func(ctx context.Context, e *Engine) (bool, error) {
			_, err := e.Unlock(ctx, "bob", "x", "admin")
			return false, err
		}},
		{"Locks", func(ctx context.Context, e *Engine) (bool, error) { _, err := e.Locks(ctx); return false, err }},
		{"FlushUsage", func(ctx context.Context, e *Engine) (bool, error) {
			e.Usage("alice", 10, 10)
			return false, e.FlushUsage(ctx)
		}},
	}
	// mustFail lists, per failing store method, the calls that need it.
	mustFail := map[string][]string{
		"all":          {"Gate", "Gate unknown user", "Locked", "Fail", "Fail at the threshold", "Canary", "Assess", "Record", "Lock", "Unlock", "Locks", "FlushUsage"},
		"GetLock":      {"Gate", "Gate unknown user", "Locked", "Fail", "Fail at the threshold", "Canary", "Lock", "Unlock"},
		"Incr":         {"Fail", "Fail at the threshold", "FlushUsage"},
		"Count":        {"Fail", "Fail at the threshold", "Canary"},
		"GetEphemeral": {"Fail", "Fail at the threshold", "Assess", "Record", "FlushUsage"},
		"PutEphemeral": {"Record", "Unlock"},
		"AddLock":      {"Fail at the threshold", "Canary", "Lock"},
		"DeleteLock":   {"Unlock"},
		"ListLocks":    {"Locks"},
	}
	for op, want := range mustFail {
		for _, kind := range []struct {
			name string
			err  error
		}{{"ErrUnavailable", errDown}, {"plain error", errors.New("read tcp: i/o timeout")}} {
			for _, c := range calls {
				t.Run(op+"/"+kind.name+"/"+c.name, func(t *testing.T) {
					ev := newEnv(t, "embedded", Config{LearnLogins: 1})
					ctx := ev.ctx()
					// State before the outage: alice one failure short of a
					// lock and with a history, bob locked.
					for i := range 4 {
						ev.e.Fail(ctx, SignalTOTPFailure, "alice", distinctIP(1, i))
					}
					ev.e.Record(ctx, "alice", mustAddr("198.51.100.1"))
					ev.e.Lock(ctx, "bob", "x", "admin")
					var down atomic.Bool
					st := &hookStore{Store: ev.st, hook: func(m string) error {
						if down.Load() && (op == "all" || m == op) {
							return kind.err
						}
						return nil
					}}
					e := ev.engine(st, "i1")
					down.Store(true)
					allow, err := c.call(ctx, e)
					if slices.Contains(want, c.name) {
						if !isUnavailable(err) {
							t.Errorf("err = %v, want one wrapping store.ErrUnavailable", err)
						}
						if errors.Is(err, ErrNotLocked) {
							t.Error("an outage reported as not locked")
						}
					} else if err != nil {
						t.Errorf("err = %v; this call does not need %s", err, op)
					}
					if err != nil && allow {
						t.Error("allowed despite the error")
					}
				})
			}
		}
	}
}

// failingRevoker fails its first failures calls (all when failures is 0).
type failingRevoker struct {
	calls    atomic.Int32
	failures int32
	done     chan struct{} // closed by the first successful call
}

func (f *failingRevoker) RevokeUser(context.Context, string, string) error {
	n := f.calls.Add(1)
	if f.failures == 0 || n <= f.failures {
		return errors.New("session store down")
	}
	if n == f.failures+1 {
		close(f.done)
	}
	return nil
}

// TestLockSurvivesSideEffectFailures: the lock record is what refuses
// logins; a lost feed event or a failed revocation is logged, and the
// lock stands.
func TestLockSurvivesSideEffectFailures(t *testing.T) {
	rev := &failingRevoker{}
	never := make(chan time.Time) // no retry within this test
	ev := newEnv(t, "embedded", Config{}, func(o *Options) {
		o.Revokers = []Revoker{rev}
		o.After = func(time.Duration) <-chan time.Time { return never }
	})
	st := &hookStore{Store: ev.st, hook: func(m string) error {
		if m == "Publish" {
			return errDown
		}
		return nil
	}}
	e := ev.engine(st, "i1")
	var v Verdict
	for i := range 5 {
		var err error
		if v, err = e.Fail(ev.ctx(), SignalSSHAuthFailure, "alice", distinctIP(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	if v.Allow || rev.calls.Load() != 1 || len(ev.events(audit.TypeRiskLock)) != 1 {
		t.Errorf("verdict %+v, %d revocations, %d lock events", v, rev.calls.Load(), len(ev.events(audit.TypeRiskLock)))
	}
	if g, err := e.Gate(ev.ctx(), "alice", netip.Addr{}); err != nil || g.Allow {
		t.Errorf("Gate = %+v, %v", g, err)
	}
}

// TestRevocationRetried: a revocation that fails when the lock is set is
// retried with backoff until it succeeds: web sessions are served from
// memory and would otherwise outlive the lock.
func TestRevocationRetried(t *testing.T) {
	rev := &failingRevoker{failures: 3, done: make(chan struct{})}
	ticks := make(chan time.Time)
	var waits []time.Duration
	var mu sync.Mutex
	ev := newEnv(t, "embedded", Config{}, func(o *Options) {
		o.Revokers = []Revoker{rev}
		o.After = func(d time.Duration) <-chan time.Time {
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			return ticks
		}
	})
	if _, err := ev.e.Lock(ev.ctx(), "alice", "test", "admin"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // three retries: two more failures, then success
		ticks <- time.Time{}
	}
	<-rev.done
	if n := rev.calls.Load(); n != 4 {
		t.Fatalf("%d revocation calls, want 4", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 3 || waits[0] != time.Second || waits[1] != 2*time.Second || waits[2] != 4*time.Second {
		t.Fatalf("backoff %v, want 1s 2s 4s", waits)
	}
}
