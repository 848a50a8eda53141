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
		if ctx.Err() != nil {
			m.endGrace()
			return
		}
		if m.feedGrace > 0 {
			// Keep answering what is cached until the grace ends (Lookup
			// checks it); insert refuses while staleUntil is set.
			m.graceMu.Lock()
			m.cache.staleUntil.Store(m.now().Add(m.feedGrace).UnixNano())
			m.graceMu.Unlock()
			m.log.Warn("session: revocation feed lost; cached sessions served for the grace period only", "grace", m.feedGrace)
		} else {
			m.endGrace()
			m.log.Warn("session: revocation feed lost; session cache disabled until resubscribed")
		}
		m.notifyFeed(false)
		if ch = m.resubscribe(ctx); ch == nil {
			return
		}
		// The resync event that opens the new subscription clears the
		// cache: events may have been missed.
		m.graceMu.Lock()
		m.cache.enabled.Store(true)
		m.cache.staleUntil.Store(0)
		m.graceMu.Unlock()
		m.log.Info("session: revocation feed restored")
		m.notifyFeed(true)
	}
}

// endGrace turns the cache off after the feed was lost: order matters,
// disable before clearing so nothing is re-added (clear bumps the epoch,
// which refuses inserts already under way).
func (m *Manager) endGrace() {
	m.graceMu.Lock()
	defer m.graceMu.Unlock()
	m.cache.staleUntil.Store(0)
	m.cache.enabled.Store(false)
	m.cache.clear()
}

// graceOver ends the grace that was to last until su, unless the feed came
// back (or another lookup ended it) in the meantime.
func (m *Manager) graceOver(su int64) {
	m.graceMu.Lock()
	defer m.graceMu.Unlock()
	if m.cache.staleUntil.Load() != su {
		return
	}
	m.cache.staleUntil.Store(0)
	m.cache.enabled.Store(false)
	m.cache.clear()
	m.log.Warn("session: grace period after losing the revocation feed is over; session cache disabled")
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
