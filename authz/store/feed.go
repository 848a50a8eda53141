package store

import (
	"context"
	"sync"
)

// DefaultFeedBuffer is the per-subscriber event buffer of both backends.
const DefaultFeedBuffer = 256

// hub fans events out to local subscribers. Both backends use it: the
// embedded store publishes into it directly, the Redis store from its
// pub/sub reader.
//
// Publishers never block on a subscriber. When a subscriber's buffer is
// full, its pending events are dropped and replaced by EventResync (then
// the new event): a resync tells the consumer to drop every cache, which
// subsumes whatever it missed. No event is ever lost silently.
//
// Lock order: hub.mu, then subscriber.mu.
type hub struct {
	size int

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	mu   sync.Mutex
	ch   chan Event
	done bool
	stop func() bool // unregisters the context.AfterFunc
}

func newHub(size int) *hub {
	if size < 2 {
		// deliver needs room for the resync plus the event that overflowed.
		size = DefaultFeedBuffer
	}
	return &hub{size: size, subs: make(map[*subscriber]struct{})}
}

// subscribe registers a subscriber whose channel starts with EventResync
// and closes when ctx ends or the hub closes.
func (h *hub) subscribe(ctx context.Context) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(err)
	}
	s := &subscriber{ch: make(chan Event, h.size)}
	s.ch <- Event{Kind: EventResync}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, unavailable(errClosed)
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	s.mu.Lock()
	s.stop = context.AfterFunc(ctx, func() { h.remove(s) })
	s.mu.Unlock()
	return s.ch, nil
}

func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.close()
}

// publish delivers e to every subscriber without blocking.
func (h *hub) publish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.deliver(e)
	}
}

func (h *hub) resync() { h.publish(Event{Kind: EventResync}) }

// close closes every subscriber channel; later subscribes fail.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.close()
	}
	clear(h.subs)
}

func (h *hub) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

func (s *subscriber) deliver(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	select {
	case s.ch <- e:
		return
	default:
	}
	// Overflow. Only this goroutine sends (under s.mu), so after draining
	// the channel has room for both sends below even if the consumer is
	// receiving concurrently.
	for drained := false; !drained; {
		select {
		case <-s.ch:
		default:
			drained = true
		}
	}
	s.ch <- Event{Kind: EventResync}
	if e.Kind != EventResync {
		s.ch <- e
	}
}

func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	if s.stop != nil {
		s.stop()
	}
	close(s.ch)
}
