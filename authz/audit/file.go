package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const (
	// DefaultFlushInterval bounds how long an event may sit in memory
	// before it is written and fsynced.
	DefaultFlushInterval = 10 * time.Millisecond
	// DefaultBuffer is how many encoded events may wait for the writer
	// before Emit blocks.
	DefaultBuffer = 4096

	// wakeBytes: a batch this large wakes the writer before the interval
	// (one wake per ~200 events instead of one per event).
	wakeBytes = 64 << 10
	// maxBatchBytes: Emit blocks while this much encoded data waits for
	// the writer, whatever the event count.
	maxBatchBytes = 8 << 20
	// maxBacklog: while writes fail, the writer keeps at most this much
	// unwritten data, then stops taking batches so that Emit blocks. Events
	// are never dropped while the log is open.
	maxBacklog = 16 << 20
	// maxPooledBuf: larger encode buffers are left to the GC.
	maxPooledBuf = 64 << 10
	// maxSpareBuf: a batch buffer grown larger than this (during an outage
	// or a burst) is not kept for reuse.
	maxSpareBuf = 4 << 20
	// maxInstanceLen bounds the instance part of the file name.
	maxInstanceLen = 100
)

// syncWriter is the file as the writer uses it (a seam for fault injection
// in tests: a full disk cannot be summoned on demand).
type syncWriter interface {
	io.Writer
	Sync() error
	Close() error
}

var _ syncWriter = (*os.File)(nil)

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("audit: log closed")

// Options are the injected dependencies of a sink.
type Options struct {
	Now    func() time.Time // fills Event.Time; default time.Now
	Logger *slog.Logger     // write errors; default: discard
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// FileConfig configures the JSON-lines file sink.
type FileConfig struct {
	Dir           string        // created 0700 if missing
	Instance      string        // names the file and fills Event.Instance
	FlushInterval time.Duration // default DefaultFlushInterval
	Buffer        int           // events waiting for the writer before Emit blocks; default DefaultBuffer
}

// FileLog appends events as JSON lines to Dir/audit-<instance>.jsonl.
//
// Emit encodes on the caller's goroutine (so a caller may reuse its Attrs
// map as soon as Emit returns) and appends the line to an in-memory batch
// under mu. It does not wake the writer goroutine per event — on a busy
// gateway that futex wake per proxied request cost more than the encoding.
// The writer takes the whole batch, writes it and fsyncs it every
// FlushInterval; an Emit wakes it only when the writer is idle (the first
// event after a quiet spell, which arms the interval), when the batch
// crosses wakeBytes, or when the batch is full. A full batch (Buffer events
// or maxBatchBytes) blocks Emit until the writer takes it: backpressure,
// never loss.
//
// One mutex guards everything shared; the writer never holds it across
// I/O. Sequence numbers order durability: emitted counts events appended
// to the batch, the writer's take records how many it holds, and durable
// how many are written and fsynced, so Flush knows when every event
// emitted before it is on disk.
type FileLog struct {
	now       func() time.Time
	log       *slog.Logger
	instance  string
	path      string
	interval  time.Duration
	maxEvents int        // cfg.Buffer
	backlog   int        // maxBacklog; smaller in tests
	f         syncWriter // used only by the writer goroutine after OpenFile

	// wake (capacity 1) tells the writer to look at urgent/closed/idle.
	// Senders never block: a pending wake covers any later one, because
	// the writer reads the state under mu after receiving.
	wake chan struct{}
	done chan struct{} // closed when the writer goroutine has exited

	mu    sync.Mutex
	space *sync.Cond // on mu: the writer took the batch, or Close; for Emits waiting for room
	cond  *sync.Cond // on mu: durable, err or stopped changed; for Flush

	// Emit → writer.
	batch       []byte // encoded lines not yet taken by the writer
	batchEvents int    // lines in batch
	emitted     uint64 // events ever appended to batch (sequence of the newest)
	waiting     int    // Emits blocked on space
	idle        bool   // the writer sleeps with no timer armed: the next Emit wakes it
	urgent      bool   // write and sync now (Flush, large or full batch, Close)
	closed      bool   // Close started: no new events

	// Writer → everyone.
	durable  uint64 // events written and fsynced, in sequence order
	err      error  // last write or sync error; nil when healthy
	attempts uint64 // write+sync attempts started
	failedAt uint64 // the attempt that set err
	stopped  bool   // writer goroutine has exited

	closeOnce sync.Once
	closeErr  error
}

var _ Emitter = (*FileLog)(nil)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// FileName is the audit file name for an instance: "audit-" + the instance
// with every byte outside [A-Za-z0-9._-] replaced by '_' ("default" when
// empty), so no instance name can point outside Dir.
func FileName(instance string) string {
	if instance == "" {
		instance = "default"
	}
	if len(instance) > maxInstanceLen {
		instance = instance[:maxInstanceLen]
	}
	b := []byte(instance)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return "audit-" + string(b) + ".jsonl"
}

// OpenFile opens (creating if needed) the audit file for cfg.Instance and
// starts its writer. Close it to drain.
func OpenFile(cfg FileConfig, opts Options) (*FileLog, error) {
	if cfg.Dir == "" {
		return nil, errors.New("audit: no directory")
	}
	if cfg.FlushInterval < 0 || cfg.Buffer < 0 {
		return nil, errors.New("audit: negative flush interval or buffer")
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = DefaultBuffer
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	path := filepath.Join(cfg.Dir, FileName(cfg.Instance))
	f, err := openAppend(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return newFileLog(cfg, opts, path, f, maxBacklog), nil
}

// newFileLog starts the writer over an open file; cfg has its defaults.
func newFileLog(cfg FileConfig, opts Options, path string, f syncWriter, backlog int) *FileLog {
	opts = opts.withDefaults()
	l := &FileLog{
		now:       opts.Now,
		log:       opts.Logger,
		instance:  cfg.Instance,
		path:      path,
		interval:  cfg.FlushInterval,
		maxEvents: cfg.Buffer,
		backlog:   backlog,
		f:         f,
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		idle:      true,
	}
	l.space = sync.NewCond(&l.mu)
	l.cond = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// openAppend opens path for appending (0600 when created), makes sure the
// next line starts on a fresh line even if a crash cut the last one short,
// and syncs the directory so a new file's name is durable too.
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a regular file", path))
	}
	if size := fi.Size(); size > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], size-1); err != nil && !errors.Is(err, io.EOF) {
			return fail(err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				return fail(err)
			}
		}
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fail(err)
		}
	}
	return f, nil
}

// Path is the file events are appended to.
func (l *FileLog) Path() string { return l.path }

// Emit fills Time (from the injected clock) and Instance when they are
// zero, encodes e and appends it to the batch. It blocks while the batch
// is full; ctx is deliberately ignored, because an audit event is never
// dropped for a cancelled request. After Close the event is logged as lost.
func (l *FileLog) Emit(_ context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	if e.Instance == "" {
		e.Instance = l.instance
	}
	bp := bufPool.Get().(*[]byte)
	*bp = append(AppendJSON((*bp)[:0], &e), '\n')

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		putBuf(bp)
		l.log.Error("audit: event emitted after close, lost", "type", e.Type, "user_id", e.UserID, "reason", e.Reason)
		return
	}
	if l.full() {
		// Backpressure. An Emit that got here before Close still appends
		// once Close wakes it: the writer's last take waits for it.
		l.waiting++
		for l.full() && !l.closed {
			l.urgent = true
			l.signal()
			l.space.Wait()
		}
		l.waiting--
		if l.waiting == 0 && l.closed {
			l.space.Broadcast()
		}
	}
	wake := l.idle
	l.idle = false
	before := len(l.batch)
	l.batch = append(l.batch, *bp...)
	l.batchEvents++
	l.emitted++
	if before < wakeBytes && len(l.batch) >= wakeBytes || l.full() {
		l.urgent, wake = true, true
	}
	l.mu.Unlock()
	putBuf(bp)
	if wake {
		l.signal()
	}
}

// full reports whether Emit must wait for the writer. Caller holds mu.
func (l *FileLog) full() bool {
	return l.batchEvents >= l.maxEvents || len(l.batch) >= maxBatchBytes
}

// signal wakes the writer without blocking.
func (l *FileLog) signal() {
	select {
	case l.wake <- struct{}{}:
	default: // a wake is pending; the writer reads the state after taking it
	}
}

func putBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledBuf {
		bufPool.Put(bp)
	}
}

// Flush returns once every event emitted before the call is written and
// fsynced, or with the write error that prevents it. Callers that must not
// report something done before it is on record (session close) call it.
func (l *FileLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.emitted
	// Only a failure of an attempt that starts after this point counts: an
	// old error must not hide a disk that has since recovered.
	since := l.attempts
	if l.durable < target {
		l.urgent = true
		l.signal()
	}
	for l.durable < target {
		switch {
		case l.err != nil && l.failedAt > since:
			return fmt.Errorf("audit: %w", l.err)
		case l.stopped:
			if l.err != nil {
				return fmt.Errorf("audit: %w", l.err)
			}
			return ErrClosed
		}
		l.cond.Wait()
	}
	return nil
}

// Healthy returns nil while writes succeed, else the last write or sync
// error (disk full, permission, I/O error). Callers fail closed on it:
// actions that must be audited are refused while the trail cannot record.
func (l *FileLog) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return fmt.Errorf("audit: %w", l.err)
	}
	if l.stopped {
		return ErrClosed
	}
	return nil
}

// Close stops accepting events, writes and fsyncs everything emitted, and
// closes the file. It returns the error that lost events, if any.
func (l *FileLog) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed, l.urgent = true, true
		// Emits blocked on a full batch (a failing disk) append and return;
		// the writer then takes everything, whatever its backlog.
		l.space.Broadcast()
		l.mu.Unlock()
		l.signal()
		<-l.done
		l.mu.Lock()
		l.closeErr = l.err
		l.mu.Unlock()
		if err := l.f.Close(); err != nil && l.closeErr == nil {
			l.closeErr = err
		}
		if l.closeErr != nil {
			l.closeErr = fmt.Errorf("audit: close: %w", l.closeErr)
		}
	})
	return l.closeErr
}
