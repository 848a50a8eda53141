package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the Redis store's simple namespaces: users, enrolments,
// TOTP steps, recovery codes, counters, locks and ephemeral records.

// incrScript adds to a counter and starts its window only when the key is
// new (or somehow lost its TTL), so later increments never extend it.
// KEYS: counter. ARGV: delta, window ms.
var incrScript = redis.NewScript(`
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
`)

// deleteIfScript deletes a hash field only if it still holds the value the
// caller saw, so pruning an expired lock cannot remove a newer one.
// KEYS: hash. ARGV: field, expected value.
var deleteIfScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`)

func (r *Redis) hget(ctx context.Context, hash, what, field string) ([]byte, error) {
	if err := checkKey(what, field); err != nil {
		return nil, err
	}
	v, err := r.c.HGet(ctx, hash, field).Bytes()
	if err != nil {
		return nil, r.wrap(err)
	}
	return v, nil
}

func (r *Redis) hset(ctx context.Context, hash, what, field string, v []byte) error {
	if err := checkKey(what, field); err != nil {
		return err
	}
	if err := checkValue(what+" value", v); err != nil {
		return err
	}
	return r.wrap(r.c.HSet(ctx, hash, field, v).Err())
}

func (r *Redis) hdel(ctx context.Context, hash, what, field string) error {
	if err := checkKey(what, field); err != nil {
		return err
	}
	return r.wrap(r.c.HDel(ctx, hash, field).Err())
}

// PutUser stores the opaque user record.
func (r *Redis) PutUser(ctx context.Context, userID string, data []byte) error {
	return r.hset(ctx, r.usersKey(), "user ID", userID, data)
}

// GetUser returns ErrNotFound for unknown users.
func (r *Redis) GetUser(ctx context.Context, userID string) ([]byte, error) {
	return r.hget(ctx, r.usersKey(), "user ID", userID)
}

// DeleteUser is idempotent.
func (r *Redis) DeleteUser(ctx context.Context, userID string) error {
	return r.hdel(ctx, r.usersKey(), "user ID", userID)
}

// ListUsers returns every user record by ID.
func (r *Redis) ListUsers(ctx context.Context) (map[string][]byte, error) {
	h, err := r.c.HGetAll(ctx, r.usersKey()).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	out := make(map[string][]byte, len(h))
	for k, v := range h {
		out[k] = []byte(v)
	}
	return out, nil
}

// GetEnrolment returns ErrNotFound when userID has no enrolment.
func (r *Redis) GetEnrolment(ctx context.Context, userID string) ([]byte, error) {
	return r.hget(ctx, r.enrolKey(), "user ID", userID)
}

// PutEnrolment stores the (already encrypted) enrolment blob.
func (r *Redis) PutEnrolment(ctx context.Context, userID string, blob []byte) error {
	return r.hset(ctx, r.enrolKey(), "user ID", userID, blob)
}

// DeleteEnrolment is idempotent.
func (r *Redis) DeleteEnrolment(ctx context.Context, userID string) error {
	return r.hdel(ctx, r.enrolKey(), "user ID", userID)
}

// ListEnrolled returns the enrolled user IDs, sorted.
func (r *Redis) ListEnrolled(ctx context.Context) ([]string, error) {
	ids, err := r.c.HKeys(ctx, r.enrolKey()).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	slices.Sort(ids)
	return ids, nil
}

// ClaimStep is SET NX PX: the server decides who was first.
func (r *Redis) ClaimStep(ctx context.Context, userID string, step uint64, ttl time.Duration) (bool, error) {
	if err := checkKey("user ID", userID); err != nil {
		return false, err
	}
	if err := checkTTL("step TTL", ttl); err != nil {
		return false, err
	}
	first, err := r.c.SetNX(ctx, r.stepKey(userID, step), 1, time.Duration(ms(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, r.wrap(err)
	}
	return first, nil
}

// PutRecoveryCodes replaces the user's set in one MULTI/EXEC.
func (r *Redis) PutRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	if err := checkKey("user ID", userID); err != nil {
		return err
	}
	if err := checkHashes(hashes); err != nil {
		return err
	}
	key := r.recoveryKey(userID)
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		if len(hashes) > 0 {
			members := make([]any, len(hashes))
			for i, h := range hashes {
				members[i] = h
			}
			p.SAdd(ctx, key, members...)
		}
		return nil
	})
	return r.wrap(err)
}

// ConsumeRecoveryCode is SREM: exactly one caller removes a member.
func (r *Redis) ConsumeRecoveryCode(ctx context.Context, userID, hash string) (bool, error) {
	if err := checkKey("user ID", userID); err != nil {
		return false, err
	}
	if err := checkKey("recovery code hash", hash); err != nil {
		return false, err
	}
	n, err := r.c.SRem(ctx, r.recoveryKey(userID), hash).Result()
	if err != nil {
		return false, r.wrap(err)
	}
	return n == 1, nil
}

// RecoveryCodesLeft counts the user's unused recovery codes.
func (r *Redis) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	if err := checkKey("user ID", userID); err != nil {
		return 0, err
	}
	n, err := r.c.SCard(ctx, r.recoveryKey(userID)).Result()
	if err != nil {
		return 0, r.wrap(err)
	}
	return int(n), nil
}

// Incr adds delta and starts the window on the first increment (Lua).
func (r *Redis) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error) {
	if err := checkKey("counter key", key); err != nil {
		return 0, err
	}
	if err := checkTTL("counter window", window); err != nil {
		return 0, err
	}
	v, err := incrScript.Run(ctx, r.c, []string{r.counterKey(key)}, delta, ms(window)).Int64()
	if isOverflow(err) {
		return 0, invalid("counter increment", "overflows")
	}
	if err != nil {
		return 0, r.wrap(err)
	}
	return v, nil
}

// Count returns the live value of key (0 when absent or expired).
func (r *Redis) Count(ctx context.Context, key string) (int64, error) {
	if err := checkKey("counter key", key); err != nil {
		return 0, err
	}
	s, err := r.c.Get(ctx, r.counterKey(key)).Result()
	if err == redis.Nil { //nolint:errorlint // identity on purpose, see wrap
		return 0, nil
	}
	if err != nil {
		return 0, r.wrap(err)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, corrupt("counter value")
	}
	return v, nil
}

// PutLock stores l, replacing any lock on the same subject. The value is
// the binary lock record (codec.go): JSON would mangle non-UTF-8 bytes.
func (r *Redis) PutLock(ctx context.Context, l Lock) error {
	if err := checkLock(l); err != nil {
		return err
	}
	return r.wrap(r.c.HSet(ctx, r.locksKey(), l.Subject, encodeLock(l)).Err())
}

// AddLock stores l unless subject already has a live lock. HSETNX makes
// the common case atomic; an expired lock in the way is removed with a
// compare-and-delete (so a newer lock is never removed) and the add retried.
func (r *Redis) AddLock(ctx context.Context, l Lock) (bool, error) {
	if err := checkLock(l); err != nil {
		return false, err
	}
	rec := encodeLock(l)
	for range 3 {
		added, err := r.c.HSetNX(ctx, r.locksKey(), l.Subject, rec).Result()
		if err != nil || added {
			return added, r.wrap(err)
		}
		raw, err := r.c.HGet(ctx, r.locksKey(), l.Subject).Result()
		if errors.Is(err, redis.Nil) {
			continue // lifted in between: try again
		} else if err != nil {
			return false, r.wrap(err)
		}
		// A corrupt record counts as a live lock: fail closed.
		if _, live, err := r.decodeLock(l.Subject, raw); err != nil || live {
			return false, nil
		}
		if err := deleteIfScript.Run(ctx, r.c, []string{r.locksKey()}, l.Subject, raw).Err(); err != nil {
			return false, r.wrap(err)
		}
	}
	return false, fmt.Errorf("%w: lock %s contended", ErrUnavailable, l.Subject)
}

// decodeLock returns the lock and whether it is live.
func (r *Redis) decodeLock(subject, raw string) (Lock, bool, error) {
	l, err := decodeLock(subject, []byte(raw))
	if err != nil {
		r.log.Error("corrupted lock record in redis", "err", err)
		return Lock{}, false, err
	}
	return l, liveAt(l.ExpiresAt, r.now()), nil
}

// GetLock returns ErrNotFound when subject is not (or no longer) locked.
func (r *Redis) GetLock(ctx context.Context, subject string) (Lock, error) {
	if err := checkKey("lock subject", subject); err != nil {
		return Lock{}, err
	}
	raw, err := r.c.HGet(ctx, r.locksKey(), subject).Result()
	if err != nil {
		return Lock{}, r.wrap(err)
	}
	l, live, err := r.decodeLock(subject, raw)
	if err == nil && !live {
		err = ErrNotFound
	}
	return l, err
}

// DeleteLock is idempotent.
func (r *Redis) DeleteLock(ctx context.Context, subject string) error {
	return r.hdel(ctx, r.locksKey(), "lock subject", subject)
}

// ListLocks returns live locks sorted by subject. Locks expired for longer
// than indexGrace (so by every instance's clock) are pruned.
func (r *Redis) ListLocks(ctx context.Context) ([]Lock, error) {
	h, err := r.c.HGetAll(ctx, r.locksKey()).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	out := make([]Lock, 0, len(h))
	for subject, raw := range h {
		l, live, err := r.decodeLock(subject, raw)
		if err != nil {
			return nil, err
		}
		if live {
			out = append(out, l)
			continue
		}
		if l.ExpiresAt.Add(indexGrace).Before(r.now()) {
			if err := deleteIfScript.Run(ctx, r.c, []string{r.locksKey()}, subject, raw).Err(); err != nil {
				r.log.Warn("pruning expired lock failed", "err", err)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subject < out[j].Subject })
	return out, nil
}

// PutEphemeral is SET PX.
func (r *Redis) PutEphemeral(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := checkKey("ephemeral key", key); err != nil {
		return err
	}
	if err := checkValue("ephemeral value", val); err != nil {
		return err
	}
	if err := checkTTL("ephemeral TTL", ttl); err != nil {
		return err
	}
	return r.wrap(r.c.Set(ctx, r.ephemeralKey(key), val, time.Duration(ms(ttl))*time.Millisecond).Err())
}

// GetEphemeral returns ErrNotFound for missing or expired records.
func (r *Redis) GetEphemeral(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey("ephemeral key", key); err != nil {
		return nil, err
	}
	v, err := r.c.Get(ctx, r.ephemeralKey(key)).Bytes()
	if err != nil {
		return nil, r.wrap(err)
	}
	return v, nil
}

// TakeEphemeral is GETDEL: one caller on any instance gets the value.
func (r *Redis) TakeEphemeral(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey("ephemeral key", key); err != nil {
		return nil, err
	}
	v, err := r.c.GetDel(ctx, r.ephemeralKey(key)).Bytes()
	if err != nil {
		return nil, r.wrap(err)
	}
	return v, nil
}

// DeleteEphemeral is idempotent.
func (r *Redis) DeleteEphemeral(ctx context.Context, key string) error {
	if err := checkKey("ephemeral key", key); err != nil {
		return err
	}
	return r.wrap(r.c.Del(ctx, r.ephemeralKey(key)).Err())
}
