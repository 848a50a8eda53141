package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// DefaultFlushInterval bounds how long an event may sit in memory
	// before it is written and fsynced (the group commit interval).
	DefaultFlushInterval = 10 * time.Millisecond
	// DefaultBuffer is how many encoded events may wait for the writer
	// before Emit blocks.
	DefaultBuffer = 4096
	// DefaultCheckpointEvery and DefaultCheckpointInterval: a signed
	// checkpoint is appended at the end of the first group commit after
	// this many records, or this long after the previous checkpoint.
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Second

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
	// maxInstanceLen bounds the instance name (it names the files and must
	// fit in a head marker slot).
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

// ErrClosed is returned by Sync and Flush after Close.
var ErrClosed = errors.New("audit: log closed")

// Options are the injected dependencies of a sink.
type Options struct {
	Now    func() time.Time // fills Event.Time, checkpoint and head times; default time.Now
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

// FileConfig configures the audit trail. Zero values take the defaults
// named on each field.
type FileConfig struct {
	Dir           string        // created 0700 if missing
	Instance      string        // names the files and is every record's instance; "" means "default"
	FlushInterval time.Duration // group commit interval; default DefaultFlushInterval
	Buffer        int           // events waiting for the writer before Emit blocks; default DefaultBuffer

	// SigningKey signs checkpoints and the head marker. nil: the key in
	// Dir/audit-<instance>.key, created on first use (LoadOrCreateKey).
	// That default keeps a development setup working, but a private key
	// beside the trail lets whoever can edit the trail re-sign it (verify
	// notes it): production configurations set a key kept elsewhere.
	SigningKey ed25519.PrivateKey
	// CheckpointEvery: records between signed checkpoints; default
	// DefaultCheckpointEvery.
	CheckpointEvery int
	// CheckpointInterval: the longest a record waits for a checkpoint;
	// default DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// RollEvery starts a new trail file (roll.go) once the active one
	// holds records from an earlier period of this length, aligned to
	// UTC; default DefaultRollEvery (a file per day); negative: never.
	RollEvery time.Duration
	// RollSize also starts a new file before the active one would grow
	// past this many bytes; 0: no size limit.
	RollSize int64
	// IncludeEmail and IncludeName keep the personal-data attributes
	// AttrEmail and AttrName in records; by default they are dropped
	// (pii.go): records identify users by their stable ID.
	IncludeEmail, IncludeName bool
}

// FileLog appends events as JSON lines to Dir/audit-<instance>.jsonl,
// hash-chained, with signed checkpoints and a signed head marker (the
// format is described in chain.go and head.go, verification in verify.go).
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
// The chain costs Emit only the seq digits and a 64-byte placeholder
// appended under mu (seq must follow batch order). The writer fills in
// each record's prev hash and hashes the line once, in memory, batch by
// batch (nothing is re-read), appends a checkpoint when one is due,
// writes, fsyncs, then rewrites the head marker.
//
// One mutex guards everything shared; the writer never holds it across
// I/O. Sequence numbers order durability: emitted counts events appended
// to the batch, the writer's take records how many it holds, and durable
// how many are written and fsynced, so Sync knows when every event
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
	pub       ed25519.PublicKey
	every     int           // checkpoint after this many records
	ckptAfter time.Duration // or this long after the last checkpoint
	w         *writer       // the writer goroutine's state
	dir       string        // "" (tests over fake files): never roll
	rollEvery time.Duration // see FileConfig
	rollSize  int64
	purgeMu   sync.Mutex // one Purge at a time (retention.go)
	pii       piiFilter  // personal-data attributes dropped from producers' events

	// wake (capacity 1) tells the writer to look at urgent/closed/idle.
	// Senders never block: a pending wake covers any later one, because
	// the writer reads the state under mu after receiving.
	wake chan struct{}
	done chan struct{} // closed when the writer goroutine has exited

	mu    sync.Mutex
	space *sync.Cond // on mu: the writer took the batch, or Close; for Emits waiting for room
	cond  *sync.Cond // on mu: durable, err or stopped changed; for Sync

	// Emit → writer.
	batch       []byte // encoded lines not yet taken by the writer
	batchEvents int    // lines in batch
	emitted     uint64 // events ever appended to batch (sequence of the newest)
	nextSeq     uint64 // chain seq of the next record (events and checkpoints)
	waiting     int    // Emits blocked on space
	idle        bool   // the writer sleeps with no timer armed: the next Emit wakes it
	urgent      bool   // write and sync now (Sync, large or full batch, Close)
	closed      bool   // Close started: no new events
	forceCkpt   bool   // append a checkpoint at the next cycle (waitCheckpoint)

	// Writer → everyone.
	durable  uint64 // events written and fsynced, in sequence order
	err      error  // last write or sync error; nil when healthy
	attempts uint64 // write+sync attempts started
	failedAt uint64 // the attempt that set err
	stopped  bool   // writer goroutine has exited
	ckptSeq  uint64 // seq of the newest checkpoint written and fsynced

	closeOnce sync.Once
	closeErr  error
}

var _ Emitter = (*FileLog)(nil)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// FileName is the audit file name for an instance: "audit-" + the instance
// with every byte outside [A-Za-z0-9._-] replaced by '_' ("default" when
// empty), so no instance name can point outside Dir. The head marker and
// the public key (and the default private key) share the stem: .head,
// .pub, .key.
func FileName(instance string) string { return fileBase(instance) + ".jsonl" }

func fileBase(instance string) string {
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
	return "audit-" + string(b)
}

// OpenFile opens (creating if needed) the audit trail for cfg.Instance,
// recovers its chain after a crash (see openTrail: a torn last line is
// cut and the cut recorded; a trail cut back behind its signed head is
// refused) and starts its writer. Close it to drain.
func OpenFile(cfg FileConfig, opts Options) (*FileLog, error) {
	if cfg.Dir == "" {
		return nil, errors.New("audit: no directory")
	}
	if cfg.FlushInterval < 0 || cfg.Buffer < 0 || cfg.CheckpointEvery < 0 || cfg.CheckpointInterval < 0 || cfg.RollSize < 0 {
		return nil, errors.New("audit: negative flush interval, buffer or checkpoint setting")
	}
	if cfg.Instance == "" {
		cfg.Instance = "default"
	}
	if len(cfg.Instance) > maxInstanceLen || !utf8.ValidString(cfg.Instance) ||
		strings.ContainsFunc(cfg.Instance, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("audit: instance must be valid UTF-8 without control characters, at most %d bytes", maxInstanceLen)
	}
	if cfg.SigningKey != nil && len(cfg.SigningKey) != ed25519.PrivateKeySize {
		return nil, errors.New("audit: signing key is not an Ed25519 private key")
	}
	opts = opts.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	key := cfg.SigningKey
	if key == nil {
		var err error
		if key, err = LoadOrCreateKey(filepath.Join(cfg.Dir, fileBase(cfg.Instance)+".key")); err != nil {
			return nil, err
		}
	}
	f, st, err := openTrail(cfg.Dir, cfg.Instance, key, opts.Now())
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := newFileLog(cfg, opts, f, st, maxBacklog)
	if st.recovery != nil {
		opts.Logger.Warn("audit: cut a torn last line left by a crash; the cut is recorded in the trail",
			"path", l.path, "bytes", st.recovery.Attrs["cut_bytes"])
		l.emit(*st.recovery)
		if err := l.Flush(); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// newFileLog starts the writer over an open trail (f, whose name is the
// trail's path) and the chain state openTrail recovered.
func newFileLog(cfg FileConfig, opts Options, f interface {
	syncWriter
	Name() string
}, st openState, backlog int) *FileLog {
	opts = opts.withDefaults()
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.RollEvery == 0 {
		cfg.RollEvery = DefaultRollEvery
	}
	l := &FileLog{
		now:       opts.Now,
		log:       opts.Logger,
		instance:  st.chain.instance,
		path:      f.Name(),
		interval:  cfg.FlushInterval,
		maxEvents: cfg.Buffer,
		backlog:   backlog,
		f:         f,
		pub:       st.chain.key.Public().(ed25519.PublicKey),
		every:     cfg.CheckpointEvery,
		ckptAfter: cfg.CheckpointInterval,
		dir:       cfg.Dir,
		rollEvery: cfg.RollEvery,
		rollSize:  cfg.RollSize,
		pii:       piiFilter{keepEmail: cfg.IncludeEmail, keepName: cfg.IncludeName},
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		idle:      true,
		nextSeq:   st.chain.seq + 1,
	}
	l.w = &writer{l: l, chain: st.chain, head: st.head, headSeq: st.chain.seq,
		curPath: l.path, lastWritten: st.chain.seq,
		segStart: st.segStart, segFirst: st.segFirst, segBytes: st.segBytes, segRecords: st.segRecords}
	l.space = sync.NewCond(&l.mu)
	l.cond = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// Path is the file events are appended to.
func (l *FileLog) Path() string { return l.path }

// PublicKey is the key that signs this trail (a copy is written to
// Dir/audit-<instance>.pub; keep another apart from the trail for verify).
func (l *FileLog) PublicKey() ed25519.PublicKey { return l.pub }

// Emit fills Time (from the injected clock) when it is zero, sets
// Instance to the log's instance (the chain's identity, carried by every
// record), encodes e and appends it to the batch. It blocks while the
// batch is full; ctx is deliberately ignored, because an audit event is
// never dropped for a cancelled request. After Close the event is logged
// as lost. The log's own record types (TypeCheckpoint, TypeRecovery,
// TypePurge) cannot be emitted: they are renamed with ReservedPrefix.
// Personal-data attributes not enabled in the FileConfig are dropped.
func (l *FileLog) Emit(_ context.Context, e Event) {
	e.Attrs = l.pii.strip(e.Attrs)
	if reservedType(e.Type) {
		l.log.Error("audit: reserved event type emitted by a producer; renamed", "type", e.Type)
		e.Type = ReservedPrefix + e.Type
	}
	l.emit(e)
}

// emit is Emit without the reserved-type guard (for the log's own
// records). It returns the record's seq (0 when the log is closed).
func (l *FileLog) emit(e Event) uint64 {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Instance = l.instance
	bp := bufPool.Get().(*[]byte)
	*bp = AppendJSON((*bp)[:0], &e)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		putBuf(bp)
		l.log.Error("audit: event emitted after close, lost", "type", e.Type, "user_id", e.UserID, "reason", e.Reason)
		return 0
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
	seq := l.nextSeq
	l.batch = appendRecord(l.batch, *bp, seq)
	l.nextSeq++
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
	return seq
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

// Syncer is implemented by emitters that can make every event accepted so
// far durable (FileLog; Memory trivially; Multi by delegation).
type Syncer interface {
	Sync(ctx context.Context) error
}

// Sync makes every event em accepted so far durable when em can (it
// implements Syncer), and returns nil at once otherwise. Callers use it
// before reporting something done that must be on record first (a session
// closed, an admin action acknowledged): nothing acknowledged is lost.
func Sync(ctx context.Context, em Emitter) error {
	if s, ok := em.(Syncer); ok {
		return s.Sync(ctx)
	}
	return nil
}

// Sync is a durability barrier: it returns nil once every event emitted
// before the call is written and fsynced (it forces a group commit rather
// than wait for the interval); else the write error that prevents it,
// ErrClosed if the log closed with them unwritten, or ctx's error when
// ctx ends first (the events are still written later).
func (l *FileLog) Sync(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.emitted
	if l.durable >= target {
		return nil
	}
	// Only a failure of an attempt that starts after this point counts: an
	// old error must not hide a disk that has since recovered.
	since := l.attempts
	l.urgent = true
	l.signal()
	return l.waitLocked(ctx, since, func() bool { return l.durable >= target })
}

// waitLocked waits (l.mu held) until done reports true, or returns the
// error of a write attempt started after since, ErrClosed when the log
// closed first, or ctx's error when ctx ends first.
func (l *FileLog) waitLocked(ctx context.Context, since uint64, done func() bool) error {
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			l.mu.Lock()
			l.cond.Broadcast()
			l.mu.Unlock()
		})
		defer stop()
	}
	for !done() {
		switch {
		case l.err != nil && l.failedAt > since:
			return fmt.Errorf("audit: %w", l.err)
		case l.stopped:
			if l.err != nil {
				return fmt.Errorf("audit: %w", l.err)
			}
			return ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		}
		l.cond.Wait()
	}
	return nil
}

// Flush is Sync without a context.
func (l *FileLog) Flush() error { return l.Sync(context.Background()) }

// Healthy returns nil while writes succeed, else the last write or sync
// error (disk full, permission, I/O error, head marker not updated).
// Callers fail closed on it: actions that must be audited are refused
// while the trail cannot record.
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

// Close stops accepting events, writes and fsyncs everything emitted, a
// final checkpoint and a closed head marker, and closes the files. It
// returns the error that lost events, if any.
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
		if err := l.w.head.f.Close(); err != nil && l.closeErr == nil {
			l.closeErr = err
		}
		if l.closeErr != nil {
			l.closeErr = fmt.Errorf("audit: close: %w", l.closeErr)
		}
	})
	return l.closeErr
}
