//go:build !race

// The race detector makes sync.Pool drop items on purpose, so allocation
// counts are only meaningful without it.

package session

import "testing"

func TestLookupHitDoesNotAllocate(t *testing.T) {
	env := newTestManager(t, newFakeStore(), newClock(), true)
	cookie, _ := env.login(t, "alice")
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := env.m.Lookup(t.Context(), cookie); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("cache hit allocates %.1f times per lookup", allocs)
	}
}
