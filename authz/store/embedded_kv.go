package store

import (
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"time"

	"go.etcd.io/bbolt"
)

// This file holds the embedded store's simple key/value namespaces: users,
// enrolments, TOTP steps, recovery codes, counters, locks and ephemeral
// records.

// getBlob returns the single field of a live record.
func (e *Embedded) getBlob(ctx context.Context, bucket []byte, what, key string) ([]byte, error) {
	if err := checkKey(what, key); err != nil {
		return nil, err
	}
	var out []byte
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		r, err := e.get(tx, bucket, []byte(key), 1)
		if err == nil {
			out = r.fields[0]
		}
		return err
	})
	return out, err
}

func (e *Embedded) putBlob(ctx context.Context, bucket []byte, what, key string, val []byte, expires int64) error {
	if err := checkKey(what, key); err != nil {
		return err
	}
	if err := checkValue(what+" value", val); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), encodeRecord(expires, val))
	})
}

func (e *Embedded) deleteKey(ctx context.Context, bucket []byte, what, key string) error {
	if err := checkKey(what, key); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(key)) })
}

// PutUser stores the opaque user record.
func (e *Embedded) PutUser(ctx context.Context, userID string, data []byte) error {
	return e.putBlob(ctx, bucketUsers, "user ID", userID, data, 0)
}

// GetUser returns ErrNotFound for unknown users.
func (e *Embedded) GetUser(ctx context.Context, userID string) ([]byte, error) {
	return e.getBlob(ctx, bucketUsers, "user ID", userID)
}

// DeleteUser is idempotent.
func (e *Embedded) DeleteUser(ctx context.Context, userID string) error {
	return e.deleteKey(ctx, bucketUsers, "user ID", userID)
}

// ListUsers returns every user record by ID.
func (e *Embedded) ListUsers(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
			r, err := e.get(tx, bucketUsers, k, 1)
			if err != nil {
				return err
			}
			out[string(k)] = r.fields[0]
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetEnrolment returns ErrNotFound when userID has no enrolment.
func (e *Embedded) GetEnrolment(ctx context.Context, userID string) ([]byte, error) {
	return e.getBlob(ctx, bucketEnrol, "user ID", userID)
}

// PutEnrolment stores the (already encrypted) enrolment blob.
func (e *Embedded) PutEnrolment(ctx context.Context, userID string, blob []byte) error {
	return e.putBlob(ctx, bucketEnrol, "user ID", userID, blob, 0)
}

// DeleteEnrolment is idempotent.
func (e *Embedded) DeleteEnrolment(ctx context.Context, userID string) error {
	return e.deleteKey(ctx, bucketEnrol, "user ID", userID)
}

// ListEnrolled returns the enrolled user IDs, sorted.
func (e *Embedded) ListEnrolled(ctx context.Context) ([]string, error) {
	var out []string
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketEnrol).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil // bbolt iterates in byte order: already sorted
}

// ClaimStep marks (userID, step) used for ttl and reports whether this call
// was the first. bbolt runs one writer at a time, so check-then-put is
// atomic.
func (e *Embedded) ClaimStep(ctx context.Context, userID string, step uint64, ttl time.Duration) (bool, error) {
	if err := checkKey("user ID", userID); err != nil {
		return false, err
	}
	if err := checkTTL("step TTL", ttl); err != nil {
		return false, err
	}
	first := false
	err := e.update(ctx, func(tx *bbolt.Tx) error {
		key := stepKey(userID, step)
		_, err := e.get(tx, bucketSteps, key, 0)
		switch {
		case err == nil:
			first = false
			return nil
		case !errors.Is(err, ErrNotFound):
			return err
		}
		first = true
		return tx.Bucket(bucketSteps).Put(key, encodeRecord(afterNanos(e.now(), ttl)))
	})
	return first && err == nil, err
}

// PutRecoveryCodes replaces the user's set (duplicates collapse; an empty
// list removes the set).
func (e *Embedded) PutRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	if err := checkKey("user ID", userID); err != nil {
		return err
	}
	if err := checkHashes(hashes); err != nil {
		return err
	}
	set := slices.Clone(hashes)
	slices.Sort(set)
	set = slices.Compact(set)
	return e.update(ctx, func(tx *bbolt.Tx) error { return putCodes(tx, userID, set) })
}

func putCodes(tx *bbolt.Tx, userID string, set []string) error {
	b := tx.Bucket(bucketRecovery)
	if len(set) == 0 {
		return b.Delete([]byte(userID))
	}
	fields := make([][]byte, len(set))
	for i, h := range set {
		fields[i] = []byte(h)
	}
	return b.Put([]byte(userID), encodeRecord(0, fields...))
}

func (e *Embedded) codes(tx *bbolt.Tx, userID string) ([]string, error) {
	r, err := e.get(tx, bucketRecovery, []byte(userID), -1)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, len(r.fields))
	for i, f := range r.fields {
		out[i] = string(f)
	}
	return out, nil
}

// ConsumeRecoveryCode removes hash and reports whether it was present.
func (e *Embedded) ConsumeRecoveryCode(ctx context.Context, userID, hash string) (bool, error) {
	if err := checkKey("user ID", userID); err != nil {
		return false, err
	}
	if err := checkKey("recovery code hash", hash); err != nil {
		return false, err
	}
	found := false
	err := e.update(ctx, func(tx *bbolt.Tx) error {
		set, err := e.codes(tx, userID)
		if err != nil {
			return err
		}
		i := slices.Index(set, hash)
		found = i >= 0
		if !found {
			return nil
		}
		return putCodes(tx, userID, slices.Delete(set, i, i+1))
	})
	return found && err == nil, err
}

// RecoveryCodesLeft counts the user's unused recovery codes.
func (e *Embedded) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	if err := checkKey("user ID", userID); err != nil {
		return 0, err
	}
	n := 0
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		set, err := e.codes(tx, userID)
		n = len(set)
		return err
	})
	return n, err
}

// Incr adds delta to key; the first increment starts a window after which
// the counter is gone. Overflow is an ErrInvalid and leaves the counter
// unchanged.
func (e *Embedded) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error) {
	if err := checkKey("counter key", key); err != nil {
		return 0, err
	}
	if err := checkTTL("counter window", window); err != nil {
		return 0, err
	}
	var v int64
	err := e.update(ctx, func(tx *bbolt.Tx) error {
		cur, expires := int64(0), afterNanos(e.now(), window)
		r, err := e.get(tx, bucketCounters, []byte(key), 1)
		switch {
		case err == nil:
			if cur, err = decodeInt(r.fields[0]); err != nil {
				return err
			}
			expires = r.expires
		case !errors.Is(err, ErrNotFound):
			return err
		}
		if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
			return invalid("counter increment", "overflows")
		}
		v = cur + delta
		return tx.Bucket(bucketCounters).Put([]byte(key), encodeRecord(expires, encodeInt(v)))
	})
	if err != nil {
		return 0, err
	}
	return v, nil
}

// Count returns the live value of key (0 when absent or expired).
func (e *Embedded) Count(ctx context.Context, key string) (int64, error) {
	b, err := e.getBlob(ctx, bucketCounters, "counter key", key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return decodeInt(b)
}

// PutLock stores l, replacing any lock on the same subject. A lock whose
// expiry has passed is stored but never returned (and swept).
func (e *Embedded) PutLock(ctx context.Context, l Lock) error {
	if err := checkLock(l); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketLocks).Put([]byte(l.Subject), encodeLock(l))
	})
}

// AddLock stores l unless subject already has a live lock.
func (e *Embedded) AddLock(ctx context.Context, l Lock) (bool, error) {
	if err := checkLock(l); err != nil {
		return false, err
	}
	added := false
	err := e.update(ctx, func(tx *bbolt.Tx) error {
		switch _, err := e.getLock(tx, []byte(l.Subject)); {
		case err == nil:
			return nil
		case !errors.Is(err, ErrNotFound):
			return err
		}
		added = true
		return tx.Bucket(bucketLocks).Put([]byte(l.Subject), encodeLock(l))
	})
	return added && err == nil, err
}

// getLock returns the live lock on subject or ErrNotFound.
func (e *Embedded) getLock(tx *bbolt.Tx, subject []byte) (Lock, error) {
	v := tx.Bucket(bucketLocks).Get(subject)
	if v == nil {
		return Lock{}, ErrNotFound
	}
	l, err := decodeLock(string(subject), v)
	if err != nil {
		e.log.Error("corrupted lock record in state file", "path", e.path, "err", err)
		return Lock{}, err
	}
	if !liveAt(l.ExpiresAt, e.now()) {
		return Lock{}, ErrNotFound
	}
	return l, nil
}

// GetLock returns ErrNotFound when subject is not (or no longer) locked.
func (e *Embedded) GetLock(ctx context.Context, subject string) (Lock, error) {
	if err := checkKey("lock subject", subject); err != nil {
		return Lock{}, err
	}
	var l Lock
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		l, err = e.getLock(tx, []byte(subject))
		return err
	})
	return l, err
}

// DeleteLock is idempotent.
func (e *Embedded) DeleteLock(ctx context.Context, subject string) error {
	return e.deleteKey(ctx, bucketLocks, "lock subject", subject)
}

// ListLocks returns live locks sorted by subject.
func (e *Embedded) ListLocks(ctx context.Context) ([]Lock, error) {
	var out []Lock
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketLocks).ForEach(func(k, _ []byte) error {
			l, err := e.getLock(tx, k)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err == nil {
				out = append(out, l)
			}
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subject < out[j].Subject })
	return out, nil
}

// PutEphemeral stores val under key for ttl.
func (e *Embedded) PutEphemeral(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := checkTTL("ephemeral TTL", ttl); err != nil {
		return err
	}
	return e.putBlob(ctx, bucketEphemeral, "ephemeral key", key, val, afterNanos(e.now(), ttl))
}

// GetEphemeral returns ErrNotFound for missing or expired records.
func (e *Embedded) GetEphemeral(ctx context.Context, key string) ([]byte, error) {
	return e.getBlob(ctx, bucketEphemeral, "ephemeral key", key)
}

// TakeEphemeral atomically returns and deletes the record, so it can be
// used once.
func (e *Embedded) TakeEphemeral(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey("ephemeral key", key); err != nil {
		return nil, err
	}
	var out []byte
	err := e.update(ctx, func(tx *bbolt.Tx) error {
		r, err := e.get(tx, bucketEphemeral, []byte(key), 1)
		if err != nil {
			return err
		}
		out = r.fields[0]
		return tx.Bucket(bucketEphemeral).Delete([]byte(key))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteEphemeral is idempotent.
func (e *Embedded) DeleteEphemeral(ctx context.Context, key string) error {
	return e.deleteKey(ctx, bucketEphemeral, "ephemeral key", key)
}

// Publish delivers e to every subscriber of this process (the embedded
// store is single-node: there is no other instance).
func (e *Embedded) Publish(ctx context.Context, ev Event) error {
	if err := checkEvent(ev); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return unavailable(err)
	}
	if e.hub.isClosed() {
		return unavailable(errClosed)
	}
	e.hub.publish(ev)
	return nil
}

// Subscribe returns a channel that starts with EventResync and then
// carries every event published after Subscribe returns.
func (e *Embedded) Subscribe(ctx context.Context) (<-chan Event, error) {
	return e.hub.subscribe(ctx)
}
