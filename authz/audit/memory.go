package audit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Memory is an in-memory Emitter for tests. The zero value is ready to
// use; it is safe for concurrent use. It stores events as the file sink
// would write them (sensitive attributes redacted), with Time filled from
// Now when Now is set.
type Memory struct {
	Now func() time.Time // optional: fills zero Event.Time

	mu     sync.Mutex
	events []Event
}

var _ Emitter = (*Memory)(nil)

// Emit records a copy of e.
func (m *Memory) Emit(_ context.Context, e Event) {
	e = Redact(e) // also copies Attrs, so the caller may reuse its map
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.Time.IsZero() && m.Now != nil {
		e.Time = m.Now()
	}
	m.events = append(m.events, e)
}

// Sync returns nil: Memory holds every event as soon as Emit returns.
func (m *Memory) Sync(context.Context) error { return nil }

// Healthy returns nil: Memory cannot fail to record (it stands in for
// FileLog's Healthy in tests).
func (m *Memory) Healthy() error { return nil }

// Events returns the recorded events in emission order.
func (m *Memory) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// Find returns the events of type typ (any type when typ is "") with
// reason reason (any reason when reason is "").
func (m *Memory) Find(typ, reason string) []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Event
	for _, e := range m.events {
		if (typ == "" || e.Type == typ) && (reason == "" || e.Reason == reason) {
			out = append(out, e)
		}
	}
	return out
}

// Reset forgets all recorded events.
func (m *Memory) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = nil
}

// Multi sends each event to every emitter in order (nil entries are
// skipped). Emitters must not keep e.Attrs without copying it; both sinks
// in this package encode or copy before Emit returns.
type Multi []Emitter

var _ Emitter = Multi(nil)

// Emit forwards e to every emitter.
func (m Multi) Emit(ctx context.Context, e Event) {
	for _, em := range m {
		if em != nil {
			em.Emit(ctx, e)
		}
	}
}

// Sync makes every emitter's events durable (see the package function
// Sync) and returns their errors joined.
func (m Multi) Sync(ctx context.Context) error {
	var errs []error
	for _, em := range m {
		if em != nil {
			errs = append(errs, Sync(ctx, em))
		}
	}
	return errors.Join(errs...)
}

// Discard is an Emitter that drops every event (for tools that audit
// nothing, never for a server).
var Discard Emitter = discard{}

type discard struct{}

func (discard) Emit(context.Context, Event) {}
