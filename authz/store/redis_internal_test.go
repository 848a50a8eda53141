package store

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedis opens a store on a fresh prefix with a unique client name.
func testRedis(t *testing.T, opts RedisOptions) (*Redis, *redis.Client) {
	t.Helper()
	admin := RedisTestAdmin(t)
	if opts.ClientName == "" {
		opts.ClientName = RedisTestName()
	}
	r, err := OpenRedis(t.Context(), RedisConfig{Addr: RedisTestAddr(), KeyPrefix: RedisTestPrefix(t, admin)}, opts)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r, admin
}

// TestRedisClosedPortFailsClosed: a store whose server is gone answers
// every method with ErrUnavailable (never "not found", "not locked", "code
// unused"). Each call is listed here rather than taken from storetest,
// which this package cannot import.
func TestRedisClosedPortFailsClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	r := newRedis(RedisConfig{Addr: addr}, RedisOptions{})
	t.Cleanup(func() { _ = r.Close() })
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	calls := map[string]func() error{
		"Ping":                func() error { return r.Ping(ctx) },
		"PutUser":             func() error { return r.PutUser(ctx, "u", nil) },
		"GetUser":             func() error { _, err := r.GetUser(ctx, "u"); return err },
		"ListUsers":           func() error { _, err := r.ListUsers(ctx); return err },
		"DeleteUser":          func() error { return r.DeleteUser(ctx, "u") },
		"PutSession":          func() error { return r.PutSession(ctx, Session{ID: "s", UserID: "u", ExpiresAt: exp}) },
		"GetSession":          func() error { _, err := r.GetSession(ctx, "s"); return err },
		"DeleteSession":       func() error { return r.DeleteSession(ctx, "s") },
		"ListSessions":        func() error { _, err := r.ListSessions(ctx, ""); return err },
		"GetEnrolment":        func() error { _, err := r.GetEnrolment(ctx, "u"); return err },
		"PutEnrolment":        func() error { return r.PutEnrolment(ctx, "u", nil) },
		"DeleteEnrolment":     func() error { return r.DeleteEnrolment(ctx, "u") },
		"ListEnrolled":        func() error { _, err := r.ListEnrolled(ctx); return err },
		"ClaimStep":           func() error { _, err := r.ClaimStep(ctx, "u", 1, time.Minute); return err },
		"PutRecoveryCodes":    func() error { return r.PutRecoveryCodes(ctx, "u", []string{"h"}) },
		"ConsumeRecoveryCode": func() error { _, err := r.ConsumeRecoveryCode(ctx, "u", "h"); return err },
		"RecoveryCodesLeft":   func() error { _, err := r.RecoveryCodesLeft(ctx, "u"); return err },
		"Incr":                func() error { _, err := r.Incr(ctx, "c", 1, time.Minute); return err },
		"Count":               func() error { _, err := r.Count(ctx, "c"); return err },
		"PutLock":             func() error { return r.PutLock(ctx, Lock{Subject: "s"}) },
		"GetLock":             func() error { _, err := r.GetLock(ctx, "s"); return err },
		"DeleteLock":          func() error { return r.DeleteLock(ctx, "s") },
		"ListLocks":           func() error { _, err := r.ListLocks(ctx); return err },
		"PutEphemeral":        func() error { return r.PutEphemeral(ctx, "k", nil, time.Minute) },
		"GetEphemeral":        func() error { _, err := r.GetEphemeral(ctx, "k"); return err },
		"TakeEphemeral":       func() error { _, err := r.TakeEphemeral(ctx, "k"); return err },
		"DeleteEphemeral":     func() error { return r.DeleteEphemeral(ctx, "k") },
		"PutPresence":         func() error { return r.PutPresence(ctx, "k", "p", nil, time.Minute) },
		"DeletePresence":      func() error { return r.DeletePresence(ctx, "k", "p") },
		"ListPresence":        func() error { _, err := r.ListPresence(ctx, "k"); return err },
		"PutRecord":           func() error { return r.PutRecord(ctx, "k", "r", nil) },
		"CreateRecord":        func() error { _, err := r.CreateRecord(ctx, "k", "r", nil); return err },
		"GetRecord":           func() error { _, err := r.GetRecord(ctx, "k", "r"); return err },
		"SwapRecord":          func() error { _, err := r.SwapRecord(ctx, "k", "r", nil, []byte("v")); return err },
		"DeleteRecord":        func() error { return r.DeleteRecord(ctx, "k", "r") },
		"ListRecords":         func() error { _, err := r.ListRecords(ctx, "k"); return err },
		"Publish":             func() error { return r.Publish(ctx, Event{Kind: EventLocked, Subject: "s"}) },
		"Subscribe":           func() error { _, err := r.Subscribe(ctx); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
				t.Fatalf("%s = %v, want ErrUnavailable", name, err)
			}
		})
	}
}

// TestRedisIncrKeepsWindow: only the first increment sets the TTL.
func TestRedisIncrKeepsWindow(t *testing.T) {
	r, admin := testRedis(t, RedisOptions{})
	ctx := t.Context()
	if _, err := r.Incr(ctx, "w", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	key := r.counterKey("w")
	if err := admin.PExpire(ctx, key, 50*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.Incr(ctx, "w", 1, time.Hour); err != nil || n != 2 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	if ttl := admin.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 50*time.Second {
		t.Fatalf("TTL after second Incr = %s, want the first window (≤ 50s) kept", ttl)
	}
	// A counter that lost its TTL gets one back rather than living forever.
	admin.Persist(ctx, key)
	if _, err := r.Incr(ctx, "w", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl := admin.PTTL(ctx, key).Val(); ttl <= 0 {
		t.Fatalf("TTL after Incr on a persistent key = %s", ttl)
	}
}

// TestRedisCorruptRecords: damaged values decode to ErrUnavailable.
func TestRedisCorruptRecords(t *testing.T) {
	r, admin := testRedis(t, RedisOptions{})
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	if err := r.PutSession(ctx, Session{ID: "s", UserID: "u", ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		corrupt func() error
		call    func() error
	}{
		{"session without expiry", func() error { return admin.HDel(ctx, r.sessKey("s"), "e").Err() },
			func() error { _, err := r.GetSession(ctx, "s"); return err }},
		{"session with a bad expiry", func() error { return admin.HSet(ctx, r.sessKey("s"), "e", "tomorrow").Err() },
			func() error { _, err := r.ListSessions(ctx, "u"); return err }},
		{"session without user", func() error { return admin.HDel(ctx, r.sessKey("s"), "u").Err() },
			func() error { _, err := r.ListSessions(ctx, ""); return err }},
		{"lock", func() error { return admin.HSet(ctx, r.locksKey(), "x", "{not a lock").Err() },
			func() error { _, err := r.GetLock(ctx, "x"); return err }},
		{"lock in list", func() error { return nil },
			func() error { _, err := r.ListLocks(ctx); return err }},
		{"counter read", func() error { return admin.Set(ctx, r.counterKey("c"), "many", 0).Err() },
			func() error { _, err := r.Count(ctx, "c"); return err }},
		{"counter increment", func() error { return nil },
			func() error { _, err := r.Incr(ctx, "c", 1, time.Minute); return err }},
		{"presence of the wrong type", func() error { return admin.Set(ctx, r.presenceKey("k"), "x", 0).Err() },
			func() error { return r.PutPresence(ctx, "k", "p", nil, time.Minute) }},
		{"presence expiries of the wrong type", func() error { return admin.Set(ctx, r.presenceExpKey("k"), "x", 0).Err() },
			func() error { _, err := r.ListPresence(ctx, "k"); return err }},
		{"records of the wrong type", func() error { return admin.Set(ctx, r.recordsKey("k"), "x", 0).Err() },
			func() error { _, err := r.GetRecord(ctx, "k", "r"); return err }},
		{"records listing of the wrong type", func() error { return nil },
			func() error { _, err := r.ListRecords(ctx, "k"); return err }},
		{"record swap on the wrong type", func() error { return nil },
			func() error { _, err := r.SwapRecord(ctx, "k", "r", nil, nil); return err }},
		{"record create on the wrong type", func() error { return nil },
			func() error { _, err := r.CreateRecord(ctx, "k", "r", nil); return err }},
		{"recovery codes of the wrong type", func() error { return admin.Set(ctx, r.recoveryKey("u"), "x", 0).Err() },
			func() error { _, err := r.ConsumeRecoveryCode(ctx, "u", "h"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.corrupt(); err != nil {
				t.Fatal(err)
			}
			if err := tc.call(); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
				t.Fatalf("got %v, want ErrUnavailable", err)
			}
		})
	}
}

// TestRedisSessionIndexPruned: index entries of sessions the server
// expired are dropped when listing.
func TestRedisSessionIndexPruned(t *testing.T) {
	r, admin := testRedis(t, RedisOptions{})
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	for _, id := range []string{"a", "b"} {
		if err := r.PutSession(ctx, Session{ID: id, UserID: "u", ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	admin.Del(ctx, r.sessKey("a")) // as if its TTL ran out
	for _, user := range []string{"u", ""} {
		ss, err := r.ListSessions(ctx, user)
		if err != nil || len(ss) != 1 || ss[0].ID != "b" {
			t.Fatalf("ListSessions(%q) = %+v, %v", user, ss, err)
		}
	}
	for _, idx := range []string{r.userIndexKey("u"), r.allIndexKey()} {
		if ids := admin.ZRange(ctx, idx, 0, -1).Val(); len(ids) != 1 || ids[0] != "b" {
			t.Fatalf("index %s = %q after listing, want [b]", idx, ids)
		}
		if ttl := admin.PTTL(ctx, idx).Val(); ttl <= time.Hour {
			t.Fatalf("index %s TTL = %s, want the longest session plus the grace", idx, ttl)
		}
	}
}

// TestRedisPresencePruned: listing removes expired entries from both the
// hash and the expiry index in the same step, and both keys expire with
// their longest-lived entry so an abandoned kind leaves nothing behind.
func TestRedisPresencePruned(t *testing.T) {
	r, admin := testRedis(t, RedisOptions{})
	ctx := t.Context()
	if err := r.PutPresence(ctx, "k", "live", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := r.PutPresence(ctx, "k", "dead", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// As if "dead" had expired (its instance crashed an hour ago).
	if err := admin.ZAdd(ctx, r.presenceExpKey("k"), redis.Z{Score: 1, Member: "dead"}).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := r.ListPresence(ctx, "k")
	if err != nil || len(got) != 1 || string(got["live"]) != "v" {
		t.Fatalf("ListPresence = %q, %v; want only live", got, err)
	}
	if ids := admin.HKeys(ctx, r.presenceKey("k")).Val(); len(ids) != 1 || ids[0] != "live" {
		t.Fatalf("presence hash = %q after listing, want [live]", ids)
	}
	if ids := admin.ZRange(ctx, r.presenceExpKey("k"), 0, -1).Val(); len(ids) != 1 || ids[0] != "live" {
		t.Fatalf("presence expiries = %q after listing, want [live]", ids)
	}
	for _, k := range []string{r.presenceKey("k"), r.presenceExpKey("k")} {
		if ttl := admin.PTTL(ctx, k).Val(); ttl <= 30*time.Minute || ttl > time.Hour {
			t.Fatalf("key %s TTL = %s, want the longest entry's hour", k, ttl)
		}
	}
}

func recvKind(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("feed closed")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no event within 15s")
	}
	return Event{}
}

// TestRedisFeedResync: a message that does not decode and a dropped
// pub/sub connection both make subscribers resync; after the reconnect,
// events flow again.
func TestRedisFeedResync(t *testing.T) {
	name := RedisTestName()
	r, admin := testRedis(t, RedisOptions{ClientName: name})
	ctx := t.Context()
	ch, err := r.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := recvKind(t, ch); ev.Kind != EventResync {
		t.Fatalf("first event = %+v", ev)
	}
	for _, payload := range []string{"{not json", `{"kind":""}`, strings.Repeat("x", maxEventBytes+1)} {
		if err := admin.Publish(ctx, r.feedChan, payload).Err(); err != nil {
			t.Fatal(err)
		}
		if ev := recvKind(t, ch); ev.Kind != EventResync {
			t.Fatalf("after undecodable payload: %+v, want resync", ev)
		}
	}

	// Kill our pub/sub connection (found by its client name) on the server.
	killed := 0
	sc := bufio.NewScanner(strings.NewReader(admin.ClientList(ctx).Val()))
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " cmd=subscribe") {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatal(err)
			}
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("found %d pub/sub connections named %s, want 1", killed, name)
	}
	if ev := recvKind(t, ch); ev.Kind != EventResync {
		t.Fatalf("after the connection dropped: %+v, want resync", ev)
	}
	// Publish until the re-subscribed feed delivers (the reconnect is
	// asynchronous; the deadline only stops a hung test).
	want := Event{Kind: EventSessionRevoked, Subject: "after-reconnect"}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := r.Publish(ctx, want); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-ch:
			if ev == want {
				return
			}
			if ev.Kind != EventResync {
				t.Fatalf("unexpected event %+v", ev)
			}
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no event delivered after the reconnect")
		}
	}
}

// TestRedisKeyLayout: hostile IDs (glob characters, separators, NUL)
// each get their own keys under the prefix, no more, no fewer.
func TestRedisKeyLayout(t *testing.T) {
	r, admin := testRedis(t, RedisOptions{})
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for _, id := range []string{"*", "../x", "\x00", "a:b", "}{"} {
		_ = r.PutSession(ctx, Session{ID: id, UserID: id, ExpiresAt: exp})
		_, _ = r.ClaimStep(ctx, id, 1, time.Minute)
		_ = r.PutRecoveryCodes(ctx, id, []string{id})
		_, _ = r.Incr(ctx, id, 1, time.Minute)
		_ = r.PutEphemeral(ctx, id, nil, time.Minute)
		_ = r.PutUser(ctx, id, nil)
		_ = r.PutEnrolment(ctx, id, nil)
		_ = r.PutLock(ctx, Lock{Subject: id})
		_ = r.PutPresence(ctx, id, id, nil, time.Minute)
		_ = r.PutRecord(ctx, "kind", id, nil)
	}
	var ours int64
	iter := admin.Scan(ctx, 0, r.prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		ours++
	}
	// 5 IDs × (session, user index, step, codes, counter, ephemeral,
	// presence hash and expiries) plus the global index, users,
	// enrolments, locks and one kind's records hashes.
	if want := int64(5*8 + 5); ours != want {
		t.Fatalf("%d keys under the prefix, want %d", ours, want)
	}
}

// TestRedisRecordsNeverExpire: durable records live in a hash without a
// TTL, whatever other namespaces of the same store do.
func TestRedisRecordsNeverExpire(t *testing.T) {
	r, admin := testRedis(t, RedisOptions{})
	ctx := t.Context()
	if err := r.PutRecord(ctx, "access-grant", "g1", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateRecord(ctx, "access-grant", "g2", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SwapRecord(ctx, "access-grant", "g1", []byte("v"), []byte("w")); err != nil {
		t.Fatal(err)
	}
	if err := r.PutPresence(ctx, "access-grant", "p", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	ttl, err := admin.PTTL(ctx, r.recordsKey("access-grant")).Result()
	if err != nil {
		t.Fatal(err)
	}
	// -1 is "exists without a TTL" (-2 would be "missing").
	if ttl != -1 {
		t.Fatalf("records hash PTTL = %d, want -1 (no expiry)", ttl)
	}
}
