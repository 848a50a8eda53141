package risk

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// at returns t0's day d (0 = Monday) at h:m UTC.
func at(d, h, m int) time.Time {
	return t0.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

// learn records n logins of user from ip, alternating 09:00 and 10:00 on
// successive days.
func (ev *env) learn(user string, ip netip.Addr, n int) {
	ev.t.Helper()
	for i := range n {
		ev.clock.Set(at(i/2, 9+i%2, 0))
		if err := ev.e.Record(ev.ctx(), user, ip); err != nil {
			ev.t.Fatal(err)
		}
	}
}

func TestAssess(t *testing.T) {
	office := mustAddr("192.0.2.10")
	for _, tc := range []struct {
		name  string
		cfg   Config
		ip    string
		when  time.Time
		want  []string
		step  bool
		learn int // logins recorded first (default 20: networks and hours learned)
	}{
		{name: "usual network and hour", ip: "192.0.2.50", when: at(14, 9, 30)},
		{name: "new network", ip: "198.51.100.5", when: at(14, 10, 0), want: []string{ReasonNewNetwork}, step: true},
		{name: "new network, step-up off", cfg: Config{NoNewNetworkStepUp: true}, ip: "198.51.100.5", when: at(14, 10, 0), want: []string{ReasonNewNetwork}},
		{name: "odd hour", ip: "192.0.2.50", when: at(14, 3, 0), want: []string{ReasonOddHour}},
		{name: "new network at an odd hour", ip: "198.51.100.5", when: at(14, 3, 0), want: []string{ReasonNewNetwork, ReasonOddHour}, step: true},
		{name: "two hours after the latest usual hour", ip: "192.0.2.50", when: at(14, 12, 59)},
		{name: "three hours after", ip: "192.0.2.50", when: at(14, 13, 0), want: []string{ReasonOddHour}},
		{name: "two hours before the earliest", ip: "192.0.2.50", when: at(14, 7, 0)},
		{name: "three hours before", ip: "192.0.2.50", when: at(14, 6, 59), want: []string{ReasonOddHour}},
		{name: "wider tolerance", cfg: Config{HourTolerance: 4}, ip: "192.0.2.50", when: at(14, 14, 0)},
		{name: "ipv4-mapped address of the usual network", ip: "::ffff:192.0.2.77", when: at(14, 9, 0)},
		{name: "learning: anything goes", learn: 9, ip: "198.51.100.5", when: at(14, 3, 0)},
		{name: "networks learned, hours not yet", learn: 19, ip: "198.51.100.5", when: at(14, 3, 0), want: []string{ReasonNewNetwork}, step: true},
		{name: "learning configured shorter", cfg: Config{LearnLogins: 3}, learn: 6, ip: "198.51.100.5", when: at(14, 3, 0), want: []string{ReasonNewNetwork, ReasonOddHour}, step: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newEnv(t, "embedded", func() Config { c := tc.cfg; c.Webhooks = alertSink; return c }())
			n := tc.learn
			if n == 0 {
				n = 20
			}
			ev.learn("alice", office, n)
			ev.clock.Set(tc.when)
			lr, err := ev.e.Assess(ev.ctx(), "alice", mustAddr(tc.ip), "web")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lr.Anomalies, tc.want) || lr.StepUp != tc.step {
				t.Errorf("Assess = %+v, want anomalies %v step-up %v", lr, tc.want, tc.step)
			}
			evs := ev.events(audit.TypeRiskAnomaly)
			var reasons []string
			for _, e := range evs {
				reasons = append(reasons, e.Reason)
				if e.UserID != "alice" || e.SourceIP != mustAddr(tc.ip).Unmap().String() || e.Attrs["via"] != "web" {
					t.Errorf("risk.anomaly %+v", e)
				}
			}
			if !slices.Equal(reasons, tc.want) {
				t.Errorf("risk.anomaly reasons %v, want %v", reasons, tc.want)
			}
			if n := queued(ev.e); n != len(tc.want) {
				t.Errorf("%d alerts queued, want %d", n, len(tc.want))
			}
			if got := ev.riskEvents(); got[audit.TypeRiskLock] != 0 || got[audit.TypeRiskBlock] != 0 {
				t.Errorf("an anomaly locked or blocked: %v", got)
			}
		})
	}
}

func TestUsualHour(t *testing.T) {
	hist := func(hs ...int) (out [24]int) {
		for _, h := range hs {
			out[h]++
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		hours [24]int
		h     int
		want  bool
	}{
		{"seen", hist(9), 9, true},
		{"within tolerance after", hist(9), 11, true},
		{"beyond tolerance after", hist(9), 12, false},
		{"within tolerance before", hist(9), 7, true},
		{"beyond tolerance before", hist(9), 6, false},
		{"between mornings and evenings", hist(8, 8, 9, 17, 18), 13, true},
		{"night of a day worker", hist(8, 9, 12, 17, 18), 3, false},
		{"edge of the night", hist(8, 9, 12, 17, 18), 20, true},
		{"night owl across midnight", hist(22, 23, 0, 1), 2, true},
		{"night owl's afternoon", hist(22, 23, 0, 1), 12, false},
		{"every hour", func() (o [24]int) {
			for i := range o {
				o[i] = 1
			}
			return o
		}(), 4, true},
		{"one odd login does not make every hour usual", hist(3, 9, 10, 11, 12, 13, 14, 15, 16, 17), 22, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := usualHour(tc.hours, tc.h, 2); got != tc.want {
				t.Errorf("usualHour(%02d:00) = %v, want %v", tc.h, got, tc.want)
			}
		})
	}
}

func TestAssessAcrossMidnight(t *testing.T) {
	ev := newEnv(t, "embedded", Config{})
	ip := mustAddr("192.0.2.10")
	for i := range 20 {
		ev.clock.Set(at(i, 23, 0))
		ev.e.Record(ev.ctx(), "owl", ip)
	}
	for _, tc := range []struct {
		h    int
		want bool
	}{{1, false}, {21, false}, {2, true}, {20, true}} {
		t.Run(fmt.Sprintf("%02d:00", tc.h), func(t *testing.T) {
			ev.clock.Set(at(22, tc.h, 0))
			lr, err := ev.e.Assess(ev.ctx(), "owl", ip, "ssh")
			if err != nil || slices.Contains(lr.Anomalies, ReasonOddHour) != tc.want {
				t.Errorf("Assess = %+v, %v; want odd hour %v", lr, err, tc.want)
			}
		})
	}
}

// TestRecordOnlyAfterSuccess: Assess never makes a network known (an
// attacker failing TOTP from a new network stays "new"); Record, called
// once every factor passed, does.
func TestRecordOnlyAfterSuccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		ev := newEnv(t, b, Config{Webhooks: alertSink})
		ctx := ev.ctx()
		ev.learn("alice", mustAddr("192.0.2.10"), 20)
		ev.clock.Set(at(14, 10, 0))
		home := mustAddr("2001:db8:77:1::5")
		for i := range 3 {
			lr, err := ev.e.Assess(ctx, "alice", home, "web")
			if err != nil || !lr.StepUp {
				t.Fatalf("attempt %d: %+v, %v", i, lr, err)
			}
		}
		if n := len(ev.events(audit.TypeRiskAnomaly)); n != 3 {
			t.Errorf("%d anomaly events, want one per attempt", n)
		}
		if n := queued(ev.e); n != 1 {
			t.Errorf("%d alerts queued, want 1 (de-duplicated)", n)
		}
		if err := ev.e.Record(ctx, "alice", home); err != nil {
			t.Fatal(err)
		}
		for _, ip := range []string{"2001:db8:77:1::5", "2001:db8:77:1:ffff::1"} {
			if lr, err := ev.e.Assess(ctx, "alice", mustAddr(ip), "ssh"); err != nil || lr.StepUp || len(lr.Anomalies) != 0 {
				t.Errorf("after Record, %s: %+v, %v", ip, lr, err)
			}
		}
		if lr, _ := ev.e.Assess(ctx, "alice", mustAddr("2001:db8:77:2::1"), "ssh"); !lr.StepUp {
			t.Error("another /64 is known")
		}
	})
}

func TestAssessNothingToAssess(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		user string
		ip   netip.Addr
	}{
		{"no user", Config{}, "", mustAddr("192.0.2.1")},
		{"no address", Config{}, "alice", netip.Addr{}},
		{"disabled", Config{Disabled: true}, "alice", mustAddr("192.0.2.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			st, ops := countingStore(nil)
			e, err := New(tc.cfg, st, Options{Now: c.Now, Audit: nopAudit{}})
			if err != nil {
				t.Fatal(err)
			}
			if lr, err := e.Assess(t.Context(), tc.user, tc.ip, "web"); err != nil || lr.StepUp || lr.Anomalies != nil {
				t.Errorf("Assess = %+v, %v", lr, err)
			}
			if err := e.Record(t.Context(), tc.user, tc.ip); err != nil {
				t.Errorf("Record = %v", err)
			}
			if n := ops.total.Load(); n != 0 {
				t.Errorf("%d store calls", n)
			}
		})
	}
}

func TestCorruptProfile(t *testing.T) {
	ev := newEnv(t, "embedded", Config{})
	ctx := ev.ctx()
	ip := mustAddr("192.0.2.10")
	ev.learn("alice", ip, 10)
	if err := ev.st.PutEphemeral(ctx, profileKey("alice"), []byte(`{"logins": "many"`), profileTTL); err != nil {
		t.Fatal(err)
	}
	ev.clock.Set(at(7, 9, 0))
	lr, err := ev.e.Assess(ctx, "alice", ip, "web")
	if err != nil || !lr.StepUp {
		t.Errorf("Assess with a corrupt profile = %+v, %v; want a step-up, no error", lr, err)
	}
	if err := ev.e.Record(ctx, "alice", ip); err != nil {
		t.Fatalf("Record over a corrupt profile: %v", err)
	}
	raw, err := ev.st.GetEphemeral(ctx, profileKey("alice"))
	if err != nil {
		t.Fatal(err)
	}
	var p profile
	if err := json.Unmarshal(raw, &p); err != nil || p.Logins != 1 || len(p.Networks) != 1 {
		t.Errorf("rebuilt profile %s, %v", raw, err)
	}
	if lr, err := ev.e.Assess(ctx, "alice", ip, "web"); err != nil || lr.StepUp {
		t.Errorf("Assess once rebuilding = %+v, %v; want learning again", lr, err)
	}
}

func TestRecordForgetsOldestNetworks(t *testing.T) {
	ev := newEnv(t, "embedded", Config{LearnLogins: 1})
	ctx := ev.ctx()
	for i := range maxNetworks + 5 {
		ev.clock.Advance(time.Minute)
		if err := ev.e.Record(ctx, "nomad", distinctIP(9, i)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := ev.e.loadProfile(ctx, "nomad")
	if err != nil || len(p.Networks) != maxNetworks || p.Logins != maxNetworks+5 {
		t.Fatalf("profile: %d networks, %d logins, %v", len(p.Networks), p.Logins, err)
	}
	for i, want := range map[int]bool{0: false, 4: false, 5: true, maxNetworks + 4: true} {
		_, n := sources(distinctIP(9, i))
		if _, ok := p.Networks[n.String()]; ok != want {
			t.Errorf("network %d kept = %v, want %v", i, ok, want)
		}
	}
}
