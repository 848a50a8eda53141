// Package store holds the state that several Portcullis instances must
// share: web sessions, TOTP enrolments and used steps, recovery codes,
// counters with expiry, locks, short-lived one-time records (login state,
// approvals), presence entries (which instance runs which live SSH
// session), durable records (access requests, grants, review campaigns)
// and the revocation/event feed.
//
// Two backends implement Store: Embedded (single node, bbolt file, the
// default) and Redis (go-redis/v9, for several instances). Both pass the
// same conformance suite (storetest). Only this package imports go-redis.
//
// Fail closed: when a backend cannot answer, methods return an error that
// wraps ErrUnavailable. Callers must treat it as "deny", never as "not
// found" / "not locked" / "code unused". Malformed arguments (empty or
// oversized keys, non-positive TTLs) return ErrInvalid without touching the
// backend; see errors.go for the limits.
package store

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrUnavailable wraps every backend failure (connection refused,
	// timeout, corrupted record). Its text is shown to users as-is.
	ErrUnavailable = errors.New("state store unavailable")
	// ErrNotFound means the record does not exist or has expired.
	ErrNotFound = errors.New("not found")
)

// Session is a server-side web session record. Data is opaque to the store
// (the session package encodes it); UserID and ExpiresAt let the store index
// and expire it.
type Session struct {
	ID        string    // public session ID (never the cookie secret)
	UserID    string    // stable user ID
	ExpiresAt time.Time // absolute expiry; the store drops it after this
	Data      []byte
}

// Lock is an account or source lock (the lockdown issue fills Kind/Subject).
type Lock struct {
	Subject   string    // "user:<id>" or "ip:<addr or prefix>"
	Reason    string    // stable reason code
	Ref       string    // incident reference shown to the user
	CreatedAt time.Time // when it was set
	ExpiresAt time.Time // zero = no expiry (only an admin lifts it)
	Detail    string    // which signal fired, with numbers (no secrets)
}

// Event travels on the feed to every instance.
type Event struct {
	Kind    string `json:"kind"`    // see EventKind constants
	Subject string `json:"subject"` // session ID, user ID, lock subject…
	Reason  string `json:"reason,omitempty"`
}

// Feed event kinds.
const (
	EventSessionRevoked = "session-revoked" // Subject = session ID
	EventUserRevoked    = "user-revoked"    // Subject = user ID: all their sessions
	EventLocked         = "locked"          // Subject = lock subject
	EventUnlocked       = "unlocked"
	EventPolicyChanged  = "policy-changed"
	// EventGrantsChanged: Subject = user ID. A just-in-time grant of that
	// user was added, revoked or expired; caches of grants reload it.
	EventGrantsChanged = "grants-changed"
	// EventResync is delivered locally (never published) when a
	// subscription (re)connects: caches must drop everything because events
	// may have been missed.
	EventResync = "resync"
)

// Sessions stores web sessions.
type Sessions interface {
	PutSession(ctx context.Context, s Session) error
	// GetSession returns ErrNotFound for missing or expired sessions.
	GetSession(ctx context.Context, id string) (Session, error)
	// DeleteSession is idempotent.
	DeleteSession(ctx context.Context, id string) error
	// ListSessions lists live sessions; userID "" lists all.
	ListSessions(ctx context.Context, userID string) ([]Session, error)
}

// MFA stores TOTP enrolments (already encrypted by the mfa package), the
// replay guard and hashed recovery codes.
type MFA interface {
	GetEnrolment(ctx context.Context, userID string) ([]byte, error) // ErrNotFound
	PutEnrolment(ctx context.Context, userID string, blob []byte) error
	DeleteEnrolment(ctx context.Context, userID string) error
	// ClaimStep atomically marks a TOTP time step as used for userID and
	// reports whether this call was the first. The mark lives for ttl.
	ClaimStep(ctx context.Context, userID string, step uint64, ttl time.Duration) (bool, error)
	// PutRecoveryCodes replaces the user's set of hashed recovery codes.
	PutRecoveryCodes(ctx context.Context, userID string, hashes []string) error
	// ConsumeRecoveryCode atomically removes hash from the set and reports
	// whether it was present.
	ConsumeRecoveryCode(ctx context.Context, userID, hash string) (bool, error)
	RecoveryCodesLeft(ctx context.Context, userID string) (int, error)
	// ListEnrolled returns user IDs with an enrolment.
	ListEnrolled(ctx context.Context) ([]string, error)
}

// Counters are atomic counters with expiry (count first, then decide).
type Counters interface {
	// Incr adds delta to key and returns the new value. The first increment
	// starts the window; the key disappears window after that.
	Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error)
	// Count returns the current value (0 when absent or expired).
	Count(ctx context.Context, key string) (int64, error)
}

// Locks stores account and source locks.
type Locks interface {
	PutLock(ctx context.Context, l Lock) error
	// AddLock stores l only when subject has no live lock and reports
	// whether it did: of many instances deciding to lock at once, exactly
	// one wins and raises the alert.
	AddLock(ctx context.Context, l Lock) (bool, error)
	GetLock(ctx context.Context, subject string) (Lock, error) // ErrNotFound
	DeleteLock(ctx context.Context, subject string) error
	ListLocks(ctx context.Context) ([]Lock, error)
}

// Ephemeral holds short-lived records: OIDC login state, pending MFA,
// SSH approval requests. Take is an atomic get-and-delete so a record can
// be used once on any instance.
type Ephemeral interface {
	PutEphemeral(ctx context.Context, key string, val []byte, ttl time.Duration) error
	GetEphemeral(ctx context.Context, key string) ([]byte, error)  // ErrNotFound
	TakeEphemeral(ctx context.Context, key string) ([]byte, error) // ErrNotFound
	DeleteEphemeral(ctx context.Context, key string) error
}

// Feed is the cross-instance event feed (Redis pub/sub; in-process for the
// embedded store).
type Feed interface {
	Publish(ctx context.Context, e Event) error
	// Subscribe delivers every event published after it returns, on every
	// instance, including this one. The first event on the channel is
	// EventResync, and another follows each reconnect. The channel closes
	// when ctx ends or the store closes.
	Subscribe(ctx context.Context) (<-chan Event, error)
}

// Users is the directory of users seen at login (for admin listings and
// reviews). Data is opaque to the store (JSON encoded by the caller).
type Users interface {
	PutUser(ctx context.Context, userID string, data []byte) error
	GetUser(ctx context.Context, userID string) ([]byte, error) // ErrNotFound
	ListUsers(ctx context.Context) (map[string][]byte, error)
	DeleteUser(ctx context.Context, userID string) error
}

// Presence holds short-lived announcements that every instance publishes
// about itself and any instance lists: the live SSH sessions each bastion
// runs, for `admin sessions`. An entry lives until deleted or until its TTL
// passes without a refresh, so the entries of a crashed instance vanish on
// their own. Kinds are independent namespaces (a short name such as
// "ssh-session"); data is opaque to the store.
type Presence interface {
	// PutPresence creates or replaces entry id of kind and (re)starts its
	// TTL: an entry refreshed more often than its TTL never expires.
	PutPresence(ctx context.Context, kind, id string, data []byte, ttl time.Duration) error
	// DeletePresence is idempotent.
	DeletePresence(ctx context.Context, kind, id string) error
	// ListPresence returns the live entries of kind by ID (an empty map
	// when there are none).
	ListPresence(ctx context.Context, kind string) (map[string][]byte, error)
}

// Records holds durable records by kind and ID, with no expiry: access
// requests, grants, review campaigns and their items. Data is opaque.
//
// Kinds are independent namespaces named by the code: 1 to MaxRecordKindLen
// bytes of [A-Za-z0-9._-] ("access-grant", "review-item.<campaign>"). IDs
// follow the usual key limits, data MaxValueLen.
//
// With the Redis backend a write whose reply was lost may be retried once;
// a retried CreateRecord or SwapRecord then reports false although the
// first attempt took effect. Callers treat false as "re-read and decide
// again", which such a retry only makes err towards refusing.
type Records interface {
	// PutRecord creates or replaces.
	PutRecord(ctx context.Context, kind, id string, data []byte) error
	// CreateRecord stores data only when (kind, id) is absent and reports whether it did.
	CreateRecord(ctx context.Context, kind, id string, data []byte) (bool, error)
	GetRecord(ctx context.Context, kind, id string) ([]byte, error) // ErrNotFound
	// SwapRecord replaces the record with new only when its current value is
	// byte-for-byte old (compare-and-swap) and reports whether it did; new == nil
	// deletes it. ErrNotFound when absent. Many instances updating one record
	// (approvals by several approvers at once) loop Get → change → Swap.
	SwapRecord(ctx context.Context, kind, id string, old, new []byte) (bool, error)
	DeleteRecord(ctx context.Context, kind, id string) error                 // idempotent
	ListRecords(ctx context.Context, kind string) (map[string][]byte, error) // empty map when none
}

// Store is everything a Portcullis instance shares.
type Store interface {
	Users
	Sessions
	MFA
	Counters
	Locks
	Ephemeral
	Presence
	Records
	Feed
	// Ping reports whether the backend answers (wrapping ErrUnavailable).
	Ping(ctx context.Context) error
	Close() error
}
