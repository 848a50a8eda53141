package recording

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Writer defaults.
const (
	// DefaultFlushInterval bounds how long a frame stays in memory: a
	// SIGKILL loses at most this much of a session.
	DefaultFlushInterval = time.Second
	// DefaultBufferSize is the size of one in-memory batch of frames.
	DefaultBufferSize = 256 << 10
	// smallBatch is the first batch's size after a quiet spell: an idle
	// terminal writes a prompt or a few keystrokes per second, and a
	// thousand idle sessions must not each pin a full batch for the
	// flush interval. A batch that fills up is followed by a full-size
	// one (data is flowing).
	smallBatch = 4 << 10
	// DefaultQueue is how many full batches may wait for the disk before
	// producers block (backpressure: the relay slows down, nothing is
	// dropped).
	DefaultQueue = 4
	// maxBufferSize caps BufferSize so that a batch plus one oversized
	// frame always fits a chunk (MaxChunk).
	maxBufferSize = 4 << 20
)

// File is what a recording is written to (an *os.File by default).
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// Options are a Writer's injected dependencies and tuning.
type Options struct {
	// Key is the key-encryption key that wraps each recording's random
	// data key (required by Create).
	Key *Key
	// Rand supplies data keys and nonces; default crypto/rand.Reader.
	Rand          io.Reader
	Now           func() time.Time // frame timestamps; default time.Now
	FlushInterval time.Duration    // default DefaultFlushInterval (values above it are capped)
	BufferSize    int              // default DefaultBufferSize
	Queue         int              // default DefaultQueue
	// OpenFile creates a new recording file exclusively (default:
	// os.OpenFile with O_CREATE|O_EXCL|O_WRONLY, mode 0600). Tests inject
	// failing files here.
	OpenFile func(path string) (File, error)
	Logger   *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FlushInterval <= 0 || o.FlushInterval > DefaultFlushInterval {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	o.BufferSize = min(o.BufferSize, maxBufferSize)
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.OpenFile == nil {
		o.OpenFile = openExclusive
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func openExclusive(path string) (File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}

// Writer appends frames to a recording while the session runs. Producers
// (the relay goroutines) copy each frame into an in-memory batch under mu
// and return; a drain goroutine encrypts (in place: each batch reserves
// room for the chunk header and tag) and writes full batches, one chunk
// each, and any partial batch at most FlushInterval after its first
// frame. The drain goroutine
// runs only while batches are queued (an idle session has none). When the
// queue of full batches is full, producers block: backpressure, never
// loss.
//
// The first write error is sticky: every later call returns it, Failed()
// is closed, and the owner is expected to end the session.
//
// Lock order: mu only; the drain goroutine never takes mu, and the flush
// timer takes it only to queue the partial batch.
type Writer struct {
	opts Options
	path string
	f    File

	mu      sync.Mutex
	buf     []byte    // current batch; nil while nothing is pending
	start   time.Time // Meta.Start
	last    time.Time // time of the last frame (deltas are relative to it)
	closed  bool
	armed   bool // a flush timer is pending for buf
	flowing bool // the last batch was queued full: the next one is full-size
	watches map[*Watch]struct{}

	q        chan batch  // batches for the drain goroutine, in order
	chain    *chain      // used by Create, then only by the drain goroutine
	digest   [32]byte    // the chain's final value, set when Close is done
	draining atomic.Bool // a drain goroutine is running (or about to)
	drains   sync.WaitGroup
	done     chan struct{} // Close finished writing
	failed   chan struct{} // closed on the first write error

	errMu sync.Mutex
	err   error
}

// batch is a queued chunk: its reserved header bytes, plaintext frames,
// and the chunk type (data, or end for the one Close queues).
type batch struct {
	b   []byte
	typ byte
}

// batchPool and smallPool recycle batches across all writers: an idle
// session holds no batch at all, and a quiet one at most a small batch.
var batchPool, smallPool sync.Pool

// smallCap is the capacity of a small batch: the chunk header, the
// frames, and the tag, so sealing never copies.
const smallCap = chunkHeaderSize + smallBatch + maxFrameHeader + tagSize

// getBatch returns an empty batch: chunkHeaderSize reserved bytes.
func (w *Writer) getBatch() []byte {
	if !w.flowing && w.opts.BufferSize > smallBatch {
		if b, ok := smallPool.Get().(*[]byte); ok {
			return (*b)[:chunkHeaderSize]
		}
		return make([]byte, chunkHeaderSize, smallCap)
	}
	if b, ok := batchPool.Get().(*[]byte); ok && cap(*b) >= w.opts.BufferSize+chunkOverhead {
		return (*b)[:chunkHeaderSize]
	}
	return make([]byte, chunkHeaderSize, chunkHeaderSize+w.opts.BufferSize+maxFrameHeader+tagSize)
}

func putBatch(b []byte) {
	b = b[:0]
	if cap(b) == smallCap {
		smallPool.Put(&b)
		return
	}
	batchPool.Put(&b)
}

// Create creates dir (0700) if needed and the recording file
// dir/<meta.SessionID>.pcrec with a new random data key wrapped under
// opts.Key, and writes the header and the metadata chunk synchronously
// (so a session never starts on a recording that cannot be written at
// all).
func Create(dir string, meta Meta, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	if !validID(meta.SessionID) {
		return nil, errors.New("recording: invalid session ID")
	}
	if opts.Key == nil {
		return nil, errors.New("recording: no key (recordings are encrypted)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	meta.Version = FormatVersion
	if meta.Start.IsZero() {
		meta.Start = opts.Now()
	}
	hdr, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	if len(hdr) > MaxHeader {
		return nil, errors.New("recording: header too large")
	}
	head, c, err := newRecording(meta.SessionID, hdr, opts.Key, opts.Rand)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, meta.SessionID+FileExt)
	f, err := opts.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	if _, err := f.Write(head); err != nil {
		f.Close()
		return nil, fmt.Errorf("recording: writing header: %w", err)
	}
	w := &Writer{
		opts:   opts,
		path:   path,
		f:      f,
		chain:  c,
		start:  meta.Start,
		last:   meta.Start,
		q:      make(chan batch, opts.Queue),
		done:   make(chan struct{}),
		failed: make(chan struct{}),
	}
	return w, nil
}

// newRecording makes a data key and the file's first bytes: the header
// with the data key wrapped under kek in slot 0, and the metadata chunk.
func newRecording(id string, meta []byte, kek *Key, rnd io.Reader) ([]byte, *chain, error) {
	var secret [KeySize + 4]byte
	if _, err := io.ReadFull(rnd, secret[:]); err != nil {
		return nil, nil, fmt.Errorf("recording: random: %w", err)
	}
	dek, prefix := secret[:KeySize], [4]byte(secret[KeySize:])
	h := newHeader(id, prefix)
	slot, err := wrapSlot(h.fixed(), kek, dek, rnd)
	if err != nil {
		return nil, nil, err
	}
	copy(h.raw[slotOffset(0):], slot)
	c, err := newChain(h, dek)
	clear(secret[:]) // the AEAD keeps its own copy
	if err != nil {
		return nil, nil, err
	}
	rec := make([]byte, chunkHeaderSize, chunkHeaderSize+len(meta)+tagSize)
	rec = c.seal(append(rec, meta...), chunkMeta)
	return append(h.raw[:], rec...), c, nil
}

// Probe checks that dir accepts a recording right now: it creates,
// writes, syncs and removes a small file through the same OpenFile.
func Probe(dir string, opts Options) error {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf(".probe-%d-%d", os.Getpid(), opts.Now().UnixNano()))
	f, err := opts.OpenFile(path)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	defer os.Remove(path)
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording: probe write: %w", err)
	}
	return nil
}

// validID accepts the session IDs the bastion makes (URL-safe base64 or
// hex), so a session ID can never name a path outside dir.
func validID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsFunc(id, func(r rune) bool {
		return !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
}

// Path is the recording file's path.
func (w *Writer) Path() string { return w.path }

// Digest is the recording's chain value (see the package comment) once
// Close has returned nil; ok is false before. It commits to every chunk
// (their headers and tags), so a copy kept elsewhere (an audit event)
// also detects a cut at a chunk boundary, which the file alone cannot
// tell from a crash (see Digest).
func (w *Writer) Digest() (d [32]byte, ok bool) {
	select {
	case <-w.done:
		return w.digest, w.Err() == nil
	default:
		return d, false
	}
}

// Failed is closed when a write fails; Err tells why.
func (w *Writer) Failed() <-chan struct{} { return w.failed }

// Err returns the first write error, or nil.
func (w *Writer) Err() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *Writer) fail(err error) {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	if w.err == nil {
		w.err = err
		close(w.failed)
		w.opts.Logger.Error("recording write failed", "path", w.path, "err", err)
	}
}

var errClosed = errors.New("recording: closed")

// maxTrailerDetail bounds Trailer.Detail (a kill reason typed by an
// admin) so the end chunk stays small.
const maxTrailerDetail = 4 << 10

// Data records p as output or input of channel ch. It returns the sticky
// write error, if any; the caller must not deliver p when it fails
// (every byte the user sees is recorded first).
func (w *Writer) Data(ch uint32, s Stream, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), MaxFrame)
		if err := w.frame(ch, s, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Resize records a terminal size for channel ch.
func (w *Writer) Resize(ch uint32, cols, rows uint32) error {
	var b [2 * binary.MaxVarintLen32]byte
	return w.frame(ch, StreamResize, appendResize(b[:0], cols, rows))
}

// Event records a structured event for channel ch.
func (w *Writer) Event(ch uint32, e Event) error {
	p, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return w.frame(ch, StreamEvent, p)
}

func (w *Writer) frame(ch uint32, s Stream, p []byte) error {
	if err := w.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	return w.appendLocked(ch, s, p)
}

// appendFrameLocked appends one frame to the batch, which exists; w.mu
// is held.
func (w *Writer) appendFrameLocked(ch uint32, s Stream, p []byte) {
	now := w.opts.Now()
	delta := now.Sub(w.last)
	if delta > 0 {
		w.last = now
	}
	w.buf = appendFrameHeader(w.buf, delta, ch, s, len(p))
	w.buf = append(w.buf, p...)
}

// appendLocked adds one frame to the batch, queueing batches as they
// fill; w.mu is held.
func (w *Writer) appendLocked(ch uint32, s Stream, p []byte) error {
	if w.buf == nil {
		if len(p) > smallBatch {
			w.flowing = true
		}
		w.buf = w.getBatch()
	} else if len(w.buf)+maxFrameHeader+len(p) > cap(w.buf) && cap(w.buf) < w.opts.BufferSize {
		// A small batch overflows: data is flowing. Queue it (in order)
		// and continue in a full-size batch.
		w.flowing = true
		if err := w.queueLocked(chunkData); err != nil {
			return err
		}
		w.buf = w.getBatch()
	}
	w.appendFrameLocked(ch, s, p)
	w.notifyWatchesLocked(ch, s, p)
	if len(w.buf) >= w.opts.BufferSize {
		w.flowing = true
		return w.queueLocked(chunkData)
	}
	if !w.armed {
		w.armed = true
		time.AfterFunc(w.opts.FlushInterval, w.flushTimer)
	}
	return nil
}

// queueLocked hands the current batch to the drain goroutine, starting
// one if none runs; w.mu is held, which keeps batches in order. It blocks
// while the queue is full: the relay waits for the disk. The drain
// goroutine never takes w.mu, so this cannot deadlock.
func (w *Writer) queueLocked(typ byte) error {
	b := w.buf
	w.buf = nil
	select {
	case w.q <- batch{b, typ}:
	case <-w.failed:
		putBatch(b)
		return w.Err()
	}
	// Invariant: after the send, a drain goroutine runs that will see b.
	// Either this CAS starts one, or one is running and re-checks the
	// queue after it clears draining (see drain).
	if w.draining.CompareAndSwap(false, true) {
		w.drains.Add(1)
		go w.drain()
	}
	return nil
}

// flushTimer runs FlushInterval after a frame went into an empty batch.
// A batch still partial after a whole interval means the session is
// quiet: the next batch starts small again.
func (w *Writer) flushTimer() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	if w.buf != nil && !w.closed {
		w.flowing = false
		w.queueLocked(chunkData)
	}
}

// drain seals and writes queued batches until the queue is empty, then
// exits (an idle session has no writer goroutine). Only one drain
// goroutine runs at a time (draining), which keeps the chain in order.
func (w *Writer) drain() {
	defer w.drains.Done()
	for {
		select {
		case bt := <-w.q:
			if w.Err() == nil {
				// After a failure the chain stops: nothing more reaches
				// the file, which ends incomplete.
				bt.b = w.chain.seal(bt.b, bt.typ)
				if _, err := w.f.Write(bt.b); err != nil {
					w.fail(err)
				}
			}
			putBatch(bt.b)
			continue
		default:
		}
		w.draining.Store(false)
		// A producer may have queued after the empty check and seen
		// draining still set: take the work back unless another drain
		// goroutine already did.
		if len(w.q) == 0 || !w.draining.CompareAndSwap(false, true) {
			return
		}
	}
}

// Close writes everything pending and the trailer as the end chunk,
// syncs and closes the file. It returns the write error that lost data,
// if any. Calling it again returns the same result.
func (w *Writer) Close(t Trailer) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return w.Err()
	}
	defer close(w.done)
	w.closed = true
	for wt := range w.watches {
		wt.closeLocked()
	}
	if t.End.IsZero() {
		t.End = w.opts.Now()
	}
	if len(t.Detail) > maxTrailerDetail {
		t.Detail = strings.ToValidUTF8(t.Detail[:maxTrailerDetail], "") + "…"
	}
	p, err := json.Marshal(t)
	if err == nil && w.Err() == nil {
		// The trailer goes last into the end chunk, whatever the batch
		// size: the end chunk always holds it.
		if w.buf == nil {
			w.buf = w.getBatch()
		}
		w.appendFrameLocked(0, StreamTrailer, p)
		w.queueLocked(chunkEnd)
	}
	if w.buf != nil {
		putBatch(w.buf)
		w.buf = nil
	}
	w.mu.Unlock()
	// closed is set: nothing queues (or starts a drain) any more.
	w.drains.Wait()
	w.digest = w.chain.sum
	if err != nil {
		w.fail(err)
	}
	if w.Err() == nil {
		if err := w.f.Sync(); err != nil {
			w.fail(err)
		}
	}
	if err := w.f.Close(); err != nil {
		w.fail(err)
	}
	return w.Err()
}
