package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// keyedCalls calls every method that takes a key, ID or subject with k in
// that position (one call per position) and valid other arguments.
func keyedCalls(k string, exp time.Time) []Method {
	m := func(name string, call func(ctx context.Context, s store.Store) error) Method {
		return Method{Name: name, Call: call}
	}
	return []Method{
		m("PutUser", func(ctx context.Context, s store.Store) error { return s.PutUser(ctx, k, nil) }),
		m("GetUser", func(ctx context.Context, s store.Store) error { _, err := s.GetUser(ctx, k); return err }),
		m("DeleteUser", func(ctx context.Context, s store.Store) error { return s.DeleteUser(ctx, k) }),
		m("PutSession(ID)", func(ctx context.Context, s store.Store) error {
			return s.PutSession(ctx, store.Session{ID: k, UserID: "u", ExpiresAt: exp})
		}),
		m("PutSession(UserID)", func(ctx context.Context, s store.Store) error {
			return s.PutSession(ctx, store.Session{ID: "s", UserID: k, ExpiresAt: exp})
		}),
		m("GetSession", func(ctx context.Context, s store.Store) error { _, err := s.GetSession(ctx, k); return err }),
		m("DeleteSession", func(ctx context.Context, s store.Store) error { return s.DeleteSession(ctx, k) }),
		m("GetEnrolment", func(ctx context.Context, s store.Store) error { _, err := s.GetEnrolment(ctx, k); return err }),
		m("PutEnrolment", func(ctx context.Context, s store.Store) error { return s.PutEnrolment(ctx, k, []byte("b")) }),
		m("DeleteEnrolment", func(ctx context.Context, s store.Store) error { return s.DeleteEnrolment(ctx, k) }),
		m("ClaimStep", func(ctx context.Context, s store.Store) error {
			_, err := s.ClaimStep(ctx, k, 1, time.Hour)
			return err
		}),
		m("PutRecoveryCodes(user)", func(ctx context.Context, s store.Store) error {
			return s.PutRecoveryCodes(ctx, k, []string{"h"})
		}),
		m("PutRecoveryCodes(hash)", func(ctx context.Context, s store.Store) error {
			return s.PutRecoveryCodes(ctx, "u", []string{"h", k})
		}),
		m("ConsumeRecoveryCode(user)", func(ctx context.Context, s store.Store) error {
			_, err := s.ConsumeRecoveryCode(ctx, k, "h")
			return err
		}),
		m("ConsumeRecoveryCode(hash)", func(ctx context.Context, s store.Store) error {
			_, err := s.ConsumeRecoveryCode(ctx, "u", k)
			return err
		}),
		m("RecoveryCodesLeft", func(ctx context.Context, s store.Store) error { _, err := s.RecoveryCodesLeft(ctx, k); return err }),
		m("Incr", func(ctx context.Context, s store.Store) error { _, err := s.Incr(ctx, k, 1, time.Hour); return err }),
		m("Count", func(ctx context.Context, s store.Store) error { _, err := s.Count(ctx, k); return err }),
		m("PutLock", func(ctx context.Context, s store.Store) error { return s.PutLock(ctx, store.Lock{Subject: k}) }),
		m("AddLock", func(ctx context.Context, s store.Store) error {
			_, err := s.AddLock(ctx, store.Lock{Subject: k})
			return err
		}),
		m("GetLock", func(ctx context.Context, s store.Store) error { _, err := s.GetLock(ctx, k); return err }),
		m("DeleteLock", func(ctx context.Context, s store.Store) error { return s.DeleteLock(ctx, k) }),
		m("PutEphemeral", func(ctx context.Context, s store.Store) error {
			return s.PutEphemeral(ctx, k, []byte("v"), time.Hour)
		}),
		m("GetEphemeral", func(ctx context.Context, s store.Store) error { _, err := s.GetEphemeral(ctx, k); return err }),
		m("TakeEphemeral", func(ctx context.Context, s store.Store) error { _, err := s.TakeEphemeral(ctx, k); return err }),
		m("DeleteEphemeral", func(ctx context.Context, s store.Store) error { return s.DeleteEphemeral(ctx, k) }),
		m("PutPresence", func(ctx context.Context, s store.Store) error {
			return s.PutPresence(ctx, "kind", k, []byte("v"), time.Hour)
		}),
		m("DeletePresence", func(ctx context.Context, s store.Store) error { return s.DeletePresence(ctx, "kind", k) }),
		m("PutRecord", func(ctx context.Context, s store.Store) error { return s.PutRecord(ctx, "kind", k, []byte("v")) }),
		m("CreateRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.CreateRecord(ctx, "kind", k, []byte("v"))
			return err
		}),
		m("GetRecord", func(ctx context.Context, s store.Store) error { _, err := s.GetRecord(ctx, "kind", k); return err }),
		m("SwapRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.SwapRecord(ctx, "kind", k, []byte("v"), []byte("w"))
			return err
		}),
		m("DeleteRecord", func(ctx context.Context, s store.Store) error { return s.DeleteRecord(ctx, "kind", k) }),
	}
}

// trickyIDs are keys that break naive "namespace:" + id concatenation, glob
// patterns, C strings or length assumptions.
var trickyIDs = []string{
	"a", "a:b", "a:", ":a", ":", "::", "a\x00", "\x00", "a\x00b", "\xff\xfe", "é",
	"*", "a*", "[a]", "?", "\\", "sess:a", "user:a", "portcullis:a", " ", "a b", "\r\n", "%00",
	strings.Repeat("k", 10<<10), strings.Repeat(":", 100),
}

func testHostile(t *testing.T, h Harness) {
	t.Run("empty and oversized keys are refused", func(t *testing.T) {
		e := newEnv(t, h)
		exp := e.clock.Now().Add(hour)
		for _, k := range []struct{ name, key string }{
			{"empty", ""},
			{"oversized", strings.Repeat("x", store.MaxKeyLen+1)},
		} {
			for _, c := range keyedCalls(k.key, exp) {
				t.Run(k.name+"/"+c.Name, func(t *testing.T) {
					isInvalid(t, c.Call(bg(t), e.s), c.Name)
				})
			}
		}
		_, err := e.s.ListSessions(bg(t), strings.Repeat("x", store.MaxKeyLen+1))
		isInvalid(t, err, "ListSessions(oversized user)")
	})
	t.Run("bad values and TTLs are refused", func(t *testing.T) {
		e := newEnv(t, h)
		big := make([]byte, store.MaxValueLen+1)
		exp := e.clock.Now().Add(hour)
		long := strings.Repeat("r", store.MaxKeyLen+1)
		cases := []struct {
			name string
			call func(ctx context.Context) error
		}{
			{"PutUser big", func(ctx context.Context) error { return e.s.PutUser(ctx, "u", big) }},
			{"PutEnrolment big", func(ctx context.Context) error { return e.s.PutEnrolment(ctx, "u", big) }},
			{"PutEphemeral big", func(ctx context.Context) error { return e.s.PutEphemeral(ctx, "k", big, hour) }},
			{"PutSession big", func(ctx context.Context) error {
				return e.s.PutSession(ctx, store.Session{ID: "s", UserID: "u", ExpiresAt: exp, Data: big})
			}},
			{"PutSession no expiry", func(ctx context.Context) error {
				return e.s.PutSession(ctx, store.Session{ID: "s", UserID: "u"})
			}},
			{"PutLock long reason", func(ctx context.Context) error {
				return e.s.PutLock(ctx, store.Lock{Subject: "user:u", Reason: long})
			}},
			{"PutLock long detail", func(ctx context.Context) error {
				return e.s.PutLock(ctx, store.Lock{Subject: "user:u", Detail: long})
			}},
			{"ClaimStep zero TTL", func(ctx context.Context) error { _, err := e.s.ClaimStep(ctx, "u", 1, 0); return err }},
			{"ClaimStep negative TTL", func(ctx context.Context) error { _, err := e.s.ClaimStep(ctx, "u", 1, -time.Second); return err }},
			{"Incr zero window", func(ctx context.Context) error { _, err := e.s.Incr(ctx, "c", 1, 0); return err }},
			{"Incr negative window", func(ctx context.Context) error { _, err := e.s.Incr(ctx, "c", 1, -1); return err }},
			{"PutEphemeral zero TTL", func(ctx context.Context) error { return e.s.PutEphemeral(ctx, "k", nil, 0) }},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { isInvalid(t, tc.call(bg(t)), tc.name) })
		}
		// Nothing was written by a refused call.
		_, err := e.s.GetSession(bg(t), "s")
		isNotFound(t, err, "GetSession after refused puts")
		if first, err := e.s.ClaimStep(bg(t), "u", 1, hour); err != nil || !first {
			t.Fatalf("ClaimStep after refused claims = %v, %v; want true", first, err)
		}
	})
	t.Run("tricky keys round-trip", func(t *testing.T) {
		e := newEnv(t, h)
		exp := e.clock.Now().Add(hour)
		for i, k := range trickyIDs {
			name := fmt.Sprintf("%d:%.20q", i, k)
			for _, c := range keyedCalls(k, exp) {
				if err := c.Call(bg(t), e.s); err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("%s %s: %v", name, c.Name, err)
				}
			}
		}
	})
	t.Run("no collisions across IDs or namespaces", func(t *testing.T) {
		e := newEnv(t, h)
		testNoCollisions(t, e)
	})
	t.Run("step keys are injective", func(t *testing.T) {
		e := newEnv(t, h)
		// Pairs that collide under "user"+"step" or "user:step" encodings.
		pairs := []struct {
			user string
			step uint64
		}{
			{"a1", 2}, {"a", 12}, {"a:1", 2}, {"a", 1}, {"a:1:2", 3}, {"a:1", 23},
			{"a\x00", 1}, {"a", 256}, {"a\x00\x00\x00\x00\x00\x00\x00\x01", 1},
		}
		for _, p := range pairs {
			first, err := e.s.ClaimStep(bg(t), p.user, p.step, hour)
			ok(t, err, "ClaimStep")
			if !first {
				t.Fatalf("ClaimStep(%q, %d) collided with an earlier claim", p.user, p.step)
			}
		}
	})
}

func testNoCollisions(t *testing.T, e *env) {
	ctx := bg(t)
	exp := e.clock.Now().Add(hour)
	val := func(ns, id string) []byte { return []byte(ns + "=" + fmt.Sprint(len(id)) + id) }
	for _, id := range trickyIDs {
		ok(t, e.s.PutUser(ctx, id, val("user", id)), "PutUser")
		ok(t, e.s.PutEnrolment(ctx, id, val("enrol", id)), "PutEnrolment")
		ok(t, e.s.PutEphemeral(ctx, id, val("eph", id), hour), "PutEphemeral")
		ok(t, e.s.PutPresence(ctx, "eph", id, val("pres", id), hour), "PutPresence")
		ok(t, e.s.PutRecord(ctx, "eph", id, val("rec", id)), "PutRecord")
		ok(t, e.s.PutSession(ctx, store.Session{ID: id, UserID: id, ExpiresAt: exp, Data: val("sess", id)}), "PutSession")
		ok(t, e.s.PutLock(ctx, store.Lock{Subject: id, Reason: string(val("lock", id))}), "PutLock")
		ok(t, e.s.PutRecoveryCodes(ctx, id, []string{string(val("rc", id))}), "PutRecoveryCodes")
		_, err := e.s.Incr(ctx, id, int64(len(id)+1), hour)
		ok(t, err, "Incr")
	}
	presence := listPresence(t, e.s, "eph")
	if len(presence) != len(trickyIDs) {
		t.Fatalf("ListPresence has %d entries, want %d", len(presence), len(trickyIDs))
	}
	records := listRecords(t, e.s, "eph")
	if len(records) != len(trickyIDs) {
		t.Fatalf("ListRecords has %d entries, want %d", len(records), len(trickyIDs))
	}
	for _, id := range trickyIDs {
		what := fmt.Sprintf("id %.20q", id)
		get := func(ns string, v []byte, err error) {
			t.Helper()
			ok(t, err, what+" "+ns)
			if string(v) != string(val(ns, id)) {
				t.Fatalf("%s %s: got %.40q (another record)", what, ns, v)
			}
		}
		v, err := e.s.GetUser(ctx, id)
		get("user", v, err)
		v, err = e.s.GetEnrolment(ctx, id)
		get("enrol", v, err)
		v, err = e.s.GetEphemeral(ctx, id)
		get("eph", v, err)
		get("pres", presence[id], nil)
		get("rec", records[id], nil)
		v, err = e.s.GetRecord(ctx, "eph", id)
		get("rec", v, err)
		s, err := e.s.GetSession(ctx, id)
		get("sess", s.Data, err)
		l, err := e.s.GetLock(ctx, id)
		get("lock", []byte(l.Reason), err)
		if n, err := e.s.RecoveryCodesLeft(ctx, id); err != nil || n != 1 {
			t.Fatalf("%s RecoveryCodesLeft = %d, %v", what, n, err)
		}
		if n, err := e.s.Count(ctx, id); err != nil || n != int64(len(id)+1) {
			t.Fatalf("%s Count = %d, %v", what, n, err)
		}
		// Each user ID lists exactly its own session.
		wantIDs(t, listIDs(t, e.s, id), id)
	}
	all := listIDs(t, e.s, "")
	if len(all) != len(trickyIDs) {
		t.Fatalf("ListSessions(all) has %d sessions, want %d", len(all), len(trickyIDs))
	}
	users, err := e.s.ListUsers(ctx)
	ok(t, err, "ListUsers")
	enrolled, err := e.s.ListEnrolled(ctx)
	ok(t, err, "ListEnrolled")
	locks, err := e.s.ListLocks(ctx)
	ok(t, err, "ListLocks")
	if len(users) != len(trickyIDs) || len(enrolled) != len(trickyIDs) || len(locks) != len(trickyIDs) {
		t.Fatalf("listings: %d users, %d enrolled, %d locks; want %d each", len(users), len(enrolled), len(locks), len(trickyIDs))
	}
	// A counter named like another namespace's record stays a counter.
	first, err := e.s.ClaimStep(ctx, "u", 1, hour)
	ok(t, err, "ClaimStep")
	if !first {
		t.Fatal("ClaimStep collided with a counter or user record")
	}
}
