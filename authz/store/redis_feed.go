package store

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis feed: one pub/sub subscription per store (not per
// subscriber) on <KeyPrefix>feed, fanned out to local subscribers by the
// hub. A reader goroutine owns the subscription; a pinger keeps it honest.
//
// Whenever events may have been missed, every subscriber gets EventResync:
// when the connection drops (so caches stop trusting themselves at once),
// after each re-subscription (ours, or go-redis's internal reconnect, seen
// as a new *redis.Subscription), and when a message cannot be decoded.
const (
	feedPingInterval = 3 * time.Second
	// feedIdle without any message (pongs included) means the connection
	// is dead even if TCP has not noticed.
	feedIdle         = 3 * feedPingInterval
	feedBackoffFirst = 100 * time.Millisecond
	feedBackoffMax   = 5 * time.Second
	maxEventBytes    = 4*MaxKeyLen + 1024
)

type redisFeed struct {
	mu      sync.Mutex
	running bool          // the reader goroutine was started
	up      bool          // subscribed now
	closed  bool          // Close was called
	ps      *redis.PubSub // current subscription; closed by Close to unblock the reader
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the reader goroutine returns
	// stopCtx ends with Close, so a reconnect in progress does not hold
	// Close up for a dial timeout.
	stopCtx    context.Context
	cancelStop context.CancelFunc
}

// Publish sends e to every instance (including this one) as JSON.
func (r *Redis) Publish(ctx context.Context, e Event) error {
	if err := checkEvent(e); err != nil {
		return err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return invalid("event", "cannot be encoded")
	}
	return r.wrap(r.c.Publish(ctx, r.feedChan, b).Err())
}

// Subscribe returns a channel that starts with EventResync and then
// carries every event published on any instance after Subscribe returns.
// While the feed is disconnected it fails with ErrUnavailable (the caller
// retries): it cannot promise delivery it cannot make.
func (r *Redis) Subscribe(ctx context.Context) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, unavailable(err)
	}
	if err := r.ensureFeed(ctx); err != nil {
		return nil, err
	}
	return r.hub.subscribe(ctx)
}

// ensureFeed starts the subscription on first use and reports whether it
// is up.
func (r *Redis) ensureFeed(ctx context.Context) error {
	f := &r.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return unavailable(errClosed)
	case f.up:
		return nil
	case f.running:
		return unavailable(errors.New("event feed is reconnecting"))
	}
	ps, err := r.connectFeed(ctx)
	if err != nil {
		return err
	}
	f.running, f.up, f.ps = true, true, ps
	go r.feedLoop(ps)
	return nil
}

// connectFeed subscribes and waits for the server's confirmation, so that
// every event published afterwards is delivered.
func (r *Redis) connectFeed(ctx context.Context) (*redis.PubSub, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeouts.DialTimeout+r.timeouts.ReadTimeout)
	defer cancel()
	ps := r.c.Subscribe(ctx)
	if err := ps.Subscribe(ctx, r.feedChan); err != nil {
		_ = ps.Close()
		return nil, r.wrap(err)
	}
	msg, err := ps.ReceiveTimeout(ctx, r.timeouts.DialTimeout+r.timeouts.ReadTimeout)
	if err != nil {
		_ = ps.Close()
		return nil, r.wrap(err)
	}
	if s, ok := msg.(*redis.Subscription); !ok || s.Kind != "subscribe" || s.Channel != r.feedChan {
		_ = ps.Close()
		return nil, unavailable(errors.New("unexpected reply to SUBSCRIBE"))
	}
	return ps, nil
}

// feedLoop reads until Close, reconnecting with backoff.
func (r *Redis) feedLoop(ps *redis.PubSub) {
	f := &r.feed
	defer close(f.done)
	for {
		err := r.readFeed(ps)
		_ = ps.Close()
		f.mu.Lock()
		closed := f.closed
		f.up = false
		f.mu.Unlock()
		if closed {
			return
		}
		r.log.Warn("event feed disconnected; caches resync", "err", err)
		r.hub.resync()
		if ps = r.reconnectFeed(); ps == nil {
			return
		}
		r.log.Info("event feed reconnected")
		r.hub.resync()
	}
}

// reconnectFeed retries until it subscribes (returning the subscription,
// already marked up) or the store closes (returning nil).
func (r *Redis) reconnectFeed() *redis.PubSub {
	f := &r.feed
	backoff := feedBackoffFirst
	for {
		select {
		case <-f.stop:
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedBackoffMax)
		ps, err := r.connectFeed(f.stopCtx)
		if err != nil {
			r.log.Debug("event feed reconnect failed", "err", err)
			continue
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = ps.Close()
			return nil
		}
		f.up, f.ps = true, ps
		f.mu.Unlock()
		return ps
	}
}

// readFeed delivers messages until the subscription fails.
func (r *Redis) readFeed(ps *redis.PubSub) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(feedPingInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), r.timeouts.WriteTimeout)
				_ = ps.Ping(ctx) // a lost pong shows as feedIdle in the reader
				cancel()
			}
		}
	}()
	for {
		msg, err := ps.ReceiveTimeout(context.Background(), feedIdle)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Message:
			r.deliver(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// go-redis re-subscribed on a new connection by itself:
				// whatever was published in between is lost.
				r.hub.resync()
			}
		}
	}
}

// deliver decodes one feed message. A message that does not decode means
// something unknown happened: resync rather than guess.
func (r *Redis) deliver(payload string) {
	var e Event
	if len(payload) > maxEventBytes || json.Unmarshal([]byte(payload), &e) != nil || e.Kind == "" {
		r.log.Warn("undecodable event on feed; caches resync", "bytes", len(payload))
		r.hub.resync()
		return
	}
	r.hub.publish(e)
}

// stopFeed stops the reader (if any) and waits for it.
func (r *Redis) stopFeed() {
	f := &r.feed
	f.mu.Lock()
	f.closed = true
	close(f.stop)
	f.cancelStop()
	running := f.running
	if f.ps != nil {
		_ = f.ps.Close()
	}
	f.mu.Unlock()
	if running {
		<-f.done
	}
}
