package store

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// putSessionScript replaces a session and keeps both indexes consistent in
// one atomic step: the old owner's index forgets the ID, the new owner's
// and the global index gain it, stale entries (expired longer than the
// grace) are trimmed and each index lives as long as its longest-lived
// member plus the grace.
//
// KEYS: session, new owner's index, global index.
// ARGV: owner index prefix, id, user, expiry text, data, TTL ms,
// expiry score ms, now ms, grace ms.
var putSessionScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], 'u')
if old and old ~= ARGV[3] then
  redis.call('ZREM', ARGV[1] .. old, ARGV[2])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'u', ARGV[3], 'e', ARGV[4], 'd', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local now, grace = tonumber(ARGV[8]), tonumber(ARGV[9])
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], ARGV[7], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (now - grace))
  local top = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  local ttl = tonumber(top[2]) - now + grace
  if ttl < grace then ttl = grace end
  redis.call('PEXPIRE', KEYS[i], math.floor(ttl))
end
return 1
`)

// deleteSessionScript removes a session and its index entries.
// KEYS: session, global index. ARGV: owner index prefix, id.
var deleteSessionScript = redis.NewScript(`
local u = redis.call('HGET', KEYS[1], 'u')
redis.call('DEL', KEYS[1])
if u then redis.call('ZREM', ARGV[1] .. u, ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
`)

// pruneIndexScript drops index entries whose session key is gone, checking
// existence inside the script so a session re-created meanwhile keeps its
// entry. KEYS: index. ARGV: session key prefix, ids…
var pruneIndexScript = redis.NewScript(`
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 1
`)

// PutSession stores s atomically with its index entries. A session whose
// expiry has passed is deleted instead.
func (r *Redis) PutSession(ctx context.Context, s Session) error {
	if err := checkSession(s); err != nil {
		return err
	}
	now := r.now()
	if !liveAt(s.ExpiresAt, now) {
		return r.DeleteSession(ctx, s.ID)
	}
	err := putSessionScript.Run(ctx, r.c,
		[]string{r.sessKey(s.ID), r.userIndexKey(s.UserID), r.allIndexKey()},
		r.userIndexKey(""), s.ID, s.UserID, s.ExpiresAt.UTC().Format(time.RFC3339Nano), s.Data,
		ms(s.ExpiresAt.Sub(now)), s.ExpiresAt.UnixMilli(), now.UnixMilli(), indexGrace.Milliseconds(),
	).Err()
	return r.wrap(err)
}

// GetSession returns ErrNotFound for missing or expired sessions.
func (r *Redis) GetSession(ctx context.Context, id string) (Session, error) {
	if err := checkKey("session ID", id); err != nil {
		return Session{}, err
	}
	h, err := r.c.HGetAll(ctx, r.sessKey(id)).Result()
	if err != nil {
		return Session{}, r.wrap(err)
	}
	return r.decodeSession(id, h)
}

func (r *Redis) decodeSession(id string, h map[string]string) (Session, error) {
	if len(h) == 0 {
		return Session{}, ErrNotFound
	}
	u, okU := h["u"]
	e, okE := h["e"]
	d, okD := h["d"]
	exp, err := time.Parse(time.RFC3339Nano, e)
	if !okU || !okE || !okD || err != nil || u == "" {
		r.log.Error("corrupted session record in redis", "err", err)
		return Session{}, corrupt("session hash")
	}
	s := Session{ID: id, UserID: u, ExpiresAt: exp.UTC(), Data: []byte(d)}
	if !liveAt(s.ExpiresAt, r.now()) {
		return Session{}, ErrNotFound
	}
	return s, nil
}

// DeleteSession is idempotent.
func (r *Redis) DeleteSession(ctx context.Context, id string) error {
	if err := checkKey("session ID", id); err != nil {
		return err
	}
	err := deleteSessionScript.Run(ctx, r.c, []string{r.sessKey(id), r.allIndexKey()}, r.userIndexKey(""), id).Err()
	return r.wrap(err)
}

// ListSessions lists live sessions sorted by ID; userID "" lists all.
// Index entries whose session key has gone are pruned.
func (r *Redis) ListSessions(ctx context.Context, userID string) ([]Session, error) {
	if len(userID) > MaxKeyLen {
		return nil, invalid("user ID", "is too long")
	}
	idx := r.allIndexKey()
	if userID != "" {
		idx = r.userIndexKey(userID)
	}
	ids, err := r.c.ZRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, r.sessKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, r.wrap(err)
	}
	var out []Session
	var gone []any
	for i, id := range ids {
		s, err := r.decodeSession(id, cmds[i].Val())
		switch {
		case errors.Is(err, ErrNotFound):
			if len(cmds[i].Val()) == 0 {
				gone = append(gone, id)
			}
			continue
		case err != nil:
			return nil, err
		}
		if userID == "" || s.UserID == userID {
			out = append(out, s)
		}
	}
	if len(gone) > 0 {
		args := append([]any{r.sessKey("")}, gone...)
		if err := pruneIndexScript.Run(ctx, r.c, []string{idx}, args...).Err(); err != nil {
			r.log.Warn("pruning session index failed", "err", err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
