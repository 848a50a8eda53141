package s3store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
)

// Audit event type and reasons of the uploader.
const (
	// TypeRecordingUpload records each verified upload (reason
	// ReasonUploaded) and each recording whose upload started failing
	// (ReasonUploadFailed; once per recording until it succeeds).
	TypeRecordingUpload = "recording.upload"
	ReasonUploaded      = "uploaded"
	ReasonUploadFailed  = "upload-failed"
)

// Retry backoff of a failing recording: first retry after minBackoff,
// doubling up to maxBackoff.
const (
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute
)

// stateDir is the uploader's directory inside the recordings directory.
// A dot name: everything that walks recordings (listing, verify, purge,
// rotate-key) takes only regular *.pcrec files, so it is never mistaken
// for one.
const stateDir = ".s3"

// markerExt ends a marker file's name: <stateDir>/<id>.pcrec.uploaded.
const markerExt = ".uploaded"

// receiptExt ends a receipt's name: <stateDir>/<id>.pcrec.receipt. A
// receipt is written when the local copy is removed and describes the
// object that is then the only copy (see ReadReceipt). Scan leaves
// receipts alone; the retention purge removes them with their object.
const receiptExt = ".receipt"

// UploaderOptions are an Uploader's settings and injected dependencies.
type UploaderOptions struct {
	// Dir is the bastion's recordings directory.
	Dir string
	// KeepLocal is Config.KeepLocal.
	KeepLocal time.Duration
	Audit     audit.Emitter // required
	Logger    *slog.Logger
	Now       func() time.Time                     // default time.Now
	After     func(time.Duration) <-chan time.Time // default time.After
}

// Uploader copies closed recordings into the Store.
//
// A recording is uploaded once the bastion has closed it (Closed), or,
// for recordings a previous process left behind (closed, or cut by a
// crash: uploaded as they are, since their writer is gone), by Scan at
// start-up. After the upload is verified a marker
// (<dir>/.s3/<id>.pcrec.uploaded: key, size, SHA-256, ETag, and the
// file's size and change times) is written durably, so a restart does
// not upload it again, and a file changed since (admin rotate-key
// re-wraps its key in place) is uploaded again. With KeepLocal ≥ 0 the
// local copy is removed that long after the upload, once a HEAD shows
// the object still there.
//
// Nothing here is on the SSH path: Closed only queues. Failures are
// retried with backoff, logged at error level, shown by HealthNotes,
// and audited once per recording.
type Uploader struct {
	s    *Store
	opts UploaderOptions
	log  *slog.Logger
	wake chan struct{}

	mu    sync.Mutex
	items map[string]*item // by file name
}

// item is a recording the uploader has work for.
type item struct {
	name     string
	due      time.Time
	attempts int       // failed attempts in a row
	since    time.Time // first failure of this run of failures
	lastErr  error
}

// NewUploader returns an Uploader for the recordings in opts.Dir.
func NewUploader(s *Store, opts UploaderOptions) (*Uploader, error) {
	switch {
	case s == nil:
		return nil, errors.New("s3store: uploader needs a store")
	case opts.Dir == "":
		return nil, errors.New("s3store: uploader needs the recordings directory")
	case opts.Audit == nil:
		return nil, errors.New("s3store: uploader needs an audit emitter")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.After == nil {
		opts.After = time.After
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Uploader{s: s, opts: opts, log: log, wake: make(chan struct{}, 1), items: map[string]*item{}}, nil
}

// recordingName returns the file name of a recording path in the
// uploader's directory ("" when it is not one).
func (u *Uploader) recordingName(path string) string {
	dir, name := filepath.Split(path)
	if filepath.Clean(dir) != filepath.Clean(u.opts.Dir) {
		return ""
	}
	id, ok := strings.CutSuffix(name, recording.FileExt)
	if !ok || !validID(id) {
		return ""
	}
	return name
}

// validID is the bastion's session ID alphabet (recording file names).
func validID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsFunc(id, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
}

// Closed queues the recording at path for upload: the bastion calls it
// once the recording's writer is closed (or failed for good). It never
// blocks. A path outside the directory, or not a recording, is ignored.
func (u *Uploader) Closed(path string) {
	name := u.recordingName(path)
	if name == "" {
		u.log.Warn("s3store: ignoring a closed recording outside the recordings directory", "path", path)
		return
	}
	u.enqueue(name, u.opts.Now())
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

func (u *Uploader) enqueue(name string, due time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if it, ok := u.items[name]; ok {
		if due.Before(it.due) {
			it.due = due
		}
		return
	}
	u.items[name] = &item{name: name, due: due}
}

// Scan queues every recording in the directory and removes the markers
// of recordings that are gone. Call it before the bastion accepts
// sessions: a recording in the directory then is closed, or was cut by
// the crash of the process that wrote it, and is uploaded as it is
// (recordings already uploaded, unchanged, are only checked against
// their marker).
func (u *Uploader) Scan() error {
	entries, err := os.ReadDir(u.opts.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("s3store: %w", err)
	}
	now := u.opts.Now()
	present := map[string]bool{}
	for _, e := range entries {
		if name := u.recordingName(filepath.Join(u.opts.Dir, e.Name())); name != "" && e.Type().IsRegular() {
			present[name] = true
			u.enqueue(name, now)
		}
	}
	markers, err := os.ReadDir(filepath.Join(u.opts.Dir, stateDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("s3store: %w", err)
	}
	for _, e := range markers {
		if name, ok := strings.CutSuffix(e.Name(), markerExt); ok && !present[name] {
			os.Remove(filepath.Join(u.opts.Dir, stateDir, e.Name()))
		}
	}
	// Downloads a previous process left behind (Fetch's temp files).
	os.RemoveAll(FetchDir(u.opts.Dir))
	return nil
}

// Run uploads until ctx ends.
func (u *Uploader) Run(ctx context.Context) {
	for {
		next := u.RunDue(ctx)
		var wait <-chan time.Time
		if !next.IsZero() {
			wait = u.opts.After(max(next.Sub(u.opts.Now()), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-u.wake:
		case <-wait:
		}
	}
}

// RunDue does the work that is due now (uploads, retries, removals of
// local copies), one recording after another, and returns when the next
// work is due (zero when there is none).
func (u *Uploader) RunDue(ctx context.Context) time.Time {
	now := u.opts.Now()
	u.mu.Lock()
	var due []*item
	for _, it := range u.items {
		if !it.due.After(now) {
			due = append(due, it)
		}
	}
	u.mu.Unlock()
	slices.SortFunc(due, func(a, b *item) int { return cmp.Or(a.due.Compare(b.due), cmp.Compare(a.name, b.name)) })
	for i, it := range due {
		if ctx.Err() != nil {
			break
		}
		next, err := u.process(ctx, it.name)
		u.settle(it, next, err)
		if errors.Is(err, ErrUnavailable) {
			// The bucket is down (or refuses us): the others would only
			// fail the same way, each after its own time-out. They wait
			// for this one's retry, without counting as failed.
			u.postpone(due[i+1:], it)
			break
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	var next time.Time
	for _, it := range u.items {
		if next.IsZero() || it.due.Before(next) {
			next = it.due
		}
	}
	return next
}

// settle records the outcome of processing it: done (zero next, no
// error), more work at next, or a failure to retry with backoff.
func (u *Uploader) settle(it *item, next time.Time, err error) {
	now := u.opts.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if cur, ok := u.items[it.name]; ok && cur != it {
		return // replaced meanwhile
	}
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		// Shutting down: the next start's scan picks it up.
	case err != nil:
		if it.attempts == 0 {
			it.since = now
		}
		it.attempts++
		it.lastErr = err
		it.due = now.Add(backoff(it.attempts))
	case next.IsZero():
		delete(u.items, it.name)
	default:
		it.attempts, it.lastErr, it.due = 0, nil, next
	}
}

// postpone moves items (not yet tried) to failed's retry time.
func (u *Uploader) postpone(items []*item, failed *item) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, it := range items {
		if it.due.Before(failed.due) {
			it.due = failed.due
		}
	}
}

func backoff(attempts int) time.Duration {
	d := minBackoff
	for i := 1; i < attempts && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// marker is what a verified upload leaves beside the recording.
type marker struct {
	// Endpoint: a marker of another server's bucket (same name, moved
	// storage) must not pass for an upload to this one.
	Endpoint string    `json:"endpoint"`
	Bucket   string    `json:"bucket"`
	Key      string    `json:"key"`
	Bytes    int64     `json:"bytes"`
	SHA256   string    `json:"sha256"`
	ETag     string    `json:"etag"`
	Uploaded time.Time `json:"uploaded"`
	// The file as uploaded: any change since (a rotate-key re-wrap keeps
	// the size and the modification time, not the change time) means
	// the object is not the file any more.
	MTime int64 `json:"mtime_ns"`
	CTime int64 `json:"ctime_ns"`
}

func (m *marker) matches(s *Store, name string, fi fs.FileInfo) bool {
	return m.Endpoint == s.endpoint && m.Bucket == s.bucket && m.Key == s.Key(name) && m.Bytes == fi.Size() &&
		m.MTime == fi.ModTime().UnixNano() && m.CTime == changeTime(fi)
}

func (u *Uploader) markerPath(name string) string {
	return filepath.Join(u.opts.Dir, stateDir, name+markerExt)
}

// readMarker returns name's marker; nil when there is none or it does
// not parse (the recording is then uploaded again: harmless).
func (u *Uploader) readMarker(name string) *marker {
	b, err := os.ReadFile(u.markerPath(name))
	if err != nil {
		return nil
	}
	var m marker
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return &m
}

// writeMarker writes name's marker durably (temp file, fsync, rename,
// fsync of the directory).
func (u *Uploader) writeMarker(name string, m *marker) error {
	return writeState(u.opts.Dir, name+markerExt, m)
}

// writeState writes m as file in the state directory of recording
// directory rdir, durably (temp file, fsync, rename, fsync of the
// directory).
func writeState(rdir, file string, m *marker) error {
	dir := filepath.Join(rdir, stateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".marker-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, file))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// errChanged: the file changed while it was uploaded (rotate-key): the
// upload is repeated at once, it is no failure.
var errChanged = errors.New("the recording changed during the upload")

// process does the work for recording name: upload it unless its marker
// says the object is this file, then remove the local copy when it is
// due. It returns when more work is due (zero: none).
func (u *Uploader) process(ctx context.Context, name string) (time.Time, error) {
	path := filepath.Join(u.opts.Dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
		// Purged by retention, or a link (nothing the bastion wrote).
		os.Remove(u.markerPath(name))
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, u.failed(name, 0, "local-read", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, u.failed(name, 0, "local-read", err)
	}
	if !fi.Mode().IsRegular() {
		return time.Time{}, nil
	}
	m := u.readMarker(name)
	if m == nil || !m.matches(u.s, name, fi) {
		if m, err = u.upload(ctx, name, f, fi); errors.Is(err, errChanged) {
			u.log.Info("s3store: recording changed during its upload; uploading it again", "recording", name)
			return u.opts.Now(), nil
		}
		if err != nil {
			return time.Time{}, err
		}
	}
	if u.opts.KeepLocal < 0 {
		return time.Time{}, nil
	}
	if due := m.Uploaded.Add(u.opts.KeepLocal); u.opts.Now().Before(due) {
		return due, nil
	}
	return time.Time{}, u.removeLocal(ctx, name, path, m)
}

// upload sends f and writes its marker once the object is verified.
func (u *Uploader) upload(ctx context.Context, name string, f *os.File, fi fs.FileInfo) (*marker, error) {
	size := fi.Size()
	// Generous, but bounded: a stalled transfer must not hold the queue.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute+time.Duration(size>>20)*time.Second)
	defer cancel()
	sum, err := u.s.Sum(f, size)
	if err != nil {
		return nil, u.failed(name, size, "local-read", err)
	}
	obj, err := u.s.Put(ctx, name, f, sum)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, err // shutting down
		}
		// A body changed under the upload fails the server's checksum.
		if after, serr := os.Lstat(f.Name()); serr == nil && !sameFile(fi, after) {
			return nil, errChanged
		}
		cause := "unavailable"
		if errors.Is(err, ErrVerify) {
			cause = "verify-failed"
		}
		return nil, u.failed(name, size, cause, err)
	}
	if after, serr := os.Lstat(f.Name()); serr != nil || !sameFile(fi, after) {
		return nil, errChanged
	}
	m := &marker{Endpoint: u.s.endpoint, Bucket: u.s.bucket, Key: obj.Key, Bytes: size, SHA256: HexSHA256(sum.SHA256), ETag: obj.ETag,
		Uploaded: u.opts.Now().UTC(), MTime: fi.ModTime().UnixNano(), CTime: changeTime(fi)}
	if err := u.writeMarker(name, m); err != nil {
		// Uploaded, but a restart would not know: it uploads again.
		return nil, u.failed(name, size, "local-write", fmt.Errorf("writing the upload marker: %w", err))
	}
	id := strings.TrimSuffix(name, recording.FileExt)
	u.opts.Audit.Emit(ctx, audit.Event{Type: TypeRecordingUpload, SessionID: id, Reason: ReasonUploaded, Attrs: map[string]string{
		"result": "ok", "key": u.s.URL(name), "bytes": strconv.FormatInt(size, 10), "sha256": m.SHA256, "etag": obj.ETag,
	}})
	u.log.Info("s3store: recording uploaded", "recording", id, "key", u.s.URL(name), "bytes", size)
	u.mu.Lock()
	if it, ok := u.items[name]; ok && it.attempts > 0 {
		u.log.Info("s3store: recording uploaded after failures", "recording", id, "attempts", it.attempts+1)
	}
	u.mu.Unlock()
	return m, nil
}

func sameFile(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && changeTime(a) == changeTime(b)
}

// failed logs a failed attempt (error level), audits the first failure
// of a run of failures, and returns err for the backoff.
func (u *Uploader) failed(name string, size int64, cause string, err error) error {
	u.mu.Lock()
	first, attempts := true, 1
	if it, ok := u.items[name]; ok {
		first, attempts = it.attempts == 0, it.attempts+1
	}
	u.mu.Unlock()
	id := strings.TrimSuffix(name, recording.FileExt)
	u.log.Error("s3store: recording upload failed; retrying with backoff", "recording", id, "key", u.s.URL(name),
		"cause", cause, "attempt", attempts, "err", err)
	if first {
		u.opts.Audit.Emit(context.Background(), audit.Event{Type: TypeRecordingUpload, SessionID: id, Reason: ReasonUploadFailed,
			Attrs: map[string]string{"result": "failed", "key": u.s.URL(name), "bytes": strconv.FormatInt(size, 10), "cause": cause}})
	}
	return fmt.Errorf("%s: %w", cause, err)
}

// removeLocal removes the local copy of an uploaded recording once a
// HEAD shows the object as the marker describes it, then the marker.
func (u *Uploader) removeLocal(ctx context.Context, name, path string, m *marker) error {
	obj, err := u.s.Stat(ctx, name)
	if errors.Is(err, ErrNotFound) {
		// Deleted from the bucket since: upload it again.
		os.Remove(u.markerPath(name))
		return u.failed(name, m.Bytes, "object-missing", err)
	}
	if err != nil {
		return u.failed(name, m.Bytes, "unavailable", err)
	}
	if obj.Size != m.Bytes || obj.ETag != m.ETag {
		os.Remove(u.markerPath(name))
		return u.failed(name, m.Bytes, "object-changed", fmt.Errorf("%s now holds %d bytes with ETag %q, uploaded %d with %q", obj.Key, obj.Size, obj.ETag, m.Bytes, m.ETag))
	}
	// Last look: unchanged since the marker (not re-wrapped meanwhile).
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || !m.matches(u.s, name, fi) {
		return nil // gone, or changed: a later scan uploads it again
	}
	// From here the object is the only copy: whoever can write to the
	// bucket could cut it at a chunk boundary, and a recording cut short
	// still authenticates up to its cut (as after a crash). The receipt,
	// kept on this host, lets a read tell the object it fetches from the
	// one that was uploaded.
	if err := writeState(u.opts.Dir, name+receiptExt, m); err != nil {
		return u.failed(name, m.Bytes, "local-write", fmt.Errorf("writing the receipt: %w", err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u.failed(name, m.Bytes, "local-write", err)
	}
	syncDir(u.opts.Dir)
	os.Remove(u.markerPath(name))
	u.log.Info("s3store: local copy of an uploaded recording removed", "recording", strings.TrimSuffix(name, recording.FileExt), "key", u.s.URL(name))
	return nil
}

// Status is the uploader's backlog.
type Status struct {
	Pending int       // recordings with work queued
	Failing int       // of which the last attempt failed
	Since   time.Time // oldest failure still failing
	LastErr string    // the most recent failure's error
}

// Status reports the backlog.
func (u *Uploader) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	var st Status
	var last time.Time
	for _, it := range u.items {
		st.Pending++
		if it.attempts == 0 {
			continue
		}
		st.Failing++
		if st.Since.IsZero() || it.since.Before(st.Since) {
			st.Since = it.since
		}
		if it.due.After(last) || st.LastErr == "" {
			last, st.LastErr = it.due, it.lastErr.Error()
		}
	}
	return st
}

// HealthNotes are /healthz lines while uploads fail.
func (u *Uploader) HealthNotes() []string {
	st := u.Status()
	if st.Failing == 0 {
		return nil
	}
	// /healthz is public: no error text (endpoint addresses, session IDs,
	// paths); the cause is in the error log.
	return []string{fmt.Sprintf("degraded: recording uploads to s3://%s failing: %d of %d pending recordings, since %s",
		u.s.bucket, st.Failing, st.Pending, st.Since.UTC().Format(time.RFC3339))}
}
