package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// recordKind is the kind most record tests use.
const recordKind = "access-grant"

// listRecords lists kind on s, failing the test on error or a nil map.
func listRecords(t *testing.T, s store.Store, kind string) map[string][]byte {
	t.Helper()
	m, err := s.ListRecords(bg(t), kind)
	ok(t, err, "ListRecords("+kind+")")
	if m == nil {
		t.Fatalf("ListRecords(%q) = nil map, want an empty one", kind)
	}
	return m
}

// wantRecord asserts that (kind, id) holds exactly want.
func wantRecord(t *testing.T, s store.Store, kind, id string, want []byte, what string) {
	t.Helper()
	got, err := s.GetRecord(bg(t), kind, id)
	ok(t, err, what)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %.60q, want %.60q", what, got, want)
	}
}

func testRecords(t *testing.T, h Harness) {
	t.Run("put get delete", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		_, err := e.s.GetRecord(ctx, recordKind, "g1")
		isNotFound(t, err, "GetRecord(missing)")
		ok(t, e.s.DeleteRecord(ctx, recordKind, "never-existed"), "DeleteRecord(missing)")
		ok(t, e.s.PutRecord(ctx, recordKind, "g1", []byte("old")), "PutRecord")
		ok(t, e.s.PutRecord(ctx, recordKind, "g1", []byte("new\x00\xff")), "PutRecord(overwrite)")
		wantRecord(t, e.s, recordKind, "g1", []byte("new\x00\xff"), "GetRecord after overwrite")
		ok(t, e.s.PutRecord(ctx, recordKind, "empty", nil), "PutRecord(nil data)")
		wantRecord(t, e.s, recordKind, "empty", nil, "GetRecord(empty data)")
		samePresence(t, listRecords(t, e.s, recordKind), map[string][]byte{
			"g1": []byte("new\x00\xff"), "empty": {},
		}, "after puts")
		for range 2 {
			ok(t, e.s.DeleteRecord(ctx, recordKind, "g1"), "DeleteRecord")
		}
		_, err = e.s.GetRecord(ctx, recordKind, "g1")
		isNotFound(t, err, "GetRecord(deleted)")
		samePresence(t, listRecords(t, e.s, recordKind), map[string][]byte{"empty": {}}, "after delete")
		// A value of exactly the limit is accepted.
		largest := bytes.Repeat([]byte{0xa5}, store.MaxValueLen)
		ok(t, e.s.PutRecord(ctx, recordKind, "max", largest), "PutRecord(MaxValueLen)")
		wantRecord(t, e.s, recordKind, "max", largest, "GetRecord(MaxValueLen)")
	})
	t.Run("list of an empty kind", func(t *testing.T) {
		e := newEnv(t, h)
		samePresence(t, listRecords(t, e.s, "review"), map[string][]byte{}, "never used kind")
		ok(t, e.s.PutRecord(bg(t), "review", "r1", []byte("x")), "PutRecord")
		ok(t, e.s.DeleteRecord(bg(t), "review", "r1"), "DeleteRecord")
		samePresence(t, listRecords(t, e.s, "review"), map[string][]byte{}, "kind emptied by delete")
	})
	t.Run("create if absent", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		create := func(id, data string) bool {
			t.Helper()
			created, err := e.s.CreateRecord(ctx, recordKind, id, []byte(data))
			ok(t, err, "CreateRecord")
			return created
		}
		if !create("r1", "first") {
			t.Fatal("CreateRecord of an absent record reported false")
		}
		if create("r1", "second") {
			t.Fatal("CreateRecord over an existing record reported true")
		}
		wantRecord(t, e.s, recordKind, "r1", []byte("first"), "GetRecord after refused create")
		ok(t, e.s.PutRecord(ctx, recordKind, "r2", nil), "PutRecord(empty)")
		if create("r2", "x") {
			t.Fatal("CreateRecord over an existing empty record reported true")
		}
		ok(t, e.s.DeleteRecord(ctx, recordKind, "r1"), "DeleteRecord")
		if !create("r1", "again") {
			t.Fatal("CreateRecord after delete reported false")
		}
		wantRecord(t, e.s, recordKind, "r1", []byte("again"), "GetRecord after re-create")
	})
	t.Run("create races have one winner", func(t *testing.T) {
		e := newEnv(t, h)
		var (
			mu     sync.Mutex
			n      int
			winner []string
		)
		wins := race(t, e, func(s store.Store) (bool, error) {
			mu.Lock()
			n++
			data := fmt.Sprintf("racer-%d", n)
			mu.Unlock()
			created, err := s.CreateRecord(bg(t), "access-request", "req-1", []byte(data))
			if created {
				mu.Lock()
				winner = append(winner, data)
				mu.Unlock()
			}
			return created, err
		})
		if wins != 1 || len(winner) != 1 {
			t.Fatalf("%d of %d concurrent CreateRecord calls won, want exactly 1", wins, racers)
		}
		wantRecord(t, e.s, "access-request", "req-1", []byte(winner[0]), "GetRecord after race")
	})
	t.Run("swap needs the exact old bytes", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		cur := []byte("v1\x00\xff")
		ok(t, e.s.PutRecord(ctx, recordKind, "g", cur), "PutRecord")
		for _, tc := range []struct {
			name string
			old  []byte
		}{
			{"different", []byte("v2\x00\xff")},
			{"prefix", []byte("v1\x00")},
			{"longer", []byte("v1\x00\xff\x00")},
			{"empty", nil},
			{"case", []byte("V1\x00\xff")},
			{"last byte", []byte("v1\x00\xfe")},
		} {
			swapped, err := e.s.SwapRecord(ctx, recordKind, "g", tc.old, []byte("stolen"))
			ok(t, err, "SwapRecord("+tc.name+")")
			if swapped {
				t.Fatalf("SwapRecord with a %s old value swapped", tc.name)
			}
			wantRecord(t, e.s, recordKind, "g", cur, "GetRecord after refused swap ("+tc.name+")")
		}
		swapped, err := e.s.SwapRecord(ctx, recordKind, "g", cur, []byte("v2"))
		ok(t, err, "SwapRecord(exact)")
		if !swapped {
			t.Fatal("SwapRecord with the exact old value did not swap")
		}
		wantRecord(t, e.s, recordKind, "g", []byte("v2"), "GetRecord after swap")
		// A stale old value no longer matches.
		if swapped, err := e.s.SwapRecord(ctx, recordKind, "g", cur, []byte("v3")); err != nil || swapped {
			t.Fatalf("SwapRecord with a stale old value = %v, %v; want false", swapped, err)
		}
		// An empty (non-nil) new value is stored, not a delete; an empty
		// record is swapped by an empty old value.
		if swapped, err := e.s.SwapRecord(ctx, recordKind, "g", []byte("v2"), []byte{}); err != nil || !swapped {
			t.Fatalf("SwapRecord to empty = %v, %v; want true", swapped, err)
		}
		wantRecord(t, e.s, recordKind, "g", nil, "GetRecord after swap to empty")
		if swapped, err := e.s.SwapRecord(ctx, recordKind, "g", nil, []byte("v4")); err != nil || !swapped {
			t.Fatalf("SwapRecord from empty = %v, %v; want true", swapped, err)
		}
		wantRecord(t, e.s, recordKind, "g", []byte("v4"), "GetRecord after swap from empty")
	})
	t.Run("swap of a missing record", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		swapped, err := e.s.SwapRecord(ctx, recordKind, "missing", nil, []byte("x"))
		isNotFound(t, err, "SwapRecord(missing)")
		if swapped {
			t.Fatal("SwapRecord(missing) reported true")
		}
		ok(t, e.s.PutRecord(ctx, recordKind, "gone", []byte("x")), "PutRecord")
		ok(t, e.s.DeleteRecord(ctx, recordKind, "gone"), "DeleteRecord")
		_, err = e.s.SwapRecord(ctx, recordKind, "gone", []byte("x"), []byte("y"))
		isNotFound(t, err, "SwapRecord(deleted)")
		_, err = e.s.SwapRecord(ctx, recordKind, "gone", []byte("x"), nil)
		isNotFound(t, err, "SwapRecord(deleted, delete)")
		// A failed swap never creates the record.
		samePresence(t, listRecords(t, e.s, recordKind), map[string][]byte{}, "after swaps of missing records")
	})
	t.Run("swap to nil deletes", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		ok(t, e.s.PutRecord(ctx, recordKind, "g", []byte("v")), "PutRecord")
		ok(t, e.s.PutRecord(ctx, recordKind, "other", []byte("v")), "PutRecord")
		if swapped, err := e.s.SwapRecord(ctx, recordKind, "g", []byte("x"), nil); err != nil || swapped {
			t.Fatalf("SwapRecord(mismatch, nil) = %v, %v; want false", swapped, err)
		}
		wantRecord(t, e.s, recordKind, "g", []byte("v"), "GetRecord after refused delete")
		if swapped, err := e.s.SwapRecord(ctx, recordKind, "g", []byte("v"), nil); err != nil || !swapped {
			t.Fatalf("SwapRecord(exact, nil) = %v, %v; want true", swapped, err)
		}
		_, err := e.s.GetRecord(ctx, recordKind, "g")
		isNotFound(t, err, "GetRecord after swap to nil")
		samePresence(t, listRecords(t, e.s, recordKind), map[string][]byte{"other": []byte("v")}, "after swap to nil")
	})
	t.Run("concurrent read-modify-swap loses no update", func(t *testing.T) {
		testNoLostUpdate(t, newEnv(t, h))
	})
	t.Run("kinds are independent namespaces", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		// Kinds that prefix or differ by case from one another.
		kinds := []string{"a", "A", "ab", "a.b", "a-", "a_", "access-grant", "access-request",
			"review", "review-item.c1", "review-item.c10", strings.Repeat("k", store.MaxRecordKindLen)}
		ids := []string{"x", "b", ".b", "shared"}
		for _, k := range kinds {
			for _, id := range ids {
				ok(t, e.s.PutRecord(ctx, k, id, []byte(k+"|"+id)), "PutRecord")
			}
		}
		ok(t, e.s.DeleteRecord(ctx, "a", "shared"), "DeleteRecord")
		if swapped, err := e.s.SwapRecord(ctx, "ab", "x", []byte("ab|x"), []byte("swapped")); err != nil || !swapped {
			t.Fatalf("SwapRecord = %v, %v", swapped, err)
		}
		if created, err := e.s.CreateRecord(ctx, "a.b", "new", []byte("a.b|new")); err != nil || !created {
			t.Fatalf("CreateRecord = %v, %v", created, err)
		}
		for _, k := range kinds {
			want := map[string][]byte{}
			for _, id := range ids {
				want[id] = []byte(k + "|" + id)
			}
			switch k {
			case "a":
				delete(want, "shared")
			case "ab":
				want["x"] = []byte("swapped")
			case "a.b":
				want["new"] = []byte("a.b|new")
			}
			samePresence(t, listRecords(t, e.s, k), want, fmt.Sprintf("kind %.20q", k))
			for id, v := range want {
				wantRecord(t, e.s, k, id, v, fmt.Sprintf("GetRecord(%.20q, %q)", k, id))
			}
		}
		// Records share no namespace with presence entries or users.
		ok(t, e.s.PutPresence(ctx, "review", "p1", []byte("presence"), hour), "PutPresence")
		ok(t, e.s.PutUser(ctx, "shared", []byte("user")), "PutUser")
		_, err := e.s.GetRecord(ctx, "review", "p1")
		isNotFound(t, err, "GetRecord(presence ID)")
		if _, present := listRecords(t, e.s, "review")["p1"]; present {
			t.Fatal("ListRecords lists a presence entry")
		}
		wantRecord(t, e.s, "review", "shared", []byte("review|shared"), "GetRecord next to a user")
	})
	t.Run("hostile IDs round-trip", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		want := map[string][]byte{}
		for i, id := range trickyIDs {
			want[id] = []byte(fmt.Sprintf("%d", i))
			ok(t, e.s.PutRecord(ctx, recordKind, id, want[id]), fmt.Sprintf("PutRecord(%.20q)", id))
		}
		samePresence(t, listRecords(t, e.s, recordKind), want, "hostile IDs")
		for _, id := range trickyIDs[:len(trickyIDs)/2] {
			swapped, err := e.s.SwapRecord(ctx, recordKind, id, want[id], nil)
			if err != nil || !swapped {
				t.Fatalf("SwapRecord(%.20q, nil) = %v, %v", id, swapped, err)
			}
			delete(want, id)
		}
		samePresence(t, listRecords(t, e.s, recordKind), want, "hostile IDs after deletes")
	})
	t.Run("bad arguments are refused", func(t *testing.T) {
		e := newEnv(t, h)
		for _, tc := range badRecordCalls() {
			t.Run(tc.Name, func(t *testing.T) { isInvalid(t, tc.Call(bg(t), e.s), tc.Name) })
		}
		for _, k := range []string{recordKind, "a"} {
			samePresence(t, listRecords(t, e.s, k), map[string][]byte{}, "after refused calls on "+k)
		}
	})
	t.Run("bad arguments are refused before the backend is asked", func(t *testing.T) {
		// On a closed store any backend access fails with ErrUnavailable:
		// a clean ErrInvalid shows the arguments were refused first.
		e := newEnv(t, h)
		ok(t, e.s.Close(), "Close")
		for _, tc := range badRecordCalls() {
			t.Run(tc.Name, func(t *testing.T) {
				err := tc.Call(bg(t), e.s)
				if !errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
					t.Fatalf("%s on a closed store: got %v, want ErrInvalid alone", tc.Name, err)
				}
			})
		}
	})
	t.Run("no expiry", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		ok(t, e.s.PutRecord(ctx, recordKind, "g", []byte("v")), "PutRecord")
		_, err := e.s.CreateRecord(ctx, recordKind, "c", []byte("w"))
		ok(t, err, "CreateRecord")
		// Whatever the injected clock says, a durable record stays.
		e.clock.Advance(100 * 365 * 24 * time.Hour)
		wantRecord(t, e.s, recordKind, "g", []byte("v"), "GetRecord a century later")
		samePresence(t, listRecords(t, e.s, recordKind), map[string][]byte{"g": []byte("v"), "c": []byte("w")}, "a century later")
		if swapped, err := e.s.SwapRecord(ctx, recordKind, "c", []byte("w"), []byte("w2")); err != nil || !swapped {
			t.Fatalf("SwapRecord a century later = %v, %v", swapped, err)
		}
	})
	t.Run("survives reopen", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		want := map[string][]byte{"r1": []byte("one"), "r2": {}, "r3": []byte("\x00\xff")}
		for id, v := range want {
			ok(t, e.s.PutRecord(ctx, "access-request", id, v), "PutRecord")
		}
		if created, err := e.s.CreateRecord(ctx, "review", "c1", []byte("campaign")); err != nil || !created {
			t.Fatalf("CreateRecord = %v, %v", created, err)
		}
		e.reopen()
		samePresence(t, listRecords(t, e.s, "access-request"), want, "after reopen")
		wantRecord(t, e.s, "review", "c1", []byte("campaign"), "GetRecord after reopen")
		if created, err := e.s.CreateRecord(ctx, "review", "c1", []byte("again")); err != nil || created {
			t.Fatalf("CreateRecord after reopen = %v, %v; want false", created, err)
		}
		if swapped, err := e.s.SwapRecord(ctx, "access-request", "r1", []byte("one"), []byte("two")); err != nil || !swapped {
			t.Fatalf("SwapRecord after reopen = %v, %v", swapped, err)
		}
		e.reopen()
		wantRecord(t, e.s, "access-request", "r1", []byte("two"), "GetRecord after second reopen")
	})
	t.Run("many records from two instances", func(t *testing.T) {
		e := newEnv(t, h)
		handles := []store.Store{e.s, e.peer()}
		const n = 200
		want := map[string][]byte{}
		for i := range n {
			want[fmt.Sprintf("r%03d", i)] = []byte(fmt.Sprintf("instance-%d", i%2))
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 10 {
			wg.Go(func() {
				for i := w; i < n; i += 10 {
					id := fmt.Sprintf("r%03d", i)
					errs <- handles[i%2].PutRecord(bg(t), recordKind, id, want[id])
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			ok(t, err, "concurrent PutRecord")
		}
		for i, s := range handles {
			samePresence(t, listRecords(t, s, recordKind), want, fmt.Sprintf("handle %d", i))
		}
		for i := range n / 2 {
			id := fmt.Sprintf("r%03d", i)
			ok(t, handles[1-i%2].DeleteRecord(bg(t), recordKind, id), "DeleteRecord")
			delete(want, id)
		}
		for i, s := range handles {
			samePresence(t, listRecords(t, s, recordKind), want, fmt.Sprintf("handle %d after deletes", i))
		}
	})
}

// testNoLostUpdate runs workers that each append a distinct token to one
// record with Get → change → Swap until their swap succeeds, alternating
// between two instances where the backend has them. Every token must land
// exactly once: a swap that overwrote a concurrent change would lose one.
func testNoLostUpdate(t *testing.T, e *env) {
	const workers = 20
	// Bounds a livelocked loop so a broken swap fails instead of hanging.
	// Each failed swap means another worker's succeeded, so a correct
	// backend needs fewer than workers attempts per worker.
	const maxAttempts = 10 * workers
	handles := []store.Store{e.s, e.peer()}
	ok(t, e.s.PutRecord(bg(t), "access-request", "req", nil), "PutRecord")
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			<-start
			s := handles[w%2]
			token := fmt.Sprintf("<approver-%02d>", w)
			for range maxAttempts {
				cur, err := s.GetRecord(bg(t), "access-request", "req")
				if err != nil {
					errs <- fmt.Errorf("worker %d: GetRecord: %w", w, err)
					return
				}
				next := append(bytes.Clone(cur), token...)
				swapped, err := s.SwapRecord(bg(t), "access-request", "req", cur, next)
				if err != nil {
					errs <- fmt.Errorf("worker %d: SwapRecord: %w", w, err)
					return
				}
				if swapped {
					return
				}
			}
			errs <- fmt.Errorf("worker %d: no successful swap in %d attempts", w, maxAttempts)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		ok(t, err, "read-modify-swap loop")
	}
	got, err := e.s.GetRecord(bg(t), "access-request", "req")
	ok(t, err, "GetRecord")
	for w := range workers {
		token := fmt.Sprintf("<approver-%02d>", w)
		if n := bytes.Count(got, []byte(token)); n != 1 {
			t.Fatalf("token %s appears %d times in %q, want once", token, n, got)
		}
	}
	if want := workers * len("<approver-00>"); len(got) != want {
		t.Fatalf("record holds %d bytes, want %d: %q", len(got), want, got)
	}
}

// badRecordCalls are record calls with one malformed argument each.
func badRecordCalls() []Method {
	big := make([]byte, store.MaxValueLen+1)
	longID := strings.Repeat("x", store.MaxKeyLen+1)
	var out []Method
	for _, k := range []struct{ name, kind string }{
		{"empty kind", ""},
		{"long kind", strings.Repeat("k", store.MaxRecordKindLen+1)},
		{"colon in kind", "access:grant"},
		{"space in kind", "access grant"},
		{"slash in kind", "a/b"},
		{"star in kind", "a*"},
		{"NUL in kind", "a\x00"},
		{"newline in kind", "a\n"},
		{"non-ASCII kind", "é"},
		{"braces in kind", "{a}"},
	} {
		out = append(out, recordCalls(k.name, k.kind, "id", []byte("v"))...)
	}
	for _, id := range []struct{ name, id string }{{"empty ID", ""}, {"long ID", longID}} {
		for _, m := range recordCalls(id.name, recordKind, id.id, []byte("v")) {
			if !strings.HasSuffix(m.Name, "ListRecords") { // takes no ID
				out = append(out, m)
			}
		}
	}
	m := func(name string, call func(ctx context.Context, s store.Store) error) Method {
		return Method{Name: name, Call: call}
	}
	return append(out,
		m("big data/PutRecord", func(ctx context.Context, s store.Store) error { return s.PutRecord(ctx, recordKind, "id", big) }),
		m("big data/CreateRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.CreateRecord(ctx, recordKind, "id", big)
			return err
		}),
		m("big new/SwapRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.SwapRecord(ctx, recordKind, "id", []byte("v"), big)
			return err
		}),
		m("big old/SwapRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.SwapRecord(ctx, recordKind, "id", big, []byte("v"))
			return err
		}),
	)
}

// recordCalls calls every record method with kind, id and data.
func recordCalls(prefix, kind, id string, data []byte) []Method {
	m := func(name string, call func(ctx context.Context, s store.Store) error) Method {
		return Method{Name: prefix + "/" + name, Call: call}
	}
	return []Method{
		m("PutRecord", func(ctx context.Context, s store.Store) error { return s.PutRecord(ctx, kind, id, data) }),
		m("CreateRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.CreateRecord(ctx, kind, id, data)
			return err
		}),
		m("GetRecord", func(ctx context.Context, s store.Store) error { _, err := s.GetRecord(ctx, kind, id); return err }),
		m("SwapRecord", func(ctx context.Context, s store.Store) error {
			_, err := s.SwapRecord(ctx, kind, id, data, []byte("w"))
			return err
		}),
		m("SwapRecord(delete)", func(ctx context.Context, s store.Store) error {
			_, err := s.SwapRecord(ctx, kind, id, data, nil)
			return err
		}),
		m("DeleteRecord", func(ctx context.Context, s store.Store) error { return s.DeleteRecord(ctx, kind, id) }),
		m("ListRecords", func(ctx context.Context, s store.Store) error { _, err := s.ListRecords(ctx, kind); return err }),
	}
}
