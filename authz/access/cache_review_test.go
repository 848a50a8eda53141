package access

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// TestFailedReloadAfterGrantsChangedFailsClosed: instance 2 hears that a
// user's grants changed (a revocation on instance 1) but cannot reload
// them (the store fails). It must not go on enforcing the grant it knew:
// the change may be exactly that revocation.
func TestFailedReloadAfterGrantsChangedFailsClosed(t *testing.T) {
	e := newEnv(t)
	m1 := e.manager(t, testConfig())
	m2 := e.manager(t, testConfig())
	ctx := context.Background()
	g := must[Grant](t)(m1.AddGrant(ctx, "admin", alice.UserID, "db-admin", time.Time{}, "x"))
	if err := m2.reload(ctx); err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	if _, ok := m2.GrantedUntil(alice.UserID, "db-admin", now); !ok {
		t.Fatal("instance 2 does not see the grant")
	}
	if err := m1.RevokeGrant(ctx, "admin", g.ID, "done"); err != nil {
		t.Fatal(err)
	}
	e.mem.setFail(errors.Join(store.ErrUnavailable, errors.New("down")))
	m2.handle(ctx, store.Event{Kind: EventGrantsChanged, Subject: alice.UserID}, make(chan store.Event))
	if _, ok := m2.GrantedUntil(alice.UserID, "db-admin", now); ok {
		t.Error("revoked grant still enforced after a grants-changed event whose reload failed")
	}
	// Refresh (the bastion's path) fails closed too.
	e.mem.setFail(nil)
	g2 := must[Grant](t)(m1.AddGrant(ctx, "admin", alice.UserID, "db-admin", time.Time{}, "y"))
	if err := m2.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m1.RevokeGrant(ctx, "admin", g2.ID, "done"); err != nil {
		t.Fatal(err)
	}
	e.mem.setFail(errors.Join(store.ErrUnavailable, errors.New("down")))
	if err := m2.Refresh(ctx); err == nil {
		t.Fatal("refresh did not fail")
	}
	if _, ok := m2.GrantedUntil(alice.UserID, "db-admin", now); ok {
		t.Error("revoked grant still enforced after a failed Refresh")
	}
}
