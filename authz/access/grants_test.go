package access

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/store"
)

// approved submits and approves a db-admin request for alice for d.
func approved(t *testing.T, m *Manager, d time.Duration) Request {
	t.Helper()
	r := must[Request](t)(m.Submit(t.Context(), alice, "db-admin", d, "INC-1"))
	r = must[Request](t)(m.Approve(t.Context(), bob, r.ID, ""))
	if r.State != StateApproved {
		t.Fatalf("state %s", r.State)
	}
	return r
}

func TestGrantWindowAndExpiry(t *testing.T) {
	e := newEnv(t)
	m1 := e.manager(t, testConfig())
	m2 := e.manager(t, testConfig()) // another instance on the same store
	ctx := t.Context()
	e.clk.Add(7 * time.Minute)
	start := e.clk.Now()
	r := approved(t, m1, time.Hour)
	end := start.Add(time.Hour)
	base := []string{"engineer"}
	tests := []struct {
		name string
		at   time.Time
		want bool
	}{
		{"before approval", start.Add(-time.Nanosecond), false},
		{"at approval", start, true},
		{"mid-way", start.Add(30 * time.Minute), true},
		{"last instant", end.Add(-time.Nanosecond), true},
		{"at expiry", end, false},
		{"long after", end.Add(24 * time.Hour), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			roles := m1.Roles(alice.UserID, base, tc.at)
			has := len(roles) == 2 && roles[0] == "db-admin" && roles[1] == "engineer"
			if has != tc.want || (!tc.want && len(roles) != 1) {
				t.Fatalf("Roles = %v, want grant %v", roles, tc.want)
			}
			until, ok := m1.GrantedUntil(alice.UserID, "db-admin", tc.at)
			if ok != tc.want || (ok && !until.Equal(end)) {
				t.Fatalf("GrantedUntil = %v %v", until, ok)
			}
		})
	}
	// At expiry the grant is gone from ListGrants before anyone deletes it.
	e.clk.Set(end)
	if gs := must[[]Grant](t)(m1.ListGrants(ctx)); len(gs) != 0 {
		t.Fatalf("expired grant listed: %+v", gs)
	}
	if e.mem.raw(KindGrant, r.ID) == nil {
		t.Fatal("record deleted before any tick")
	}
	// Both instances tick at once; the record goes and exactly one
	// access.expire is audited.
	var wg sync.WaitGroup
	for _, m := range []*Manager{m1, m2, m1, m2} {
		wg.Go(func() { m.tick(ctx) })
	}
	wg.Wait()
	if e.mem.raw(KindGrant, r.ID) != nil {
		t.Fatal("expired grant not deleted")
	}
	if evs := e.audit.Find(TypeExpire, codeGrantExpired); len(evs) != 1 || evs[0].UserID != alice.UserID || evs[0].Attrs["grant_id"] != r.ID {
		t.Fatalf("expire events %+v", evs)
	}
	if got := m2.Roles(alice.UserID, base, start); len(got) != 1 {
		t.Fatalf("deleted grant still cached: %v", got)
	}
	// The deleted grant is not recreated from its approved request.
	m1.tick(ctx)
	if e.mem.raw(KindGrant, r.ID) != nil || len(e.audit.Find(TypeGrant, "")) != 1 {
		t.Fatal("expired grant was recreated")
	}
}

func TestPendingExpiryOnce(t *testing.T) {
	e := newEnv(t)
	m1, m2 := e.manager(t, testConfig()), e.manager(t, testConfig())
	ctx := t.Context()
	r := must[Request](t)(m1.Submit(ctx, alice, "db-admin", time.Hour, "x"))
	e.clk.Add(time.Hour - time.Nanosecond)
	m1.tick(ctx)
	if n := len(e.audit.Find(TypeExpire, "")); n != 0 {
		t.Fatalf("expired early: %d", n)
	}
	e.clk.Add(time.Nanosecond)
	var wg sync.WaitGroup
	wg.Go(func() { m1.tick(ctx) })
	wg.Go(func() { m2.tick(ctx) })
	wg.Wait()
	if evs := e.audit.Find(TypeExpire, codeRequestExpired); len(evs) != 1 || evs[0].Attrs["request_id"] != r.ID {
		t.Fatalf("events %+v", evs)
	}
	var stored Request
	if err := json.Unmarshal(e.mem.raw(KindRequest, r.ID), &stored); err != nil || stored.State != StateExpired {
		t.Fatalf("stored %+v %v", stored, err)
	}
	// Closed requests are dropped after KeepRequests.
	e.clk.Add(DefaultKeepRequests - time.Nanosecond)
	m1.tick(ctx)
	if e.mem.count(KindRequest) != 1 {
		t.Fatal("deleted before KeepRequests")
	}
	e.clk.Add(time.Nanosecond)
	m1.tick(ctx)
	if e.mem.count(KindRequest) != 0 {
		t.Fatal("not deleted after KeepRequests")
	}
}

// subscribed returns m's feed channel, for driving handle by hand.
func subscribed(t *testing.T, f Feed) <-chan store.Event {
	ch, err := f.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func deliverAll(t *testing.T, m *Manager, ch <-chan store.Event) {
	t.Helper()
	for {
		select {
		case ev := <-ch:
			m.handle(t.Context(), ev, ch)
		default:
			return
		}
	}
}

func TestRevokePropagatesToOtherInstance(t *testing.T) {
	e := newEnv(t)
	m1, m2 := e.manager(t, testConfig()), e.manager(t, testConfig())
	ch := subscribed(t, e.feed)
	deliverAll(t, m2, ch) // the initial resync: loads an empty cache
	if !m2.Ready() {
		t.Fatal("not ready after the first load")
	}
	r := approved(t, m1, time.Hour)
	now := e.clk.Now()
	if _, ok := m2.GrantedUntil(alice.UserID, "db-admin", now); ok {
		t.Fatal("other instance knew before the event")
	}
	deliverAll(t, m2, ch)
	if _, ok := m2.GrantedUntil(alice.UserID, "db-admin", now); !ok {
		t.Fatal("other instance missed the grant")
	}
	if err := m1.RevokeGrant(t.Context(), "admin@example", r.ID, "left the team"); err != nil {
		t.Fatal(err)
	}
	// The revoking instance drops it at once, the other on the event.
	if _, ok := m1.GrantedUntil(alice.UserID, "db-admin", now); ok {
		t.Fatal("revoking instance still holds it")
	}
	deliverAll(t, m2, ch)
	if _, ok := m2.GrantedUntil(alice.UserID, "db-admin", now); ok {
		t.Fatal("other instance still holds the revoked grant")
	}
	evs := e.audit.Find(TypeRevoke, codeAdminRevoke)
	if len(evs) != 1 || evs[0].Actor != "admin@example" || evs[0].UserID != alice.UserID || evs[0].Attrs["reason"] != "left the team" {
		t.Fatalf("revoke events %+v", evs)
	}
	// Reconcile must not resurrect it, and revoking again finds nothing.
	m1.tick(t.Context())
	if e.mem.raw(KindGrant, r.ID) != nil {
		t.Fatal("revoked grant recreated by reconcile")
	}
	if got := must[Request](t)(m1.GetRequest(t.Context(), r.ID)); got.Revoked == nil || got.Revoked.UserID != "admin@example" {
		t.Fatalf("request not marked revoked: %+v", got)
	}
	if err := m1.RevokeGrant(t.Context(), "admin@example", r.ID, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}

func TestRunKeepsCacheFresh(t *testing.T) {
	e := newEnv(t)
	m1, m2 := e.manager(t, testConfig()), e.manager(t, testConfig())
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- m2.Run(ctx) }()
	waitFor(t, "first load", m2.Ready)
	approved(t, m1, time.Hour)
	waitFor(t, "grant on the other instance", func() bool {
		_, ok := m2.GrantedUntil(alice.UserID, "db-admin", e.clk.Now())
		return ok
	})
	cancel()
	if err := <-done; !errors.Is(err, contextCanceled) {
		t.Fatalf("Run = %v", err)
	}
}

func TestReconcileCreatesMissingGrant(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	r := must[Request](t)(m.Submit(ctx, alice, "db-admin", time.Hour, "x"))
	e.mem.setFailOp(func(op, kind string) error {
		if op == "CreateRecord" && kind == KindGrant {
			return errors.Join(store.ErrUnavailable, errDown) // the instance "crashed" here
		}
		return nil
	})
	got, err := m.Approve(ctx, bob, r.ID, "")
	if !errors.Is(err, store.ErrUnavailable) || got.State != StateApproved {
		t.Fatalf("Approve = %+v, %v", got, err)
	}
	if _, ok := m.GrantedUntil(alice.UserID, "db-admin", e.clk.Now()); ok {
		t.Fatal("grant cached without a record")
	}
	e.mem.setFailOp(nil)
	e.clk.Add(10 * time.Minute)
	m.tick(ctx)
	until, ok := m.GrantedUntil(alice.UserID, "db-admin", e.clk.Now())
	if !ok || !until.Equal(got.Approvals[0].At.Add(time.Hour)) {
		t.Fatalf("reconciled grant: %v %v", until, ok)
	}
	m.tick(ctx)
	if evs := e.audit.Find(TypeGrant, ""); len(evs) != 1 || evs[0].Reason != codeReconciled {
		t.Fatalf("grant events %+v", evs)
	}
}

func TestRevokeBeforeGrantWritten(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	r := must[Request](t)(m.Submit(ctx, alice, "db-admin", time.Hour, "x"))
	e.mem.setFailOp(func(op, kind string) error {
		if op == "CreateRecord" && kind == KindGrant {
			return errors.Join(store.ErrUnavailable, errDown)
		}
		return nil
	})
	m.Approve(ctx, bob, r.ID, "")
	e.mem.setFailOp(nil)
	if err := m.RevokeGrant(ctx, "admin", r.ID, "no"); err != nil {
		t.Fatal(err)
	}
	m.tick(ctx)
	if e.mem.raw(KindGrant, r.ID) != nil {
		t.Fatal("reconcile created a revoked grant")
	}
	if n := len(e.audit.Find(TypeRevoke, "")); n != 1 {
		t.Fatalf("%d revoke events", n)
	}
}

func TestAddGrant(t *testing.T) {
	pol, err := authz.Compile(authz.PolicyConfig{Roles: []authz.RoleConfig{{Name: "oncall", Groups: []string{"oncall"}}, {Name: "auditor", Groups: []string{"audit"}}, {Name: "security", Groups: []string{"sec"}}}})
	if err != nil {
		t.Fatal(err)
	}
	now := newClock().Now()
	tests := []struct {
		name    string
		actor   string
		user    string
		role    string
		expires time.Time
		reason  string
		want    error
	}{
		{"until revoked", "admin", "u1", "oncall", time.Time{}, "rotation", nil},
		{"with expiry", "admin", "u1", "oncall", now.Add(time.Hour), "", nil},
		{"expiry now", "admin", "u1", "oncall", now, "", ErrInvalid},
		{"expiry past", "admin", "u1", "oncall", now.Add(-time.Hour), "", ErrInvalid},
		{"unknown role", "admin", "u1", "root", time.Time{}, "", ErrInvalid},
		{"empty role", "admin", "u1", "", time.Time{}, "", ErrInvalid},
		{"role with space", "admin", "u1", "on call", time.Time{}, "", ErrInvalid},
		{"empty user", "admin", "", "oncall", time.Time{}, "", ErrInvalid},
		{"huge user", "admin", strings.Repeat("u", 1000), "oncall", time.Time{}, "", ErrInvalid},
		{"empty actor", "", "u1", "oncall", time.Time{}, "", ErrInvalid},
		{"control in reason", "admin", "u1", "oncall", time.Time{}, "a\rb", ErrInvalid},
		// An admin must not build the committee that approves their own
		// requests (security approves auditor in testConfig).
		{"approver role", "admin", "u1", "security", time.Time{}, "", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m, err := New(testConfig(), Deps{Store: e.st, Feed: e.feed, Audit: e.audit, Now: e.clk.Now, Policy: func() *authz.Policy { return pol }})
			if err != nil {
				t.Fatal(err)
			}
			g, err := m.AddGrant(t.Context(), tc.actor, tc.user, tc.role, tc.expires, tc.reason)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("AddGrant = %v, want %v", err, tc.want)
			}
			if err != nil {
				if e.mem.count(KindGrant) != 0 || len(e.audit.Events()) != 0 {
					t.Fatal("refused grant stored or audited")
				}
				return
			}
			if g.Source != SourceLocal || !strings.HasPrefix(g.ID, "lg-") || g.CreatedBy != tc.actor {
				t.Fatalf("grant %+v", g)
			}
			until, ok := m.GrantedUntil(tc.user, tc.role, now.Add(time.Minute))
			if !ok || !until.Equal(tc.expires) {
				t.Fatalf("GrantedUntil = %v %v", until, ok)
			}
			if evs := e.audit.Find(TypeGrant, ""); len(evs) != 1 || evs[0].Actor != tc.actor || evs[0].Attrs["source"] != SourceLocal {
				t.Fatalf("events %+v", evs)
			}
		})
	}
}

func TestGrantedUntilLatest(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	now := e.clk.Now()
	must[Grant](t)(m.AddGrant(ctx, "admin", "u1", "oncall", now.Add(time.Hour), ""))
	must[Grant](t)(m.AddGrant(ctx, "admin", "u1", "oncall", now.Add(3*time.Hour), ""))
	must[Grant](t)(m.AddGrant(ctx, "admin", "u1", "other", now.Add(5*time.Hour), ""))
	if until, ok := m.GrantedUntil("u1", "oncall", now); !ok || !until.Equal(now.Add(3*time.Hour)) {
		t.Fatalf("%v %v", until, ok)
	}
	must[Grant](t)(m.AddGrant(ctx, "admin", "u1", "oncall", time.Time{}, ""))
	if until, ok := m.GrantedUntil("u1", "oncall", now); !ok || !until.IsZero() {
		t.Fatalf("until revoked: %v %v", until, ok)
	}
	if _, ok := m.GrantedUntil("u2", "oncall", now); ok {
		t.Fatal("other user")
	}
}

func TestDeleteUser(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	approved(t, m, time.Hour)                                                         // request + grant
	must[Request](t)(m.Submit(ctx, alice, "prod-root", time.Hour, "pending"))         // pending request
	must[Grant](t)(m.AddGrant(ctx, "admin", alice.UserID, "oncall", time.Time{}, "")) // local grant
	other := must[Request](t)(m.Submit(ctx, erin, "db-admin", time.Hour, "keep me"))
	otherGrant := must[Grant](t)(m.AddGrant(ctx, "admin", erin.UserID, "oncall", time.Time{}, ""))
	n, err := m.DeleteUser(ctx, alice.UserID)
	if err != nil || n != 4 {
		t.Fatalf("DeleteUser = %d, %v", n, err)
	}
	if e.mem.count(KindRequest) != 1 || e.mem.raw(KindRequest, other.ID) == nil || e.mem.count(KindGrant) != 1 || e.mem.raw(KindGrant, otherGrant.ID) == nil {
		t.Fatalf("left: requests %v grants %v", e.mem.keys(KindRequest), e.mem.keys(KindGrant))
	}
	if got := m.Roles(alice.UserID, nil, e.clk.Now()); len(got) != 0 {
		t.Fatalf("roles after delete: %v", got)
	}
	if n := len(e.audit.Find(TypeRevoke, codeUserDeleted)); n != 2 {
		t.Fatalf("%d revoke events", n)
	}
	if n := len(e.audit.Find(TypeCancel, codeUserDeleted)); n != 1 {
		t.Fatalf("%d cancel events", n)
	}
	m.tick(ctx)
	if e.mem.count(KindGrant) != 1 {
		t.Fatal("tick recreated a deleted user's grant")
	}
	if n, err := m.DeleteUser(ctx, alice.UserID); err != nil || n != 0 {
		t.Fatalf("second DeleteUser = %d, %v", n, err)
	}
}

func TestCorruptRecords(t *testing.T) {
	valid := Grant{ID: "rq-x", UserID: "u1", Role: "db-admin", Source: SourceTemporary, RequestID: "rq-x",
		Start: newClock().Now().Add(-time.Minute), Expires: newClock().Now().Add(time.Hour), CreatedBy: "b"}
	enc := func(f func(g *Grant)) []byte {
		g := valid
		f(&g)
		b, _ := json.Marshal(g)
		return b
	}
	grants := []struct {
		name string
		data []byte
	}{
		{"not JSON", []byte("\x00\xff{")},
		{"null", []byte("null")},
		{"empty object", []byte("{}")},
		{"array", []byte("[]")},
		{"ID mismatch", enc(func(g *Grant) { g.ID = "rq-y" })},
		{"no user", enc(func(g *Grant) { g.UserID = "" })},
		{"control in user", enc(func(g *Grant) { g.UserID = "u\n1" })},
		{"no role", enc(func(g *Grant) { g.Role = "" })},
		{"unknown source", enc(func(g *Grant) { g.Source = "forever" })},
		{"temporary without expiry", enc(func(g *Grant) { g.Expires = time.Time{} })},
		{"temporary too long", enc(func(g *Grant) { g.Expires = g.Start.Add(MaxGrantDuration + time.Second) })},
		{"temporary request mismatch", enc(func(g *Grant) { g.RequestID = "rq-z" })},
		{"expires before start", enc(func(g *Grant) { g.Source = SourceLocal; g.Expires = g.Start.Add(-time.Second) })},
		{"no start", enc(func(g *Grant) { g.Start = time.Time{} })},
		{"wrong types", []byte(`{"id":"rq-x","user_id":1,"role":["a"]}`)},
	}
	for _, tc := range grants {
		t.Run("grant/"+tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, testConfig())
			e.mem.put(KindGrant, "rq-x", tc.data)
			if err := m.reload(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := m.Roles("u1", nil, e.clk.Now()); len(got) != 0 {
				t.Fatalf("corrupt grant allowed roles %v", got)
			}
			if v := m.CanReadAudit("u1", nil, e.clk.Now()); v.Allow {
				t.Fatal("corrupt grant allowed audit read")
			}
			if gs := must[[]Grant](t)(m.ListGrants(t.Context())); len(gs) != 0 {
				t.Fatalf("listed %+v", gs)
			}
			m.tick(t.Context())
			if e.mem.raw(KindGrant, "rq-x") == nil {
				t.Fatal("tick deleted an unreadable record")
			}
			if err := m.RevokeGrant(t.Context(), "admin", "rq-x", ""); err != nil {
				t.Fatalf("revoking a corrupt grant: %v", err)
			}
			if e.mem.raw(KindGrant, "rq-x") != nil {
				t.Fatal("corrupt grant not deleted by revoke")
			}
		})
	}
	// The valid encoding passes, so the cases above fail for their reason.
	if _, err := decodeGrant("rq-x", enc(func(*Grant) {})); err != nil {
		t.Fatal(err)
	}

	requests := []struct {
		name string
		data string
	}{
		{"not JSON", "{"},
		{"null", "null"},
		{"unknown state", `{"id":"rq-x","user_id":"u","role":"db-admin","duration":3600000000000,"created_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T10:00:00Z","state":"granted","needed":1}`},
		{"approved without approvals", `{"id":"rq-x","user_id":"u","role":"db-admin","duration":3600000000000,"created_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T10:00:00Z","state":"approved","needed":1,"grant_id":"rq-x"}`},
		{"self approval stored", `{"id":"rq-x","user_id":"u","role":"db-admin","duration":3600000000000,"created_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T10:00:00Z","state":"pending","needed":2,"approvals":[{"user_id":"u","at":"2026-03-02T09:01:00Z"}]}`},
		{"negative duration", `{"id":"rq-x","user_id":"u","role":"db-admin","duration":-1,"created_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T10:00:00Z","state":"pending","needed":1}`},
		{"zero needed", `{"id":"rq-x","user_id":"u","role":"db-admin","duration":1,"created_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T10:00:00Z","state":"pending","needed":0}`},
		{"ID mismatch", `{"id":"rq-y","user_id":"u","role":"db-admin","duration":1,"created_at":"2026-03-02T09:00:00Z","expires_at":"2026-03-02T10:00:00Z","state":"pending","needed":1}`},
	}
	for _, tc := range requests {
		t.Run("request/"+tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, testConfig())
			ctx := t.Context()
			e.mem.put(KindRequest, "rq-x", []byte(tc.data))
			if _, err := m.GetRequest(ctx, "rq-x"); !errors.Is(err, ErrCorrupt) || !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("GetRequest = %v", err)
			}
			if _, err := m.Approve(ctx, bob, "rq-x", ""); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Approve = %v", err)
			}
			if got := must[[]Request](t)(m.ListRequests(ctx)); len(got) != 0 {
				t.Fatalf("listed %+v", got)
			}
			m.tick(ctx)
			if e.mem.count(KindGrant) != 0 {
				t.Fatal("grant created from a corrupt request")
			}
		})
	}
}

func TestResyncFailureSuspendsGrants(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	approved(t, m, time.Hour)
	if _, ok := m.GrantedUntil(alice.UserID, "db-admin", e.clk.Now()); !ok {
		t.Fatal("no grant")
	}
	e.mem.setFail(errors.Join(store.ErrUnavailable, errDown))
	m.handle(t.Context(), store.Event{Kind: store.EventResync}, nil)
	if _, ok := m.GrantedUntil(alice.UserID, "db-admin", e.clk.Now()); ok {
		t.Fatal("grant kept after a resync that could not reload")
	}
	e.mem.setFail(nil)
	m.tick(t.Context())
	if _, ok := m.GrantedUntil(alice.UserID, "db-admin", e.clk.Now()); !ok {
		t.Fatal("grant not back after the store recovered")
	}
}

// TestExpireRaceExactlyOnce makes the race deterministic: while one
// instance is about to delete an expired grant it listed, the other
// instance deletes it first. Exactly one access.expire results.
func TestExpireRaceExactlyOnce(t *testing.T) {
	e := newEnv(t)
	m1, m2 := e.manager(t, testConfig()), e.manager(t, testConfig())
	ctx := t.Context()
	r := approved(t, m1, time.Hour)
	e.clk.Add(time.Hour)
	// The hook runs inside m1's tick, before its swap, once.
	interleave := func() {
		e.mem.onSwap = func() {
			e.mem.onSwap = nil
			m2.tick(ctx)
		}
	}
	interleave()
	m1.tick(ctx)
	if evs := e.audit.Find(TypeExpire, codeGrantExpired); len(evs) != 1 || evs[0].Attrs["grant_id"] != r.ID {
		t.Fatalf("expire events %+v", evs)
	}
	// The same for revocations racing a tick that expires the grant.
	r2 := approved(t, m1, time.Hour)
	e.clk.Add(time.Hour)
	interleave()
	err := m1.RevokeGrant(ctx, "admin", r2.ID, "")
	if n := len(e.audit.Find(TypeExpire, codeGrantExpired)) + len(e.audit.Find(TypeRevoke, "")); n != 2 {
		t.Fatalf("RevokeGrant = %v; %d expire+revoke events for 2 grants", err, n)
	}
}
