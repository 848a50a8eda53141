package mfa

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// The whole flow against the real embedded store: two managers (two
// "instances") sharing it, and the guard surviving a restart.
func TestEmbeddedStore(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	path := filepath.Join(t.TempDir(), "state.db")
	open := func() *store.Embedded {
		st, err := store.OpenEmbedded(path, store.EmbeddedOptions{Now: clk.Now, SweepInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	a := newManager(t, st, clk, testKey)
	b := newManager(t, st, clk, testKey)

	e, err := a.BeginEnrolment(ctx, "alice", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	codes, err := b.ConfirmEnrolment(ctx, "alice", codeAt(t, e.Secret, clk.Now()))
	if err != nil {
		t.Fatalf("confirm on the other instance: %v", err)
	}
	clk.Advance(10 * period * time.Second)

	code := codeAt(t, e.Secret, clk.Now())
	if err := a.Verify(ctx, "alice", code); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := b.Verify(ctx, "alice", code); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replay on the other instance: %v, want ErrInvalidCode", err)
	}
	if err := a.VerifyRecovery(ctx, "alice", codes[0]); err != nil {
		t.Fatalf("VerifyRecovery: %v", err)
	}
	if err := b.VerifyRecovery(ctx, "alice", codes[0]); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("recovery code reused on the other instance: %v", err)
	}
	if n, err := b.Failures(ctx, "alice"); n != 1 || err != nil {
		t.Fatalf("Failures = %d, %v; want 1", n, err)
	}

	// Restart: enrolment, used step and used recovery code all persist.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(ctx, "alice", codeAt(t, e.Secret, clk.Now().Add(period*time.Second))); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Verify on a closed store: %v, want ErrUnavailable", err)
	}
	st = open()
	defer st.Close()
	c := newManager(t, st, clk, testKey)
	if err := c.Verify(ctx, "alice", code); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replay after restart: %v, want ErrInvalidCode", err)
	}
	if err := c.VerifyRecovery(ctx, "alice", codes[0]); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("used recovery code after restart: %v", err)
	}
	if n, err := c.RecoveryCodesLeft(ctx, "alice"); n != len(codes)-1 || err != nil {
		t.Fatalf("RecoveryCodesLeft = %d, %v", n, err)
	}
	if err := c.Verify(ctx, "alice", codeAt(t, e.Secret, clk.Now().Add(period*time.Second))); err != nil {
		t.Fatalf("next step after restart: %v", err)
	}

	if err := c.Reset(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Enrolled(ctx, "alice"); ok || err != nil {
		t.Fatalf("Enrolled after Reset = %v, %v", ok, err)
	}
	if n, err := c.RecoveryCodesLeft(ctx, "alice"); n != 0 || err != nil {
		t.Fatalf("RecoveryCodesLeft after Reset = %d, %v", n, err)
	}
}
