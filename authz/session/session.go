// Package session owns web sessions: the server-side record, the cookie
// codec, the in-memory cache that keeps store round trips off the request
// path, and the revocation feed that invalidates that cache on every
// instance. (The SSH user CA joins it in the bastion issue.)
//
// A session is identified two ways. The cookie carries a 256-bit random
// secret token (MAC'd so forged cookies are refused without a store round
// trip). The public session ID is derived from the token with SHA-256; it is
// what the store, the audit trail and `admin revoke` use. Nothing that is
// logged can be turned back into a cookie.
package session

import (
	"errors"
	"time"
)

// Errors. All of them mean "not logged in"; callers show one generic message.
var (
	ErrNoSession = errors.New("session: no valid session") // missing, forged, expired, revoked
)

// Record is what a session grants. It is immutable once created except for
// LastSeen.
type Record struct {
	ID        string    `json:"id"`      // public ID (derived from the token)
	UserID    string    `json:"user_id"` // issuer + subject
	Email     string    `json:"email,omitempty"`
	Name      string    `json:"name,omitempty"`
	Groups    []string  `json:"groups,omitempty"` // IdP groups, verified
	Roles     []string  `json:"roles,omitempty"`  // mapped at login
	MFA       bool      `json:"mfa"`
	AuthTime  time.Time `json:"auth_time"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"` // absolute timeout
	SourceIP  string    `json:"source_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
}

// Config. Zero values: IdleTimeout 30m, AbsoluteTimeout 12h, CookieName
// "__Host-portcullis".
type Config struct {
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	CookieName      string
	// CookieKey is the 32-byte HMAC key for the cookie MAC (from a secret file).
	CookieKey []byte
}
