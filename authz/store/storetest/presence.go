package storetest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// presenceKind is the kind most presence tests use.
const presenceKind = "ssh-session"

// listPresence lists kind on s, failing the test on error.
func listPresence(t *testing.T, s store.Store, kind string) map[string][]byte {
	t.Helper()
	m, err := s.ListPresence(bg(t), kind)
	ok(t, err, "ListPresence("+kind+")")
	if m == nil {
		t.Fatalf("ListPresence(%q) = nil map, want an empty one", kind)
	}
	return m
}

// samePresence asserts that got holds exactly want.
func samePresence(t *testing.T, got, want map[string][]byte, what string) {
	t.Helper()
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("%s: got IDs %.200q, want %.200q", what, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

// presenceGone reports whether entry id of presenceKind is no longer listed.
func presenceGone(t *testing.T, s store.Store, id string) func() bool {
	return func() bool {
		_, live := listPresence(t, s, presenceKind)[id]
		return !live
	}
}

func testPresence(t *testing.T, h Harness) {
	t.Run("put list delete", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		samePresence(t, listPresence(t, e.s, presenceKind), map[string][]byte{}, "empty kind")
		ok(t, e.s.DeletePresence(ctx, presenceKind, "never-existed"), "DeletePresence(missing)")
		ok(t, e.s.PutPresence(ctx, presenceKind, "s1", []byte(`{"instance":"a"}`), hour), "PutPresence")
		ok(t, e.s.PutPresence(ctx, presenceKind, "s2", []byte("bin\x00\xff"), hour), "PutPresence")
		ok(t, e.s.PutPresence(ctx, presenceKind, "s3", nil, hour), "PutPresence(empty data)")
		samePresence(t, listPresence(t, e.s, presenceKind), map[string][]byte{
			"s1": []byte(`{"instance":"a"}`), "s2": []byte("bin\x00\xff"), "s3": {},
		}, "after puts")
		for range 2 {
			ok(t, e.s.DeletePresence(ctx, presenceKind, "s2"), "DeletePresence")
		}
		samePresence(t, listPresence(t, e.s, presenceKind), map[string][]byte{
			"s1": []byte(`{"instance":"a"}`), "s3": {},
		}, "after delete")
	})
	t.Run("overwrite replaces data", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		ok(t, e.s.PutPresence(ctx, presenceKind, "s1", []byte("old"), hour), "PutPresence")
		ok(t, e.s.PutPresence(ctx, presenceKind, "s1", []byte("new"), hour), "PutPresence(overwrite)")
		samePresence(t, listPresence(t, e.s, presenceKind), map[string][]byte{"s1": []byte("new")}, "after overwrite")
	})
	t.Run("expiry and refresh", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		ttl := e.ttlFor(time.Minute)
		// refreshed is put first, then refreshed for an hour; stale is put
		// last with the short TTL. When stale has expired, refreshed's
		// first TTL has too: only the refresh (a put restarts the TTL)
		// can keep it.
		ok(t, e.s.PutPresence(ctx, presenceKind, "refreshed", []byte("1"), ttl), "PutPresence")
		ok(t, e.s.PutPresence(ctx, presenceKind, "refreshed", []byte("2"), hour), "PutPresence(refresh)")
		ok(t, e.s.PutPresence(ctx, presenceKind, "stale", nil, ttl), "PutPresence")
		e.expire(ttl, "unrefreshed entry expiry", presenceGone(t, e.s, "stale"))
		samePresence(t, listPresence(t, e.s, presenceKind), map[string][]byte{"refreshed": []byte("2")}, "after refresh")
		// A shorter TTL replaces a longer one too.
		ok(t, e.s.PutPresence(ctx, presenceKind, "refreshed", []byte("3"), ttl), "PutPresence(shorten)")
		e.expire(ttl, "shortened entry expiry", presenceGone(t, e.s, "refreshed"))
	})
	t.Run("kinds are isolated", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		// Pairs that collide under "kind:id" or "kind"+"id" encodings.
		kinds := []string{"a", "a:", "a:b", ":", "a\x00", "b", strings.Repeat("k", store.MaxKindLen)}
		ids := []string{"b", ":b", "b:", "x", "\x00b"}
		for _, k := range kinds {
			for _, id := range ids {
				ok(t, e.s.PutPresence(ctx, k, id, []byte(k+"|"+id), hour), "PutPresence")
			}
		}
		ok(t, e.s.DeletePresence(ctx, "a", "x"), "DeletePresence")
		for _, k := range kinds {
			want := map[string][]byte{}
			for _, id := range ids {
				if k != "a" || id != "x" {
					want[id] = []byte(k + "|" + id)
				}
			}
			samePresence(t, listPresence(t, e.s, k), want, fmt.Sprintf("kind %.20q", k))
		}
		// Presence does not share a namespace with ephemeral records.
		_, err := e.s.GetEphemeral(ctx, "b")
		isNotFound(t, err, "GetEphemeral(presence ID)")
	})
	t.Run("hostile IDs round-trip", func(t *testing.T) {
		e := newEnv(t, h)
		ctx := bg(t)
		want := map[string][]byte{}
		for i, id := range trickyIDs {
			want[id] = []byte(fmt.Sprintf("%d", i))
			ok(t, e.s.PutPresence(ctx, presenceKind, id, want[id], hour), fmt.Sprintf("PutPresence(%.20q)", id))
		}
		samePresence(t, listPresence(t, e.s, presenceKind), want, "hostile IDs")
		for _, id := range trickyIDs[:len(trickyIDs)/2] {
			ok(t, e.s.DeletePresence(ctx, presenceKind, id), fmt.Sprintf("DeletePresence(%.20q)", id))
			delete(want, id)
		}
		samePresence(t, listPresence(t, e.s, presenceKind), want, "hostile IDs after deletes")
	})
	t.Run("bad arguments are refused", func(t *testing.T) {
		e := newEnv(t, h)
		long := strings.Repeat("k", store.MaxKindLen+1)
		big := make([]byte, store.MaxValueLen+1)
		cases := []struct {
			name string
			call func(ctx context.Context) error
		}{
			{"put empty kind", func(ctx context.Context) error { return e.s.PutPresence(ctx, "", "id", nil, hour) }},
			{"put long kind", func(ctx context.Context) error { return e.s.PutPresence(ctx, long, "id", nil, hour) }},
			{"put big data", func(ctx context.Context) error { return e.s.PutPresence(ctx, presenceKind, "id", big, hour) }},
			{"put zero TTL", func(ctx context.Context) error { return e.s.PutPresence(ctx, presenceKind, "id", nil, 0) }},
			{"put negative TTL", func(ctx context.Context) error { return e.s.PutPresence(ctx, presenceKind, "id", nil, -time.Second) }},
			{"delete empty kind", func(ctx context.Context) error { return e.s.DeletePresence(ctx, "", "id") }},
			{"delete long kind", func(ctx context.Context) error { return e.s.DeletePresence(ctx, long, "id") }},
			{"list empty kind", func(ctx context.Context) error { _, err := e.s.ListPresence(ctx, ""); return err }},
			{"list long kind", func(ctx context.Context) error { _, err := e.s.ListPresence(ctx, long); return err }},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { isInvalid(t, tc.call(bg(t)), tc.name) })
		}
		samePresence(t, listPresence(t, e.s, presenceKind), map[string][]byte{}, "after refused puts")
	})
	t.Run("many entries from two instances", func(t *testing.T) {
		e := newEnv(t, h)
		handles := []store.Store{e.s, e.peer()}
		const n = 200
		want := map[string][]byte{}
		for i := range n {
			want[fmt.Sprintf("s%03d", i)] = []byte(fmt.Sprintf("instance-%d", i%2))
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 10 {
			wg.Go(func() {
				for i := w; i < n; i += 10 {
					id := fmt.Sprintf("s%03d", i)
					errs <- handles[i%2].PutPresence(bg(t), presenceKind, id, want[id], hour)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			ok(t, err, "concurrent PutPresence")
		}
		// Each instance sees every instance's entries, and a delete on one
		// is seen by the other.
		for i, s := range handles {
			samePresence(t, listPresence(t, s, presenceKind), want, fmt.Sprintf("handle %d", i))
		}
		for i := range n / 2 {
			id := fmt.Sprintf("s%03d", i)
			ok(t, handles[1-i%2].DeletePresence(bg(t), presenceKind, id), "DeletePresence")
			delete(want, id)
		}
		for i, s := range handles {
			samePresence(t, listPresence(t, s, presenceKind), want, fmt.Sprintf("handle %d after deletes", i))
		}
	})
}
