package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/gateway"
)

// recordingStore is gateway.RecordingStore on the bastion's recordings
// directory: the gateway serves /api/audit/recordings from it without
// importing the bastion.
//
// Everything it reports is authenticated: the owner, target, login and
// start come from the recording's encrypted metadata chunk (Meta), the end
// from its trailer, both read with the recording key, never from the file
// name or the file system. A recording that does not authenticate (wrong
// key, tampered, not a recording) is left out of listings and refused by
// RecordingInfo and ExportRecording with the cause (logged); it is never
// reported as missing, which would hide tampering.
//
// Reading a recording to its trailer costs a pass over the file, so
// listings cache each recording's info by name, size and modification
// time: a finished recording is read once, a live one (still growing)
// again when it changed.
//
// With an S3-compatible bucket (remote, bastion.recording_storage), a
// recording whose local copy is gone (keep_local) is read from its
// object, and authenticated exactly like a local file: the bucket is
// storage, not a trusted party, so a modified object is refused. Its
// info is cached by object name, ETag and size (an object is read once
// for listings; an export always reads it whole).
type recordingStore struct {
	dir    string
	key    *recording.Key
	log    *slog.Logger
	remote *s3store.Store // nil: local recordings only

	// fetches bounds the bucket-only recordings downloaded at once for an
	// export: each is a whole temporary copy on the recordings disk, and
	// a full disk would end live sessions (their recordings could not be
	// written).
	fetches chan struct{}

	mu     sync.Mutex
	cache  map[string]cachedRecording // by file name
	rcache map[string]cachedObject    // by object name
}

type cachedObject struct {
	etag string
	size int64
	info gateway.RecordingInfo
}

type cachedRecording struct {
	size  int64
	mtime time.Time
	info  gateway.RecordingInfo
}

// newRecordingStore reads the recordings in dir, and those only in remote
// (nil: none) once their local copy is gone.
func newRecordingStore(dir string, key *recording.Key, remote *s3store.Store, log *slog.Logger) *recordingStore {
	return &recordingStore{dir: dir, key: key, remote: remote, log: log.With("component", "recordings"),
		cache: map[string]cachedRecording{}, rcache: map[string]cachedObject{},
		fetches: make(chan struct{}, maxFetches)}
}

// maxListed bounds one listing (the newest are kept): a listing is a
// JSON answer, not an export of the whole directory.
const maxListed = 10000

// maxFetches is how many bucket-only recordings are downloaded at once
// for exports (more wait for a slot, or their request's end).
const maxFetches = 2

// ListRecordings lists userID's recordings (everyone's when userID is ""),
// newest first.
func (s *recordingStore) ListRecordings(ctx context.Context, userID string) ([]gateway.RecordingInfo, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []gateway.RecordingInfo{}, nil // no session recorded yet
	}
	if err != nil {
		return nil, fmt.Errorf("recordings: %w", err)
	}
	seen := make(map[string]bool, len(entries))
	out := []gateway.RecordingInfo{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		id, ok := strings.CutSuffix(name, recording.FileExt)
		if !ok || !validRecordingID(id) || !e.Type().IsRegular() {
			continue
		}
		seen[name] = true
		fi, err := e.Info()
		if err != nil {
			continue // deleted meanwhile (purge)
		}
		info, err := s.cachedInfo(name, fi)
		if err != nil {
			s.log.Error("recording left out of the listing: it does not authenticate", "recording", id, "err", err)
			continue
		}
		if userID == "" || info.UserID == userID {
			out = append(out, info)
		}
	}
	s.mu.Lock()
	for name := range s.cache {
		if !seen[name] { // purged
			delete(s.cache, name)
		}
	}
	s.mu.Unlock()
	if s.remote != nil {
		remote, err := s.listRemote(ctx, userID, seen)
		if err != nil {
			// A listing without the bucket's recordings would look
			// complete: none rather than part.
			s.log.Error("recordings in the bucket cannot be listed", "bucket", s.remote.Bucket(), "err", err)
			return nil, remoteErr(err)
		}
		out = append(out, remote...)
	}
	slices.SortFunc(out, func(a, b gateway.RecordingInfo) int {
		return cmp.Or(b.Start.Compare(a.Start), cmp.Compare(a.ID, b.ID))
	})
	if len(out) > maxListed {
		out = out[:maxListed]
	}
	return out, nil
}

// RecordingInfo describes recording id; store.ErrNotFound when there is
// no such recording.
func (s *recordingStore) RecordingInfo(ctx context.Context, id string) (gateway.RecordingInfo, error) {
	f, fi, err := s.open(id)
	if errors.Is(err, store.ErrNotFound) && s.remote != nil && validRecordingID(id) {
		return s.remoteInfo(ctx, id)
	}
	if err != nil {
		return gateway.RecordingInfo{}, err
	}
	f.Close()
	info, err := s.cachedInfo(fi.Name(), fi)
	if err != nil {
		s.log.Error("recording does not authenticate", "recording", id, "err", err)
		return gateway.RecordingInfo{}, err
	}
	return info, nil
}

// ExportRecording writes recording id to w as asciicast v2. The whole
// file is authenticated first and nothing reaches w unless it does: a
// tampered recording, or one under another key, is an error with no
// output. The export then reads exactly the bytes that were verified
// (a live recording keeps growing; what came after is not exported). A
// recording without its end chunk (the bastion stopped without closing
// it, or the session is still running) is authentic up to its cut and is
// exported that far.
func (s *recordingStore) ExportRecording(ctx context.Context, id string, w io.Writer) error {
	f, fi, err := s.open(id)
	if errors.Is(err, store.ErrNotFound) && s.remote != nil && validRecordingID(id) {
		// Only in the bucket: fetched whole to a private temporary file,
		// then verified and exported exactly like a local one.
		var obj s3store.Object
		select {
		case s.fetches <- struct{}{}:
			defer func() { <-s.fetches }()
		case <-ctx.Done():
			return ctx.Err()
		}
		f, obj, err = s.remote.Fetch(ctx, id+recording.FileExt, s3store.FetchDir(s.dir))
		if err != nil {
			if !errors.Is(err, s3store.ErrNotFound) {
				s.log.Error("recording cannot be fetched from the bucket", "recording", id, "err", err)
			}
			return remoteErr(err)
		}
		defer f.Close()
		// Cut, replaced or extended in the bucket since this host removed
		// its copy: a cut recording would otherwise export "up to its
		// cut", as after a crash, hiding the end of the session.
		if rcpt, ok, err := s3store.ReadReceipt(s.dir, id+recording.FileExt); err != nil {
			return err
		} else if ok {
			if err := cmp.Or(rcpt.CheckObject(obj), rcpt.CheckContent(f, obj.Size)); err != nil {
				s.log.Error("recording export refused: the object is not the one uploaded", "recording", id, "err", err)
				return fmt.Errorf("%w: %w", recording.ErrTampered, err)
			}
		}
		return s.export(ctx, id, f, obj.Size, w)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return s.export(ctx, id, f, fi.Size(), w)
}

// export verifies the first size bytes of f, recording id, and exports
// them to w (ExportRecording).
func (s *recordingStore) export(ctx context.Context, id string, f io.ReaderAt, size int64, w io.Writer) error {
	res, err := recording.VerifyReader(io.NewSectionReader(f, 0, size), s.key)
	if err == nil || errors.Is(err, recording.ErrTruncated) {
		if res == nil || res.SessionID != id {
			err = fmt.Errorf("%w: file %s%s holds the recording of another session", recording.ErrTampered, id, recording.FileExt)
		}
	}
	if err != nil && !errors.Is(err, recording.ErrTruncated) {
		s.log.Error("recording export refused: it does not authenticate", "recording", id, "err", err)
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = recording.ExportAsciicast(w, io.NewSectionReader(f, 0, size), s.key, recording.AsciicastOptions{})
	if errors.Is(err, recording.ErrTruncated) {
		return nil // exported up to its cut, as verified
	}
	if err != nil {
		// Verified a moment ago: changed since (rotation, tampering).
		s.log.Error("recording export failed after verification", "recording", id, "err", err)
	}
	return err
}

// open opens dir/id.pcrec: a regular file, not followed through a link.
// An ID that could not name a recording is not found.
func (s *recordingStore) open(id string) (*os.File, fs.FileInfo, error) {
	if !validRecordingID(id) {
		return nil, nil, store.ErrNotFound
	}
	f, err := os.OpenFile(filepath.Join(s.dir, id+recording.FileExt), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ELOOP):
		// A link is nothing the bastion wrote.
		return nil, nil, store.ErrNotFound
	case err != nil:
		return nil, nil, fmt.Errorf("recordings: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("recordings: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, store.ErrNotFound
	}
	return f, fi, nil
}

// cachedInfo returns the info of the recording file name (whose current
// state is fi), reading it when the cache has no entry for that state.
func (s *recordingStore) cachedInfo(name string, fi fs.FileInfo) (gateway.RecordingInfo, error) {
	s.mu.Lock()
	c, ok := s.cache[name]
	s.mu.Unlock()
	if ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) {
		return c.info, nil
	}
	info, err := s.read(name, fi.Size())
	if err != nil {
		return info, err
	}
	s.mu.Lock()
	s.cache[name] = cachedRecording{size: fi.Size(), mtime: fi.ModTime(), info: info}
	s.mu.Unlock()
	return info, nil
}

// read authenticates the first size bytes of recording file name and
// describes them. Bytes is the recording's size on disk.
func (s *recordingStore) read(name string, size int64) (gateway.RecordingInfo, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return gateway.RecordingInfo{}, fmt.Errorf("recordings: %w", err)
	}
	defer f.Close()
	return s.readInfo(io.NewSectionReader(f, 0, size), name, size)
}

// readInfo authenticates the recording read from r, file (or object)
// name of size bytes, and describes it.
func (s *recordingStore) readInfo(r io.Reader, name string, size int64) (gateway.RecordingInfo, error) {
	rd, err := recording.NewReader(r, s.key)
	if err != nil {
		return gateway.RecordingInfo{}, err
	}
	m := rd.Meta
	if id := strings.TrimSuffix(name, recording.FileExt); m.SessionID != id {
		// Authenticated metadata of another session under this name: a
		// renamed file, which must not pass for recording id.
		return gateway.RecordingInfo{}, fmt.Errorf("%w: file %s holds the recording of session %q", recording.ErrTampered, name, m.SessionID)
	}
	info := gateway.RecordingInfo{ID: m.SessionID, UserID: m.UserID, Target: m.Target, Login: m.Login, Start: m.Start, Bytes: size}
	for {
		_, err := rd.Next()
		if err == io.EOF {
			if t, ok := rd.Trailer(); ok {
				info.End = t.End
			}
			return info, nil
		}
		if errors.Is(err, recording.ErrTruncated) {
			return info, nil // live, or cut by a crash: no end yet
		}
		if err != nil {
			return gateway.RecordingInfo{}, err
		}
	}
}

// validRecordingID accepts what the bastion names recordings with (its
// session IDs: URL-safe base64 or hex), so an ID never names a path
// outside the directory.
func validRecordingID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsFunc(id, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
}

var _ gateway.RecordingStore = (*recordingStore)(nil)
