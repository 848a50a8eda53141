package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/authz/store"
)

// racers is how many goroutines contend for one record. With a
// multi-instance backend they alternate between two handles, so the
// atomicity checked is the backend's, not a process-local mutex's.
const racers = 50

// race runs fn on racers goroutines released together and returns how
// many reported a win. Any error fails the test.
func race(t *testing.T, e *env, fn func(s store.Store) (bool, error)) int {
	t.Helper()
	handles := []store.Store{e.s, e.peer()}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		wins  int
		errs  []error
		start = make(chan struct{})
	)
	for i := range racers {
		wg.Go(func() {
			<-start
			won, err := fn(handles[i%2])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if won {
				wins++
			}
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent calls failed: %v", err)
	}
	return wins
}

func testConcurrency(t *testing.T, h Harness) {
	t.Run("ClaimStep first wins", func(t *testing.T) {
		e := newEnv(t, h)
		wins := race(t, e, func(s store.Store) (bool, error) { return s.ClaimStep(bg(t), "u1", 4242, hour) })
		if wins != 1 {
			t.Fatalf("%d of %d concurrent claims won, want exactly 1", wins, racers)
		}
	})
	t.Run("AddLock first wins", func(t *testing.T) {
		e := newEnv(t, h)
		n := 0
		var mu sync.Mutex
		wins := race(t, e, func(s store.Store) (bool, error) {
			mu.Lock()
			n++
			ref := fmt.Sprintf("INC-%d", n)
			mu.Unlock()
			return s.AddLock(bg(t), store.Lock{Subject: "user:raced", Reason: "r", Ref: ref})
		})
		if wins != 1 {
			t.Fatalf("%d of %d concurrent AddLock calls won, want exactly 1", wins, racers)
		}
	})
	t.Run("ConsumeRecoveryCode once", func(t *testing.T) {
		e := newEnv(t, h)
		ok(t, e.s.PutRecoveryCodes(bg(t), "u1", []string{"h1", "h2"}), "PutRecoveryCodes")
		wins := race(t, e, func(s store.Store) (bool, error) { return s.ConsumeRecoveryCode(bg(t), "u1", "h1") })
		if wins != 1 {
			t.Fatalf("%d of %d concurrent consumptions won, want exactly 1", wins, racers)
		}
		if n, err := e.s.RecoveryCodesLeft(bg(t), "u1"); err != nil || n != 1 {
			t.Fatalf("RecoveryCodesLeft = %d, %v; want 1", n, err)
		}
	})
	t.Run("TakeEphemeral once", func(t *testing.T) {
		e := newEnv(t, h)
		ok(t, e.s.PutEphemeral(bg(t), "login-state", []byte("v"), hour), "PutEphemeral")
		wins := race(t, e, func(s store.Store) (bool, error) {
			v, err := s.TakeEphemeral(bg(t), "login-state")
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			if err == nil && string(v) != "v" {
				return false, fmt.Errorf("TakeEphemeral = %q", v)
			}
			return err == nil, err
		})
		if wins != 1 {
			t.Fatalf("%d of %d concurrent takes won, want exactly 1", wins, racers)
		}
	})
	t.Run("Incr counts every increment", func(t *testing.T) {
		e := newEnv(t, h)
		const workers, each = 10, 20
		handles := []store.Store{e.s, e.peer()}
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			seen []int64
			errs []error
		)
		for w := range workers {
			wg.Go(func() {
				for range each {
					v, err := handles[w%2].Incr(bg(t), "fails", 1, hour)
					mu.Lock()
					seen = append(seen, v)
					if err != nil {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("Incr: %v", err)
		}
		if n, err := e.s.Count(bg(t), "fails"); err != nil || n != workers*each {
			t.Fatalf("Count = %d, %v; want %d", n, err, workers*each)
		}
		// Each increment saw a distinct value: no two read the same base.
		slices.Sort(seen)
		for i, v := range seen {
			if v != int64(i+1) {
				t.Fatalf("Incr results %v are not 1..%d", seen, workers*each)
			}
		}
	})
	t.Run("session index stays consistent", func(t *testing.T) {
		e := newEnv(t, h)
		handles := []store.Store{e.s, e.peer()}
		exp := e.clock.Now().Add(hour)
		var wg sync.WaitGroup
		errs := make(chan error, 2*racers)
		for i := range racers {
			wg.Go(func() {
				s := handles[i%2]
				id := fmt.Sprintf("s%02d", i)
				if err := s.PutSession(bg(t), store.Session{ID: id, UserID: "u1", ExpiresAt: exp}); err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					errs <- s.DeleteSession(bg(t), id)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			ok(t, err, "concurrent session writes")
		}
		var want []string
		for i := range racers {
			if i%3 != 0 {
				want = append(want, fmt.Sprintf("s%02d", i))
			}
		}
		wantIDs(t, listIDs(t, e.s, "u1"), want...)
		wantIDs(t, listIDs(t, e.s, ""), want...)
	})
}
