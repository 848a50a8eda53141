package store

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// ErrInvalid reports a caller bug: an empty or oversized key, ID or value,
// a non-positive TTL, a session without an expiry. It never wraps
// ErrUnavailable (the backend was not asked) and never ErrNotFound, so no
// caller can mistake a malformed request for a verdict.
var ErrInvalid = errors.New("invalid store argument")

// Limits shared by both backends, so that a record accepted by one is
// accepted by the other.
const (
	// MaxKeyLen bounds every key, ID and subject (bytes). bbolt's own limit
	// is 32 KiB; staying well below it leaves room for namespacing.
	MaxKeyLen = 16 << 10
	// MaxValueLen bounds every opaque value (session data, enrolment blob,
	// user record, ephemeral value).
	MaxValueLen = 1 << 20
	// MaxKindLen bounds a presence kind. Kinds are short names chosen by
	// the code ("ssh-session"); the bound keeps kind + ID within bbolt's
	// key limit.
	MaxKindLen = 256
	// MaxRecordKindLen bounds a durable record kind. Record kinds are
	// names chosen by the code, some with a generated suffix
	// ("review-item.<campaign-id>"), restricted to [A-Za-z0-9._-] so they
	// are safe in any backend's key syntax and in log lines.
	MaxRecordKindLen = 64
)

// unavailable wraps a backend failure. The detail stays in the error text
// for logs; users are shown only ErrUnavailable's own text.
func unavailable(err error) error {
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// invalid builds an ErrInvalid naming the argument but never echoing its
// value: keys can carry login state or other semi-secret material.
func invalid(what, why string) error {
	return fmt.Errorf("%w: %s %s", ErrInvalid, what, why)
}

func checkKey(what, k string) error {
	switch {
	case k == "":
		return invalid(what, "is empty")
	case len(k) > MaxKeyLen:
		return invalid(what, "is too long")
	}
	return nil
}

func checkValue(what string, v []byte) error {
	if len(v) > MaxValueLen {
		return invalid(what, "is too large")
	}
	return nil
}

func checkTTL(what string, d time.Duration) error {
	if d <= 0 {
		return invalid(what, "must be positive")
	}
	return nil
}

func checkPresence(kind, id string) error {
	switch {
	case kind == "":
		return invalid("presence kind", "is empty")
	case len(kind) > MaxKindLen:
		return invalid("presence kind", "is too long")
	}
	return checkKey("presence ID", id)
}

func checkRecordKind(kind string) error {
	switch {
	case kind == "":
		return invalid("record kind", "is empty")
	case len(kind) > MaxRecordKindLen:
		return invalid("record kind", "is too long")
	}
	for i := range len(kind) {
		switch c := kind[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return invalid("record kind", "has a character outside [A-Za-z0-9._-]")
		}
	}
	return nil
}

func checkRecord(kind, id string) error {
	if err := checkRecordKind(kind); err != nil {
		return err
	}
	return checkKey("record ID", id)
}

func checkRecordPut(kind, id string, data []byte) error {
	if err := checkRecord(kind, id); err != nil {
		return err
	}
	return checkValue("record data", data)
}

func checkRecordSwap(kind, id string, old, new []byte) error {
	if err := checkRecordPut(kind, id, new); err != nil {
		return err
	}
	return checkValue("record old data", old)
}

func checkPresencePut(kind, id string, data []byte, ttl time.Duration) error {
	if err := checkPresence(kind, id); err != nil {
		return err
	}
	if err := checkValue("presence data", data); err != nil {
		return err
	}
	return checkTTL("presence TTL", ttl)
}

func checkSession(s Session) error {
	if err := checkKey("session ID", s.ID); err != nil {
		return err
	}
	if err := checkKey("session user ID", s.UserID); err != nil {
		return err
	}
	if s.ExpiresAt.IsZero() {
		// A session that never expires is a bug the store refuses to
		// persist: absolute timeouts are a security property.
		return invalid("session expiry", "is missing")
	}
	return checkValue("session data", s.Data)
}

func checkLock(l Lock) error {
	if err := checkKey("lock subject", l.Subject); err != nil {
		return err
	}
	for _, f := range []struct{ what, v string }{
		{"lock reason", l.Reason}, {"lock ref", l.Ref}, {"lock detail", l.Detail},
	} {
		if len(f.v) > MaxKeyLen {
			return invalid(f.what, "is too long")
		}
	}
	return nil
}

func checkEvent(e Event) error {
	if err := checkKey("event kind", e.Kind); err != nil {
		return err
	}
	if e.Kind == EventResync {
		// Resync is generated locally when a subscription (re)connects;
		// publishing one would let any instance flush every cache at will.
		return invalid("event kind", "resync is never published")
	}
	if len(e.Subject) > MaxKeyLen || len(e.Reason) > MaxKeyLen {
		return invalid("event", "is too long")
	}
	if !utf8.ValidString(e.Kind) || !utf8.ValidString(e.Subject) || !utf8.ValidString(e.Reason) {
		// Events travel as JSON, which would silently replace invalid
		// bytes: a revocation must name exactly what it revokes.
		return invalid("event", "is not valid UTF-8")
	}
	return nil
}

func checkHashes(hashes []string) error {
	for _, h := range hashes {
		if err := checkKey("recovery code hash", h); err != nil {
			return err
		}
	}
	return nil
}

// liveAt reports whether a record expiring at exp (zero = never) is still
// live at now. A record is gone from the instant it expires, like a Redis
// key whose TTL reached zero.
func liveAt(exp, now time.Time) bool {
	return exp.IsZero() || now.Before(exp)
}
