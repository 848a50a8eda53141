package review

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/access"
)

func TestIncompleteCampaign(t *testing.T) {
	ctx := context.Background()
	f, c := startQuarter(t)
	var h header
	f.st.get(t, KindCampaign, c.ID, &h)
	h.Items = 10 // the start crashed before writing item 0010
	hb, _ := json.Marshal(h)
	f.st.put(KindCampaign, c.ID, hb)
	if _, err := f.m.Get(ctx, c.Name); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Get: %v", err)
	}
	decideAll := func() {
		for _, it := range c.Items {
			if _, err := f.m.Decide(ctx, root, c.Name, it.ID, Keep, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	decideAll()
	if _, err := f.m.SignOff(ctx, root, c.Name); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("SignOff: %v", err)
	}
	list, err := f.m.List(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("List = %d campaigns, %v", len(list), err)
	}
	st, err := f.m.Status(ctx)
	if err != nil || len(st.Campaigns) != 1 || st.Campaigns[0].State != StateIncomplete || !st.NewDue {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	st, err := f.m.Status(ctx)
	if err != nil || len(st.Campaigns) != 0 || !st.NewDue || !st.NextDue.IsZero() {
		t.Fatalf("no campaigns: %+v %v", st, err)
	}
	q3, err := f.m.Start(ctx, root, "2026-Q3")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name   string
		at     time.Time
		do     func(t *testing.T)
		states []string // newest first
		newDue bool
	}{
		{"just started", snapAt, nil, []string{StateOpen}, false},
		{"at the due time", snapAt.Add(DefaultDue), nil, []string{StateOpen}, false},
		{"past due", snapAt.Add(DefaultDue + time.Second), nil, []string{StateOverdue}, false},
		{"signed off late", snapAt.Add(20 * 24 * time.Hour), func(t *testing.T) {
			decideAll(t, f.m, q3, Keep)
			if _, err := f.m.SignOff(ctx, root, q3.Name); err != nil {
				t.Fatal(err)
			}
		}, []string{StateSignedOff}, false},
		{"cadence reached", snapAt.Add(DefaultCadence), nil, []string{StateSignedOff}, false},
		{"cadence passed: a new review is due", snapAt.Add(DefaultCadence + time.Second), nil, []string{StateSignedOff}, true},
		{"next one started", snapAt.Add(DefaultCadence + time.Hour), func(t *testing.T) {
			if _, err := f.m.Start(ctx, root, "2026-Q4"); err != nil {
				t.Fatal(err)
			}
		}, []string{StateOpen, StateSignedOff}, false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			f.clock.Set(s.at)
			if s.do != nil {
				s.do(t)
			}
			st, err := f.m.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var states []string
			for _, c := range st.Campaigns {
				states = append(states, c.State)
			}
			if !slices.Equal(states, s.states) || st.NewDue != s.newDue {
				t.Fatalf("states %v newDue %v, want %v %v (%+v)", states, st.NewDue, s.states, s.newDue, st)
			}
		})
	}
	st, _ = f.m.Status(ctx)
	// frank's temporary grant expired in between: one item fewer.
	if q4 := st.Campaigns[0]; q4.Name != "2026-Q4" || q4.Decided != 0 || q4.Items != 8 ||
		!st.NextDue.Equal(snapAt.Add(DefaultCadence+time.Hour).Add(DefaultCadence)) {
		t.Fatalf("%+v", st)
	}
	if q3 := st.Campaigns[1]; q3.Decided != 9 || q3.SignedOffBy != root {
		t.Fatalf("%+v", q3)
	}
	list, err := f.m.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "2026-Q4" {
		t.Fatalf("List: %d %v", len(list), err)
	}
}

func TestStoreFailuresPassThrough(t *testing.T) {
	ctx := context.Background()
	f, c := startQuarter(t)
	f.st.failList = itemKind(c.ID)
	if _, err := f.m.Get(ctx, c.Name); !errors.Is(err, errFakeDown) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := f.m.SignOff(ctx, root, c.Name); !errors.Is(err, errFakeDown) {
		t.Fatalf("SignOff: %v", err)
	}
	f.st.failList = KindCampaign
	if _, err := f.m.Status(ctx); !errors.Is(err, errFakeDown) {
		t.Fatalf("Status: %v", err)
	}
}

func TestStartFailsClosed(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(f *fixture)
	}{
		{"no policy", func(f *fixture) { f.pol = nil }},
		{"corrupt directory record", func(f *fixture) { f.st.users["x"] = []byte("{") }},
		{"corrupt trail line", func(f *fixture) {
			writeRaw(f, "audit-zz.jsonl", "{\"time\":\"2026-09-01T00:00:00Z\",\"type\":\"decision\"}\nnot json\n")
		}},
		{"grants unavailable", func(f *fixture) { f.m.deps.Grants = failingGrants{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(f)
			if _, err := f.m.Start(ctx, root, "q"); err == nil {
				t.Fatal("started")
			}
			if _, err := f.m.Get(ctx, "q"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a failed start left a campaign: %v", err)
			}
			if len(findEvents(f.events, TypeStart)) != 0 {
				t.Fatal("a failed start was audited as started")
			}
		})
	}
}

func TestNewChecksDeps(t *testing.T) {
	f := newFixture(t)
	ok := f.m.deps
	tests := []struct {
		name string
		cfg  Config
		mut  func(d *Deps)
	}{
		{"no store", Config{}, func(d *Deps) { d.Store = nil }},
		{"no policy", Config{}, func(d *Deps) { d.Policy = nil }},
		{"no audit dir", Config{}, func(d *Deps) { d.AuditDir = "" }},
		{"no emitter", Config{}, func(d *Deps) { d.Audit = nil }},
		{"negative period", Config{Period: -time.Hour}, func(*Deps) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := ok
			tc.mut(&d)
			if _, err := New(tc.cfg, d); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	typedNil := ok
	typedNil.Grants = (*access.Manager)(nil) // JIT access off, as cmd passes it
	m, err := New(Config{}, typedNil)
	if err != nil || m.deps.Grants != nil {
		t.Fatalf("typed nil grants manager kept: %v", err)
	}
	if c, err := m.Start(context.Background(), root, "no-jit"); err != nil || len(c.Items) != 7 {
		t.Fatalf("start without JIT: %d items, %v", len(c.Items), err)
	}
	m, err = New(Config{Period: 7 * 24 * time.Hour}, ok)
	if err != nil || m.cfg.Period != 7*24*time.Hour || m.cfg.Due != DefaultDue {
		t.Fatalf("%+v %v", m, err)
	}
}

type failingGrants struct{}

func (failingGrants) ListGrants(context.Context) ([]access.Grant, error) { return nil, errFakeDown }
func (failingGrants) RevokeGrant(context.Context, string, string, string) error {
	return errFakeDown
}

func writeRaw(f *fixture, name, content string) {
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o600); err != nil {
		panic(err)
	}
}
