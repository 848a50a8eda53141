package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

func sameSession(t *testing.T, got, want store.Session, what string) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || !got.ExpiresAt.Equal(want.ExpiresAt) || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

func sessionIDs(ss []store.Session) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

func listIDs(t *testing.T, s store.Store, userID string) []string {
	t.Helper()
	ss, err := s.ListSessions(bg(t), userID)
	ok(t, err, "ListSessions")
	return sessionIDs(ss)
}

func wantIDs(t *testing.T, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("IDs: got %q, want %q", got, want)
	}
}

func testSessions(t *testing.T, h Harness) {
	t.Run("missing", func(t *testing.T) {
		e := newEnv(t, h)
		_, err := e.s.GetSession(bg(t), "nope")
		isNotFound(t, err, "GetSession(missing)")
		wantIDs(t, listIDs(t, e.s, ""))
		wantIDs(t, listIDs(t, e.s, "nobody"))
	})
	t.Run("put get overwrite", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		want := store.Session{ID: "s1", UserID: "u1", ExpiresAt: e.clock.Now().Add(hour), Data: []byte("data\x00\xff")}
		ok(t, e.s.PutSession(ctx, want), "PutSession")
		got, err := e.s.GetSession(ctx, "s1")
		ok(t, err, "GetSession")
		sameSession(t, got, want, "GetSession")

		// Overwrite with another user, expiry and data: the old user's
		// index must forget the session.
		want2 := store.Session{ID: "s1", UserID: "u2", ExpiresAt: e.clock.Now().Add(2 * hour), Data: nil}
		ok(t, e.s.PutSession(ctx, want2), "PutSession(overwrite)")
		got, err = e.s.GetSession(ctx, "s1")
		ok(t, err, "GetSession(overwritten)")
		sameSession(t, got, want2, "GetSession(overwritten)")
		wantIDs(t, listIDs(t, e.s, "u1"))
		wantIDs(t, listIDs(t, e.s, "u2"), "s1")
	})
	t.Run("list by user and all", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		exp := e.clock.Now().Add(hour)
		for _, s := range []store.Session{
			{ID: "s3", UserID: "u2", ExpiresAt: exp},
			{ID: "s1", UserID: "u1", ExpiresAt: exp, Data: []byte("one")},
			{ID: "s2", UserID: "u1", ExpiresAt: exp.Add(time.Minute)},
		} {
			ok(t, e.s.PutSession(ctx, s), "PutSession "+s.ID)
		}
		wantIDs(t, listIDs(t, e.s, "u1"), "s1", "s2")
		wantIDs(t, listIDs(t, e.s, "u2"), "s3")
		wantIDs(t, listIDs(t, e.s, ""), "s1", "s2", "s3")
		ss, err := e.s.ListSessions(ctx, "u1")
		ok(t, err, "ListSessions")
		sameSession(t, ss[0], store.Session{ID: "s1", UserID: "u1", ExpiresAt: exp, Data: []byte("one")}, "listed session")
	})
	t.Run("delete is idempotent", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		ok(t, e.s.DeleteSession(ctx, "never-existed"), "DeleteSession(missing)")
		ok(t, e.s.PutSession(ctx, store.Session{ID: "s1", UserID: "u1", ExpiresAt: e.clock.Now().Add(hour)}), "PutSession")
		ok(t, e.s.PutSession(ctx, store.Session{ID: "s2", UserID: "u1", ExpiresAt: e.clock.Now().Add(hour)}), "PutSession")
		for range 2 {
			ok(t, e.s.DeleteSession(ctx, "s1"), "DeleteSession")
		}
		_, err := e.s.GetSession(ctx, "s1")
		isNotFound(t, err, "GetSession(deleted)")
		wantIDs(t, listIDs(t, e.s, "u1"), "s2")
		wantIDs(t, listIDs(t, e.s, ""), "s2")
	})
	t.Run("expiry by injected clock", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		ok(t, e.s.PutSession(ctx, store.Session{ID: "short", UserID: "u1", ExpiresAt: e.clock.Now().Add(time.Minute)}), "PutSession")
		ok(t, e.s.PutSession(ctx, store.Session{ID: "long", UserID: "u1", ExpiresAt: e.clock.Now().Add(hour)}), "PutSession")
		e.clock.Advance(time.Minute - time.Nanosecond)
		_, err := e.s.GetSession(ctx, "short")
		ok(t, err, "GetSession before expiry")
		e.clock.Advance(time.Nanosecond)
		_, err = e.s.GetSession(ctx, "short")
		isNotFound(t, err, "GetSession at expiry")
		wantIDs(t, listIDs(t, e.s, "u1"), "long")
		wantIDs(t, listIDs(t, e.s, ""), "long")

		// Storing an already-expired session stores nothing live.
		ok(t, e.s.PutSession(ctx, store.Session{ID: "past", UserID: "u1", ExpiresAt: e.clock.Now().Add(-time.Second)}), "PutSession(expired)")
		_, err = e.s.GetSession(ctx, "past")
		isNotFound(t, err, "GetSession(stored expired)")
		// …and replacing a live session with an expired one ends it.
		ok(t, e.s.PutSession(ctx, store.Session{ID: "long", UserID: "u1", ExpiresAt: e.clock.Now()}), "PutSession(expire live)")
		_, err = e.s.GetSession(ctx, "long")
		isNotFound(t, err, "GetSession(replaced by expired)")
		wantIDs(t, listIDs(t, e.s, "u1"))
	})
}
