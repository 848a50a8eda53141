package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func fixedNow() time.Time { return sampleTime }

// readLines decodes the events of the audit file (checkpoints left out),
// failing on invalid JSON.
func readLines(t *testing.T, path string) []Event {
	t.Helper()
	var out []Event
	for _, e := range readRecords(t, path) {
		if e.Type != TypeCheckpoint {
			out = append(out, e)
		}
	}
	return out
}

// readRecords decodes every line of the audit file, failing on invalid JSON.
func readRecords(t *testing.T, path string) []Event {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("file does not end with a newline: %q", data)
	}
	return out
}

func openTest(t *testing.T, cfg FileConfig) *FileLog {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	l, err := OpenFile(cfg, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestFileName(t *testing.T) {
	tests := []struct{ instance, want string }{
		{"gw-1", "audit-gw-1.jsonl"},
		{"", "audit-default.jsonl"},
		{"a.b_C-9", "audit-a.b_C-9.jsonl"},
		{"../../etc/passwd", "audit-.._.._etc_passwd.jsonl"},
		{"gw 1\x00\n", "audit-gw_1__.jsonl"},
		{"é", "audit-__.jsonl"},
		{strings.Repeat("x", 500), "audit-" + strings.Repeat("x", maxInstanceLen) + ".jsonl"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			got := FileName(tc.instance)
			if got != tc.want || strings.ContainsAny(got, "/\\") {
				t.Fatalf("FileName(%q) = %q, want %q", tc.instance, got, tc.want)
			}
		})
	}
}

func TestOpenFileConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  FileConfig
	}{
		{"no dir", FileConfig{}},
		{"negative interval", FileConfig{Dir: t.TempDir(), FlushInterval: -1}},
		{"negative buffer", FileConfig{Dir: t.TempDir(), Buffer: -1}},
		{"dir is a file", FileConfig{Dir: filepath.Join(writeFile(t, "x"), "sub")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := OpenFile(tc.cfg, Options{}); err == nil {
				l.Close()
				t.Fatal("OpenFile succeeded")
			}
		})
	}
	// The audit path exists but is a directory, not a file.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, FileName("x")), 0o700); err != nil {
		t.Fatal(err)
	}
	if l, err := OpenFile(FileConfig{Dir: dir, Instance: "x"}, Options{}); err == nil {
		l.Close()
		t.Fatal("OpenFile over a directory succeeded")
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFileLogWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	l := openTest(t, FileConfig{Dir: dir, Instance: "gw/1"})
	if want := filepath.Join(dir, "audit-gw_1.jsonl"); l.Path() != want {
		t.Fatalf("Path = %q, want %q", l.Path(), want)
	}
	ctx := context.Background()
	attrs := map[string]string{"route": "grafana"}
	l.Emit(ctx, Event{Type: TypeLoginStart, Attrs: attrs})
	attrs["route"] = "changed after Emit" // the caller may reuse its map
	own := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Emit(ctx, Event{Type: TypeDecision, Time: own, Instance: "other", Decision: Allow})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	got := readLines(t, l.Path())
	if len(got) != 2 {
		t.Fatalf("%d lines, want 2", len(got))
	}
	if !got[0].Time.Equal(sampleTime) || got[0].Instance != "gw/1" || got[0].Attrs["route"] != "grafana" {
		t.Fatalf("first event %+v: Time/Instance not filled or Attrs aliased", got[0])
	}
	// Time is kept; Instance is the chain's, whatever the producer says.
	if !got[1].Time.Equal(own) || got[1].Instance != "gw/1" {
		t.Fatalf("second event %+v: explicit Time overwritten or foreign Instance kept", got[1])
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, l.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^want != 0 {
			t.Fatalf("%s mode %v, want at most %v", path, fi.Mode().Perm(), want)
		}
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
}

// Flush does not wait for the interval: it forces a write and sync.
func TestFileLogFlushForcesWrite(t *testing.T) {
	l := openTest(t, FileConfig{FlushInterval: time.Hour})
	for i := range 3 {
		l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: fmt.Sprint(i)})
		if err := l.Flush(); err != nil {
			t.Fatal(err)
		}
		if n := len(readLines(t, l.Path())); n != i+1 {
			t.Fatalf("after Flush %d: %d lines on disk", i, n)
		}
	}
	if err := l.Flush(); err != nil {
		t.Fatalf("Flush with nothing pending: %v", err)
	}
}

func TestFileLogAppendsAcrossOpens(t *testing.T) {
	dir := t.TempDir()
	for i := range 2 {
		l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw"}, Options{Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: fmt.Sprint(i)})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A crash left half a line: it is cut on open, the cut is recorded in
	// the chain, and the chain continues from the last complete record.
	path := filepath.Join(dir, FileName("gw"))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2025-`)
	f.Close()
	l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw"}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: "2"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range readRecords(t, path) {
		types = append(types, e.Type+"/"+e.Reason)
	}
	want := "admin/0,audit.checkpoint/,admin/1,audit.checkpoint/,audit.recovery/torn_tail,admin/2,audit.checkpoint/"
	if strings.Join(types, ",") != want {
		t.Fatalf("records %v, want %s", types, want)
	}
	rec := readRecords(t, path)[4]
	if rec.Attrs["cut_bytes"] != "14" || rec.Attrs["after_seq"] != "4" || len(rec.Attrs["cut_sha256"]) != 64 {
		t.Fatalf("recovery record %+v", rec)
	}
	mustVerify(t, dir)
}

// Many writers through a tiny buffer: every event arrives exactly once
// (backpressure, no loss), each on its own line.
func TestFileLogConcurrent(t *testing.T) {
	l := openTest(t, FileConfig{Buffer: 2})
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				l.Emit(context.Background(), Event{Type: TypeDecision, UserID: fmt.Sprint(w), Reason: fmt.Sprint(i),
					Attrs: map[string]string{"pad": strings.Repeat("x", i)}})
				if i%50 == 0 {
					if err := l.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range readLines(t, l.Path()) {
		seen[e.UserID+"/"+e.Reason]++
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct events, want %d", len(seen), writers*each)
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("event %s written %d times", k, n)
		}
	}
}

func TestFileLogClose(t *testing.T) {
	l := openTest(t, FileConfig{FlushInterval: time.Hour})
	l.Emit(context.Background(), Event{Type: TypeAdmin})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, l.Path())); n != 1 {
		t.Fatalf("Close did not drain: %d lines", n)
	}
	l.Emit(context.Background(), Event{Type: TypeAdmin}) // logged as lost, no panic
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := l.Flush(); err != nil {
		t.Fatalf("Flush after Close with nothing pending: %v", err)
	}
	if err := l.Healthy(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Healthy after Close: %v, want ErrClosed", err)
	}
	if n := len(readLines(t, l.Path())); n != 1 {
		t.Fatalf("event after Close was written: %d lines", n)
	}
}

// faultyFile fails writes (optionally after writing a prefix) and syncs
// while failing is set.
type faultyFile struct {
	*os.File
	failing   atomic.Bool
	failSync  atomic.Bool
	partial   atomic.Bool // write half the batch before failing
	failWrite error
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if !f.failing.Load() {
		return f.File.Write(p)
	}
	n := 0
	if f.partial.Load() && len(p) > 1 {
		n, _ = f.File.Write(p[:len(p)/2])
	}
	return n, f.failWrite
}

func (f *faultyFile) Sync() error {
	if f.failSync.Load() {
		return syscall.EIO
	}
	return f.File.Sync()
}

// openTrailForTest opens a new trail in a temporary directory the way
// OpenFile does, for tests that wrap the file.
func openTrailForTest(t *testing.T) (*os.File, openState) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	f, st, err := openTrail(t.TempDir(), "x", key, fixedNow())
	if err != nil {
		t.Fatal(err)
	}
	return f, st
}

func openFaulty(t *testing.T, backlog int) (*FileLog, *faultyFile) {
	t.Helper()
	f, st := openTrailForTest(t)
	ff := &faultyFile{File: f, failWrite: syscall.ENOSPC}
	l := newFileLog(FileConfig{FlushInterval: time.Hour, Buffer: 16}, Options{Now: fixedNow}, ff, st, backlog)
	t.Cleanup(func() { l.Close() })
	return l, ff
}

func TestFileLogWriteErrors(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(f *faultyFile)
		want   error
	}{
		{"disk full", func(f *faultyFile) { f.failing.Store(true) }, syscall.ENOSPC},
		{"partial write", func(f *faultyFile) { f.failing.Store(true); f.partial.Store(true) }, syscall.ENOSPC},
		{"sync fails", func(f *faultyFile) { f.failSync.Store(true) }, syscall.EIO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, f := openFaulty(t, maxBacklog)
			ctx := context.Background()
			l.Emit(ctx, Event{Type: TypeAdmin, Reason: "before"})
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			tc.break_(f)
			for i := range 5 {
				l.Emit(ctx, Event{Type: TypeAdmin, Reason: fmt.Sprint(i)})
			}
			if err := l.Flush(); !errors.Is(err, tc.want) {
				t.Fatalf("Flush while broken: %v, want %v", err, tc.want)
			}
			if err := l.Healthy(); !errors.Is(err, tc.want) {
				t.Fatalf("Healthy while broken: %v, want %v", err, tc.want)
			}
			// The disk recovers: the held events are written exactly once.
			f.failing.Store(false)
			f.failSync.Store(false)
			if err := l.Flush(); err != nil {
				t.Fatalf("Flush after recovery: %v", err)
			}
			if err := l.Healthy(); err != nil {
				t.Fatalf("Healthy after recovery: %v", err)
			}
			got := readLines(t, l.Path())
			var reasons []string
			for _, e := range got {
				reasons = append(reasons, e.Reason)
			}
			if strings.Join(reasons, ",") != "before,0,1,2,3,4" {
				t.Fatalf("events on disk: %v", reasons)
			}
		})
	}
}

// Close with a disk that never recovers returns the error instead of
// hanging, even with Emits blocked because the writer holds back a full
// backlog.
func TestFileLogCloseWhileBroken(t *testing.T) {
	l, f := openFaulty(t, 1)
	f.failing.Store(true)
	l.Emit(context.Background(), Event{Type: TypeAdmin})
	if err := l.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush: %v, want ENOSPC", err)
	}
	// The writer now takes no more events: these fill the queue and block.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				l.Emit(context.Background(), Event{Type: TypeAdmin})
			}
		})
	}
	if err := l.Close(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Close: %v, want ENOSPC", err)
	}
	wg.Wait() // every blocked Emit returned
}

// openBench opens a log for a benchmark and returns a typical event.
func openBench(b *testing.B) (*FileLog, Event) {
	b.Helper()
	l, err := OpenFile(FileConfig{Dir: b.TempDir(), Instance: "bench", Buffer: 1 << 16}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	})
	e := sampleEvent()
	e.Time = time.Time{} // filled by Emit, as in production
	b.ReportAllocs()
	return l, e
}

func BenchmarkEmit(b *testing.B) {
	l, e := openBench(b)
	for b.Loop() {
		l.Emit(context.Background(), e)
	}
}

func BenchmarkEmitParallel(b *testing.B) {
	l, e := openBench(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Emit(context.Background(), e)
		}
	})
}

// countingFile counts writes and syncs, and can hold writes at a gate (a
// slow disk) until the test opens it.
type countingFile struct {
	*os.File
	gate    chan struct{} // nil: never blocks
	entered chan struct{} // receives once per write that reached the gate
	once    sync.Once
	writes  atomic.Int64
	syncs   atomic.Int64
}

func (f *countingFile) Write(p []byte) (int, error) {
	f.writes.Add(1)
	if f.gate != nil {
		select {
		case f.entered <- struct{}{}:
		default:
		}
		<-f.gate
	}
	return f.File.Write(p)
}

func (f *countingFile) Sync() error {
	f.syncs.Add(1)
	return f.File.Sync()
}

func openCounting(t *testing.T, buffer int, gated bool) (*FileLog, *countingFile) {
	t.Helper()
	f, st := openTrailForTest(t)
	cf := &countingFile{File: f, entered: make(chan struct{}, 1)}
	if gated {
		cf.gate = make(chan struct{})
	}
	l := newFileLog(FileConfig{FlushInterval: time.Hour, Buffer: buffer}, Options{Now: fixedNow}, cf, st, maxBacklog)
	t.Cleanup(func() {
		cf.open() // a failed test must not leave Close stuck at the gate
		l.Close()
	})
	return l, cf
}

// open lets held and future writes through.
func (f *countingFile) open() {
	if f.gate != nil {
		f.once.Do(func() { close(f.gate) })
	}
}

// waitFor blocks until cond (called with l.mu held) holds, failing the
// test if that takes absurdly long (a hang guard, not a timing assertion).
func waitFor(t *testing.T, l *FileLog, what string, cond func() bool) {
	t.Helper()
	stuck := false
	guard := time.AfterFunc(time.Minute, func() {
		l.mu.Lock()
		stuck = true
		l.mu.Unlock()
	})
	defer guard.Stop()
	for {
		l.mu.Lock()
		ok, s := cond(), stuck
		l.mu.Unlock()
		if ok {
			return
		}
		if s {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func reasons(t *testing.T, path string) string {
	t.Helper()
	var out []string
	for _, e := range readLines(t, path) {
		out = append(out, e.Reason)
	}
	return strings.Join(out, ",")
}

// Events emitted within one interval reach the disk in one write and one
// fsync: Emit appends to the batch and leaves the writer asleep.
func TestFileLogBatchesWithinInterval(t *testing.T) {
	l, f := openCounting(t, DefaultBuffer, false)
	const n = 100
	for i := range n {
		l.Emit(context.Background(), Event{Type: TypeDecision, Reason: fmt.Sprint(i)})
	}
	if w := f.writes.Load(); w != 0 {
		t.Fatalf("%d writes before the interval or a Flush, want 0", w)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if w, s := f.writes.Load(), f.syncs.Load(); w != 1 || s != 1 {
		t.Fatalf("%d events: %d writes, %d syncs; want 1 and 1", n, w, s)
	}
	if got := len(readLines(t, l.Path())); got != n {
		t.Fatalf("%d lines on disk, want %d", got, n)
	}
}

// A batch that crosses wakeBytes is written without waiting for the
// interval (an hour here) or a Flush.
func TestFileLogLargeBatchWakesWriter(t *testing.T) {
	l, _ := openCounting(t, DefaultBuffer, false)
	pad := map[string]string{"pad": strings.Repeat("x", 1000)}
	var n uint64
	for {
		l.Emit(context.Background(), Event{Type: TypeDecision, Attrs: pad})
		n++
		l.mu.Lock()
		// Crossed: the batch is large, or the writer already took it.
		crossed := len(l.batch) >= wakeBytes || l.durable > 0 || len(l.batch) == 0
		l.mu.Unlock()
		if crossed {
			break
		}
	}
	waitFor(t, l, "the writer to sync the large batch", func() bool { return l.durable >= n })
	if got := len(readLines(t, l.Path())); uint64(got) < n {
		t.Fatalf("%d lines on disk, want at least %d", got, n)
	}
}

// A full batch blocks Emit until the writer takes it (backpressure), and
// nothing is lost or reordered, whether the disk catches up or the log is
// closed while Emits wait.
func TestFileLogBackpressure(t *testing.T) {
	for _, closeWhileBlocked := range []bool{false, true} {
		t.Run(fmt.Sprintf("close=%v", closeWhileBlocked), func(t *testing.T) {
			const buffer = 4
			l, f := openCounting(t, buffer, true)
			ctx := context.Background()
			l.Emit(ctx, Event{Type: TypeAdmin, Reason: "0"})
			flushed := make(chan error, 1)
			go func() { flushed <- l.Flush() }()
			<-f.entered // the writer holds "0" and is stuck in Write
			for i := 1; i <= buffer; i++ {
				l.Emit(ctx, Event{Type: TypeAdmin, Reason: fmt.Sprint(i)})
			}
			blocked := make(chan struct{})
			go func() {
				defer close(blocked)
				l.Emit(ctx, Event{Type: TypeAdmin, Reason: fmt.Sprint(buffer + 1)})
			}()
			waitFor(t, l, "Emit to block on the full batch", func() bool { return l.waiting == 1 })
			select {
			case <-blocked:
				t.Fatal("Emit returned while the batch was full")
			default:
			}
			closed := make(chan error, 1)
			if closeWhileBlocked {
				go func() { closed <- l.Close() }()
				waitFor(t, l, "Close to start", func() bool { return l.closed })
			}
			f.open() // the disk catches up
			<-blocked
			if err := <-flushed; err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if closeWhileBlocked {
				if err := <-closed; err != nil {
					t.Fatalf("Close: %v", err)
				}
			} else if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			if got, want := reasons(t, l.Path()), "0,1,2,3,4,5"; got != want {
				t.Fatalf("events on disk %q, want %q", got, want)
			}
		})
	}
}

// Flush after events that the writer already made durable returns at once
// and does not write again.
func TestFileLogFlushIdempotent(t *testing.T) {
	l, f := openCounting(t, DefaultBuffer, false)
	l.Emit(context.Background(), Event{Type: TypeAdmin})
	for range 3 {
		if err := l.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if s := f.syncs.Load(); s != 1 {
		t.Fatalf("%d syncs for one event and three Flushes, want 1", s)
	}
}

// BenchmarkFileLogEmit measures durable throughput: parallel emitters
// with the default group commit (10 ms, fsync) and checkpoints; the clock
// stops after the last event is fsynced.
func BenchmarkFileLogEmit(b *testing.B) {
	l, err := OpenFile(FileConfig{Dir: b.TempDir(), Instance: "bench"}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	})
	e := sampleEvent()
	e.Time = time.Time{} // filled by Emit, as in production
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Emit(context.Background(), e)
		}
	})
	if err := l.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
