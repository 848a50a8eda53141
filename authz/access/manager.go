package access

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/internal/webhook"
	"github.com/portcullis/portcullis/authz/store"
)

// Records is the part of store.Records this package uses: durable records
// by kind and ID with compare-and-swap.
type Records interface {
	// PutRecord creates or replaces.
	PutRecord(ctx context.Context, kind, id string, data []byte) error
	// CreateRecord stores data only when (kind, id) is absent and reports whether it did.
	CreateRecord(ctx context.Context, kind, id string, data []byte) (bool, error)
	GetRecord(ctx context.Context, kind, id string) ([]byte, error) // store.ErrNotFound
	// SwapRecord replaces the record with new only when its current value
	// is byte-for-byte old and reports whether it did; new == nil deletes
	// it. store.ErrNotFound when absent.
	SwapRecord(ctx context.Context, kind, id string, old, new []byte) (bool, error)
	DeleteRecord(ctx context.Context, kind, id string) error // idempotent
	ListRecords(ctx context.Context, kind string) (map[string][]byte, error)
}

var _ Records = (store.Store)(nil)

// Feed is the cross-instance event feed (store.Feed).
type Feed interface {
	Publish(ctx context.Context, e store.Event) error
	Subscribe(ctx context.Context) (<-chan store.Event, error)
}

var _ Feed = (store.Store)(nil)

// Deps are the manager's injected dependencies.
type Deps struct {
	Store Records // required
	// Feed carries grants-changed events between instances; nil means a
	// single instance (the cache is still reloaded after local changes
	// and on every Run tick).
	Feed   Feed
	Audit  audit.Emitter // required
	Logger *slog.Logger  // default: discard
	Now    func() time.Time
	Rand   io.Reader // request and grant IDs, notification IDs; default crypto/rand
	// HTTPClient posts webhooks; default a 10s-timeout client that follows
	// no redirects.
	HTTPClient *http.Client
	// After is the webhook retry backoff timer; default time.After.
	After func(time.Duration) <-chan time.Time
	// Instance names this instance in notifications.
	Instance string
	// Policy, when set, lets AddGrant refuse roles the policy does not know.
	Policy func() *authz.Policy
}

// tickInterval is how often Run expires requests and grants and reloads
// the cache as a backstop for lost events.
const tickInterval = 30 * time.Second

// Manager runs just-in-time access. It is safe for concurrent use. A nil
// *Manager means JIT access is off: Roles returns base, GrantedUntil
// reports nothing and CanReadAudit looks at base roles only.
type Manager struct {
	cfg   atomic.Pointer[compiled]
	st    Records
	feed  Feed
	audit audit.Emitter
	log   *slog.Logger
	now   func() time.Time
	rand  io.Reader
	pol   func() *authz.Policy
	inst  string

	snap   atomic.Pointer[snapshot]
	ready  atomic.Bool
	loadMu sync.Mutex // serialises list+install so a stale list never wins

	hooks *webhook.Sender[Notification]
}

// New returns a manager with cfg (validated without a policy; cmd validates
// against the policy first).
func New(cfg Config, deps Deps) (*Manager, error) {
	if deps.Store == nil || deps.Audit == nil {
		return nil, errors.New("access: store and audit emitter are required")
	}
	if err := cfg.Validate(nil); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Rand == nil {
		deps.Rand = rand.Reader
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{
			Timeout: 10 * time.Second,
			// A receiver redirecting elsewhere would receive the signed
			// body at an address nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if deps.After == nil {
		deps.After = time.After
	}
	m := &Manager{
		st: deps.Store, feed: deps.Feed, audit: deps.Audit,
		log: deps.Logger.With("component", "access"),
		now: deps.Now, rand: deps.Rand, pol: deps.Policy, inst: deps.Instance,
	}
	m.snap.Store(emptySnapshot)
	m.hooks = newNotifier(deps.HTTPClient, deps.After, m.log)
	m.install(compile(cfg))
	return m, nil
}

func (m *Manager) install(c *compiled) {
	m.cfg.Store(c)
	m.hooks.SetSinks(webhookSinks(c.Webhooks))
}

// SetConfig swaps the configuration (reload). Requests and grants survive;
// a role no longer requestable cannot be approved any more, and a lower
// MaxDuration clips grants approved after the reload. An invalid cfg is
// logged and ignored (callers validate first).
func (m *Manager) SetConfig(cfg Config) {
	if err := cfg.Validate(nil); err != nil {
		m.log.Error("access config refused, keeping the previous one", "err", err)
		return
	}
	m.install(compile(cfg))
}

// Config returns the configuration in force (defaults applied).
func (m *Manager) Config() Config { return m.cfg.Load().Config }

// Ready reports whether the grant cache has been loaded once.
func (m *Manager) Ready() bool { return m != nil && m.ready.Load() }

// Run subscribes to the feed, loads the grant cache, keeps it fresh,
// delivers webhook notifications, expires pending requests, deletes
// expired grants (each audited once across instances) and recreates a
// grant an approval did not get to create, until ctx ends. It returns
// ctx's error, or an error when the feed cannot be subscribed.
func (m *Manager) Run(ctx context.Context) error {
	var events <-chan store.Event
	if m.feed != nil {
		ch, err := m.feed.Subscribe(ctx)
		if err != nil {
			return fmt.Errorf("access: subscribing to the feed: %w", err)
		}
		events = ch
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { m.hooks.Run(ctx) })
	if events == nil {
		// Without a feed no resync arrives to trigger the first load.
		m.resync(ctx)
	}
	m.tick(ctx)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			m.tick(ctx)
		case e, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errors.New("access: feed closed")
			}
			m.handle(ctx, e, events)
		}
	}
}

// handle reacts to one feed event. Events already queued behind it are
// coalesced into one reload.
func (m *Manager) handle(ctx context.Context, first store.Event, events <-chan store.Event) {
	resync := first.Kind == store.EventResync
	relevant := first.Kind == EventGrantsChanged
drain:
	for {
		select {
		case e, ok := <-events:
			if !ok {
				break drain // Run sees the closed channel next
			}
			resync = resync || e.Kind == store.EventResync
			relevant = relevant || e.Kind == EventGrantsChanged
		default:
			break drain
		}
	}
	switch {
	case resync:
		m.resync(ctx)
	case relevant:
		// A grant changed (maybe revoked) and the change cannot be read:
		// suspend grants rather than keep enforcing the old ones.
		m.resync(ctx)
	}
}

// resync reloads after a (re)subscription: events may have been lost, so
// when the reload fails the cache is emptied (fail closed: grants are
// missing until the next successful load, never kept past a revocation
// nobody heard of).
func (m *Manager) resync(ctx context.Context) error {
	err := m.reload(ctx)
	if err != nil {
		m.log.Error("reloading grants after a change or resync; grants suspended until the store answers", "err", err)
		m.loadMu.Lock()
		m.snap.Store(emptySnapshot)
		m.loadMu.Unlock()
	}
	return err
}
