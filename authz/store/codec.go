package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Record layout of every value in the embedded store (and of lock values
// in Redis, which must round-trip arbitrary bytes):
//
//	version (1 byte, recordVersion)
//	expiry  (8 bytes, big-endian int64 Unix nanoseconds; 0 = never)
//	fields  (repeated: uvarint length, then that many bytes)
//
// The expiry lives in a fixed header so the sweeper can drop records
// without knowing what they hold. The decoder treats the bytes as hostile
// (a damaged disk, a file edited by hand): it bounds every length by what
// is left and returns errors wrapping ErrUnavailable, never panics.
const (
	recordVersion = 1
	recordHeader  = 1 + 8
)

var errCorrupt = errors.New("corrupted record")

type record struct {
	expires int64 // Unix nanoseconds; 0 = never
	fields  [][]byte
}

func encodeRecord(expires int64, fields ...[]byte) []byte {
	n := recordHeader
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, recordHeader, n)
	b[0] = recordVersion
	binary.BigEndian.PutUint64(b[1:], uint64(expires))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// decodeRecord parses b. want is the exact number of fields the caller's
// bucket stores, or -1 for "any number" (recovery-code lists).
func decodeRecord(b []byte, want int) (record, error) {
	if len(b) < recordHeader || b[0] != recordVersion {
		return record{}, corrupt("bad header")
	}
	r := record{expires: int64(binary.BigEndian.Uint64(b[1:recordHeader]))}
	if r.expires < 0 {
		return record{}, corrupt("negative expiry")
	}
	rest := b[recordHeader:]
	for len(rest) > 0 {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return record{}, corrupt("bad field length")
		}
		rest = rest[k:]
		// Copy: bbolt values are only valid inside their transaction.
		r.fields = append(r.fields, append([]byte{}, rest[:n]...))
		rest = rest[n:]
	}
	if want >= 0 && len(r.fields) != want {
		return record{}, corrupt(fmt.Sprintf("%d fields, want %d", len(r.fields), want))
	}
	return r, nil
}

func corrupt(why string) error {
	return fmt.Errorf("%w: %w: %s", ErrUnavailable, errCorrupt, why)
}

// live reports whether r has not expired at now.
func (r record) live(now time.Time) bool {
	return r.expires == 0 || now.UnixNano() < r.expires
}

// expiryNanos maps an absolute expiry to the header's clock. Zero means
// "never". Times past int64 nanoseconds (year 2262) saturate; times before
// 1970 become 1, i.e. already expired, so no clamping ever extends a life.
func expiryNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(time.Unix(0, 1)):
		return 1
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// afterNanos is expiryNanos(now + d) without overflowing for huge d.
func afterNanos(now time.Time, d time.Duration) int64 {
	n := expiryNanos(now)
	if n > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return n + int64(d)
}

func encodeTime(t time.Time) []byte {
	b, err := t.UTC().MarshalBinary()
	if err != nil {
		// Only years outside [-32768, 32767] fail; store "zero" rather than
		// fail the write: callers validate realistic times.
		b, _ = time.Time{}.MarshalBinary()
	}
	return b
}

func decodeTime(b []byte) (time.Time, error) {
	var t time.Time
	if err := t.UnmarshalBinary(b); err != nil {
		return time.Time{}, corrupt("bad time")
	}
	return t.UTC(), nil
}

func encodeInt(v int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(v))
}

func decodeInt(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, corrupt("bad integer")
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// indexKey is the session-index key for (userID, sessionID): a uvarint
// length prefix makes the encoding injective, so user "a" never sees the
// sessions of user "a:b" or "a\x00…" in a prefix scan.
func indexPrefix(userID string) []byte {
	b := binary.AppendUvarint(nil, uint64(len(userID)))
	return append(b, userID...)
}

func indexKey(userID, sessionID string) []byte {
	return append(indexPrefix(userID), sessionID...)
}

// stepKey is userID followed by the 8-byte step: the fixed-length suffix
// makes the split unique whatever bytes userID holds.
func stepKey(userID string, step uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(userID), step)
}

// Lock records hold: reason, ref, created, expires, detail.
const lockFields = 5

func encodeLock(l Lock) []byte {
	return encodeRecord(expiryNanos(l.ExpiresAt),
		[]byte(l.Reason), []byte(l.Ref), encodeTime(l.CreatedAt), encodeTime(l.ExpiresAt), []byte(l.Detail))
}

// decodeLock parses a lock record, live or not.
func decodeLock(subject string, b []byte) (Lock, error) {
	r, err := decodeRecord(b, lockFields)
	if err != nil {
		return Lock{}, err
	}
	created, err := decodeTime(r.fields[2])
	if err != nil {
		return Lock{}, err
	}
	expires, err := decodeTime(r.fields[3])
	if err != nil {
		return Lock{}, err
	}
	return Lock{Subject: subject, Reason: string(r.fields[0]), Ref: string(r.fields[1]),
		CreatedAt: created, ExpiresAt: expires, Detail: string(r.fields[4])}, nil
}
