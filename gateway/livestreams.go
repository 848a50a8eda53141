package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/portcullis/portcullis/authz/store"
)

// Long-lived proxied requests — WebSocket upgrades and Server-Sent Event
// streams — outlive the session check that admitted them. A revocation,
// a logout or a lock must end them too, on every instance: each one is
// registered under its user and session, and the feed follower cancels
// them (context cancellation closes an upgraded connection and aborts a
// stream in ReverseProxy). Ordinary requests are not registered: they end
// on their own, and the hot path stays free of the registry's lock.

// errAccessRevoked is the cancel cause of a stream whose access ended.
var errAccessRevoked = errors.New("access revoked (session revoked, user locked or revoked)")

// errGrantEnded is the cancel cause of a stream whose just-in-time grant
// ended (expired, revoked or changed).
var errGrantEnded = errors.New("access ended (just-in-time grant expired, revoked or changed)")

type liveStream struct {
	userID, sessionID string
	// viaGrant: the role that admitted the stream is held only through a
	// just-in-time grant.
	viaGrant bool
	cancel   context.CancelCauseFunc
}

type liveStreams struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]liveStream
	stop context.CancelFunc
	done chan struct{}
}

// longLived reports whether r will hold its connection open: a protocol
// upgrade (WebSocket) or an event stream.
func longLived(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// add registers a stream; the returned func unregisters it.
func (l *liveStreams) add(userID, sessionID string, viaGrant bool, cancel context.CancelCauseFunc) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[uint64]liveStream{}
	}
	l.next++
	id := l.next
	l.m[id] = liveStream{userID: userID, sessionID: sessionID, viaGrant: viaGrant, cancel: cancel}
	return func() {
		l.mu.Lock()
		delete(l.m, id)
		l.mu.Unlock()
	}
}

// end cancels the streams match selects.
func (l *liveStreams) end(match func(liveStream) bool) int {
	return l.endCause(match, errAccessRevoked)
}

// endCause cancels the streams match selects with cause.
func (l *liveStreams) endCause(match func(liveStream) bool, cause error) int {
	l.mu.Lock()
	var hit []liveStream
	for _, s := range l.m {
		if match(s) {
			hit = append(hit, s)
		}
	}
	l.mu.Unlock()
	for _, s := range hit {
		s.cancel(cause)
	}
	return len(hit)
}

func (l *liveStreams) snapshot() []liveStream {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]liveStream, 0, len(l.m))
	for _, s := range l.m {
		out = append(out, s)
	}
	return out
}

// startLiveStreams follows the feed and ends the streams of revoked
// sessions and of revoked or locked users. After a resync (events may
// have been missed) every stream's session is looked up again.
func (g *Gateway) startLiveStreams() error {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := g.deps.Store.Subscribe(ctx)
	if err != nil {
		cancel()
		return err
	}
	g.streams.stop, g.streams.done = cancel, make(chan struct{})
	go func() {
		defer close(g.streams.done)
		for ev := range ch {
			g.applyStreamEvent(ctx, ev)
		}
	}()
	return nil
}

func (g *Gateway) stopLiveStreams() {
	if g.streams.stop != nil {
		g.streams.stop()
		<-g.streams.done
	}
}

func (g *Gateway) applyStreamEvent(ctx context.Context, ev store.Event) {
	var n int
	switch ev.Kind {
	case store.EventSessionRevoked:
		n = g.streams.end(func(s liveStream) bool { return s.sessionID == ev.Subject })
	case store.EventUserRevoked:
		n = g.streams.end(func(s liveStream) bool { return s.userID == ev.Subject })
	case store.EventLocked:
		if id, ok := strings.CutPrefix(ev.Subject, "user:"); ok {
			n = g.streams.end(func(s liveStream) bool { return s.userID == id })
		}
	case store.EventGrantsChanged:
		// The grant cache may not have reloaded yet, so whether the
		// grant still holds cannot be told here: end the user's streams
		// that rest on a grant (fail closed). Clients reconnect and are
		// decided again.
		n = g.streams.endCause(func(s liveStream) bool { return s.viaGrant && s.userID == ev.Subject }, errGrantEnded)
	case store.EventResync:
		// Grant changes may have been missed too.
		n = g.streams.endCause(func(s liveStream) bool { return s.viaGrant }, errGrantEnded)
		for _, s := range g.streams.snapshot() {
			if v, err := g.deps.Risk.Locked(ctx, s.userID); err != nil || !v.Allow {
				n += g.streams.end(func(o liveStream) bool { return o.userID == s.userID })
				continue
			}
			if _, err := g.deps.Store.GetSession(ctx, s.sessionID); err != nil {
				// Gone, or the store cannot say: fail closed.
				n += g.streams.end(func(o liveStream) bool { return o.sessionID == s.sessionID })
			}
		}
	}
	if n > 0 {
		g.log.InfoContext(ctx, "ended live streams", "event", ev.Kind, "subject", ev.Subject, "streams", n)
	}
}
