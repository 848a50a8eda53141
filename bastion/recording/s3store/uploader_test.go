package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
)

// clock is the injected time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// events collects audit events.
type events struct {
	mu sync.Mutex
	ev []audit.Event
}

func (e *events) Emit(_ context.Context, ev audit.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev = append(e.ev, ev)
}

func (e *events) reasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.ev {
		out = append(out, ev.Type+"/"+ev.Reason)
	}
	return out
}

func (e *events) last() audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ev[len(e.ev)-1]
}

// levels records the level of every log line.
type levels struct {
	mu  sync.Mutex
	got []slog.Level
	msg []string
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, r.Level)
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.msg = append(l.msg, b.String())
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

func (l *levels) errors() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, lv := range l.got {
		if lv == slog.LevelError {
			n++
		}
	}
	return n
}

func (l *levels) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msg, "\n")
}

var testKey = func() *recording.Key {
	k, err := recording.NewKey(bytes.Repeat([]byte{7}, recording.KeySize))
	if err != nil {
		panic(err)
	}
	return k
}()

// writeRecording writes a real recording for session id into dir and
// closes it unless open; it returns the writer (nil when closed).
func writeRecording(t *testing.T, dir, id string, open bool) *recording.Writer {
	t.Helper()
	w, err := recording.Create(dir, recording.Meta{SessionID: id, UserID: "https://idp#alice", Target: "db-1", Login: "root"},
		recording.Options{Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Data(1, recording.StreamStdout, []byte("$ uptime\r\n up 3 days\r\n")); err != nil {
		t.Fatal(err)
	}
	if open {
		t.Cleanup(func() { w.Close(recording.Trailer{}) })
		return w
	}
	if err := w.Close(recording.Trailer{End: time.Now(), Reason: "client-closed"}); err != nil {
		t.Fatal(err)
	}
	return nil
}

type upEnv struct {
	g   *gw
	s   *Store
	u   *Uploader
	dir string
	clk *clock
	ev  *events
	log *levels
}

func newUpEnv(t *testing.T, keep time.Duration) *upEnv {
	t.Helper()
	e := &upEnv{g: startGW(t, "recordings", false), dir: filepath.Join(t.TempDir(), "recordings"),
		clk: &clock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}, ev: &events{}, log: &levels{}}
	e.s = e.g.store(t, "bastion")
	e.u = e.uploader(t, keep)
	return e
}

func (e *upEnv) uploader(t *testing.T, keep time.Duration) *Uploader {
	u, err := NewUploader(e.s, UploaderOptions{Dir: e.dir, KeepLocal: keep, Audit: e.ev, Logger: slog.New(e.log), Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// object returns the bucket's copy of name (nil when there is none).
func (e *upEnv) object(t *testing.T, name string) []byte {
	t.Helper()
	rc, _, err := e.s.Get(context.Background(), name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(path string) bool { _, err := os.Lstat(path); return err == nil }

// TestUploaderKeepLocal: a closed recording is uploaded, verified and
// audited; its local copy then stays (until retention), goes at once, or
// goes keep_local after the upload.
func TestUploaderKeepLocal(t *testing.T) {
	cases := []struct {
		name    string
		keep    time.Duration
		removed bool // right after the upload
	}{
		{"until retention", KeepLocalUntilRetention, false},
		{"zero removes at once", 0, true},
		{"one hour", time.Hour, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newUpEnv(t, tc.keep)
			ctx := context.Background()
			writeRecording(t, e.dir, "sess-1", false)
			path := filepath.Join(e.dir, "sess-1.pcrec")
			local, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			e.u.Closed(path)
			next := e.u.RunDue(ctx)
			if got := e.object(t, "sess-1.pcrec"); !bytes.Equal(got, local) {
				t.Fatalf("object differs from the local recording (%d vs %d bytes)", len(got), len(local))
			}
			if r := e.ev.reasons(); !slices.Equal(r, []string{"recording.upload/uploaded"}) {
				t.Fatalf("audit %v", r)
			}
			ev := e.ev.last()
			sum := sha256.Sum256(local)
			if ev.SessionID != "sess-1" || ev.Attrs["result"] != "ok" || ev.Attrs["key"] != "s3://recordings/bastion/sess-1.pcrec" ||
				ev.Attrs["bytes"] != strconv.Itoa(len(local)) || ev.Attrs["sha256"] != hex.EncodeToString(sum[:]) {
				t.Fatalf("audit event %+v", ev)
			}
			if exists(path) == tc.removed {
				t.Fatalf("local copy exists: %v, want removed: %v", exists(path), tc.removed)
			}
			marker := filepath.Join(e.dir, ".s3", "sess-1.pcrec.uploaded")
			if exists(marker) == tc.removed {
				t.Fatalf("marker exists: %v with the local copy removed: %v", exists(marker), tc.removed)
			}
			switch tc.keep {
			case KeepLocalUntilRetention, 0:
				if !next.IsZero() {
					t.Fatalf("more work due at %v", next)
				}
			default:
				if want := e.clk.Now().Add(tc.keep); !next.Equal(want) {
					t.Fatalf("next %v, want removal at %v", next, want)
				}
				e.clk.Add(tc.keep - time.Second)
				e.u.RunDue(ctx)
				if !exists(path) {
					t.Fatal("local copy removed before keep_local")
				}
				e.clk.Add(time.Second)
				if next := e.u.RunDue(ctx); !next.IsZero() || exists(path) || exists(marker) {
					t.Fatalf("after keep_local: next %v, local %v, marker %v", next, exists(path), exists(marker))
				}
			}
			if st := e.u.Status(); st.Pending != 0 || e.log.errors() != 0 {
				t.Fatalf("status %+v, error logs %d", st, e.log.errors())
			}
		})
	}
}

// TestUploaderScan: at start-up, recordings without a verified upload
// are uploaded — a closed one, one cut by a crash (as it is), one whose
// marker is garbage — an uploaded one is not uploaded again, and links,
// other files and markers of recordings that are gone are left out.
func TestUploaderScan(t *testing.T) {
	e := newUpEnv(t, KeepLocalUntilRetention)
	ctx := context.Background()
	writeRecording(t, e.dir, "done", false)
	e.u.Closed(filepath.Join(e.dir, "done.pcrec"))
	e.u.RunDue(ctx)
	before, err := e.s.Stat(ctx, "done.pcrec")
	if err != nil {
		t.Fatal(err)
	}
	writeRecording(t, e.dir, "closed", false)
	writeRecording(t, e.dir, "crashed", true)
	writeRecording(t, e.dir, "garbage-marker", false)
	if err := os.WriteFile(filepath.Join(e.dir, ".s3", "garbage-marker.pcrec.uploaded"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, ".s3", "purged.pcrec.uploaded"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("not a recording"), 0o600)
	if err := os.Symlink(secret, filepath.Join(e.dir, "link.pcrec")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.dir, "notes.txt"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(e.dir, "bad name.pcrec"), []byte("x"), 0o600)
	crashed, _ := os.ReadFile(filepath.Join(e.dir, "crashed.pcrec"))

	// A new process: a fresh uploader over the same directory.
	e.ev.ev = nil
	e.clk.Add(time.Minute)
	u := e.uploader(t, KeepLocalUntilRetention)
	if err := u.Scan(); err != nil {
		t.Fatal(err)
	}
	if next := u.RunDue(ctx); !next.IsZero() {
		t.Fatalf("more work due at %v", next)
	}
	var names []string
	e.s.List(ctx, func(o Object) error { names = append(names, o.Name); return nil })
	if want := []string{"closed.pcrec", "crashed.pcrec", "done.pcrec", "garbage-marker.pcrec"}; !slices.Equal(names, want) {
		t.Fatalf("bucket holds %v, want %v", names, want)
	}
	if got := e.object(t, "crashed.pcrec"); !bytes.Equal(got, crashed) {
		t.Fatal("the crashed recording was not uploaded as it was")
	}
	after, _ := e.s.Stat(ctx, "done.pcrec")
	if !after.LastModified.Equal(before.LastModified) || after.ETag != before.ETag {
		t.Fatalf("the uploaded recording was uploaded again: %+v then %+v", before, after)
	}
	if r := e.ev.reasons(); len(r) != 3 {
		t.Fatalf("audit %v, want three uploads", r)
	}
	if exists(filepath.Join(e.dir, ".s3", "purged.pcrec.uploaded")) {
		t.Fatal("the marker of a recording that is gone was kept")
	}
	if !exists(filepath.Join(e.dir, "link.pcrec")) {
		t.Fatal("the link was removed")
	}
}

// TestUploaderBucketDown: while the bucket is down the session side is
// untouched (Closed only queues), each attempt fails with an error log,
// the first failure is audited once, /healthz says so, retries back off;
// once the bucket is back the recording is uploaded and the note goes.
func TestUploaderBucketDown(t *testing.T) {
	e := newUpEnv(t, KeepLocalUntilRetention)
	ctx := context.Background()
	writeRecording(t, e.dir, "offline", false)
	writeRecording(t, e.dir, "waiting", false)
	e.g.stop()
	e.u.Closed(filepath.Join(e.dir, "offline.pcrec"))
	e.u.Closed(filepath.Join(e.dir, "waiting.pcrec"))
	start := e.clk.Now()
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		next := e.u.RunDue(ctx)
		if want := e.clk.Now().Add(wait); !next.Equal(want) {
			t.Fatalf("attempt %d: next %v, want %v", i+1, next, want)
		}
		e.clk.Add(wait)
	}
	// One recording is tried per attempt; the other waits for the bucket
	// rather than fail on its own.
	if r := e.ev.reasons(); !slices.Equal(r, []string{"recording.upload/upload-failed"}) {
		t.Fatalf("audit %v, want one failure", r)
	}
	ev := e.ev.last()
	if ev.Attrs["result"] != "failed" || ev.Attrs["cause"] != "unavailable" || ev.Attrs["key"] != "s3://recordings/bastion/offline.pcrec" {
		t.Fatalf("failure event %+v", ev)
	}
	if n := e.log.errors(); n != 3 {
		t.Fatalf("%d error logs, want one per attempt (3)", n)
	}
	notes := e.u.HealthNotes()
	if len(notes) != 1 || !strings.Contains(notes[0], "degraded: recording uploads to s3://recordings failing: 1 of 2") ||
		!strings.Contains(notes[0], start.Format(time.RFC3339)) {
		t.Fatalf("health notes %q", notes)
	}
	for _, s := range append(notes, e.log.all()) {
		if strings.Contains(s, testSecret) {
			t.Fatalf("the secret key leaked: %s", s)
		}
	}
	// /healthz is public: no error text (addresses, session IDs, paths).
	if st := e.u.Status(); st.LastErr == "" || strings.Contains(notes[0], st.LastErr) || strings.Contains(notes[0], "offline") {
		t.Fatalf("health note carries the error: %q (last error %q)", notes[0], st.LastErr)
	}
	e.g.start(t)
	if next := e.u.RunDue(ctx); !next.IsZero() {
		t.Fatalf("next %v after recovery", next)
	}
	if r := e.ev.reasons(); !slices.Equal(r, []string{"recording.upload/upload-failed", "recording.upload/uploaded", "recording.upload/uploaded"}) {
		t.Fatalf("audit %v", r)
	}
	if notes := e.u.HealthNotes(); notes != nil {
		t.Fatalf("health notes after recovery: %q", notes)
	}
	if e.object(t, "offline.pcrec") == nil || e.object(t, "waiting.pcrec") == nil {
		t.Fatal("not uploaded after recovery")
	}
}

// TestUploaderReuploadsRewrapped: admin rotate-key re-wraps a recording
// in place (same size and modification time): the object, under the old
// key, is replaced by the re-wrapped file.
func TestUploaderReuploadsRewrapped(t *testing.T) {
	e := newUpEnv(t, KeepLocalUntilRetention)
	ctx := context.Background()
	writeRecording(t, e.dir, "rotated", false)
	path := filepath.Join(e.dir, "rotated.pcrec")
	e.u.Closed(path)
	e.u.RunDue(ctx)
	newKey, err := recording.NewKey(bytes.Repeat([]byte{9}, recording.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := recording.Rekey(path, testKey, newKey); err != nil || out != recording.Rekeyed {
		t.Fatalf("rekey: %v %v", out, err)
	}
	u := e.uploader(t, KeepLocalUntilRetention)
	if err := u.Scan(); err != nil {
		t.Fatal(err)
	}
	u.RunDue(ctx)
	local, _ := os.ReadFile(path)
	obj := e.object(t, "rotated.pcrec")
	if !bytes.Equal(obj, local) {
		t.Fatal("the object is not the re-wrapped recording")
	}
	if _, err := recording.VerifyReader(bytes.NewReader(obj), newKey); err != nil {
		t.Fatalf("object under the new key: %v", err)
	}
	if r := e.ev.reasons(); len(r) != 2 {
		t.Fatalf("audit %v, want two uploads", r)
	}
}

// TestUploaderObjectGoneBeforeRemoval: the local copy is only removed
// when the object is still there; an object deleted behind the
// uploader's back is uploaded again, and the copy goes keep_local later.
func TestUploaderObjectGoneBeforeRemoval(t *testing.T) {
	e := newUpEnv(t, time.Hour)
	ctx := context.Background()
	writeRecording(t, e.dir, "gone", false)
	path := filepath.Join(e.dir, "gone.pcrec")
	e.u.Closed(path)
	e.u.RunDue(ctx)
	if err := e.s.Delete(ctx, "gone.pcrec"); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(time.Hour)
	next := e.u.RunDue(ctx)
	if !exists(path) {
		t.Fatal("local copy removed although the object is gone")
	}
	if r := e.ev.reasons(); !slices.Equal(r, []string{"recording.upload/uploaded", "recording.upload/upload-failed"}) || e.ev.last().Attrs["cause"] != "object-missing" {
		t.Fatalf("audit %v %+v", r, e.ev.last())
	}
	e.clk.Add(next.Sub(e.clk.Now()))
	next = e.u.RunDue(ctx)
	if e.object(t, "gone.pcrec") == nil || !exists(path) || !next.Equal(e.clk.Now().Add(time.Hour)) {
		t.Fatalf("after re-upload: object %v, local %v, next %v", e.object(t, "gone.pcrec") != nil, exists(path), next)
	}
}

// TestUploaderClosedHostilePaths: Closed queues only recordings of its
// own directory.
func TestUploaderClosedHostilePaths(t *testing.T) {
	s, err := New(Config{Endpoint: "http://127.0.0.1:1", Bucket: "recordings", AccessKey: "a", SecretKey: "b"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	u, err := NewUploader(s, UploaderOptions{Dir: dir, Audit: &events{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/etc/passwd",
		filepath.Join(dir, "..", "x.pcrec"),
		filepath.Join(dir, "sub", "x.pcrec"),
		filepath.Join(dir, "a b.pcrec"),
		filepath.Join(dir, ".pcrec"),
		filepath.Join(dir, "x.pcrec.uploaded"),
		filepath.Join(dir, ".s3", "x.pcrec"),
		"",
	} {
		u.Closed(p)
	}
	if st := u.Status(); st.Pending != 0 {
		t.Fatalf("queued %d hostile paths", st.Pending)
	}
	u.Closed(filepath.Join(dir, "ok_ID-1.pcrec"))
	if st := u.Status(); st.Pending != 1 {
		t.Fatalf("a valid path was not queued: %+v", st)
	}
	if _, err := NewUploader(s, UploaderOptions{Dir: dir}); err == nil {
		t.Fatal("an uploader without an audit emitter")
	}
}
