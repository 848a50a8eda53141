package store

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Durable records of one kind are one hash (ID → data) without expiry.
// Kinds are restricted to [A-Za-z0-9._-], so "rec:<kind>" cannot reach
// another namespace's key. Create is HSETNX and swap a Lua script, so both
// are atomic across instances.

// swapRecordScript replaces or deletes a field only if it holds exactly
// the caller's old value (Lua string comparison is byte-wise).
// KEYS: hash. ARGV: id, old, new, "1" to delete.
// Returns -1 when absent, 0 on a mismatch, 1 when swapped.
var swapRecordScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  return -1
end
if cur ~= ARGV[2] then
  return 0
end
if ARGV[4] == '1' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
`)

// PutRecord creates or replaces record id of kind.
func (r *Redis) PutRecord(ctx context.Context, kind, id string, data []byte) error {
	if err := checkRecordPut(kind, id, data); err != nil {
		return err
	}
	return r.wrap(r.c.HSet(ctx, r.recordsKey(kind), id, data).Err())
}

// CreateRecord is HSETNX: the server decides who was first.
func (r *Redis) CreateRecord(ctx context.Context, kind, id string, data []byte) (bool, error) {
	if err := checkRecordPut(kind, id, data); err != nil {
		return false, err
	}
	created, err := r.c.HSetNX(ctx, r.recordsKey(kind), id, data).Result()
	if err != nil {
		return false, r.wrap(err)
	}
	return created, nil
}

// GetRecord returns ErrNotFound when (kind, id) is absent.
func (r *Redis) GetRecord(ctx context.Context, kind, id string) ([]byte, error) {
	if err := checkRecord(kind, id); err != nil {
		return nil, err
	}
	v, err := r.c.HGet(ctx, r.recordsKey(kind), id).Bytes()
	if err != nil {
		return nil, r.wrap(err)
	}
	return v, nil
}

// SwapRecord replaces (or, with new == nil, deletes) the record when it
// holds exactly old, in one script.
func (r *Redis) SwapRecord(ctx context.Context, kind, id string, old, new []byte) (bool, error) {
	if err := checkRecordSwap(kind, id, old, new); err != nil {
		return false, err
	}
	del := "0"
	if new == nil {
		del = "1"
	}
	n, err := swapRecordScript.Run(ctx, r.c, []string{r.recordsKey(kind)}, id, old, new, del).Int64()
	if err != nil {
		return false, r.wrap(err)
	}
	switch n {
	case 1:
		return true, nil
	case 0:
		return false, nil
	case -1:
		return false, ErrNotFound
	}
	return false, corrupt("record swap reply")
}

// DeleteRecord is idempotent.
func (r *Redis) DeleteRecord(ctx context.Context, kind, id string) error {
	if err := checkRecord(kind, id); err != nil {
		return err
	}
	return r.wrap(r.c.HDel(ctx, r.recordsKey(kind), id).Err())
}

// ListRecords returns every record of kind by ID (an empty map when none).
func (r *Redis) ListRecords(ctx context.Context, kind string) (map[string][]byte, error) {
	if err := checkRecordKind(kind); err != nil {
		return nil, err
	}
	h, err := r.c.HGetAll(ctx, r.recordsKey(kind)).Result()
	if err != nil {
		return nil, r.wrap(err)
	}
	out := make(map[string][]byte, len(h))
	for id, v := range h {
		out[id] = []byte(v)
	}
	return out, nil
}
