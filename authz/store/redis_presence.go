package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence entries of one kind are a hash (ID → data) and a sorted set
// (ID → expiry), changed together by scripts so no instance ever sees an
// entry without its expiry. Expiries are in the server's milliseconds
// (TIME), like every other TTL in this store: instances whose clocks
// disagree still agree on what has expired. Both keys expire with their
// longest-lived entry, so an abandoned kind leaves nothing behind.

// presenceNow is the Lua prologue computing the server's time in ms.
const presenceNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// putPresenceScript upserts an entry and restarts its TTL.
// KEYS: hash, zset. ARGV: id, data, ttl ms.
var putPresenceScript = redis.NewScript(presenceNow + `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local ttl = string.format('%.0f', math.max(tonumber(top[2]) - now, 1))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

// deletePresenceScript removes an entry. KEYS: hash, zset. ARGV: id.
var deletePresenceScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`)

// listPresenceScript drops expired entries (an entry is gone from the
// millisecond it expires) and returns the live ones as id, data pairs.
// KEYS: hash, zset.
var listPresenceScript = redis.NewScript(presenceNow + `
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(dead) do
  redis.call('HDEL', KEYS[1], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local v = redis.call('HGET', KEYS[1], id)
  if v then
    out[#out + 1] = id
    out[#out + 1] = v
  end
end
return out
`)

// PutPresence creates or replaces entry id of kind for ttl (server clock).
func (r *Redis) PutPresence(ctx context.Context, kind, id string, data []byte, ttl time.Duration) error {
	if err := checkPresencePut(kind, id, data, ttl); err != nil {
		return err
	}
	err := putPresenceScript.Run(ctx, r.c, []string{r.presenceKey(kind), r.presenceExpKey(kind)}, id, data, ms(ttl)).Err()
	return r.wrap(err)
}

// DeletePresence is idempotent.
func (r *Redis) DeletePresence(ctx context.Context, kind, id string) error {
	if err := checkPresence(kind, id); err != nil {
		return err
	}
	err := deletePresenceScript.Run(ctx, r.c, []string{r.presenceKey(kind), r.presenceExpKey(kind)}, id).Err()
	return r.wrap(err)
}

// ListPresence returns the live entries of kind by ID, pruning expired
// ones in the same atomic step.
func (r *Redis) ListPresence(ctx context.Context, kind string) (map[string][]byte, error) {
	if err := checkPresence(kind, "-"); err != nil {
		return nil, err
	}
	res, err := listPresenceScript.Run(ctx, r.c, []string{r.presenceKey(kind), r.presenceExpKey(kind)}).Slice()
	if err != nil {
		return nil, r.wrap(err)
	}
	if len(res)%2 != 0 {
		return nil, corrupt("presence listing")
	}
	out := make(map[string][]byte, len(res)/2)
	for i := 0; i < len(res); i += 2 {
		id, okID := res[i].(string)
		v, okV := res[i+1].(string)
		if !okID || !okV {
			return nil, corrupt("presence listing")
		}
		out[id] = []byte(v)
	}
	return out, nil
}
