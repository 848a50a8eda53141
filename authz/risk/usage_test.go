package risk

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

func TestUsageNeverTouchesTheStore(t *testing.T) {
	c := newClock(t0)
	st, ops := countingStore(nil) // any store call would panic on the nil store
	e, err := New(Config{}, st, Options{Now: c.Now, Audit: nopAudit{}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				e.Usage(fmt.Sprintf("user%d", (g+i)%20), 1, 1500)
			}
		})
	}
	wg.Wait()
	e.Usage("", 5, 5) // no user: ignored
	if n := ops.total.Load(); n != 0 {
		t.Fatalf("Usage made %d store calls: %s", n, ops)
	}
	var req, bytes int64
	e.usage.m.Range(func(_, v any) bool {
		u := v.(*usageEntry)
		req += u.requests.Load()
		bytes += u.bytes.Load()
		return true
	})
	if req != 8000 || bytes != 8000*1500 {
		t.Errorf("counted %d requests, %d bytes; want 8000, %d", req, bytes, 8000*1500)
	}
}

func TestUsageAllocs(t *testing.T) {
	e, err := New(Config{}, &hookStore{}, Options{Audit: nopAudit{}})
	if err != nil {
		t.Fatal(err)
	}
	user := "https://idp.example.com|alice"
	e.Usage(user, 1, 1) // the first call creates the user's entry
	if n := testing.AllocsPerRun(1000, func() { e.Usage(user, 1, 4096) }); n != 0 {
		t.Errorf("Usage allocates %v times per call", n)
	}
}

func BenchmarkUsage(b *testing.B) {
	e, err := New(Config{}, &hookStore{}, Options{Audit: nopAudit{}})
	if err != nil {
		b.Fatal(err)
	}
	users := make([]string, 64)
	for i := range users {
		users[i] = fmt.Sprintf("https://idp.example.com|user%d", i)
		e.Usage(users[i], 1, 1)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			e.Usage(users[i&63], 1, 16<<10)
			i++
		}
	})
}

// usageEnv drives usage through engines with flushes every step of the
// fake clock.
type usageEnv struct {
	*env
	engines []*Engine
}

// run: for each step, every engine counts req requests and b bytes for
// user, then the clock advances by step and every engine flushes.
func (u usageEnv) run(user string, steps int, step time.Duration, req, b int64) {
	u.t.Helper()
	for range steps {
		for _, e := range u.engines {
			e.Usage(user, req, b)
		}
		u.clock.Advance(step)
		for _, e := range u.engines {
			if err := e.FlushUsage(u.ctx()); err != nil {
				u.t.Fatal(err)
			}
		}
	}
}

func (u usageEnv) baseline(user string) baseline {
	u.t.Helper()
	p, err := u.e.loadBaseline(u.ctx(), user)
	if err != nil {
		u.t.Fatal(err)
	}
	return p
}

// TestUsageBaselines: two instances share a store; each minute and hour
// goes into the user's baselines once, with the total of both.
func TestUsageBaselines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		ev := newEnv(t, b, Config{Webhooks: alertSink})
		u := usageEnv{ev, []*Engine{ev.e, ev.peer()}}
		// 10 s flushes: 2 instances × 6 flushes × 10 requests = 120/min
		// (100 in the first minute, whose first flush is at 00:00:10).
		// Minutes 0..39 are over at 00:40:00; with one instance's folds
		// only, or both, the count or the totals would be off.
		u.run("alice", 6*40, 10*time.Second, 10, 1<<20)
		p := u.baseline("alice")
		if want := 120 - 20*math.Pow(1-ewmaAlpha, 39); p.Minutes != 40 || math.Abs(p.RateEWMA-want) > 1e-9 {
			t.Errorf("rate baseline %.4f over %d minutes, want %.4f over 40", p.RateEWMA, p.Minutes, want)
		}
		// Then a flush a minute, 6 MiB per instance: 720 MiB/h, below the
		// 1 GiB floor (hour 0 got 480 + 19×12 = 708 MiB).
		u.run("alice", 180, time.Minute, 10, 6<<20)
		p = u.baseline("alice")
		if p.HoursActive != 3 || p.Minutes != 40+180 {
			t.Errorf("%d hours, %d minutes folded; want 3 and %d", p.HoursActive, p.Minutes, 40+180)
		}
		if want := float64(720<<20) - float64(12<<20)*0.81; math.Abs(p.BytesEWMA-want) > 1 {
			t.Errorf("bytes baseline %.0f, want %.0f", p.BytesEWMA, want)
		}
		if got := ev.riskEvents(); len(got) != 0 || queued(u.engines[0])+queued(u.engines[1]) != 0 {
			t.Errorf("ordinary usage raised %v", got)
		}
	})
}

// TestUsageIdleFold: the last minute and hour of a burst of activity go
// into the baselines once they are over, even when nothing follows.
func TestUsageIdleFold(t *testing.T) {
	ev := newEnv(t, "embedded", Config{})
	u := usageEnv{ev, []*Engine{ev.e}}
	ev.clock.Set(t0.Add(9*time.Hour + 5*time.Second))
	u.run("alice", 3, 10*time.Second, 7, 1000) // three flushes in 09:00
	u.run("alice", 12, 10*time.Second, 0, 0)   // two idle minutes
	if p := u.baseline("alice"); p.Minutes != 1 || p.RateEWMA != 21 {
		t.Errorf("rate baseline %.1f over %d minutes, want 21 over 1", p.RateEWMA, p.Minutes)
	}
	if _, ok := ev.e.usage.m.Load("alice"); !ok {
		t.Error("entry dropped while its hour is still to be folded")
	}
	ev.clock.Set(t0.Add(10 * time.Hour))
	u.run("alice", 8, 10*time.Second, 0, 0)
	if p := u.baseline("alice"); p.HoursActive != 1 || p.BytesEWMA != 3000 {
		t.Errorf("bytes baseline %.0f over %d hours, want 3000 over 1", p.BytesEWMA, p.HoursActive)
	}
	if _, ok := ev.e.usage.m.Load("alice"); ok {
		t.Error("idle entry kept once everything is folded")
	}
}

func TestUsageAnomalies(t *testing.T) {
	type phase struct {
		minutes  int // one flush per minute
		req, b   int64
		hourSize bool // b is per hour: spread over the phase's minutes
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		phases []phase
		want   []string // anomaly (or lock) reasons, in order
		lock   bool
	}{
		{name: "ordinary", phases: []phase{{minutes: 60, req: 200, b: 10 << 20}}},
		{name: "at the absolute minimum", phases: []phase{{minutes: 1, req: 600}}},
		{name: "above the minimum without a baseline", phases: []phase{{minutes: 1, req: 601}}, want: []string{ReasonRequestRate}},
		{name: "far above the baseline", phases: []phase{{minutes: 40, req: 100}, {minutes: 1, req: 1001}}, want: []string{ReasonRequestRate}},
		{name: "above the minimum, not 10x the baseline", phases: []phase{{minutes: 40, req: 100}, {minutes: 1, req: 990}}},
		{name: "reported once per dedup window", phases: []phase{{minutes: 40, req: 100}, {minutes: 3, req: 5000}}, want: []string{ReasonRequestRate}},
		{name: "untrusted baseline: minimum only", phases: []phase{{minutes: 20, req: 10}, {minutes: 1, req: 500}}},
		{name: "bytes above the minimum", phases: []phase{{minutes: 30, b: 40 << 20}}, want: []string{ReasonDownload}},
		{name: "bytes far above the baseline", cfg: Config{BytesMin: 50 << 20},
			phases: []phase{{minutes: 4 * 60, b: 100 << 10}, {minutes: 60, b: 5 << 20}}, want: []string{ReasonDownload}},
		{name: "bytes within the baseline", cfg: Config{BytesMin: 50 << 20},
			phases: []phase{{minutes: 4 * 60, b: 100 << 10}, {minutes: 60, b: 800 << 10}}},
		{name: "usage locks", cfg: Config{UsageLocks: true}, phases: []phase{{minutes: 1, req: 5000}}, want: []string{ReasonRequestRate}, lock: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Webhooks = alertSink
			ev := newEnv(t, "embedded", cfg)
			u := usageEnv{ev, []*Engine{ev.e}}
			ev.clock.Set(t0.Add(8 * time.Hour))
			for _, ph := range tc.phases {
				u.run("alice", ph.minutes, time.Minute, ph.req, ph.b)
			}
			typ := audit.TypeRiskAnomaly
			if tc.lock {
				typ = audit.TypeRiskLock
			}
			var got []string
			for _, e := range ev.events(typ) {
				got = append(got, e.Reason)
				if e.UserID != "alice" {
					t.Errorf("event %+v", e)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s reasons %v, want %v", typ, got, tc.want)
			}
			if n := queued(ev.e); n != len(tc.want) {
				t.Errorf("%d alerts, want %d", n, len(tc.want))
			}
			v, _ := ev.e.Gate(ev.ctx(), "alice", mustAddr("192.0.2.1"))
			if v.Allow == tc.lock {
				t.Errorf("Gate = %+v, want locked=%v", v, tc.lock)
			}
			if tc.lock && ev.revoked.count("alice") != 1 {
				t.Error("usage lock did not revoke")
			}
		})
	}
}

func TestUsageFlushFailure(t *testing.T) {
	c := newClock(t0)
	ev := newEnv(t, "embedded", Config{})
	down := false
	st := &hookStore{Store: ev.st, hook: func(string) error {
		if down {
			return errDown
		}
		return nil
	}}
	e, err := New(Config{}, st, Options{Now: c.Now, Audit: ev.audit})
	if err != nil {
		t.Fatal(err)
	}
	e.Usage("alice", 300, 0)
	down = true
	if err := e.FlushUsage(t.Context()); !isUnavailable(err) {
		t.Fatalf("FlushUsage with the store down = %v", err)
	}
	e.Usage("alice", 301, 0)
	down = false
	if err := e.FlushUsage(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Nothing was lost: 601 requests in one minute cross the minimum.
	if got := ev.audit.Find(audit.TypeRiskAnomaly, ReasonRequestRate); len(got) != 1 {
		t.Errorf("anomalies %+v; the counts of the failed flush were lost", got)
	}
}

// putRecorder records the keys of ephemeral records written.
type putRecorder struct {
	Store
	mu   sync.Mutex
	keys []string
}

func (p *putRecorder) PutEphemeral(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	p.mu.Lock()
	p.keys = append(p.keys, key)
	p.mu.Unlock()
	return p.Store.PutEphemeral(ctx, key, val, ttl)
}

// TestUsageLeavesLoginHistoryAlone: the flusher writes the baselines only,
// so a flush racing a login can never drop the network just recorded.
func TestUsageLeavesLoginHistoryAlone(t *testing.T) {
	ev := newEnv(t, "embedded", Config{})
	rec := &putRecorder{Store: ev.st}
	e := ev.engine(rec, "i1")
	if err := e.Record(ev.ctx(), "alice", mustAddr("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	rec.keys = nil
	u := usageEnv{ev, []*Engine{e}}
	u.run("alice", 5, time.Minute, 50, 5000)
	for _, k := range rec.keys {
		if k != baselineKey("alice") {
			t.Errorf("a usage flush wrote %q", k)
		}
	}
	if len(rec.keys) == 0 {
		t.Error("no baseline written")
	}
}
