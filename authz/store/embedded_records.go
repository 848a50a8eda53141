package store

import (
	"bytes"
	"context"
	"errors"

	"go.etcd.io/bbolt"
)

// Durable records live in one bucket under indexKey(kind, id), like
// presence entries: the length-prefixed kind keeps kinds apart ("a" never
// lists "a.b"'s records) and makes each kind one contiguous key range.
// Records are stored with a zero expiry, so the sweeper never drops them.
// bbolt runs one writer at a time, so every check-then-write below is
// atomic.

// PutRecord creates or replaces record id of kind.
func (e *Embedded) PutRecord(ctx context.Context, kind, id string, data []byte) error {
	if err := checkRecordPut(kind, id, data); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRecords).Put(indexKey(kind, id), encodeRecord(0, data))
	})
}

// CreateRecord stores data only when (kind, id) is absent.
func (e *Embedded) CreateRecord(ctx context.Context, kind, id string, data []byte) (bool, error) {
	if err := checkRecordPut(kind, id, data); err != nil {
		return false, err
	}
	created := false
	err := e.update(ctx, func(tx *bbolt.Tx) error {
		key := indexKey(kind, id)
		// A corrupted value in the way is an error, never "absent":
		// overwriting it would hide the damage and could break create-once.
		switch _, err := e.get(tx, bucketRecords, key, 1); {
		case err == nil:
			return nil
		case !errors.Is(err, ErrNotFound):
			return err
		}
		created = true
		return tx.Bucket(bucketRecords).Put(key, encodeRecord(0, data))
	})
	return created && err == nil, err
}

// GetRecord returns ErrNotFound when (kind, id) is absent.
func (e *Embedded) GetRecord(ctx context.Context, kind, id string) ([]byte, error) {
	if err := checkRecord(kind, id); err != nil {
		return nil, err
	}
	var out []byte
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		r, err := e.get(tx, bucketRecords, indexKey(kind, id), 1)
		if err == nil {
			out = r.fields[0]
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SwapRecord replaces (or, with new == nil, deletes) the record when it
// holds exactly old.
func (e *Embedded) SwapRecord(ctx context.Context, kind, id string, old, new []byte) (bool, error) {
	if err := checkRecordSwap(kind, id, old, new); err != nil {
		return false, err
	}
	swapped := false
	err := e.update(ctx, func(tx *bbolt.Tx) error {
		key := indexKey(kind, id)
		r, err := e.get(tx, bucketRecords, key, 1)
		if err != nil {
			return err
		}
		if !bytes.Equal(r.fields[0], old) {
			return nil
		}
		swapped = true
		if new == nil {
			return tx.Bucket(bucketRecords).Delete(key)
		}
		return tx.Bucket(bucketRecords).Put(key, encodeRecord(0, new))
	})
	return swapped && err == nil, err
}

// DeleteRecord is idempotent.
func (e *Embedded) DeleteRecord(ctx context.Context, kind, id string) error {
	if err := checkRecord(kind, id); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error { return tx.Bucket(bucketRecords).Delete(indexKey(kind, id)) })
}

// ListRecords returns every record of kind by ID (an empty map when none).
// A corrupted record fails the whole listing closed: a caller deciding
// from a partial list of grants or review items would decide wrongly.
func (e *Embedded) ListRecords(ctx context.Context, kind string) (map[string][]byte, error) {
	if err := checkRecordKind(kind); err != nil {
		return nil, err
	}
	return e.listKind(ctx, bucketRecords, kind)
}

// listKind returns the live records of bucket whose key is kind's index
// prefix followed by an ID, by ID. Expired entries are skipped; any other
// failure fails the whole listing (callers must not decide from part of it).
func (e *Embedded) listKind(ctx context.Context, bucket []byte, kind string) (map[string][]byte, error) {
	out := map[string][]byte{}
	prefix := indexPrefix(kind)
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			r, err := e.get(tx, bucket, k, 1)
			switch {
			case errors.Is(err, ErrNotFound):
				continue
			case err != nil:
				return err
			}
			out[string(k[len(prefix):])] = r.fields[0]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
