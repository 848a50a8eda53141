package recording

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var testStart = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// fakeClock advances by step on every call.
type fakeClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func testMeta(id string) Meta {
	return Meta{SessionID: id, UserID: "alice", SourceIP: "127.0.0.1", Target: "db-1", Login: "root", Start: testStart}
}

// testKEK is the key-encryption key of the tests' recordings.
var testKEK = mustKey(1)

// mustKey is a key made of one repeated byte (tests only).
func mustKey(b byte) *Key {
	k, err := NewKey(bytes.Repeat([]byte{b}, KeySize))
	if err != nil {
		panic(err)
	}
	return k
}

func newTestWriter(t testing.TB, opts Options) (*Writer, string) {
	t.Helper()
	dir := t.TempDir()
	if opts.Key == nil {
		opts.Key = testKEK
	}
	if opts.Now == nil {
		opts.Now = (&fakeClock{t: testStart, step: 250 * time.Millisecond}).Now
	}
	w, err := Create(dir, testMeta("s1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return w, w.Path()
}

// allBytes is every byte value, so framing is proven binary-safe.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	w, path := newTestWriter(t, Options{BufferSize: 300})
	big := bytes.Repeat(allBytes(), MaxFrame/256+3) // split into two frames
	steps := []struct {
		ch uint32
		s  Stream
		p  []byte
	}{
		{1, StreamStdout, []byte("hello\n")},
		{1, StreamStderr, allBytes()},
		{2, StreamStdin, []byte("typed")},
		{1, StreamStdout, big},
	}
	if err := w.Event(1, Event{Type: EventExec, Command: "cat /etc/hosts"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Resize(1, 120, 40); err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if err := w.Data(st.ch, st.s, st.p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(Trailer{Reason: "client-closed"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := w.Data(1, StreamStdout, []byte("late")); err == nil {
		t.Fatal("Data after Close accepted")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := NewReader(f, testKEK)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Meta.UserID != "alice" || rd.Meta.Version != FormatVersion || !rd.Meta.Start.Equal(testStart) {
		t.Fatalf("meta %+v", rd.Meta)
	}
	var frames []Frame
	var prev time.Duration
	for {
		fr, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if fr.Offset <= prev {
			t.Fatalf("offsets not increasing: %v after %v", fr.Offset, prev)
		}
		prev = fr.Offset
		fr.Data = append([]byte(nil), fr.Data...)
		frames = append(frames, fr)
	}
	if len(frames) != 7 {
		t.Fatalf("%d frames", len(frames))
	}
	if e, err := DecodeEvent(frames[0].Data); err != nil || e.Command != "cat /etc/hosts" {
		t.Fatalf("event %+v %v", e, err)
	}
	if c, r, err := ParseResize(frames[1].Data); err != nil || c != 120 || r != 40 {
		t.Fatalf("resize %d %d %v", c, r, err)
	}
	for i, st := range steps[:3] {
		fr := frames[2+i]
		if fr.Channel != st.ch || fr.Stream != st.s || !bytes.Equal(fr.Data, st.p) {
			t.Fatalf("frame %d: %+v", i, fr)
		}
	}
	if got := append(frames[5].Data, frames[6].Data...); !bytes.Equal(got, big) || len(frames[5].Data) != MaxFrame {
		t.Fatal("large write not split into MaxFrame frames or altered")
	}
	tr, ok := rd.Trailer()
	if !ok || tr.Reason != "client-closed" || tr.End.IsZero() {
		t.Fatalf("trailer %+v", tr)
	}
	// The 256 binary bytes cost 256 bytes plus a small header: no escaping.
	// (The fixed header, the metadata and a chunk per batch come on top.)
	st, _ := os.Stat(path)
	if overhead := st.Size() - int64(6+256+5+len(big)); overhead > int64(HeaderSize+400+10*chunkOverhead) {
		t.Fatalf("overhead %d bytes", overhead)
	}
}

// TestTruncated: a writer that dies (no Close) leaves a file readable up
// to the last flushed frame, reported as truncated; and a recording cut at
// any byte never makes the reader panic or invent data.
func TestTruncated(t *testing.T) {
	w, path := newTestWriter(t, Options{FlushInterval: time.Millisecond})
	if err := w.Data(1, StreamStdout, []byte("before the crash")); err != nil {
		t.Fatal(err)
	}
	// Wait for the periodic flush (no Close: the process "died").
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, err := Summarize(mustOpen(t, path), testKEK); err == nil && s.Bytes[StreamStdout] == 16 {
			if !s.Truncated || s.Trailer != nil {
				t.Fatalf("not marked truncated: %+v", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("frame never flushed")
		}
		time.Sleep(time.Millisecond)
	}
	w.Close(Trailer{Reason: "x"})
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	metaEnd := HeaderSize + chunkHeaderSize + int(binary.BigEndian.Uint32(full[HeaderSize+9:]))
	for cut := 0; cut < len(full); cut++ {
		s, err := Summarize(bytes.NewReader(full[:cut]), testKEK)
		switch {
		case err != nil:
			// Before the metadata chunk is whole there is nothing to
			// summarise: corrupt (not even the magic) or incomplete.
			if !(errors.Is(err, ErrCorrupt) && cut < len(Magic) || errors.Is(err, ErrTruncated)) || cut >= metaEnd {
				t.Fatalf("cut %d: %v", cut, err)
			}
		case !s.Truncated || !errors.Is(s.Err, ErrTruncated):
			t.Fatalf("cut %d not incomplete", cut)
		case s.Bytes[StreamStdout] != 0 && s.Bytes[StreamStdout] != 16:
			t.Fatalf("cut %d: partial frame returned", cut)
		}
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// flakyFile fails writes once broken is set.
type flakyFile struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	broken  atomic.Bool
	gate    chan struct{} // when set, Write waits for it
	entered chan struct{} // closed on the first gated Write
	once    sync.Once
	closed  bool
}

func (f *flakyFile) Write(p []byte) (int, error) {
	if f.gate != nil {
		f.once.Do(func() { close(f.entered) })
		<-f.gate
	}
	if f.broken.Load() {
		return 0, errors.New("no space left on device")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.Write(p)
}
func (f *flakyFile) Sync() error  { return nil }
func (f *flakyFile) Close() error { f.closed = true; return nil }

func TestWriteFailure(t *testing.T) {
	ff := &flakyFile{}
	w, _ := newTestWriter(t, Options{BufferSize: 64, OpenFile: func(string) (File, error) { return ff, nil }})
	if err := w.Data(1, StreamStdout, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	ff.broken.Store(true)
	// Fill batches until the failure surfaces.
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = w.Data(1, StreamStdout, bytes.Repeat([]byte("x"), 100))
		if err == nil {
			select {
			case <-w.Failed():
				err = w.Err()
			default:
			}
		}
	}
	if err == nil {
		t.Fatal("write failure never reported")
	}
	<-w.Failed()
	if w.Data(1, StreamStdout, []byte("more")) == nil {
		t.Fatal("Data accepted after a failure")
	}
	if w.Close(Trailer{}) == nil || !ff.closed {
		t.Fatal("Close hid the failure or left the file open")
	}
}

func TestCreateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   string
		open func(string) (File, error)
	}{
		{"path traversal", "../evil", nil},
		{"slash", "a/b", nil},
		{"empty", "", nil},
		{"open fails", "ok", func(string) (File, error) { return nil, os.ErrPermission }},
		{"header write fails", "ok", func(string) (File, error) {
			f := &flakyFile{}
			f.broken.Store(true)
			return f, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w, err := Create(t.TempDir(), testMeta(tc.id), Options{Key: testKEK, OpenFile: tc.open}); err == nil {
				w.Close(Trailer{})
				t.Fatal("created")
			}
		})
	}
	t.Run("existing file is not overwritten", func(t *testing.T) {
		dir := t.TempDir()
		writeTestFile(t, filepath.Join(dir, "dup"+FileExt), "precious")
		if _, err := Create(dir, testMeta("dup"), Options{Key: testKEK}); err == nil {
			t.Fatal("overwrote")
		}
	})
}

func writeTestFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestProbe(t *testing.T) {
	dir := t.TempDir()
	if err := Probe(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("probe left %v", entries)
	}
	broken := func(string) (File, error) {
		f := &flakyFile{}
		f.broken.Store(true)
		return f, nil
	}
	if err := Probe(dir, Options{OpenFile: broken}); err == nil {
		t.Fatal("probe passed on a failing disk")
	}
}

// TestBackpressure: a slow disk makes producers wait within a bounded
// buffer; nothing is lost.
func TestBackpressure(t *testing.T) {
	ff := &flakyFile{}
	w, _ := newTestWriter(t, Options{BufferSize: 128, Queue: 1, OpenFile: func(string) (File, error) { return ff, nil }})
	// Gate the disk only after the header went through Create.
	ff.gate, ff.entered = make(chan struct{}), make(chan struct{})
	const n = 200
	var completed atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := w.Data(1, StreamStdout, bytes.Repeat([]byte{byte(i)}, 50)); err != nil {
				done <- err
				return
			}
			completed.Add(1)
		}
		done <- nil
	}()
	<-ff.entered
	// While the disk is stuck, at most: one batch being written, one
	// queued, one filling (3 frames of 54 bytes each per 128-byte batch).
	for i := 0; i < 1000; i++ {
		if c := completed.Load(); c > 10 {
			t.Fatalf("%d frames accepted while the disk was stuck: the buffer is unbounded", c)
		}
		runtime.Gosched()
	}
	close(ff.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	ff.mu.Lock()
	s, err := Summarize(bytes.NewReader(ff.buf.Bytes()), testKEK)
	ff.mu.Unlock()
	if err != nil || s.Bytes[StreamStdout] != n*50 {
		t.Fatalf("%v, %d bytes", err, s.Bytes[StreamStdout])
	}
}

func TestWatch(t *testing.T) {
	w, _ := newTestWriter(t, Options{})
	live := w.Watch(8)
	slow := w.Watch(1)
	for _, s := range []string{"a", "b", "c"} {
		if err := w.Data(1, StreamStdout, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	var got string
	for i := 0; i < 3; i++ {
		f := <-live.C
		got += string(f.Data)
	}
	if got != "abc" {
		t.Fatalf("watched %q", got)
	}
	// The slow watcher got one frame and was cut off.
	<-slow.C
	if _, open := <-slow.C; open || !slow.Lagged() {
		t.Fatal("a lagging watcher was not cut off")
	}
	w.Close(Trailer{})
	if _, open := <-live.C; open {
		t.Fatal("watch not closed with the recording")
	}
	if _, open := <-w.Watch(1).C; open {
		t.Fatal("watch on a closed recording is open")
	}
}
