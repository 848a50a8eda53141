package store

import (
	"context"
	"fmt"
	"testing"
)

func drain(ch <-chan Event) []Event {
	var out []Event
	for {
		select {
		case e, open := <-ch:
			if !open {
				return out
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

func ev(i int) Event { return Event{Kind: EventSessionRevoked, Subject: fmt.Sprint(i)} }

func TestHubOverflowBecomesResync(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		published int
		want      []Event
	}{
		{"fits", 4, 3, []Event{{Kind: EventResync}, ev(0), ev(1), ev(2)}},
		// The initial resync plus 3 events fill 4 slots; the 4th event
		// overflows: pending events are replaced by resync + that event.
		{"overflow once", 4, 4, []Event{{Kind: EventResync}, ev(3)}},
		{"overflow then more", 4, 6, []Event{{Kind: EventResync}, ev(3), ev(4), ev(5)}},
		{"overflow twice", 4, 7, []Event{{Kind: EventResync}, ev(6)}},
		{"minimum size", 2, 5, []Event{{Kind: EventResync}, ev(4)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(tc.size)
			ch, err := h.subscribe(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.published {
				h.publish(ev(i)) // never blocks: nobody is reading
			}
			got := drain(ch)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHubLifecycle(t *testing.T) {
	h := newHub(0)
	if h.size != DefaultFeedBuffer {
		t.Fatalf("default size = %d", h.size)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := h.subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range a { // closes once the AfterFunc ran
	}
	h.publish(ev(1))
	if got := drain(b); len(got) != 2 || got[1] != ev(1) {
		t.Fatalf("live subscriber got %v", got)
	}
	h.close()
	if _, open := <-b; open {
		t.Fatal("channel still open after close")
	}
	h.publish(ev(2)) // no panic on closed subscribers
	h.close()        // idempotent
	if _, err := h.subscribe(context.Background()); err == nil {
		t.Fatal("subscribe after close succeeded")
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	if _, err := newHub(4).subscribe(done); err == nil {
		t.Fatal("subscribe with a canceled context succeeded")
	}
}
