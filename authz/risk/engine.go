package risk

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/internal/webhook"
	"github.com/portcullis/portcullis/authz/store"
)

// Store is what the engine needs from the state store.
type Store interface {
	Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error)
	Count(ctx context.Context, key string) (int64, error)
	AddLock(ctx context.Context, l store.Lock) (bool, error)
	GetLock(ctx context.Context, subject string) (store.Lock, error)
	DeleteLock(ctx context.Context, subject string) error
	ListLocks(ctx context.Context) ([]store.Lock, error)
	PutEphemeral(ctx context.Context, key string, val []byte, ttl time.Duration) error
	GetEphemeral(ctx context.Context, key string) ([]byte, error)
	Publish(ctx context.Context, e store.Event) error
}

var _ Store = store.Store(nil)

// Revoker ends what a locked user still holds: web sessions, SSH
// certificates. The engine calls every revoker when it locks a user.
type Revoker interface {
	RevokeUser(ctx context.Context, userID, reason string) error
}

// Options are the engine's injected dependencies.
type Options struct {
	Instance string
	Now      func() time.Time                     // default time.Now
	Rand     io.Reader                            // incident references; default crypto/rand
	Logger   *slog.Logger                         // default: discard
	Audit    audit.Emitter                        // required
	Revokers []Revoker                            // called on every new user lock
	Client   *http.Client                         // webhooks; default 10s timeout
	After    func(time.Duration) <-chan time.Time // backoff timer; default time.After
	// Geo places login sources for the impossible-travel check (an
	// *GeoIP opened from Config.GeoIPDatabase); nil turns the check off.
	Geo Locator
}

// Reason codes of verdicts and locks (stable: audit events, admin locks).
const (
	ReasonAccountLocked = "account-locked" // verdict: the user is locked
	ReasonSourceBlocked = "source-blocked" // verdict: the address or its network is blocked
	ReasonCanary        = "canary-touched" // lock: a canary resource was touched
	ReasonAdminLock     = "admin-lock"     // lock: set by an admin
	ReasonSourceIP      = "source-failures"
	ReasonSourceNetwork = "network-failures"
	ReasonNewNetwork    = "new-network"
	ReasonTravel        = "impossible-travel"
	ReasonOddHour       = "unusual-hour"
	ReasonRequestRate   = "request-rate"
	ReasonDownload      = "download-volume"
)

// LockReason is the lock reason code for too many failures of s
// ("totp-failures", "denied-decisions" …).
func LockReason(s Signal) string { return strings.ReplaceAll(ConfigKey(s), "_", "-") }

// ErrNotLocked is returned by Unlock when there is nothing to lift.
var ErrNotLocked = errors.New("not locked")

// Verdict is what an enforcement point obeys.
type Verdict struct {
	Allow  bool
	Reason string // ReasonAccountLocked or ReasonSourceBlocked when denied
	Ref    string // the lock's incident reference, shown to the user
}

var allow = Verdict{Allow: true}

// Engine makes risk decisions. It is safe for concurrent use.
type Engine struct {
	cfg    atomic.Pointer[compiled]
	st     Store
	opts   Options
	log    *slog.Logger
	alerts *webhook.Sender[Alert]
	usage  usageTable
	dedup  struct {
		sync.Mutex
		seen map[string]time.Time
	}
}

// New returns an engine with cfg (validated, defaults applied).
func New(cfg Config, st Store, opts Options) (*Engine, error) {
	if st == nil || opts.Audit == nil {
		return nil, errors.New("risk: store and audit emitter are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.After == nil {
		opts.After = time.After
	}
	e := &Engine{st: st, opts: opts, log: opts.Logger.With("component", "risk")}
	e.dedup.seen = map[string]time.Time{}
	e.alerts = newAlerter(opts.Client, opts.After, e.log)
	if err := e.SetConfig(cfg); err != nil {
		return nil, err
	}
	return e, nil
}

// SetConfig swaps the configuration (reload). Counts and locks survive.
func (e *Engine) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("risk: %w", err)
	}
	c := compile(cfg.WithDefaults())
	e.cfg.Store(c)
	e.alerts.SetSinks(webhookSinks(c.Webhooks))
	return nil
}

// Config returns the configuration in force (defaults applied).
func (e *Engine) Config() Config { return e.cfg.Load().Config }

func (e *Engine) now() time.Time { return e.opts.Now() }

// Run delivers alerts and flushes usage counts until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { e.alerts.Run(ctx) })
	wg.Go(func() { e.runUsage(ctx) })
	wg.Wait()
}

// UserSubject and SourceSubject are the lock subjects for a user and a
// source address or prefix.
func UserSubject(userID string) string { return "user:" + userID }

// SourceSubject is "ip:<addr>" or "ip:<prefix>".
func SourceSubject(p netip.Prefix) string {
	if p.IsSingleIP() {
		return "ip:" + p.Addr().String()
	}
	return "ip:" + p.String()
}

// sources are the subjects an address is counted and blocked under: the
// address and its /24 or /64.
func sources(ip netip.Addr) (addr, network netip.Prefix) {
	ip = ip.Unmap()
	bits := 24
	if ip.Is6() {
		bits = 64
	}
	addr = netip.PrefixFrom(ip, ip.BitLen())
	network, _ = ip.Prefix(bits)
	return addr, network
}

// Gate tells whether userID ("" when not known yet) may authenticate from
// ip: not locked, source not blocked. Callers ask before verifying any
// factor, so a blocked source cannot make failures count against users.
// A store failure is returned as an error wrapping store.ErrUnavailable:
// deny (fail closed).
func (e *Engine) Gate(ctx context.Context, userID string, ip netip.Addr) (Verdict, error) {
	if userID != "" {
		if v, err := e.lockVerdict(ctx, UserSubject(userID), ReasonAccountLocked); err != nil || !v.Allow {
			return v, err
		}
	}
	if !ip.IsValid() {
		return allow, nil
	}
	addr, network := sources(ip)
	for _, p := range []netip.Prefix{addr, network} {
		if v, err := e.lockVerdict(ctx, SourceSubject(p), ReasonSourceBlocked); err != nil || !v.Allow {
			return v, err
		}
	}
	return allow, nil
}

// Locked reports whether userID is locked (same contract as Gate).
func (e *Engine) Locked(ctx context.Context, userID string) (Verdict, error) {
	return e.lockVerdict(ctx, UserSubject(userID), ReasonAccountLocked)
}

func (e *Engine) lockVerdict(ctx context.Context, subject, reason string) (Verdict, error) {
	l, err := e.st.GetLock(ctx, subject)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return allow, nil
	case err != nil:
		return Verdict{Reason: reason}, unavailable(err)
	}
	return Verdict{Reason: reason, Ref: l.Ref}, nil
}

func unavailable(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}

// Fail counts one failure of sig by userID ("" when unknown, e.g. an OIDC
// callback that never got to a user) from ip, against the user and the
// source, and locks or blocks when a threshold is reached. It returns the
// verdict after counting: a caller can tell the user at once that the
// account is now locked. Count first, then decide: each instance's
// increment result is what decides, so parallel failures cannot slip
// under a threshold.
func (e *Engine) Fail(ctx context.Context, sig Signal, userID string, ip netip.Addr) (Verdict, error) {
	c := e.cfg.Load()
	if c.Disabled {
		return e.Gate(ctx, userID, ip)
	}
	now := e.now()
	if ip.IsValid() && sig != SignalDenied {
		addr, network := sources(ip)
		if err := e.countSource(ctx, c, sig, userID, addr, c.SourceIP, ReasonSourceIP, now); err != nil {
			return Verdict{}, err
		}
		if err := e.countSource(ctx, c, sig, userID, network, c.SourceNetwork, ReasonSourceNetwork, now); err != nil {
			return Verdict{}, err
		}
	}
	if userID != "" {
		if t := c.User[sig]; t.Count > 0 {
			n, err := e.hit(ctx, UserSubject(userID), string(sig), t.Window, now)
			if err != nil {
				return Verdict{}, err
			}
			if n >= int64(t.Count) {
				// Parallel failures at or above the threshold race to
				// write the lock (AddLock: one wins). The lock was
				// decided when the count reached the threshold, so the
				// record says so whichever failure wins; "observed" is
				// what the winner counted.
				detail := fmt.Sprintf("%d %s in %s (threshold %d)", t.Count, sig, t.Window, t.Count)
				if _, err := e.lock(ctx, userID, ip, LockReason(sig), detail, "", map[string]string{
					"signal": string(sig), "count": strconv.Itoa(t.Count), "observed": strconv.FormatInt(n, 10),
					"threshold": strconv.Itoa(t.Count), "window": t.Window.String(),
				}); err != nil {
					return Verdict{}, err
				}
			}
		}
	}
	return e.Gate(ctx, userID, ip)
}

func (e *Engine) countSource(ctx context.Context, c *compiled, sig Signal, userID string, p netip.Prefix, t Threshold, reason string, now time.Time) error {
	subject := SourceSubject(p)
	n, err := e.hit(ctx, subject, "failures", t.Window, now)
	if err != nil || n < int64(t.Count) {
		return err
	}
	// As for user locks: the block was decided at the threshold, whichever
	// of several parallel failures wins AddLock; "observed" is its count.
	detail := fmt.Sprintf("%d failures in %s (threshold %d), last %s", t.Count, t.Window, t.Count, sig)
	return e.block(ctx, c, p, reason, detail, userID, map[string]string{
		"signal": string(sig), "count": strconv.Itoa(t.Count), "observed": strconv.FormatInt(n, 10),
		"threshold": strconv.Itoa(t.Count), "window": t.Window.String(),
	})
}

// block blocks a source for SourceBlock, doubled for every block of the
// same source in the past day, up to SourceBlockMax.
func (e *Engine) block(ctx context.Context, c *compiled, p netip.Prefix, reason, detail, userID string, attrs map[string]string) error {
	subject := SourceSubject(p)
	repeatKey := "risk:blocks:" + subject
	repeats, err := e.st.Count(ctx, repeatKey)
	if err != nil {
		return unavailable(err)
	}
	dur := c.SourceBlock
	for i := int64(0); i < repeats && dur < c.SourceBlockMax; i++ {
		dur *= 2
	}
	dur = min(dur, c.SourceBlockMax)
	now := e.now()
	ref := e.newRef()
	added, err := e.st.AddLock(ctx, store.Lock{Subject: subject, Reason: reason, Ref: ref,
		CreatedAt: now, ExpiresAt: now.Add(dur), Detail: detail})
	if err != nil || !added {
		return unavailableOrNil(err)
	}
	if _, err := e.st.Incr(ctx, repeatKey, 1, 24*time.Hour); err != nil {
		e.log.ErrorContext(ctx, "counting a block repeat", "subject", subject, "err", err)
	}
	attrs["subject"] = subject
	attrs["duration"] = dur.String()
	// The same spelling as every other event's source_ip for an address
	// ("192.0.2.7", not "192.0.2.7/32"), so a search by address finds it.
	src := strings.TrimPrefix(subject, "ip:")
	e.log.WarnContext(ctx, "source blocked", "subject", subject, "reason", reason, "detail", detail, "for", dur, "ref", ref)
	e.opts.Audit.Emit(ctx, audit.Event{Type: audit.TypeRiskBlock, UserID: userID, SourceIP: src,
		Decision: audit.Deny, Reason: reason, Ref: ref, Attrs: attrs})
	e.publish(ctx, store.Event{Kind: store.EventLocked, Subject: subject, Reason: reason})
	e.alert(Alert{Kind: "block", Subject: subject, Reason: reason, UserID: userID, SourceIP: src,
		Ref: ref, Detail: detail})
	return nil
}

func unavailableOrNil(err error) error {
	if err == nil {
		return nil
	}
	return unavailable(err)
}

// lock locks userID (no expiry) unless already locked, and when this call
// set the lock, ends everything the user holds, audits and alerts. It
// reports whether it set the lock.
func (e *Engine) lock(ctx context.Context, userID string, ip netip.Addr, reason, detail, actor string, attrs map[string]string) (bool, error) {
	subject := UserSubject(userID)
	ref := e.newRef()
	added, err := e.st.AddLock(ctx, store.Lock{Subject: subject, Reason: reason, Ref: ref,
		CreatedAt: e.now(), Detail: detail})
	if err != nil {
		return false, unavailable(err)
	}
	if !added {
		return false, nil
	}
	// The lock record alone already refuses every new login on every
	// instance; the event and the revokers end what is live.
	e.publish(ctx, store.Event{Kind: store.EventLocked, Subject: subject, Reason: reason})
	for _, r := range e.opts.Revokers {
		if err := r.RevokeUser(ctx, userID, reason); err != nil {
			// Web sessions are served from memory without a lock check:
			// a revocation that failed must not be given up on.
			e.log.ErrorContext(ctx, "revoking a locked user's credentials; retrying", "user_id", userID, "err", err)
			go e.retryRevoke(context.WithoutCancel(ctx), r, userID, reason)
		}
	}
	src := ""
	if ip.IsValid() {
		src = ip.Unmap().String()
	}
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs["subject"] = subject
	e.log.WarnContext(ctx, "account locked", "user_id", userID, "reason", reason, "detail", detail, "ref", ref)
	e.opts.Audit.Emit(ctx, audit.Event{Type: audit.TypeRiskLock, UserID: userID, SourceIP: src,
		Decision: audit.Deny, Reason: reason, Ref: ref, Actor: actor, Attrs: attrs})
	e.alert(Alert{Kind: "lock", Subject: subject, Reason: reason, UserID: userID, SourceIP: src,
		Ref: ref, Detail: detail, Actor: actor})
	return true, nil
}

// Revocation retries after a lock: backoff from revokeRetryFirst,
// doubling, for revokeRetries attempts (about 8.5 minutes in all).
const (
	revokeRetries    = 10
	revokeRetryFirst = time.Second
)

// retryRevoke retries a revoker that failed for a new lock, with
// exponential backoff, until it succeeds or the user is unlocked.
func (e *Engine) retryRevoke(ctx context.Context, r Revoker, userID, reason string) {
	wait := revokeRetryFirst
	for attempt := 1; attempt <= revokeRetries; attempt++ {
		<-e.opts.After(wait)
		if _, err := e.st.GetLock(ctx, UserSubject(userID)); errors.Is(err, store.ErrNotFound) {
			return // unlocked meanwhile: nothing to end
		}
		err := r.RevokeUser(ctx, userID, reason)
		if err == nil {
			e.log.InfoContext(ctx, "revoked a locked user's credentials after a retry", "user_id", userID, "attempt", attempt)
			return
		}
		e.log.ErrorContext(ctx, "revoking a locked user's credentials failed again", "user_id", userID, "attempt", attempt, "err", err)
		wait = min(2*wait, time.Minute)
	}
	e.log.ErrorContext(ctx, "gave up revoking a locked user's credentials: their sessions end at expiry", "user_id", userID)
}

func (e *Engine) publish(ctx context.Context, ev store.Event) {
	if err := e.st.Publish(ctx, ev); err != nil {
		// The lock record is what refuses logins; a lost event is covered
		// by the feed's resync, on which instances drop their caches.
		e.log.ErrorContext(ctx, "publishing a lock event", "subject", ev.Subject, "err", err)
	}
}

// newRef is an incident reference, shown to the locked user and in
// admin locks, so a support request can be matched to the lock.
func (e *Engine) newRef() string { return audit.NewRef(e.opts.Rand) }

// Lock locks userID on an admin's request.
func (e *Engine) Lock(ctx context.Context, userID, why, actor string) (store.Lock, error) {
	if userID == "" {
		return store.Lock{}, errors.New("risk: empty user ID")
	}
	if _, err := e.lock(ctx, userID, netip.Addr{}, ReasonAdminLock, "locked by "+actor+": "+why, actor, map[string]string{"why": why}); err != nil {
		return store.Lock{}, err
	}
	l, err := e.st.GetLock(ctx, UserSubject(userID))
	if err != nil {
		// Not even ErrNotFound is an answer here: the lock was just set.
		return store.Lock{}, unavailable(err)
	}
	return l, nil
}

// Unlock lifts the lock or block on subject ("user:<id>", "ip:<addr or
// prefix>", or a bare user ID; see LockSubject). It also starts the subject's failure
// counts afresh, so the next failure does not lock again at once.
func (e *Engine) Unlock(ctx context.Context, subject, why, actor string) (store.Lock, error) {
	subject = LockSubject(subject)
	l, err := e.st.GetLock(ctx, subject)
	if errors.Is(err, store.ErrNotFound) {
		return store.Lock{}, ErrNotLocked
	} else if err != nil {
		return store.Lock{}, unavailable(err)
	}
	if err := e.newEpoch(ctx, subject); err != nil {
		return store.Lock{}, err
	}
	if err := e.st.DeleteLock(ctx, subject); err != nil {
		return store.Lock{}, unavailable(err)
	}
	e.publish(ctx, store.Event{Kind: store.EventUnlocked, Subject: subject, Reason: l.Reason})
	userID, _ := strings.CutPrefix(subject, "user:")
	if strings.HasPrefix(subject, "ip:") {
		userID = ""
	}
	e.opts.Audit.Emit(ctx, audit.Event{Type: audit.TypeRiskUnlock, UserID: userID, Decision: audit.Allow,
		Reason: l.Reason, Ref: l.Ref, Actor: actor, Attrs: map[string]string{"subject": subject, "why": why}})
	e.alert(Alert{Kind: "unlock", Subject: subject, Reason: l.Reason, UserID: userID, Ref: l.Ref,
		Detail: "unlocked by " + actor + ": " + why, Actor: actor})
	return l, nil
}

// LockSubject is the lock subject an admin means by s: "user:<id>" as
// is, a bare user ID as "user:<id>", and "ip:<addr or prefix>" spelled as
// the engine spells it (IPv4-mapped addresses unmapped, no zone, a
// prefix masked, a single-address prefix as the address), so that
// "ip:::ffff:192.0.2.7" or "ip:192.0.2.7/32" lift the block of
// "ip:192.0.2.7". An "ip:" subject that does not parse is returned as is
// (it matches no lock).
func LockSubject(s string) string {
	rest, ok := strings.CutPrefix(s, "ip:")
	switch {
	case strings.HasPrefix(s, "user:"):
		return s
	case !ok:
		return UserSubject(s)
	}
	if a, err := netip.ParseAddr(rest); err == nil {
		return "ip:" + a.Unmap().WithZone("").String()
	}
	p, err := netip.ParsePrefix(rest)
	if err != nil {
		return s
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return s
		}
		a, bits = a.Unmap(), bits-96
	}
	return SourceSubject(netip.PrefixFrom(a, bits).Masked())
}

// Locks lists current locks and blocks.
func (e *Engine) Locks(ctx context.Context) ([]store.Lock, error) {
	ls, err := e.st.ListLocks(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	return ls, nil
}
