package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/gateway"
)

// Recordings held only in the S3-compatible bucket (recordingStore.remote).

// listRemote describes the recordings in the bucket that are not among
// the local files seen (by file name), of userID ("" for everyone).
// Objects that do not authenticate are left out (logged), like local
// files.
func (s *recordingStore) listRemote(ctx context.Context, userID string, seen map[string]bool) ([]gateway.RecordingInfo, error) {
	var out []gateway.RecordingInfo
	listed := map[string]bool{}
	err := s.remote.List(ctx, func(o s3store.Object) error {
		id, ok := strings.CutSuffix(o.Name, recording.FileExt)
		if !ok || !validRecordingID(id) || seen[o.Name] {
			return nil
		}
		listed[o.Name] = true
		info, err := s.objectInfo(ctx, id, o)
		switch {
		case errors.Is(err, s3store.ErrNotFound):
			return nil // deleted since the listing (purge)
		case errors.Is(err, s3store.ErrUnavailable), ctx.Err() != nil:
			return err
		case err != nil:
			s.log.Error("recording in the bucket left out of the listing: it does not authenticate", "recording", id, "key", o.Key, "err", err)
			return nil
		}
		if userID == "" || info.UserID == userID {
			out = append(out, info)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	for name := range s.rcache {
		if !listed[name] {
			delete(s.rcache, name)
		}
	}
	s.mu.Unlock()
	return out, nil
}

// remoteInfo describes recording id from its object; store.ErrNotFound
// when the bucket has none.
func (s *recordingStore) remoteInfo(ctx context.Context, id string) (gateway.RecordingInfo, error) {
	o, err := s.remote.Stat(ctx, id+recording.FileExt)
	if err != nil {
		if !errors.Is(err, s3store.ErrNotFound) {
			s.log.Error("recording cannot be read from the bucket", "recording", id, "err", err)
		}
		return gateway.RecordingInfo{}, remoteErr(err)
	}
	info, err := s.objectInfo(ctx, id, o)
	if err != nil {
		if !errors.Is(err, s3store.ErrNotFound) && !errors.Is(err, s3store.ErrUnavailable) {
			s.log.Error("recording in the bucket does not authenticate", "recording", id, "key", o.Key, "err", err)
		}
		return gateway.RecordingInfo{}, remoteErr(err)
	}
	return info, nil
}

// objectInfo returns the info of recording id held in object o, from the
// cache when o is unchanged (same ETag and size), else by reading and
// authenticating the object.
func (s *recordingStore) objectInfo(ctx context.Context, id string, o s3store.Object) (gateway.RecordingInfo, error) {
	rcpt, ok, err := s3store.ReadReceipt(s.dir, o.Name)
	if err != nil {
		return gateway.RecordingInfo{}, err
	}
	if ok {
		if err := rcpt.CheckObject(o); err != nil {
			return gateway.RecordingInfo{}, fmt.Errorf("%w: %w", recording.ErrTampered, err)
		}
	}
	s.mu.Lock()
	c, ok := s.rcache[o.Name]
	s.mu.Unlock()
	if ok && c.etag == o.ETag && c.size == o.Size {
		return c.info, nil
	}
	rc, cur, err := s.remote.Get(ctx, o.Name)
	if err != nil {
		return gateway.RecordingInfo{}, err
	}
	defer rc.Close()
	if ok {
		if err := rcpt.CheckObject(cur); err != nil { // changed since the listing
			return gateway.RecordingInfo{}, fmt.Errorf("%w: %w", recording.ErrTampered, err)
		}
	}
	info, err := s.readInfo(rc, o.Name, cur.Size)
	if err != nil {
		return gateway.RecordingInfo{}, err
	}
	s.mu.Lock()
	s.rcache[o.Name] = cachedObject{etag: cur.ETag, size: cur.Size, info: info}
	s.mu.Unlock()
	return info, nil
}

// remoteErr maps the bucket's errors to what the gateway answers: not
// found (404), unavailable (503); anything else (a recording that does
// not authenticate) as it is.
func remoteErr(err error) error {
	switch {
	case errors.Is(err, s3store.ErrNotFound):
		return store.ErrNotFound
	case errors.Is(err, s3store.ErrUnavailable):
		return fmt.Errorf("%w: recording storage: %w", store.ErrUnavailable, err)
	}
	return err
}
