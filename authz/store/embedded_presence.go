package store

import (
	"context"
	"time"

	"go.etcd.io/bbolt"
)

// Presence entries live in one bucket under indexKey(kind, id): the
// length-prefixed kind keeps every kind's entries apart (kind "a" never
// sees kind "a:b"'s, whatever bytes the IDs hold) and makes each kind one
// contiguous key range, listed with a prefix scan. Expiry is the record
// header's, measured by the injected clock; the sweeper drops expired
// entries with everything else.

// PutPresence creates or replaces entry id of kind for ttl.
func (e *Embedded) PutPresence(ctx context.Context, kind, id string, data []byte, ttl time.Duration) error {
	if err := checkPresencePut(kind, id, data, ttl); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketPresence).Put(indexKey(kind, id), encodeRecord(afterNanos(e.now(), ttl), data))
	})
}

// DeletePresence is idempotent.
func (e *Embedded) DeletePresence(ctx context.Context, kind, id string) error {
	if err := checkPresence(kind, id); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error { return tx.Bucket(bucketPresence).Delete(indexKey(kind, id)) })
}

// ListPresence returns the live entries of kind by ID.
func (e *Embedded) ListPresence(ctx context.Context, kind string) (map[string][]byte, error) {
	// Any valid ID will do: only the kind is checked here.
	if err := checkPresence(kind, "-"); err != nil {
		return nil, err
	}
	return e.listKind(ctx, bucketPresence, kind)
}
