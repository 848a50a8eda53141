package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/portcullis/portcullis/authz/store"
)

func subscribe(t *testing.T, ctx context.Context, s store.Store) <-chan store.Event {
	t.Helper()
	ch, err := s.Subscribe(ctx)
	ok(t, err, "Subscribe")
	if ev := recv(t, ch, "first event"); ev.Kind != store.EventResync {
		t.Fatalf("first event = %+v, want %s", ev, store.EventResync)
	}
	return ch
}

func publish(t *testing.T, s store.Store, ev store.Event) {
	t.Helper()
	ok(t, s.Publish(bg(t), ev), "Publish")
}

func wantEvent(t *testing.T, ch <-chan store.Event, want store.Event) {
	t.Helper()
	if got := recvNext(t, ch, "event "+want.Subject); got != want {
		t.Fatalf("event = %+v, want %+v", got, want)
	}
}

func testFeed(t *testing.T, h Harness) {
	t.Run("resync first then every event in order", func(t *testing.T) {
		e := newEnv(t, h)
		a := subscribe(t, bg(t), e.s)
		b := subscribe(t, bg(t), e.s)
		evs := []store.Event{
			{Kind: store.EventSessionRevoked, Subject: "s1"},
			{Kind: store.EventUserRevoked, Subject: "user:a:b\x00c", Reason: "admin"},
			{Kind: store.EventPolicyChanged},
			{Kind: "future-kind", Subject: "x"}, // unknown kinds pass through
		}
		for _, ev := range evs {
			publish(t, e.s, ev)
		}
		for _, ch := range []<-chan store.Event{a, b} {
			for _, ev := range evs {
				wantEvent(t, ch, ev)
			}
		}
	})
	t.Run("events cross instances", func(t *testing.T) {
		e := newEnv(t, h)
		p := e.peer()
		mine := subscribe(t, bg(t), e.s)
		theirs := subscribe(t, bg(t), p)
		fromPeer := store.Event{Kind: store.EventLocked, Subject: "user:u1"}
		fromMe := store.Event{Kind: store.EventUnlocked, Subject: "user:u1"}
		publish(t, p, fromPeer)
		publish(t, e.s, fromMe)
		for _, ch := range []<-chan store.Event{mine, theirs} {
			wantEvent(t, ch, fromPeer)
			wantEvent(t, ch, fromMe)
		}
	})
	t.Run("channel closes on cancel and on close", func(t *testing.T) {
		e := newEnv(t, h)
		ctx, cancel := context.WithCancel(bg(t))
		canceled := subscribe(t, ctx, e.s)
		live := subscribe(t, bg(t), e.s)
		cancel()
		waitClosed(t, canceled, "after cancel")
		// The other subscription is unaffected.
		ev := store.Event{Kind: store.EventSessionRevoked, Subject: "still-here"}
		publish(t, e.s, ev)
		wantEvent(t, live, ev)
		ok(t, e.s.Close(), "Close")
		waitClosed(t, live, "after Close")
		_, err := e.s.Subscribe(bg(t))
		isUnavailable(t, err, "Subscribe after Close")
	})
	t.Run("slow subscriber never blocks publishers nor loses silently", func(t *testing.T) {
		e := newEnv(t, h)
		slow := subscribe(t, bg(t), e.s)
		n := 3 * store.DefaultFeedBuffer
		for i := range n {
			publish(t, e.s, store.Event{Kind: store.EventSessionRevoked, Subject: fmt.Sprint(i)})
		}
		last := fmt.Sprint(n - 1)
		got, resyncs, prev := 0, 0, -1
		for {
			ev := recv(t, slow, "draining slow subscriber")
			if ev.Kind == store.EventResync {
				resyncs++
				continue
			}
			var i int
			if _, err := fmt.Sscan(ev.Subject, &i); err != nil || i <= prev {
				t.Fatalf("event %+v out of order after %d", ev, prev)
			}
			prev = i
			got++
			if ev.Subject == last {
				break
			}
		}
		// Dropping is allowed (that is the point of a bounded buffer);
		// dropping without a resync is not.
		if got < n && resyncs == 0 {
			t.Fatalf("received %d of %d events and no resync", got, n)
		}
	})
	t.Run("invalid events are refused", func(t *testing.T) {
		e := newEnv(t, h)
		for _, tc := range []struct {
			name string
			ev   store.Event
		}{
			{"empty kind", store.Event{Subject: "x"}},
			{"resync is local only", store.Event{Kind: store.EventResync}},
			{"invalid UTF-8", store.Event{Kind: store.EventUserRevoked, Subject: "u\xff"}},
			{"huge subject", store.Event{Kind: store.EventLocked, Subject: string(make([]byte, store.MaxKeyLen+1))}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				isInvalid(t, e.s.Publish(bg(t), tc.ev), "Publish")
			})
		}
	})
}
