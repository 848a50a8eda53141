// Package mfa is the second factor: TOTP enrolment and verification on
// pquerna/otp with a replay guard (a time step once accepted is never
// accepted again for that user, on any instance — pquerna/otp keeps no
// state), failure counting, hashed one-time recovery codes, and secrets
// encrypted at rest with AES-256-GCM.
//
// Trust boundary: codes come from users and are hostile until normalised;
// user IDs come from a verified identity (the caller's responsibility).
// Every store failure is reported as an error wrapping store.ErrUnavailable
// so callers deny with "state store unavailable" — never as "invalid code",
// which would let an outage masquerade as a typo (or vice versa).
package mfa

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/store"
)

// TOTP parameters: what every authenticator app supports (RFC 6238
// defaults). Changing any of them invalidates existing enrolments.
const (
	period     = 30 // seconds per time step
	digits     = 6
	secretSize = 20 // bytes = 160 bits, the RFC 4226 recommendation
)

const (
	// DefaultIssuer is shown in authenticator apps when Config.Issuer is empty.
	DefaultIssuer = "Portcullis"
	// DefaultSkew is the number of steps accepted either side of now.
	DefaultSkew = 1
	// MaxSkew bounds Config.Skew: each extra step multiplies the chance of
	// a guessed code being accepted.
	MaxSkew = 2
	// DefaultRecoveryCodes is how many recovery codes an enrolment gets.
	DefaultRecoveryCodes = 10
	// KeySize is the exact length of Config.Key (AES-256).
	KeySize = 32

	// PendingTTL is how long a started enrolment waits for confirmation.
	PendingTTL = 10 * time.Minute
	// FailureWindow is the window of the failure counters.
	FailureWindow = 15 * time.Minute

	maxIssuerLen      = 100
	maxRecoveryCodes  = 100
	maxAccountNameLen = 200
)

// Errors. The messages are safe to show to users; they never say whether a
// code was wrong, replayed or malformed.
var (
	ErrInvalidCode        = errors.New("invalid code")
	ErrNotEnrolled        = errors.New("no second factor enrolled")
	ErrNoPendingEnrolment = errors.New("no enrolment in progress (it may have expired)")
	ErrAlreadyEnrolled    = errors.New("a second factor is already enrolled")
	ErrInvalidUser        = errors.New("invalid user ID")
	// ErrCorruptRecord means a stored secret failed authenticated
	// decryption: the key changed, or the record was tampered with or
	// copied from another user. It is a server fault (deny, alert), not a
	// wrong code, so it is never counted as a user failure.
	ErrCorruptRecord = errors.New("second factor record cannot be decrypted")
)

// Config configures the second factor.
type Config struct {
	// Issuer names the service in authenticator apps (default "Portcullis").
	Issuer string
	// Key encrypts secrets at rest and keys the recovery-code hashes.
	// Exactly 32 random bytes; losing it invalidates every enrolment.
	Key []byte
	// Skew is how many 30 s steps either side of now are accepted
	// (default 1, at most 2).
	Skew uint
	// RecoveryCodes is how many recovery codes an enrolment gets (default 10).
	RecoveryCodes int
}

func (c Config) withDefaults() Config {
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Skew == 0 {
		c.Skew = DefaultSkew
	}
	if c.RecoveryCodes == 0 {
		c.RecoveryCodes = DefaultRecoveryCodes
	}
	return c
}

// Validate reports configuration errors as *authz.FieldError values joined
// with errors.Join. Zero values mean "default" and are valid, except Key.
// The key is reported under "key_file" because that is where it comes from
// in the config file.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(path, msg string) { errs = append(errs, &authz.FieldError{Path: path, Msg: msg}) }

	switch {
	case len(c.Issuer) > maxIssuerLen:
		add("issuer", fmt.Sprintf("must be at most %d bytes", maxIssuerLen))
	case !utf8.ValidString(c.Issuer):
		add("issuer", "must be valid UTF-8")
	case strings.ContainsRune(c.Issuer, ':'):
		// The otpauth label is "issuer:account"; a colon would make apps
		// split it in the wrong place.
		add("issuer", "must not contain ':'")
	case strings.IndexFunc(c.Issuer, isControl) >= 0:
		add("issuer", "must not contain control characters")
	}

	switch {
	case len(c.Key) != KeySize:
		add("key_file", fmt.Sprintf("must hold exactly %d bytes (got %d)", KeySize, len(c.Key)))
	case allZero(c.Key):
		add("key_file", "must be random, not all zero")
	}

	if c.Skew > MaxSkew {
		add("skew", fmt.Sprintf("must be at most %d", MaxSkew))
	}
	if c.RecoveryCodes < 0 || c.RecoveryCodes > maxRecoveryCodes {
		add("recovery_codes", fmt.Sprintf("must be between 1 and %d", maxRecoveryCodes))
	}
	return errors.Join(errs...)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

func allZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return acc == 0
}

// Store is the part of the state store the second factor needs.
type Store interface {
	GetEnrolment(ctx context.Context, userID string) ([]byte, error)
	PutEnrolment(ctx context.Context, userID string, blob []byte) error
	DeleteEnrolment(ctx context.Context, userID string) error
	ClaimStep(ctx context.Context, userID string, step uint64, ttl time.Duration) (bool, error)
	PutRecoveryCodes(ctx context.Context, userID string, hashes []string) error
	ConsumeRecoveryCode(ctx context.Context, userID, hash string) (bool, error)
	RecoveryCodesLeft(ctx context.Context, userID string) (int, error)

	Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error)
	Count(ctx context.Context, key string) (int64, error)

	PutEphemeral(ctx context.Context, key string, val []byte, ttl time.Duration) error
	GetEphemeral(ctx context.Context, key string) ([]byte, error)
	TakeEphemeral(ctx context.Context, key string) ([]byte, error)
	DeleteEphemeral(ctx context.Context, key string) error
}

var _ Store = (store.Store)(nil)

// Options are the injected dependencies.
type Options struct {
	Now    func() time.Time // default time.Now
	Rand   io.Reader        // default crypto/rand.Reader
	Logger *slog.Logger     // default: discard
}

// Manager enrols and verifies second factors. It is safe for concurrent
// use; all shared state lives in the Store, so several instances (and
// several Managers) over one store enforce one replay guard.
type Manager struct {
	cfg    Config
	st     Store
	now    func() time.Time
	rand   io.Reader
	log    *slog.Logger
	sealer sealer
	recKey []byte // HMAC key for recovery-code hashes (derived from cfg.Key)
}

// New validates cfg and returns a Manager over st.
func New(cfg Config, st Store, opts Options) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	if st == nil {
		return nil, errors.New("mfa: nil store")
	}
	m := &Manager{cfg: cfg, st: st, now: opts.Now, rand: opts.Rand, log: opts.Logger}
	if m.now == nil {
		m.now = time.Now
	}
	if m.rand == nil {
		m.rand = rand.Reader
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if m.sealer, m.recKey, err = deriveKeys(cfg.Key); err != nil {
		return nil, fmt.Errorf("mfa: %w", err)
	}
	return m, nil
}

// Store keys. Exported as functions so the lockdown code reads the same
// counters this package writes.

// FailureKey is the counter of failed TOTP verifications for userID.
func FailureKey(userID string) string { return "mfa-fail:" + userID }

// RecoveryFailureKey is the counter of failed recovery-code attempts.
func RecoveryFailureKey(userID string) string { return "mfa-recovery-fail:" + userID }

func pendingKey(userID string) string { return "mfa-pending:" + userID }

// unavailable makes sure a store failure wraps store.ErrUnavailable even if
// a backend forgot to, so no caller can mistake it for a verdict on a code.
func unavailable(op string, err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("mfa: %s: %w", op, err)
	}
	return fmt.Errorf("mfa: %s: %w: %w", op, store.ErrUnavailable, err)
}

func checkUser(userID string) error {
	// A user ID comes from a verified identity, but an empty one must never
	// address a shared record ("mfa-fail:" for everybody).
	if userID == "" || !utf8.ValidString(userID) {
		return ErrInvalidUser
	}
	return nil
}

// Enrolled reports whether userID has a confirmed enrolment.
func (m *Manager) Enrolled(ctx context.Context, userID string) (bool, error) {
	if err := checkUser(userID); err != nil {
		return false, err
	}
	_, err := m.st.GetEnrolment(ctx, userID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	default:
		return false, unavailable("get enrolment", err)
	}
}

// Failures is the number of failed TOTP verifications for userID in the
// current window (FailureWindow from the first failure).
func (m *Manager) Failures(ctx context.Context, userID string) (int64, error) {
	return m.count(ctx, userID, FailureKey)
}

// RecoveryFailures is the number of failed recovery-code attempts.
func (m *Manager) RecoveryFailures(ctx context.Context, userID string) (int64, error) {
	return m.count(ctx, userID, RecoveryFailureKey)
}

func (m *Manager) count(ctx context.Context, userID string, key func(string) string) (int64, error) {
	if err := checkUser(userID); err != nil {
		return 0, err
	}
	n, err := m.st.Count(ctx, key(userID))
	if err != nil {
		return 0, unavailable("count failures", err)
	}
	return n, nil
}

// fail counts a failed attempt under key and returns verdict, unless the
// count cannot be recorded: then the store error wins, because an
// uncounted failure would give an attacker free guesses during an outage.
func (m *Manager) fail(ctx context.Context, key, userID, why string, verdict error) error {
	n, err := m.st.Incr(ctx, key, 1, FailureWindow)
	if err != nil {
		return unavailable("count failure", err)
	}
	// Never log the code itself: only why it failed and the running count.
	m.log.InfoContext(ctx, "mfa: verification failed", "user_id", userID, "why", why, "failures", n)
	return verdict
}
