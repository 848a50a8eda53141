package storetest

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/authz/store"
)

func testLifecycle(t *testing.T, h Harness) {
	t.Run("survives reopen", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		now := e.clock.Now()
		sess := store.Session{ID: "s1", UserID: "u1", ExpiresAt: now.Add(hour), Data: []byte("d")}
		lock := store.Lock{Subject: "user:u1", Reason: "r", Ref: "INC-1", CreatedAt: now, Detail: "d"}
		ok(t, e.s.PutSession(ctx, sess), "PutSession")
		ok(t, e.s.PutLock(ctx, lock), "PutLock")
		ok(t, e.s.PutUser(ctx, "u1", []byte("{}")), "PutUser")
		ok(t, e.s.PutEnrolment(ctx, "u1", []byte("blob")), "PutEnrolment")
		ok(t, e.s.PutRecoveryCodes(ctx, "u1", []string{"h1", "h2"}), "PutRecoveryCodes")
		ok(t, e.s.PutEphemeral(ctx, "k", []byte("v"), hour), "PutEphemeral")
		_, err := e.s.Incr(ctx, "c", 3, hour)
		ok(t, err, "Incr")
		_, err = e.s.ClaimStep(ctx, "u1", 9, hour)
		ok(t, err, "ClaimStep")

		e.reopen()

		got, err := e.s.GetSession(ctx, "s1")
		ok(t, err, "GetSession after reopen")
		sameSession(t, got, sess, "GetSession after reopen")
		wantIDs(t, listIDs(t, e.s, "u1"), "s1")
		l, err := e.s.GetLock(ctx, "user:u1")
		ok(t, err, "GetLock after reopen")
		sameLock(t, l, lock, "GetLock after reopen")
		if _, err := e.s.GetUser(ctx, "u1"); err != nil {
			t.Fatalf("GetUser after reopen: %v", err)
		}
		if b, err := e.s.GetEnrolment(ctx, "u1"); err != nil || string(b) != "blob" {
			t.Fatalf("GetEnrolment after reopen = %q, %v", b, err)
		}
		if n, err := e.s.RecoveryCodesLeft(ctx, "u1"); err != nil || n != 2 {
			t.Fatalf("RecoveryCodesLeft after reopen = %d, %v", n, err)
		}
		if v, err := e.s.GetEphemeral(ctx, "k"); err != nil || string(v) != "v" {
			t.Fatalf("GetEphemeral after reopen = %q, %v", v, err)
		}
		if n, err := e.s.Count(ctx, "c"); err != nil || n != 3 {
			t.Fatalf("Count after reopen = %d, %v", n, err)
		}
		// The replay guard must survive a restart.
		if first, err := e.s.ClaimStep(ctx, "u1", 9, hour); err != nil || first {
			t.Fatalf("ClaimStep after reopen = %v, %v; want false", first, err)
		}
	})
	t.Run("closed store fails closed", func(t *testing.T) {
		e := newEnv(t, h)
		ok(t, e.s.Close(), "Close")
		ok(t, e.s.Close(), "second Close")
		for _, m := range Methods() {
			t.Run(m.Name, func(t *testing.T) { isUnavailable(t, m.Call(bg(t), e.s), m.Name) })
		}
	})
	t.Run("canceled context fails closed", func(t *testing.T) {
		e := newEnv(t, h)
		ctx, cancel := context.WithCancel(bg(t))
		cancel()
		for _, m := range Methods() {
			t.Run(m.Name, func(t *testing.T) { isUnavailable(t, m.Call(ctx, e.s), m.Name) })
		}
	})
}
