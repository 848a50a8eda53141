package access

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// backend opens the store handles of two instances (the same handle twice
// when the backend is a single-node file).
type backend func(t *testing.T, now func() time.Time) (a, b store.Store)

func redisAddr() string {
	if a := os.Getenv("PORTCULLIS_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func backends() map[string]backend {
	return map[string]backend{
		"embedded": func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
			s, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), store.EmbeddedOptions{Now: now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s, s
		},
		// A real redis-server (CI starts one; locally `redis-server
		// --daemonize yes`): a failure to connect fails the test.
		"redis": func(t *testing.T, now func() time.Time) (store.Store, store.Store) {
			var b [8]byte
			rand.Read(b[:])
			cfg := store.RedisConfig{Addr: redisAddr(), KeyPrefix: "portcullis-test:" + hex.EncodeToString(b[:]) + ":"}
			open := func() store.Store {
				s, err := store.OpenRedis(t.Context(), cfg, store.RedisOptions{Now: now})
				if err != nil {
					t.Fatalf("no redis-server at %s: %v", redisAddr(), err)
				}
				return s
			}
			a, c := open(), open()
			t.Cleanup(func() {
				// Remove what the test wrote (its prefix is its own).
				ctx := context.Background()
				for _, kind := range []string{KindRequest, KindGrant} {
					recs, _ := a.ListRecords(ctx, kind)
					for id := range recs {
						a.DeleteRecord(ctx, kind, id)
					}
				}
				a.Close()
				c.Close()
			})
			return a, c
		},
	}
}

type instances struct {
	clk    *clock
	audit  *audit.Memory
	m1, m2 *Manager
	st     Records
}

func twoInstances(t *testing.T, a, b Records, fa, fb Feed, clk *clock) *instances {
	in := &instances{clk: clk, audit: &audit.Memory{}, st: a}
	mk := func(st Records, f Feed, name string) *Manager {
		m, err := New(testConfig(), Deps{Store: st, Feed: f, Audit: in.audit, Now: clk.Now, Instance: name})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	in.m1, in.m2 = mk(a, fa, "i1"), mk(b, fb, "i2")
	return in
}

func TestConcurrentApprovalsMemory(t *testing.T) {
	mem := newMemStore()
	mem.onSwap = runtime.Gosched // widen the Get → Swap window
	concurrentApprovals(t, twoInstances(t, mem, mem, mem, mem, newClock()))
}

func TestConcurrentApprovalsBackends(t *testing.T) {
	for name, open := range backends() {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			a, b := open(t, clk.Now)
			in := twoInstances(t, a, b, a, b, clk)
			concurrentApprovals(t, in)
			revokeAcrossInstances(t, in)
		})
	}
}

// concurrentApprovals: several approvers on two instances approve one
// 2-of-N request at once: exactly two approvals count, the rest hear
// ErrAlreadyDecided, and exactly one grant is made and audited.
func concurrentApprovals(t *testing.T, in *instances) {
	ctx := t.Context()
	approvers := []Person{carol, dave, bob,
		{UserID: "https://idp|frank", Roles: []string{"security"}},
		{UserID: "https://idp|grace", Roles: []string{"sre-lead"}},
		{UserID: "https://idp|heidi", Roles: []string{"security"}},
	}
	const rounds = 8
	for round := range rounds {
		requester := Person{UserID: "https://idp|req-" + string(rune('a'+round))}
		r := must[Request](t)(in.m1.Submit(ctx, requester, "prod-root", time.Hour, "race"))
		errs := make([]error, len(approvers))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, who := range approvers {
			m := in.m1
			if i%2 == 1 {
				m = in.m2
			}
			wg.Go(func() {
				<-start
				_, errs[i] = m.Approve(ctx, who, r.ID, "")
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrAlreadyDecided):
				t.Fatalf("round %d approver %d: %v", round, i, err)
			}
		}
		got := must[Request](t)(in.m2.GetRequest(ctx, r.ID))
		if ok != 2 || got.State != StateApproved || len(got.Approvals) != 2 || got.Approvals[0].UserID == got.Approvals[1].UserID {
			t.Fatalf("round %d: %d approvals succeeded, request %+v", round, ok, got)
		}
		grants := 0
		for _, ev := range in.audit.Find(TypeGrant, "") {
			if ev.Attrs["grant_id"] == r.ID {
				grants++
			}
		}
		if grants != 1 {
			t.Fatalf("round %d: %d access.grant events", round, grants)
		}
		if _, ok := in.m1.GrantedUntil(requester.UserID, "prod-root", in.clk.Now()); !ok {
			in.m1.tick(ctx) // the approving instance may have been m2
			if _, ok := in.m1.GrantedUntil(requester.UserID, "prod-root", in.clk.Now()); !ok {
				t.Fatalf("round %d: no grant", round)
			}
		}
	}

	// One approver on both instances at once is counted once.
	r := must[Request](t)(in.m1.Submit(ctx, alice, "prod-root", time.Hour, "dup"))
	var wg sync.WaitGroup
	var e1, e2 error
	wg.Go(func() { _, e1 = in.m1.Approve(ctx, carol, r.ID, "") })
	wg.Go(func() { _, e2 = in.m2.Approve(ctx, carol, r.ID, "") })
	wg.Wait()
	if (e1 == nil) == (e2 == nil) || !(errors.Is(e1, ErrDuplicateApproval) || errors.Is(e2, ErrDuplicateApproval)) {
		t.Fatalf("same approver twice: %v / %v", e1, e2)
	}
	if got := must[Request](t)(in.m1.GetRequest(ctx, r.ID)); got.State != StatePending || len(got.Approvals) != 1 {
		t.Fatalf("%+v", got)
	}

	// Expiry: both instances tick at once, one access.expire per grant.
	before := len(in.audit.Find(TypeExpire, codeGrantExpired))
	in.clk.Add(2 * time.Hour)
	wg.Go(func() { in.m1.tick(ctx) })
	wg.Go(func() { in.m2.tick(ctx) })
	wg.Wait()
	if n := len(in.audit.Find(TypeExpire, codeGrantExpired)) - before; n != rounds {
		t.Fatalf("%d access.expire events for %d grants", n, rounds)
	}
	if recs := must[map[string][]byte](t)(in.st.ListRecords(ctx, KindGrant)); len(recs) != 0 {
		t.Fatalf("%d grant records left", len(recs))
	}
}

// revokeAcrossInstances: m2 runs (subscribed to the real feed); a revoke on
// m1 reaches m2's cache.
func revokeAcrossInstances(t *testing.T, in *instances) {
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- in.m2.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "m2 ready", in.m2.Ready)
	u := Person{UserID: "https://idp|ivan"}
	r := must[Request](t)(in.m1.Submit(ctx, u, "db-admin", time.Hour, "revoke me"))
	must[Request](t)(in.m1.Approve(ctx, bob, r.ID, ""))
	waitFor(t, "grant on m2", func() bool { _, ok := in.m2.GrantedUntil(u.UserID, "db-admin", in.clk.Now()); return ok })
	if err := in.m1.RevokeGrant(ctx, "admin", r.ID, "done"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation on m2", func() bool { _, ok := in.m2.GrantedUntil(u.UserID, "db-admin", in.clk.Now()); return !ok })
}
