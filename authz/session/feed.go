package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// apply updates the cache for one feed event.
func (m *Manager) apply(ev store.Event) {
	switch ev.Kind {
	case store.EventSessionRevoked:
		if ev.Subject != "" {
			m.dropRevoked(ev.Subject)
		}
	case store.EventUserRevoked:
		if ev.Subject != "" {
			m.dropRevokedUser(ev.Subject)
		}
	case store.EventResync:
		// Events may have been missed while disconnected.
		m.cache.clear()
	}
	if m.onEvent != nil {
		m.onEvent(ev)
	}
}

// Start subscribes to the revocation feed and starts the background
// goroutines (feed follower, LastSeen writer, sweeper), all ending with
// ctx. It returns once subscribed; caching starts then. Start may be
// called once.
//
// If the subscription ends while ctx is alive, the cache is cleared and
// disabled (every Lookup reads the store, so no revocation can be
// missed) until a new subscription succeeds; retries back off up to 5 s.
func (m *Manager) Start(ctx context.Context) error {
	m.startMu.Lock()
	defer m.startMu.Unlock()
	if m.started {
		return errors.New("session: already started")
	}
	ch, err := m.st.Subscribe(ctx)
	if err != nil {
		return fmt.Errorf("session: subscribing to the revocation feed: %w", unavailable(err))
	}
	m.started = true
	m.cache.enabled.Store(true)
	m.wb.start()
	go m.writer(ctx)
	go m.follow(ctx, ch)
	return nil
}

// follow applies feed events until ctx ends, resubscribing when the
// subscription drops.
func (m *Manager) follow(ctx context.Context, ch <-chan store.Event) {
	for {
		for ev := range ch {
			m.apply(ev)
		}
		// Order matters: disable before clearing so nothing is re-added
		// (clear bumps the epoch, which refuses inserts already under way).
		m.cache.enabled.Store(false)
		m.cache.clear()
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("session: revocation feed lost; session cache disabled until resubscribed")
		m.notifyFeed(false)
		if ch = m.resubscribe(ctx); ch == nil {
			return
		}
		m.cache.enabled.Store(true)
		m.log.Info("session: revocation feed restored")
		m.notifyFeed(true)
	}
}

func (m *Manager) notifyFeed(up bool) {
	if m.onFeed != nil {
		m.onFeed(up)
	}
}

// resubscribe retries Subscribe with exponential backoff; nil when ctx ends.
func (m *Manager) resubscribe(ctx context.Context) <-chan store.Event {
	delay := m.backoffMin
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		ch, err := m.st.Subscribe(ctx)
		if err == nil {
			return ch
		}
		m.log.Warn("session: resubscribing to the revocation feed failed", "err", err, "retry_in", delay)
		delay = min(2*delay, m.backoffMax)
	}
}
