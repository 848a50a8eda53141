package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions are the injected dependencies of the Redis store.
type RedisOptions struct {
	// Now is the clock absolute expiries (sessions, locks) are compared
	// with and TTLs are derived from (default time.Now). TTL-based records
	// (step marks, counter windows, ephemeral records) expire by the
	// server's clock.
	Now    func() time.Time
	Logger *slog.Logger // default: discard
	// ClientName is sent with CLIENT SETNAME on every connection, so
	// operators can tell Portcullis connections apart (default
	// "portcullis"). Spaces are not allowed by Redis.
	ClientName string
	// FeedBuffer is the per-subscriber event buffer (default
	// DefaultFeedBuffer).
	FeedBuffer int
}

// Redis is the shared store for several Portcullis instances. Every
// read-modify-write is a single Redis command or a Lua script, so it is
// atomic across instances. Key layout (after KeyPrefix):
//
//	sess:<id>          hash u (user), e (expiry, RFC 3339), d (data); PX to expiry
//	usess:<user>       zset of session IDs scored by expiry (Unix ms)
//	sessall:           zset of every session ID, same scores
//	user:              hash user ID → record
//	enrol:             hash user ID → enrolment blob
//	step:<user>:<step> "1" with PX (SET NX)
//	rc:<user>          set of recovery-code hashes
//	ctr:<key>          integer with PX from the first increment
//	lock:              hash subject → JSON lock
//	eph:<key>          value with PX
//	pres:<kind>        hash presence ID → data
//	pexp:<kind>        zset of presence IDs scored by expiry (server ms);
//	                   both keys PX to their longest-lived entry
//	rec:<kind>         hash record ID → data (no expiry)
//
// Namespace words contain no ':' and none is a prefix of another, so the
// namespaces cannot overlap whatever the IDs hold; within step keys the
// step is the decimal after the last ':', so (user, step) is recovered
// unambiguously. The feed is the pub/sub channel <KeyPrefix>feed.
//
// Scripts build the old user's index key from ARGV, which Redis Cluster
// would reject; Cluster is not supported (Sentinel is).
type Redis struct {
	c        *redis.Client
	prefix   string
	feedChan string
	now      func() time.Time
	log      *slog.Logger
	timeouts RedisConfig // dial/read timeouts, for the feed's own waits
	hub      *hub
	feed     redisFeed

	closeOnce sync.Once
}

var _ Store = (*Redis)(nil)

// indexGrace keeps session index entries (and the index keys) for this
// long after their session expired, so an instance whose clock runs ahead
// never drops the index entry of a session other instances still honour:
// "revoke every session of this user" must find them all.
const indexGrace = time.Hour

// OpenRedis validates cfg, connects (through Sentinel when configured) and
// pings. A server that does not answer, refuses the credentials or fails
// the TLS handshake gives an error wrapping ErrUnavailable; an invalid
// config gives the *authz.FieldError values of Validate.
func OpenRedis(ctx context.Context, cfg RedisConfig, opts RedisOptions) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newRedis(cfg, opts)
	if err := r.Ping(ctx); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// newRedis builds the client without contacting the server.
func newRedis(cfg RedisConfig, opts RedisOptions) *Redis {
	cfg = cfg.withDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ClientName == "" {
		opts.ClientName = "portcullis"
	}
	r := &Redis{
		prefix:   cfg.KeyPrefix,
		feedChan: cfg.KeyPrefix + "feed",
		now:      opts.Now,
		log:      opts.Logger,
		timeouts: cfg,
		hub:      newHub(opts.FeedBuffer),
	}
	r.feed.stop = make(chan struct{})
	r.feed.done = make(chan struct{})
	r.feed.stopCtx, r.feed.cancelStop = context.WithCancel(context.Background())
	// One retry (one dial attempt each): enough to ride over a dropped idle
	// connection, short enough that an outage becomes a prompt deny rather
	// than a hung login. Retries can only err towards "deny": a retried
	// SET NX or SREM whose first reply was lost reports "not first".
	const maxRetries, dialAttempts = 1, 1
	if cfg.SentinelMaster != "" {
		r.c = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            cfg.SentinelMaster,
			SentinelAddrs:         cfg.SentinelAddrs,
			SentinelPassword:      cfg.SentinelPassword,
			ClientName:            opts.ClientName,
			Username:              cfg.Username,
			Password:              cfg.Password,
			DB:                    cfg.DB,
			TLSConfig:             cfg.TLS,
			Protocol:              2,
			MaxRetries:            maxRetries,
			DialerRetries:         dialAttempts,
			DialTimeout:           cfg.DialTimeout,
			ReadTimeout:           cfg.ReadTimeout,
			WriteTimeout:          cfg.WriteTimeout,
			ContextTimeoutEnabled: true,
			DisableIdentity:       true,
		})
		return r
	}
	r.c = redis.NewClient(&redis.Options{
		Addr:                  cfg.Addr,
		ClientName:            opts.ClientName,
		Username:              cfg.Username,
		Password:              cfg.Password,
		DB:                    cfg.DB,
		TLSConfig:             cfg.TLS,
		Protocol:              2,
		MaxRetries:            maxRetries,
		DialerRetries:         dialAttempts,
		DialTimeout:           cfg.DialTimeout,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	})
	return r
}

// Close stops the feed, closes every subscription and the connections.
// Later calls return nil; later method calls fail with ErrUnavailable.
func (r *Redis) Close() error {
	var err error
	r.closeOnce.Do(func() {
		r.stopFeed()
		r.hub.close()
		if cerr := r.c.Close(); cerr != nil {
			err = unavailable(cerr)
		}
	})
	return err
}

// Ping reports whether the server answers.
func (r *Redis) Ping(ctx context.Context) error {
	return r.wrap(r.c.Ping(ctx).Err())
}

// wrap maps go-redis errors: a nil reply is ErrNotFound, everything else
// (refused, timeout, context, auth, closed client, script error) wraps
// ErrUnavailable.
//
// The nil reply is matched by identity, not errors.Is: go-redis wraps
// redis.Nil inside connection errors too ("all sentinels specified in
// configuration are unreachable: redis: nil"), and an outage must never
// read as "no such lock".
func (r *Redis) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case err == redis.Nil: //nolint:errorlint // identity on purpose, see above
		return ErrNotFound
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrInvalid):
		return err
	}
	return unavailable(err)
}

// RouteRedisLogs sends go-redis's own log lines (dial failures, sentinel
// changes) to log at Debug level instead of the standard error. go-redis
// has one logger per process, so this is process-wide: cmd calls it once.
func RouteRedisLogs(log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	redis.SetLogger(redisLogger{log})
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis", "msg", fmt.Sprintf(format, v...))
}

func (r *Redis) key(ns, id string) string { return r.prefix + ns + ":" + id }

func (r *Redis) sessKey(id string) string        { return r.key("sess", id) }
func (r *Redis) userIndexKey(user string) string { return r.key("usess", user) }
func (r *Redis) allIndexKey() string             { return r.key("sessall", "") }
func (r *Redis) usersKey() string                { return r.key("user", "") }
func (r *Redis) enrolKey() string                { return r.key("enrol", "") }
func (r *Redis) recoveryKey(user string) string  { return r.key("rc", user) }
func (r *Redis) counterKey(k string) string      { return r.key("ctr", k) }
func (r *Redis) locksKey() string                { return r.key("lock", "") }
func (r *Redis) ephemeralKey(k string) string    { return r.key("eph", k) }
func (r *Redis) presenceKey(kind string) string  { return r.key("pres", kind) }
func (r *Redis) presenceExpKey(kind string) string {
	return r.key("pexp", kind)
}
func (r *Redis) recordsKey(kind string) string { return r.key("rec", kind) }

func (r *Redis) stepKey(user string, step uint64) string {
	return r.key("step", user+":"+strconv.FormatUint(step, 10))
}

// ms converts a positive duration to whole milliseconds, rounding up so a
// TTL never becomes shorter (or zero) on the wire.
func ms(d time.Duration) int64 {
	n := d.Milliseconds()
	if time.Duration(n)*time.Millisecond < d {
		n++
	}
	return max(n, 1)
}

// isOverflow recognises Redis's INCRBY overflow reply, a caller error.
func isOverflow(err error) bool {
	return err != nil && strings.Contains(err.Error(), "would overflow")
}
