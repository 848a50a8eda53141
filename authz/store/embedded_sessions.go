package store

import (
	"bytes"
	"context"
	"errors"
	"sort"

	"go.etcd.io/bbolt"
)

// Session records hold: user ID, exact expiry (time.MarshalBinary), data.
// The header expiry (nanoseconds) drives the sweeper; reads compare the
// exact expiry.
const sessionFields = 3

func encodeSession(s Session) []byte {
	return encodeRecord(expiryNanos(s.ExpiresAt), []byte(s.UserID), encodeTime(s.ExpiresAt), s.Data)
}

func decodeSession(id string, r record) (Session, error) {
	exp, err := decodeTime(r.fields[1])
	if err != nil {
		return Session{}, err
	}
	return Session{ID: id, UserID: string(r.fields[0]), ExpiresAt: exp, Data: r.fields[2]}, nil
}

// PutSession stores s, replacing any session with the same ID (and moving
// it in the per-user index if its user changed). A session that has
// already expired is deleted instead.
func (e *Embedded) PutSession(ctx context.Context, s Session) error {
	if err := checkSession(s); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error {
		if err := e.deleteSession(tx, s.ID); err != nil {
			return err
		}
		if !liveAt(s.ExpiresAt, e.now()) {
			return nil
		}
		if err := tx.Bucket(bucketSessions).Put([]byte(s.ID), encodeSession(s)); err != nil {
			return err
		}
		return tx.Bucket(bucketSessIndex).Put(indexKey(s.UserID, s.ID), nil)
	})
}

// GetSession returns ErrNotFound for missing or expired sessions.
func (e *Embedded) GetSession(ctx context.Context, id string) (Session, error) {
	if err := checkKey("session ID", id); err != nil {
		return Session{}, err
	}
	var s Session
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		r, err := e.get(tx, bucketSessions, []byte(id), sessionFields)
		if err != nil {
			return err
		}
		if s, err = decodeSession(id, r); err != nil {
			return err
		}
		if !liveAt(s.ExpiresAt, e.now()) {
			return ErrNotFound
		}
		return nil
	})
	return s, err
}

// DeleteSession is idempotent.
func (e *Embedded) DeleteSession(ctx context.Context, id string) error {
	if err := checkKey("session ID", id); err != nil {
		return err
	}
	return e.update(ctx, func(tx *bbolt.Tx) error { return e.deleteSession(tx, id) })
}

// deleteSession removes the session and its index entry. A corrupted
// record is removed too (its index entry, unknown, is left to dangle: the
// index is only a hint, ListSessions re-reads every session it names).
func (e *Embedded) deleteSession(tx *bbolt.Tx, id string) error {
	b := tx.Bucket(bucketSessions)
	if v := b.Get([]byte(id)); v != nil {
		if r, err := decodeRecord(v, sessionFields); err == nil {
			if err := tx.Bucket(bucketSessIndex).Delete(indexKey(string(r.fields[0]), id)); err != nil {
				return err
			}
		}
	}
	return b.Delete([]byte(id))
}

// ListSessions lists live sessions sorted by ID; userID "" lists all.
func (e *Embedded) ListSessions(ctx context.Context, userID string) ([]Session, error) {
	if len(userID) > MaxKeyLen {
		return nil, invalid("user ID", "is too long")
	}
	var out []Session
	err := e.view(ctx, func(tx *bbolt.Tx) error {
		add := func(id string) error {
			r, err := e.get(tx, bucketSessions, []byte(id), sessionFields)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			s, err := decodeSession(id, r)
			if err != nil {
				return err
			}
			if liveAt(s.ExpiresAt, e.now()) && (userID == "" || s.UserID == userID) {
				out = append(out, s)
			}
			return nil
		}
		if userID == "" {
			return tx.Bucket(bucketSessions).ForEach(func(k, _ []byte) error { return add(string(k)) })
		}
		prefix := indexPrefix(userID)
		c := tx.Bucket(bucketSessIndex).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if err := add(string(k[len(prefix):])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
