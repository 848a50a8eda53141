package risk

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// distinctIP is the i-th address of a series, each in its own /24, so
// that failures from them never add up to a source block.
func distinctIP(series, i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(series), byte(i), 1})
}

// subscribe returns a function that, after publishing a sentinel event,
// returns every event that arrived on st's feed before it.
func subscribe(t *testing.T, st store.Store) func() []store.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	ch, err := st.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Kind != store.EventResync {
		t.Fatalf("first event %v, want resync", ev)
	}
	return func() []store.Event {
		t.Helper()
		sentinel := store.Event{Kind: store.EventPolicyChanged, Subject: "sentinel-" + strconv.FormatInt(time.Now().UnixNano(), 10)}
		if err := st.Publish(t.Context(), sentinel); err != nil {
			t.Fatal(err)
		}
		var out []store.Event
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-ch:
				if ev == sentinel {
					return out
				}
				out = append(out, ev)
			case <-timeout:
				t.Fatalf("the sentinel event did not arrive; got %v", out)
			}
		}
	}
}

func countEvents(evs []store.Event, kind, subject string) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == kind && ev.Subject == subject {
			n++
		}
	}
	return n
}

func TestFailLocksAtThreshold(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		for _, sig := range Signals {
			t.Run(string(sig), func(t *testing.T) {
				ev := newEnv(t, b, Config{})
				ctx := ev.ctx()
				th := ev.e.Config().User[sig]
				for i := 1; i < th.Count; i++ {
					v, err := ev.e.Fail(ctx, sig, "alice", distinctIP(1, i))
					if err != nil || !v.Allow {
						t.Fatalf("failure %d of %d: %+v, %v", i, th.Count, v, err)
					}
				}
				if v, _ := ev.e.Gate(ctx, "alice", distinctIP(2, 0)); !v.Allow {
					t.Fatalf("locked after %d failures, threshold %d", th.Count-1, th.Count)
				}
				v, err := ev.e.Fail(ctx, sig, "alice", distinctIP(1, th.Count))
				if err != nil || v.Allow || v.Reason != ReasonAccountLocked || v.Ref == "" {
					t.Fatalf("failure at the threshold: %+v, %v; want a lock", v, err)
				}
				locks := ev.events(audit.TypeRiskLock)
				if len(locks) != 1 {
					t.Fatalf("%d risk.lock events, want 1", len(locks))
				}
				l := locks[0]
				want := map[string]string{"signal": string(sig), "count": strconv.Itoa(th.Count), "observed": strconv.Itoa(th.Count),
					"threshold": strconv.Itoa(th.Count), "window": th.Window.String(), "subject": "user:alice"}
				for k, w := range want {
					if l.Attrs[k] != w {
						t.Errorf("attr %s = %q, want %q", k, l.Attrs[k], w)
					}
				}
				if l.UserID != "alice" || l.Reason != LockReason(sig) || l.Ref != v.Ref || l.Decision != audit.Deny ||
					l.SourceIP != distinctIP(1, th.Count).String() {
					t.Errorf("risk.lock event %+v", l)
				}
				if g, _ := ev.e.Gate(ctx, "alice", distinctIP(3, 0)); g.Allow || g.Reason != ReasonAccountLocked || g.Ref != v.Ref {
					t.Errorf("Gate after the lock = %+v", g)
				}
				if g, _ := ev.e.Locked(ctx, "alice"); g.Allow || g.Ref != v.Ref {
					t.Errorf("Locked = %+v", g)
				}
				if g, _ := ev.e.Gate(ctx, "bob", distinctIP(1, th.Count)); !g.Allow {
					t.Errorf("another user from the same address = %+v", g)
				}
				if n := ev.revoked.count("alice"); n != 1 {
					t.Errorf("revokers called %d times", n)
				}
			})
		}
	})
}

func TestFailWindow(t *testing.T) {
	for _, tc := range []struct {
		name string
		// gaps[i] is how far the clock moves before failure i+1.
		gaps     []time.Duration
		wantLock bool
	}{
		{"five at once", []time.Duration{0, 0, 0, 0, 0}, true},
		{"five within the window", []time.Duration{0, 3 * time.Minute, 3 * time.Minute, 3 * time.Minute, 3 * time.Minute}, true},
		{"four then one after two windows", []time.Duration{0, 0, 0, 0, 31 * time.Minute}, false},
		{"one every ten minutes", []time.Duration{0, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newEnv(t, "embedded", Config{})
			var v Verdict
			for i, gap := range tc.gaps {
				ev.clock.Advance(gap)
				var err error
				if v, err = ev.e.Fail(ev.ctx(), SignalTOTPFailure, "alice", distinctIP(1, i)); err != nil {
					t.Fatal(err)
				}
			}
			if locked := !v.Allow; locked != tc.wantLock {
				t.Errorf("locked = %v, want %v", locked, tc.wantLock)
			}
		})
	}
	// Timed around bucket edges: with one bucket per window, four failures
	// late in a bucket were weighted down to nothing a few minutes into
	// the next one (up to a 2x undercount). Sub-buckets keep them.
	for _, tc := range []struct {
		name         string
		start, later time.Duration
	}{
		{"four late in a window then one 13m later", 13*time.Minute + 30*time.Second, 13 * time.Minute},
		{"four mid-window then one 14m later", 7 * time.Minute, 14 * time.Minute},
		{"four early then one 14m30s later", 10 * time.Second, 14*time.Minute + 30*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newEnv(t, "embedded", Config{})
			ev.clock.Advance(tc.start)
			for i := range 4 {
				if _, err := ev.e.Fail(ev.ctx(), SignalTOTPFailure, "alice", distinctIP(1, i)); err != nil {
					t.Fatal(err)
				}
			}
			ev.clock.Advance(tc.later)
			v, err := ev.e.Fail(ev.ctx(), SignalTOTPFailure, "alice", distinctIP(1, 4))
			if err != nil {
				t.Fatal(err)
			}
			if v.Allow {
				t.Errorf("5 failures within %s did not lock", tc.later)
			}
		})
	}
	t.Run("signal turned off", func(t *testing.T) {
		ev := newEnv(t, "embedded", Config{User: map[Signal]Threshold{SignalDenied: {0, time.Minute}}})
		for i := range 200 {
			if v, err := ev.e.Fail(ev.ctx(), SignalDenied, "alice", distinctIP(1, i)); err != nil || !v.Allow {
				t.Fatalf("denied decision %d: %+v, %v", i, v, err)
			}
		}
	})
	t.Run("disabled", func(t *testing.T) {
		ev := newEnv(t, "embedded", Config{Disabled: true})
		for i := range 30 {
			if v, err := ev.e.Fail(ev.ctx(), SignalTOTPFailure, "alice", mustAddr("192.0.2.1")); err != nil || !v.Allow {
				t.Fatalf("failure %d with accounting disabled: %+v, %v", i, v, err)
			}
		}
		if _, err := ev.e.Lock(ev.ctx(), "alice", "test", "admin"); err != nil {
			t.Fatal(err)
		}
		if v, _ := ev.e.Gate(ev.ctx(), "alice", netip.Addr{}); v.Allow {
			t.Error("an admin lock is not enforced while accounting is disabled")
		}
	})
}

// TestFailParallelLocksOnce is the attack replay of the issue at the
// engine level: 3 waves of 30 parallel wrong TOTP codes for one user, from
// two instances (two store handles on Redis). Count first, then decide:
// exactly one lock, one audit event, one alert, one revocation, one feed
// event, whichever instance's failure crossed the threshold.
func TestFailParallelLocksOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		ev := newEnv(t, b, Config{Webhooks: alertSink})
		engines := []*Engine{ev.e, ev.peer()}
		feed := subscribe(t, ev.st)
		ctx := ev.ctx()
		const waves, parallel = 3, 30
		var (
			mu       sync.Mutex
			verdicts [waves][]Verdict
			errs     []error
		)
		for wave := range waves {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range parallel {
				wg.Go(func() {
					<-start
					v, err := engines[i%2].Fail(ctx, SignalTOTPFailure, "alice", distinctIP(wave, i))
					mu.Lock()
					defer mu.Unlock()
					verdicts[wave] = append(verdicts[wave], v)
					if err != nil {
						errs = append(errs, err)
					}
				})
			}
			close(start)
			wg.Wait()
		}
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		locks := ev.events(audit.TypeRiskLock)
		if len(locks) != 1 {
			t.Fatalf("%d risk.lock events, want exactly 1: %+v", len(locks), locks)
		}
		l := locks[0]
		// The lock was decided at the threshold; it is written by
		// whichever failure at or above it reached the store first, all
		// within the first wave ("observed" is what that one counted).
		if n, _ := strconv.Atoi(l.Attrs["observed"]); n < 5 || n > parallel || l.Attrs["count"] != "5" ||
			l.Attrs["threshold"] != "5" || l.Attrs["signal"] != string(SignalTOTPFailure) {
			t.Errorf("lock attrs %v: want count = threshold = 5 and observed in 5..%d", l.Attrs, parallel)
		}
		for _, v := range verdicts[waves-1] {
			if v.Allow || v.Reason != ReasonAccountLocked || v.Ref != l.Ref {
				t.Errorf("verdict in the last wave = %+v, want locked with %s", v, l.Ref)
			}
		}
		denied := 0
		for _, v := range verdicts[0] {
			if !v.Allow {
				denied++
			}
		}
		if denied < parallel-4 {
			t.Errorf("%d of the first wave's %d verdicts deny; the first failures at or past the threshold must see the lock", denied, parallel)
		}
		for i, e := range engines {
			if v, err := e.Gate(ctx, "alice", mustAddr("198.51.100.1")); err != nil || v.Allow || v.Reason != ReasonAccountLocked || v.Ref != l.Ref {
				t.Errorf("instance %d: Gate = %+v, %v", i+1, v, err)
			}
		}
		if n := ev.revoked.count("alice"); n != 1 {
			t.Errorf("revokers called %d times, want 1", n)
		}
		var alerts []Alert
		for _, e := range engines {
			alerts = append(alerts, drainAlerts(e)...)
		}
		if len(alerts) != 1 || alerts[0].Kind != "lock" || alerts[0].Subject != "user:alice" || alerts[0].Ref != l.Ref {
			t.Errorf("alerts = %+v, want one lock alert", alerts)
		}
		evs := feed()
		if n := countEvents(evs, store.EventLocked, "user:alice"); n != 1 {
			t.Errorf("%d EventLocked for user:alice on the feed, want 1 (%v)", n, evs)
		}
		ls, err := ev.e.Locks(ctx)
		if err != nil || len(ls) != 1 || ls[0].Subject != "user:alice" || ls[0].Reason != "totp-failures" || !ls[0].ExpiresAt.IsZero() {
			t.Errorf("Locks = %+v, %v; want only the user's lock, without expiry", ls, err)
		}
		if got := ev.riskEvents(); got[audit.TypeRiskBlock] != 0 || got[audit.TypeRiskAnomaly] != 0 {
			t.Errorf("other risk events: %v", got)
		}
	})
}

func TestSourceBlock(t *testing.T) {
	type step struct {
		ip    string
		n     int
		user  string
		sig   Signal
		after time.Duration // clock advance before the step
	}
	type check struct {
		ip    string
		allow bool
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		steps []step
		// wantBlock: the subject, reason, audit source_ip and duration of
		// the last block raised.
		subject, reason, src string
		dur                  time.Duration
		checks               []check
	}{
		{name: "address at the threshold", steps: []step{{ip: "192.0.2.7", n: 20}},
			subject: "ip:192.0.2.7", reason: ReasonSourceIP, src: "192.0.2.7", dur: 15 * time.Minute,
			checks: []check{{"192.0.2.7", false}, {"192.0.2.8", true}, {"::ffff:192.0.2.7", false}}},
		{name: "below the threshold", steps: []step{{ip: "192.0.2.7", n: 19}},
			checks: []check{{"192.0.2.7", true}}},
		{name: "threshold counts failures of every kind and user", steps: []step{
			{ip: "192.0.2.7", n: 4, user: "a", sig: SignalTOTPFailure},
			{ip: "192.0.2.7", n: 4, user: "b", sig: SignalOIDCFailure},
			{ip: "192.0.2.7", n: 4, user: "c", sig: SignalSSHAuthFailure},
			{ip: "192.0.2.7", n: 4, user: "d", sig: SignalRecoveryFailure},
			{ip: "192.0.2.7", n: 4, user: "", sig: SignalApprovalFailure}},
			subject: "ip:192.0.2.7", reason: ReasonSourceIP, src: "192.0.2.7", dur: 15 * time.Minute,
			checks: []check{{"192.0.2.7", false}}},
		{name: "denied decisions do not count against the source", steps: []step{{ip: "192.0.2.7", n: 49, user: "a", sig: SignalDenied}},
			checks: []check{{"192.0.2.7", true}}},
		{name: "window slides", steps: []step{{ip: "192.0.2.7", n: 19}, {ip: "192.0.2.7", n: 19, after: 11 * time.Minute}},
			checks: []check{{"192.0.2.7", true}}},
		{name: "ipv4-mapped counted as ipv4", steps: []step{{ip: "::ffff:192.0.2.9", n: 10}, {ip: "192.0.2.9", n: 10}},
			subject: "ip:192.0.2.9", reason: ReasonSourceIP, src: "192.0.2.9", dur: 15 * time.Minute,
			checks: []check{{"192.0.2.9", false}, {"::ffff:192.0.2.9", false}}},
		{name: "ipv4 /24", steps: func() []step {
			var s []step
			for i := range 10 {
				s = append(s, step{ip: fmt.Sprintf("192.0.2.%d", 10+i), n: 10})
			}
			return s
		}(), subject: "ip:192.0.2.0/24", reason: ReasonSourceNetwork, src: "192.0.2.0/24", dur: 15 * time.Minute,
			checks: []check{{"192.0.2.200", false}, {"::ffff:192.0.2.201", false}, {"192.0.3.1", true}}},
		{name: "ipv6 address", steps: []step{{ip: "2001:db8:1:2::7", n: 20}},
			subject: "ip:2001:db8:1:2::7", reason: ReasonSourceIP, src: "2001:db8:1:2::7", dur: 15 * time.Minute,
			checks: []check{{"2001:db8:1:2::7", false}, {"2001:db8:1:2::8", true}}},
		{name: "ipv6 /64", steps: func() []step {
			var s []step
			for i := range 10 {
				s = append(s, step{ip: fmt.Sprintf("2001:db8:1:2:%x::1", i+1), n: 10})
			}
			return s
		}(), subject: "ip:2001:db8:1:2::/64", reason: ReasonSourceNetwork, src: "2001:db8:1:2::/64", dur: 15 * time.Minute,
			checks: []check{{"2001:db8:1:2:ffff::1", false}, {"2001:db8:1:3::1", true}}},
		{name: "configured thresholds", cfg: Config{SourceIP: Threshold{3, time.Minute}, SourceBlock: time.Hour},
			steps:   []step{{ip: "192.0.2.7", n: 3}},
			subject: "ip:192.0.2.7", reason: ReasonSourceIP, src: "192.0.2.7", dur: time.Hour,
			checks: []check{{"192.0.2.7", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, b string) {
				ev := newEnv(t, b, tc.cfg)
				ctx := ev.ctx()
				for _, s := range tc.steps {
					ev.clock.Advance(s.after)
					sig := s.sig
					if sig == "" {
						sig = SignalOIDCFailure
					}
					for range s.n {
						if _, err := ev.e.Fail(ctx, sig, s.user, mustAddr(s.ip)); err != nil {
							t.Fatal(err)
						}
					}
				}
				blocks := ev.events(audit.TypeRiskBlock)
				if tc.subject == "" {
					if len(blocks) != 0 {
						t.Fatalf("blocks: %+v", blocks)
					}
				} else {
					if len(blocks) != 1 {
						t.Fatalf("%d risk.block events, want 1: %+v", len(blocks), blocks)
					}
					bl := blocks[0]
					if bl.Attrs["subject"] != tc.subject || bl.Reason != tc.reason || bl.SourceIP != tc.src ||
						bl.Attrs["count"] != bl.Attrs["threshold"] || bl.Attrs["observed"] != bl.Attrs["threshold"] ||
						bl.Attrs["duration"] != tc.dur.String() || bl.Decision != audit.Deny || bl.Ref == "" {
						t.Errorf("risk.block = %+v", bl)
					}
					l, err := ev.st.GetLock(ctx, tc.subject)
					if err != nil || l.Ref != bl.Ref || !l.ExpiresAt.Equal(ev.clock.Now().Add(tc.dur)) {
						t.Errorf("lock %+v, %v; want expiry in %s", l, err, tc.dur)
					}
				}
				for _, c := range tc.checks {
					v, err := ev.e.Gate(ctx, "", mustAddr(c.ip))
					if err != nil || v.Allow != c.allow || (!c.allow && (v.Reason != ReasonSourceBlocked || v.Ref == "")) {
						t.Errorf("Gate from %s = %+v, %v; want allow=%v", c.ip, v, err, c.allow)
					}
				}
				if ls := ev.events(audit.TypeRiskLock); len(ls) != 0 {
					t.Errorf("user locks: %+v", ls)
				}
				if tc.subject == "" {
					return
				}
				// Expiry by the fake clock alone.
				ev.clock.Advance(tc.dur - time.Nanosecond)
				if v, _ := ev.e.Gate(ctx, "", mustAddr(tc.checks[0].ip)); v.Allow {
					t.Error("block lifted before its expiry")
				}
				ev.clock.Advance(time.Nanosecond)
				for _, c := range tc.checks {
					if v, err := ev.e.Gate(ctx, "", mustAddr(c.ip)); err != nil || !v.Allow {
						t.Errorf("Gate from %s after the block expired = %+v, %v", c.ip, v, err)
					}
				}
			})
		})
	}
}

func TestSourceBlockRepeats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		ev := newEnv(t, b, Config{SourceBlockMax: time.Hour})
		ctx := ev.ctx()
		ip := mustAddr("192.0.2.7")
		for i, want := range []time.Duration{15 * time.Minute, 30 * time.Minute, time.Hour, time.Hour} {
			for range 20 {
				if _, err := ev.e.Fail(ctx, SignalTOTPFailure, "", ip); err != nil {
					t.Fatal(err)
				}
			}
			l, err := ev.st.GetLock(ctx, "ip:192.0.2.7")
			if err != nil {
				t.Fatalf("block %d: %v", i+1, err)
			}
			if got := l.ExpiresAt.Sub(l.CreatedAt); got != want {
				t.Errorf("block %d lasts %s, want %s", i+1, got, want)
			}
			ev.clock.Advance(want)
			if v, _ := ev.e.Gate(ctx, "", ip); !v.Allow {
				t.Fatalf("block %d still in force after %s", i+1, want)
			}
		}
		if n := len(ev.events(audit.TypeRiskBlock)); n != 4 {
			t.Errorf("%d risk.block events, want 4", n)
		}
	})
	t.Run("embedded/a day later starts afresh", func(t *testing.T) {
		// Redis expires the repeat count by its own clock, so this
		// runs on the embedded store only.
		ev := newEnv(t, "embedded", Config{})
		ip := mustAddr("192.0.2.7")
		for _, advance := range []time.Duration{0, 25 * time.Hour} {
			ev.clock.Advance(advance)
			for range 20 {
				if _, err := ev.e.Fail(ev.ctx(), SignalTOTPFailure, "", ip); err != nil {
					t.Fatal(err)
				}
			}
			l, _ := ev.st.GetLock(ev.ctx(), "ip:192.0.2.7")
			if got := l.ExpiresAt.Sub(l.CreatedAt); got != 15*time.Minute {
				t.Errorf("block lasts %s, want 15m", got)
			}
		}
	})
}

// TestSpray: one address trying one wrong code for each of 500 users is
// blocked after 20 attempts, before it can lock anyone, and every one of
// those users can still log in from elsewhere. The enforcement point asks
// Gate before each attempt, as the gateway and bastion do.
func TestSpray(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		ev := newEnv(t, b, Config{})
		ctx := ev.ctx()
		attacker, elsewhere := mustAddr("203.0.113.66"), mustAddr("198.51.100.20")
		failed, refused := 0, 0
		for i := range 500 {
			user := fmt.Sprintf("user%03d", i)
			v, err := ev.e.Gate(ctx, user, attacker)
			if err != nil {
				t.Fatal(err)
			}
			if !v.Allow {
				if v.Reason != ReasonSourceBlocked {
					t.Fatalf("user %s refused with %+v", user, v)
				}
				refused++
				continue
			}
			if _, err := ev.e.Fail(ctx, SignalTOTPFailure, user, attacker); err != nil {
				t.Fatal(err)
			}
			failed++
		}
		if failed != 20 || refused != 480 {
			t.Errorf("%d attempts counted, %d refused; want the address blocked after 20", failed, refused)
		}
		for i := range 500 {
			user := fmt.Sprintf("user%03d", i)
			if v, err := ev.e.Gate(ctx, user, elsewhere); err != nil || !v.Allow {
				t.Fatalf("%s from another network: %+v, %v", user, v, err)
			}
		}
		got := ev.riskEvents()
		if got[audit.TypeRiskLock] != 0 || got[audit.TypeRiskBlock] != 1 {
			t.Errorf("risk events %v, want one block and no lock", got)
		}
		ls, _ := ev.e.Locks(ctx)
		if len(ls) != 1 || ls[0].Subject != "ip:203.0.113.66" {
			t.Errorf("Locks = %+v", ls)
		}
	})
	t.Run("without a gate", func(t *testing.T) {
		// Even an enforcement point that forgot Gate cannot lock anyone by
		// spraying: one failure per user stays below every user threshold.
		ev := newEnv(t, "embedded", Config{})
		for i := range 500 {
			if _, err := ev.e.Fail(ev.ctx(), SignalTOTPFailure, fmt.Sprintf("user%03d", i), mustAddr("203.0.113.66")); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(ev.events(audit.TypeRiskLock)); n != 0 {
			t.Errorf("%d users locked", n)
		}
	})
}

func TestUnlock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		t.Run("user", func(t *testing.T) {
			ev := newEnv(t, b, Config{})
			ctx := ev.ctx()
			feed := subscribe(t, ev.st)
			fail := func(n int) Verdict {
				var v Verdict
				for i := range n {
					var err error
					if v, err = ev.e.Fail(ctx, SignalTOTPFailure, "alice", distinctIP(7, i)); err != nil {
						t.Fatal(err)
					}
				}
				return v
			}
			locked := fail(5)
			if locked.Allow {
				t.Fatal("not locked")
			}
			l, err := ev.e.Unlock(ctx, "alice", "verified by phone", "admin-bob")
			if err != nil || l.Ref != locked.Ref || l.Reason != "totp-failures" {
				t.Fatalf("Unlock = %+v, %v", l, err)
			}
			if v, err := ev.e.Gate(ctx, "alice", distinctIP(7, 0)); err != nil || !v.Allow {
				t.Fatalf("Gate after unlock = %+v, %v", v, err)
			}
			un := ev.events(audit.TypeRiskUnlock)
			if len(un) != 1 || un[0].Actor != "admin-bob" || un[0].Attrs["why"] != "verified by phone" ||
				un[0].Attrs["subject"] != "user:alice" || un[0].UserID != "alice" || un[0].Ref != locked.Ref || un[0].Decision != audit.Allow {
				t.Errorf("risk.unlock events %+v", un)
			}
			if n := countEvents(feed(), store.EventUnlocked, "user:alice"); n != 1 {
				t.Errorf("%d EventUnlocked on the feed", n)
			}
			// The failures before the unlock no longer count.
			if v := fail(1); !v.Allow {
				t.Fatal("a single failure after the unlock locks again")
			}
			if v := fail(3); !v.Allow {
				t.Fatal("4 failures after the unlock lock again")
			}
			if v := fail(1); v.Allow || v.Ref == locked.Ref {
				t.Fatalf("5 failures after the unlock: %+v, want a new lock", v)
			}
			if n := ev.revoked.count("alice"); n != 2 {
				t.Errorf("revokers called %d times, want 2", n)
			}
			if _, err := ev.e.Unlock(ctx, "user:alice", "again", "admin-bob"); err != nil {
				t.Errorf("Unlock of user:alice: %v", err)
			}
		})
		t.Run("not locked", func(t *testing.T) {
			ev := newEnv(t, b, Config{})
			for _, s := range []string{"nobody", "user:nobody", "ip:203.0.113.1", "ip:203.0.113.0/24", "ip:garbage"} {
				if _, err := ev.e.Unlock(ev.ctx(), s, "why", "admin"); !errors.Is(err, ErrNotLocked) {
					t.Errorf("Unlock(%q) = %v, want ErrNotLocked", s, err)
				}
			}
			if n := len(ev.audit.Events()); n != 0 {
				t.Errorf("%d audit events for nothing unlocked", n)
			}
		})
		t.Run("address", func(t *testing.T) {
			ev := newEnv(t, b, Config{})
			ctx := ev.ctx()
			ip := mustAddr("192.0.2.7")
			for range 20 {
				ev.e.Fail(ctx, SignalOIDCFailure, "", ip)
			}
			if v, _ := ev.e.Gate(ctx, "", ip); v.Allow {
				t.Fatal("not blocked")
			}
			l, err := ev.e.Unlock(ctx, "ip:::ffff:192.0.2.7", "our NAT", "admin")
			if err != nil || l.Subject != "ip:192.0.2.7" {
				t.Fatalf("Unlock = %+v, %v", l, err)
			}
			if v, _ := ev.e.Gate(ctx, "", ip); !v.Allow {
				t.Fatal("still blocked after unlock")
			}
			un := ev.events(audit.TypeRiskUnlock)
			if len(un) != 1 || un[0].UserID != "" || un[0].Attrs["subject"] != "ip:192.0.2.7" {
				t.Errorf("risk.unlock %+v", un)
			}
			if v, _ := ev.e.Fail(ctx, SignalOIDCFailure, "", ip); !v.Allow {
				t.Error("one failure after the unlock blocks again")
			}
			if _, err := ev.e.Unlock(ctx, "ip:192.0.2.7", "again", "admin"); !errors.Is(err, ErrNotLocked) {
				t.Errorf("second Unlock = %v", err)
			}
		})
		t.Run("network", func(t *testing.T) {
			ev := newEnv(t, b, Config{SourceNetwork: Threshold{4, time.Minute}})
			ctx := ev.ctx()
			for i := range 4 {
				ev.e.Fail(ctx, SignalOIDCFailure, "", netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}))
			}
			if v, _ := ev.e.Gate(ctx, "", mustAddr("192.0.2.99")); v.Allow {
				t.Fatal("network not blocked")
			}
			if _, err := ev.e.Unlock(ctx, "ip:192.0.2.77/24", "false alarm", "admin"); err != nil {
				t.Fatalf("Unlock of the network: %v", err)
			}
			if v, _ := ev.e.Gate(ctx, "", mustAddr("192.0.2.99")); !v.Allow {
				t.Fatal("network still blocked")
			}
		})
		t.Run("admin lock", func(t *testing.T) {
			ev := newEnv(t, b, Config{Webhooks: alertSink})
			ctx := ev.ctx()
			l, err := ev.e.Lock(ctx, "carol", "laptop stolen", "admin-bob")
			if err != nil || l.Subject != "user:carol" || l.Reason != ReasonAdminLock || l.Ref == "" || !l.ExpiresAt.IsZero() {
				t.Fatalf("Lock = %+v, %v", l, err)
			}
			if v, _ := ev.e.Gate(ctx, "carol", netip.Addr{}); v.Allow || v.Ref != l.Ref {
				t.Errorf("Gate = %+v", v)
			}
			again, err := ev.e.Lock(ctx, "carol", "twice", "admin-eve")
			if err != nil || again.Ref != l.Ref {
				t.Errorf("second Lock = %+v, %v; want the first lock", again, err)
			}
			ls := ev.events(audit.TypeRiskLock)
			if len(ls) != 1 || ls[0].Actor != "admin-bob" || ls[0].Attrs["why"] != "laptop stolen" {
				t.Errorf("risk.lock events %+v", ls)
			}
			if n := ev.revoked.count("carol"); n != 1 {
				t.Errorf("revokers called %d times", n)
			}
			if _, err := ev.e.Lock(ctx, "", "x", "admin"); err == nil {
				t.Error("Lock of an empty user ID succeeds")
			}
			if al := drainAlerts(ev.e); len(al) != 1 || al[0].Actor != "admin-bob" {
				t.Errorf("alerts %+v", al)
			}
		})
	})
}

func TestLockSubject(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice", "user:alice"},
		{"user:alice", "user:alice"},
		{"https://idp.example.com|1234", "user:https://idp.example.com|1234"},
		{"ip:192.0.2.7", "ip:192.0.2.7"},
		{"ip:::ffff:192.0.2.7", "ip:192.0.2.7"},
		{"ip:192.0.2.7/32", "ip:192.0.2.7"},
		{"ip:192.0.2.7/24", "ip:192.0.2.0/24"},
		{"ip:::ffff:192.0.2.7/120", "ip:192.0.2.0/24"},
		{"ip:::ffff:192.0.2.7/64", "ip:::ffff:192.0.2.7/64"},
		{"ip:2001:DB8::1", "ip:2001:db8::1"},
		{"ip:fe80::1%eth0", "ip:fe80::1"},
		{"ip:2001:db8:1:2:3::/64", "ip:2001:db8:1:2::/64"},
		{"ip:garbage", "ip:garbage"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := LockSubject(tc.in); got != tc.want {
				t.Errorf("LockSubject(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestFailClockSkew: two instances whose clocks straddle a bucket edge.
// The one ahead counts in the next bucket; the one behind must still see
// that failure, or neither would see the threshold reached.
func TestFailClockSkew(t *testing.T) {
	ev := newEnv(t, "embedded", Config{User: map[Signal]Threshold{SignalTOTPFailure: {Count: 2, Window: 8 * time.Minute}}})
	ahead := newClock(ev.clock.Now().Add(time.Minute)) // one sub-bucket (8m/8) ahead
	opts := ev.opts
	opts.Now = ahead.Now
	e2, err := New(ev.cfg, ev.st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := e2.Fail(ev.ctx(), SignalTOTPFailure, "alice", mustAddr("192.0.2.1")); err != nil || !v.Allow {
		t.Fatalf("first failure: %+v %v", v, err)
	}
	v, err := ev.e.Fail(ev.ctx(), SignalTOTPFailure, "alice", mustAddr("192.0.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Allow {
		t.Fatal("two failures within the window on two instances with skewed clocks did not lock")
	}
}
