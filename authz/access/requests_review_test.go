package access

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSubmitCancelLoopIsBounded: one user submitting and cancelling in a
// loop must not create records (kept for KeepRequests, listed on every
// page and tick) and approver notifications without bound.
func TestSubmitCancelLoopIsBounded(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := context.Background()
	refused := false
	for i := range 1000 {
		r, err := m.Submit(ctx, alice, "db-admin", time.Hour, "INC-1")
		if err != nil {
			if !errors.Is(err, ErrAlreadyPending) {
				t.Fatalf("submit %d: %v", i, err)
			}
			refused = true
			break
		}
		if _, err := m.Cancel(ctx, alice, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if !refused {
		t.Fatalf("1000 submit/cancel rounds accepted: %d request records", e.mem.count(KindRequest))
	}
	// Another user is not affected, and the limit lifts with time.
	if _, err := m.Submit(ctx, erin, "db-admin", time.Hour, "INC-2"); err != nil {
		t.Fatalf("other user: %v", err)
	}
	e.clk.Add(25 * time.Hour)
	if _, err := m.Submit(ctx, alice, "db-admin", time.Hour, "INC-3"); err != nil {
		t.Fatalf("a day later: %v", err)
	}
}
