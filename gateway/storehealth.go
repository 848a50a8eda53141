package gateway

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// Store health. A background pinger asks the state store every
// storePingInterval whether it answers and keeps one atomic "down since"
// time. The request path reads only that atomic: once the store has been
// down longer than Config.StoreGrace, requests that need a session are
// refused with 503 instead of being served from the session cache, which
// could no longer learn of revocations and locks. Logins need the store
// and fail closed on their own.

const (
	storePingInterval = time.Second
	// storePingTimeout is short: a store that takes longer than this to
	// answer a ping is as good as down for a login.
	storePingTimeout = 750 * time.Millisecond
	maxStoreGrace    = 24 * time.Hour
)

var errStoreDown = fmt.Errorf("%w: down longer than the configured grace", store.ErrUnavailable)

// storeHealth is the pinger's state.
type storeHealth struct {
	downSince atomic.Int64 // Unix ns by the gateway's clock; 0 = up (or not known to be down)
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// startStoreHealth runs the pinger until Close.
func (g *Gateway) startStoreHealth() {
	g.health.stop = make(chan struct{})
	g.health.done = make(chan struct{})
	tick := g.deps.StoreTick
	var ticker *time.Ticker
	if tick == nil {
		ticker = time.NewTicker(storePingInterval)
		tick = ticker.C
	}
	go func() {
		defer close(g.health.done)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-g.health.stop:
				return
			case <-tick:
				g.pingStore()
			}
		}
	}()
}

// stopStoreHealth stops the pinger and waits for it (idempotent).
func (g *Gateway) stopStoreHealth() {
	if g.health.stop == nil {
		return
	}
	g.health.closeOnce.Do(func() { close(g.health.stop) })
	<-g.health.done
}

// pingStore records whether the store answers now.
func (g *Gateway) pingStore() {
	ctx, cancel := context.WithTimeout(context.Background(), storePingTimeout)
	err := g.deps.Store.Ping(ctx)
	cancel()
	if err == nil {
		if since := g.health.downSince.Swap(0); since != 0 {
			g.log.Info("state store answers again", "down_for", g.now().Sub(time.Unix(0, since)).String())
		}
		return
	}
	if g.health.downSince.CompareAndSwap(0, g.now().UnixNano()) {
		g.log.Error("state store unavailable", "err", err, "grace", g.cfg.StoreGrace.String())
	}
}

// storeDown reports whether the store has been down for longer than the
// grace at now: one atomic load, for the request path.
func (g *Gateway) storeDown(now time.Time) bool {
	since := g.health.downSince.Load()
	return since != 0 && now.UnixNano()-since >= int64(g.cfg.StoreGrace)
}

// serveHealth answers /healthz. It answers 200 even while the store is
// down, so operators (and load balancers) still see the instance, and says
// so in the body.
func (g *Gateway) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		g.fail(w, r, http.StatusMethodNotAllowed, reasonMethod, nil, audit.Event{})
		return
	}
	h := w.Header()
	h["Content-Type"] = plainTextValue
	h["Cache-Control"] = noStoreValue
	body := ""
	if since := g.health.downSince.Load(); since != 0 {
		body = "degraded: state store unavailable since " + time.Unix(0, since).UTC().Format(time.RFC3339) + "\n"
	}
	body += g.auditHealthNote()
	if g.deps.HealthNotes != nil {
		for _, n := range g.deps.HealthNotes() {
			body += n + "\n"
		}
	}
	if body == "" {
		body = "ok\n"
	}
	_, _ = w.Write([]byte(body))
}
