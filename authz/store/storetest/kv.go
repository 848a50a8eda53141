package storetest

import (
	"bytes"
	"errors"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

func testMFA(t *testing.T, h Harness) {
	t.Run("enrolment", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		_, err := e.s.GetEnrolment(ctx, "u1")
		isNotFound(t, err, "GetEnrolment(missing)")
		ok(t, e.s.PutEnrolment(ctx, "u2", []byte("blob2")), "PutEnrolment")
		ok(t, e.s.PutEnrolment(ctx, "u1", []byte("old")), "PutEnrolment")
		ok(t, e.s.PutEnrolment(ctx, "u1", []byte("new\x00")), "PutEnrolment(overwrite)")
		got, err := e.s.GetEnrolment(ctx, "u1")
		ok(t, err, "GetEnrolment")
		if string(got) != "new\x00" {
			t.Fatalf("GetEnrolment = %q, want the overwritten blob", got)
		}
		ids, err := e.s.ListEnrolled(ctx)
		ok(t, err, "ListEnrolled")
		wantIDs(t, ids, "u1", "u2")
		for range 2 {
			ok(t, e.s.DeleteEnrolment(ctx, "u1"), "DeleteEnrolment")
		}
		_, err = e.s.GetEnrolment(ctx, "u1")
		isNotFound(t, err, "GetEnrolment(deleted)")
		ids, err = e.s.ListEnrolled(ctx)
		ok(t, err, "ListEnrolled")
		wantIDs(t, ids, "u2")
	})
	t.Run("claim step", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		claim := func(user string, step uint64, ttl time.Duration) bool {
			t.Helper()
			first, err := e.s.ClaimStep(ctx, user, step, ttl)
			ok(t, err, "ClaimStep")
			return first
		}
		if !claim("u1", 100, hour) {
			t.Fatal("first claim of a step was refused")
		}
		if claim("u1", 100, hour) {
			t.Fatal("second claim of the same step was accepted (TOTP replay)")
		}
		if !claim("u1", 101, hour) || !claim("u2", 100, hour) || !claim("u1", 0, hour) || !claim("u1", math.MaxUint64, hour) {
			t.Fatal("a different step or user was refused")
		}
		// The mark lives for its TTL, then the step may be claimed again.
		ttl := e.ttlFor(90 * time.Second)
		if !claim("u3", 7, ttl) {
			t.Fatal("first claim refused")
		}
		e.expire(ttl, "step mark expiry", func() bool { return claim("u3", 7, hour) })
	})
	t.Run("recovery codes", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		left := func(user string) int {
			t.Helper()
			n, err := e.s.RecoveryCodesLeft(ctx, user)
			ok(t, err, "RecoveryCodesLeft")
			return n
		}
		consume := func(user, hash string) bool {
			t.Helper()
			found, err := e.s.ConsumeRecoveryCode(ctx, user, hash)
			ok(t, err, "ConsumeRecoveryCode")
			return found
		}
		if left("u1") != 0 || consume("u1", "h1") {
			t.Fatal("a user without codes has codes")
		}
		ok(t, e.s.PutRecoveryCodes(ctx, "u1", []string{"h1", "h2", "h3", "h2"}), "PutRecoveryCodes")
		if n := left("u1"); n != 3 {
			t.Fatalf("RecoveryCodesLeft = %d, want 3 (duplicates collapse)", n)
		}
		if !consume("u1", "h2") {
			t.Fatal("stored code not consumed")
		}
		if consume("u1", "h2") {
			t.Fatal("code consumed twice")
		}
		if consume("u1", "nope") || consume("u2", "h1") {
			t.Fatal("unknown code or other user's code consumed")
		}
		if n := left("u1"); n != 2 {
			t.Fatalf("RecoveryCodesLeft = %d, want 2", n)
		}
		ok(t, e.s.PutRecoveryCodes(ctx, "u1", []string{"h9"}), "PutRecoveryCodes(replace)")
		if consume("u1", "h1") || left("u1") != 1 {
			t.Fatal("replacing the set kept old codes")
		}
		ok(t, e.s.PutRecoveryCodes(ctx, "u1", nil), "PutRecoveryCodes(empty)")
		if left("u1") != 0 || consume("u1", "h9") {
			t.Fatal("an empty set kept codes")
		}
	})
}

func testCounters(t *testing.T, h Harness) {
	t.Run("incr and count", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		n, err := e.s.Count(ctx, "c")
		ok(t, err, "Count(missing)")
		if n != 0 {
			t.Fatalf("Count(missing) = %d", n)
		}
		steps := []struct {
			key   string
			delta int64
			want  int64
		}{
			{"c", 1, 1}, {"c", 2, 3}, {"c", -5, -2}, {"d", 10, 10}, {"c", 0, -2},
		}
		for _, s := range steps {
			got, err := e.s.Incr(ctx, s.key, s.delta, hour)
			ok(t, err, "Incr")
			if got != s.want {
				t.Fatalf("Incr(%s, %d) = %d, want %d", s.key, s.delta, got, s.want)
			}
		}
		if n, _ := e.s.Count(ctx, "c"); n != -2 {
			t.Fatalf("Count = %d, want -2", n)
		}
	})
	t.Run("overflow is an error", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		_, err := e.s.Incr(ctx, "big", math.MaxInt64, hour)
		ok(t, err, "Incr(max)")
		if _, err := e.s.Incr(ctx, "big", 1, hour); err == nil {
			t.Fatal("overflowing Incr succeeded")
		}
		if n, err := e.s.Count(ctx, "big"); err != nil || n != math.MaxInt64 {
			t.Fatalf("Count after overflow = %d, %v; want MaxInt64", n, err)
		}
	})
	t.Run("window starts at first increment", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		count := func() int64 {
			n, err := e.s.Count(ctx, "w")
			ok(t, err, "Count")
			return n
		}
		window := e.ttlFor(10 * time.Second)
		_, err := e.s.Incr(ctx, "w", 1, window)
		ok(t, err, "Incr")
		if !h.ServerTTL {
			// A later increment must not extend the window.
			e.clock.Advance(6 * time.Second)
			if n, _ := e.s.Incr(ctx, "w", 1, window); n != 2 {
				t.Fatalf("Incr in window = %d, want 2", n)
			}
			e.clock.Advance(4*time.Second - 1)
			if count() != 2 {
				t.Fatal("counter gone before its window ended")
			}
			e.clock.Advance(1)
			if count() != 0 {
				t.Fatal("a second increment extended the window")
			}
		} else {
			eventually(t, "counter window expiry", func() bool { return count() == 0 })
		}
		if n, _ := e.s.Incr(ctx, "w", 5, hour); n != 5 {
			t.Fatalf("Incr after the window = %d, want a fresh 5", n)
		}
	})
}

func sameLock(t *testing.T, got, want store.Lock, what string) {
	t.Helper()
	if got.Subject != want.Subject || got.Reason != want.Reason || got.Ref != want.Ref || got.Detail != want.Detail ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("%s: got %+v, want %+v", what, got, want)
	}
}

func testLocks(t *testing.T, h Harness) {
	t.Run("crud and list", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		_, err := e.s.GetLock(ctx, "user:u1")
		isNotFound(t, err, "GetLock(missing)")
		now := e.clock.Now()
		l1 := store.Lock{Subject: "user:u1", Reason: "failures", Ref: "INC-1", CreatedAt: now, Detail: "5 failures in 10m"}
		l2 := store.Lock{Subject: "ip:192.0.2.0/24", Reason: "canary", Ref: "INC-2", CreatedAt: now, ExpiresAt: now.Add(hour)}
		ok(t, e.s.PutLock(ctx, store.Lock{Subject: "user:u1", Reason: "old"}), "PutLock")
		ok(t, e.s.PutLock(ctx, l1), "PutLock(overwrite)")
		ok(t, e.s.PutLock(ctx, l2), "PutLock")
		got, err := e.s.GetLock(ctx, "user:u1")
		ok(t, err, "GetLock")
		sameLock(t, got, l1, "GetLock")
		all, err := e.s.ListLocks(ctx)
		ok(t, err, "ListLocks")
		if len(all) != 2 {
			t.Fatalf("ListLocks = %+v, want 2 locks", all)
		}
		sameLock(t, all[0], l2, "ListLocks[0] (sorted by subject)")
		sameLock(t, all[1], l1, "ListLocks[1]")
		for range 2 {
			ok(t, e.s.DeleteLock(ctx, "user:u1"), "DeleteLock")
		}
		_, err = e.s.GetLock(ctx, "user:u1")
		isNotFound(t, err, "GetLock(deleted)")
		all, err = e.s.ListLocks(ctx)
		ok(t, err, "ListLocks")
		if len(all) != 1 || all[0].Subject != l2.Subject {
			t.Fatalf("ListLocks after delete = %+v", all)
		}
	})
	t.Run("add only when not locked", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		now := e.clock.Now()
		first := store.Lock{Subject: "ip:192.0.2.7", Reason: "ip-failures", CreatedAt: now, ExpiresAt: now.Add(hour)}
		added, err := e.s.AddLock(ctx, first)
		ok(t, err, "AddLock")
		if !added {
			t.Fatal("AddLock on a free subject did not add")
		}
		added, err = e.s.AddLock(ctx, store.Lock{Subject: "ip:192.0.2.7", Reason: "other", CreatedAt: now})
		ok(t, err, "AddLock(second)")
		if added {
			t.Fatal("AddLock replaced a live lock")
		}
		got, err := e.s.GetLock(ctx, first.Subject)
		ok(t, err, "GetLock")
		sameLock(t, got, first, "GetLock after a refused AddLock")
		// Once the first expired, a new one may take its place.
		e.clock.Advance(hour)
		second := store.Lock{Subject: "ip:192.0.2.7", Reason: "ip-failures", Detail: "again", CreatedAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(2 * hour)}
		added, err = e.s.AddLock(ctx, second)
		ok(t, err, "AddLock(after expiry)")
		if !added {
			t.Fatal("AddLock did not replace an expired lock")
		}
		got, err = e.s.GetLock(ctx, first.Subject)
		ok(t, err, "GetLock")
		sameLock(t, got, second, "GetLock after re-adding")
	})
	t.Run("expiry by injected clock", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		now := e.clock.Now()
		ok(t, e.s.PutLock(ctx, store.Lock{Subject: "user:temp", Reason: "r", CreatedAt: now, ExpiresAt: now.Add(hour)}), "PutLock")
		ok(t, e.s.PutLock(ctx, store.Lock{Subject: "user:perm", Reason: "r", CreatedAt: now}), "PutLock")
		e.clock.Advance(hour - 1)
		_, err := e.s.GetLock(ctx, "user:temp")
		ok(t, err, "GetLock before expiry")
		e.clock.Advance(1)
		_, err = e.s.GetLock(ctx, "user:temp")
		isNotFound(t, err, "GetLock at expiry")
		// A lock without expiry is lifted only by an admin.
		e.clock.Advance(10 * 365 * 24 * hour)
		_, err = e.s.GetLock(ctx, "user:perm")
		ok(t, err, "GetLock(no expiry, 10 years later)")
		all, err := e.s.ListLocks(ctx)
		ok(t, err, "ListLocks")
		if len(all) != 1 || all[0].Subject != "user:perm" {
			t.Fatalf("ListLocks = %+v, want only the permanent lock", all)
		}
	})
}

func testEphemeral(t *testing.T, h Harness) {
	t.Run("put get take delete", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		_, err := e.s.GetEphemeral(ctx, "k")
		isNotFound(t, err, "GetEphemeral(missing)")
		_, err = e.s.TakeEphemeral(ctx, "k")
		isNotFound(t, err, "TakeEphemeral(missing)")
		ok(t, e.s.PutEphemeral(ctx, "k", []byte("v1"), hour), "PutEphemeral")
		ok(t, e.s.PutEphemeral(ctx, "k", []byte("v2\x00"), hour), "PutEphemeral(overwrite)")
		for range 2 { // Get does not consume.
			got, err := e.s.GetEphemeral(ctx, "k")
			ok(t, err, "GetEphemeral")
			if string(got) != "v2\x00" {
				t.Fatalf("GetEphemeral = %q", got)
			}
		}
		got, err := e.s.TakeEphemeral(ctx, "k")
		ok(t, err, "TakeEphemeral")
		if string(got) != "v2\x00" {
			t.Fatalf("TakeEphemeral = %q", got)
		}
		_, err = e.s.TakeEphemeral(ctx, "k")
		isNotFound(t, err, "TakeEphemeral(taken)")
		_, err = e.s.GetEphemeral(ctx, "k")
		isNotFound(t, err, "GetEphemeral(taken)")

		ok(t, e.s.PutEphemeral(ctx, "d", nil, hour), "PutEphemeral(empty)")
		got, err = e.s.GetEphemeral(ctx, "d")
		ok(t, err, "GetEphemeral(empty value)")
		if len(got) != 0 {
			t.Fatalf("GetEphemeral(empty) = %q", got)
		}
		for range 2 {
			ok(t, e.s.DeleteEphemeral(ctx, "d"), "DeleteEphemeral")
		}
		_, err = e.s.GetEphemeral(ctx, "d")
		isNotFound(t, err, "GetEphemeral(deleted)")
	})
	t.Run("expiry", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		ttl := e.ttlFor(5 * time.Minute)
		ok(t, e.s.PutEphemeral(ctx, "g", []byte("x"), ttl), "PutEphemeral")
		ok(t, e.s.PutEphemeral(ctx, "t", []byte("x"), ttl), "PutEphemeral")
		// Wait for both: with server-side TTLs "t", written a moment after
		// "g", may still live when "g" is already gone.
		e.expire(ttl, "ephemeral expiry", func() bool {
			_, errG := e.s.GetEphemeral(ctx, "g")
			_, errT := e.s.GetEphemeral(ctx, "t")
			return errors.Is(errG, store.ErrNotFound) && errors.Is(errT, store.ErrNotFound)
		})
		_, err := e.s.TakeEphemeral(ctx, "t")
		isNotFound(t, err, "TakeEphemeral(expired)")
	})
}

func testUsers(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ctx := bg(t)
	_, err := e.s.GetUser(ctx, "u1")
	isNotFound(t, err, "GetUser(missing)")
	users, err := e.s.ListUsers(ctx)
	ok(t, err, "ListUsers(empty)")
	if len(users) != 0 {
		t.Fatalf("ListUsers(empty) = %v", users)
	}
	ok(t, e.s.PutUser(ctx, "u1", []byte(`{"v":1}`)), "PutUser")
	ok(t, e.s.PutUser(ctx, "u1", []byte(`{"v":2}`)), "PutUser(overwrite)")
	ok(t, e.s.PutUser(ctx, "u2", []byte(`{}`)), "PutUser")
	got, err := e.s.GetUser(ctx, "u1")
	ok(t, err, "GetUser")
	if string(got) != `{"v":2}` {
		t.Fatalf("GetUser = %s", got)
	}
	users, err = e.s.ListUsers(ctx)
	ok(t, err, "ListUsers")
	if len(users) != 2 || !bytes.Equal(users["u1"], []byte(`{"v":2}`)) || !bytes.Equal(users["u2"], []byte(`{}`)) {
		t.Fatalf("ListUsers = %q", users)
	}
	for range 2 {
		ok(t, e.s.DeleteUser(ctx, "u1"), "DeleteUser")
	}
	_, err = e.s.GetUser(ctx, "u1")
	isNotFound(t, err, "GetUser(deleted)")
	users, err = e.s.ListUsers(ctx)
	ok(t, err, "ListUsers")
	if keys := slices.Sorted(maps.Keys(users)); !slices.Equal(keys, []string{"u2"}) {
		t.Fatalf("ListUsers after delete = %q", keys)
	}
}
