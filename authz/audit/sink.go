package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sinks ship the trail elsewhere (a SIEM over syslog, a webhook, stdout).
//
// The local chain files are the system of record; a sink never sees an
// event before it is there. A Shipper tails the instance's trail files,
// up to the seq the signed head marker names (the writer updates it only
// after the trail's fsync, so nothing is shipped that a power loss could
// still take back), hands batches to its Sink in seq order, and after each
// batch the sink acknowledged writes a cursor file (the sink's name, the
// instance, the trail file, the byte offset, the last seq and its hash),
// fsynced, so a restart resumes right after the last acknowledged record:
// delivery is at least once (a batch acknowledged by the receiver but not
// yet in the cursor is sent again after a crash), in order, and nothing is
// skipped.
//
// Emit never waits for a sink: producers only append to the trail, and
// the trail on disk is the sink's buffer. A sink that is down falls behind
// (bounded by the disk, like the trail itself), retries with backoff, says
// so in the process log and in Status, and catches up when it comes back.

// Sink kinds.
const (
	SinkSyslog  = "syslog"
	SinkWebhook = "webhook"
	SinkStdout  = "stdout"
)

// Sink delivers records. Send returns nil only when every record of recs
// was accepted by the receiver; on error the Shipper retries the same
// records (all of them, in the same order) later. Send and Close are
// called from one goroutine.
type Sink interface {
	Send(ctx context.Context, recs []Record) error
	Close() error
}

// Record is one trail line as a sink ships it.
type Record struct {
	Instance string
	Seq      uint64
	Type     string
	Time     string // the record's time as written (RFC 3339, UTC)
	Line     []byte // the exact trail line (a JSON object, no newline)
}

// ShipConfig says what a Shipper ships and how it batches.
type ShipConfig struct {
	Name     string // the sink's name: names its cursor file
	Kind     string // for Status and logs
	Dir      string // the audit directory
	Instance string // whose chain to ship (the FileLog's instance)
	// BatchRecords is the most records per Send; default 500.
	BatchRecords int
	// BatchWait: with fewer than BatchRecords records available, wait up
	// to this long (after the first) for more before sending; 0 sends
	// what there is at once.
	BatchWait time.Duration
	// Poll is how often the trail is looked at when the sink is caught
	// up; default DefaultSinkPoll. Notify wakes the Shipper earlier.
	Poll time.Duration
}

// Shipper defaults.
const (
	DefaultSinkBatch   = 500
	DefaultSinkPoll    = 200 * time.Millisecond
	sinkMinBackoff     = 250 * time.Millisecond
	sinkMaxBackoff     = 30 * time.Second
	sinkReadChunk      = 256 << 10
	sinkFailLogEvery   = time.Minute
	sinkCursorDir      = "sinks"
	maxSinkBatchRecord = 100_000
)

// ShipOptions are the Shipper's injected dependencies.
type ShipOptions struct {
	Now    func() time.Time
	Logger *slog.Logger
	// After paces retries and waits (tests make it immediate); default
	// time.After.
	After func(time.Duration) <-chan time.Time
}

// SinkStatus is what a Shipper reports about its sink.
type SinkStatus struct {
	Name, Kind   string
	Shipped      uint64 // last seq the sink acknowledged
	Head         uint64 // the trail's durable head, as last seen
	Delivered    uint64 // records acknowledged since start
	Failing      bool
	FailingSince time.Time
	LastError    string
	// Gaps notes records the trail no longer held when the shipper
	// reached them (deleted, or purged before they were shipped).
	Gaps []string
}

// Behind is how many records the sink still has to ship.
func (s SinkStatus) Behind() uint64 {
	if s.Head > s.Shipped {
		return s.Head - s.Shipped
	}
	return 0
}

// String is the status as one line (for logs and /healthz).
// PublicString is String without the error text and the gaps' details
// (file names, offsets): what an unauthenticated health check may show.
// The details are in the log and in the admin's sink status.
func (s SinkStatus) PublicString() string {
	state := "ok"
	if s.Failing {
		state = "FAILING since " + s.FailingSince.UTC().Format(time.RFC3339)
	}
	out := fmt.Sprintf("audit sink %s (%s): %s, shipped through seq %d, %d behind", s.Name, s.Kind, state, s.Shipped, s.Behind())
	if len(s.Gaps) > 0 {
		out += fmt.Sprintf("; %d gaps", len(s.Gaps))
	}
	return out
}

func (s SinkStatus) String() string {
	state := "ok"
	if s.Failing {
		state = fmt.Sprintf("FAILING since %s (%s)", s.FailingSince.UTC().Format(time.RFC3339), s.LastError)
	}
	out := fmt.Sprintf("audit sink %s (%s): %s, shipped through seq %d, %d behind", s.Name, s.Kind, state, s.Shipped, s.Behind())
	if len(s.Gaps) > 0 {
		out += "; gaps: " + strings.Join(s.Gaps, "; ")
	}
	return out
}

// cursor is the durable position of a sink: the last record it
// acknowledged, and where in which file the next one starts.
type cursor struct {
	Sink     string `json:"sink"`
	Instance string `json:"instance"`
	File     string `json:"file"`   // base name of the trail file
	Offset   int64  `json:"offset"` // where the line after Seq starts in File
	Seq      uint64 `json:"seq"`    // last acknowledged seq (0: none yet)
	Hash     string `json:"hash"`   // hex SHA-256 of that record's line ("" when Seq is 0)
	Time     string `json:"time"`   // when it was written
}

// Shipper tails one instance's trail and feeds one Sink. Create it with
// NewShipper and run it with Run.
type Shipper struct {
	cfg    ShipConfig
	sink   Sink
	log    *slog.Logger
	now    func() time.Time
	after  func(time.Duration) <-chan time.Time
	base   string // fileBase(instance)
	cpath  string // cursor file
	notify chan struct{}

	// Read position (Run's goroutine only): the next line to read starts
	// at off in file; next is the seq expected there, prev the hash of
	// record next-1 (when known).
	f        *os.File
	file     string
	off      int64
	rb       []byte // read buffer
	rbuf     []byte // bytes read from off on, not yet consumed (in rb)
	next     uint64
	prev     [32]byte
	havePrev bool
	ack      cursor // the last acknowledged position (what the cursor file says)

	mu      sync.Mutex
	st      SinkStatus
	lastLog time.Time // last failure logged
}

// NewShipper reads (or starts) the sink's cursor. It fails when the
// cursor file exists but cannot be read, or belongs to another sink or
// instance: resuming from a wrong position would skip or repeat records
// silently.
func NewShipper(cfg ShipConfig, sink Sink, opts ShipOptions) (*Shipper, error) {
	if cfg.Name == "" || !validSinkName(cfg.Name) {
		return nil, fmt.Errorf("audit: sink name %q must be 1-64 letters, digits, '.', '_' or '-'", cfg.Name)
	}
	if cfg.Dir == "" {
		return nil, errors.New("audit: sink: no audit directory")
	}
	if sink == nil {
		return nil, errors.New("audit: sink: nil Sink")
	}
	if cfg.Instance == "" {
		cfg.Instance = "default"
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = DefaultSinkBatch
	}
	cfg.BatchRecords = min(cfg.BatchRecords, maxSinkBatchRecord)
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultSinkPoll
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.After == nil {
		opts.After = time.After
	}
	s := &Shipper{
		cfg: cfg, sink: sink, now: opts.Now, after: opts.After,
		log:    opts.Logger.With("sink", cfg.Name, "kind", cfg.Kind),
		base:   fileBase(cfg.Instance),
		notify: make(chan struct{}, 1),
	}
	s.cpath = filepath.Join(cfg.Dir, sinkCursorDir, s.base+"."+cfg.Name+".cursor")
	s.st = SinkStatus{Name: cfg.Name, Kind: cfg.Kind}
	if err := s.loadCursor(); err != nil {
		return nil, err
	}
	return s, nil
}

func validSinkName(n string) bool {
	if len(n) > 64 || n[0] == '.' {
		return false
	}
	for _, c := range []byte(n) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CursorPath is the sink's cursor file.
func (s *Shipper) CursorPath() string { return s.cpath }

func (s *Shipper) loadCursor() error {
	data, err := os.ReadFile(s.cpath)
	if errors.Is(err, fs.ErrNotExist) {
		s.ack = cursor{Sink: s.cfg.Name, Instance: s.cfg.Instance, File: s.base + ".jsonl"}
		s.resetRead()
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: sink %s: cursor: %w", s.cfg.Name, err)
	}
	var c cursor
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		return fmt.Errorf("audit: sink %s: cursor %s is damaged (%v): move it aside to ship the trail from its start", s.cfg.Name, s.cpath, err)
	}
	switch {
	case c.Sink != s.cfg.Name || c.Instance != s.cfg.Instance:
		return fmt.Errorf("audit: sink %s: cursor %s belongs to sink %q, instance %q", s.cfg.Name, s.cpath, c.Sink, c.Instance)
	case c.File == "" || filepath.Base(c.File) != c.File || c.Offset < 0 || (c.Seq > 0) != (c.Hash != ""):
		return fmt.Errorf("audit: sink %s: cursor %s is damaged: move it aside to ship the trail from its start", s.cfg.Name, s.cpath)
	}
	if c.Hash != "" {
		if h, err := hex.DecodeString(c.Hash); err != nil || len(h) != sha256.Size {
			return fmt.Errorf("audit: sink %s: cursor %s has a bad hash", s.cfg.Name, s.cpath)
		}
	}
	s.ack = c
	s.resetRead()
	s.st.Shipped = c.Seq
	return nil
}

// resetRead moves the read position back to the acknowledged one (after
// an error that leaves it unknown).
func (s *Shipper) resetRead() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.file, s.off, s.rbuf = s.ack.File, s.ack.Offset, s.rbuf[:0]
	s.next = s.ack.Seq + 1
	s.havePrev = false
	if s.ack.Hash != "" {
		hex.Decode(s.prev[:], []byte(s.ack.Hash))
		s.havePrev = true
	}
}

// saveCursor makes c durable: a new file, fsynced, renamed over the old
// one, and the directory fsynced.
func (s *Shipper) saveCursor(c cursor) error {
	c.Time = string(appendTime(nil, s.now()))
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.cpath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := s.cpath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.cpath)
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// Notify tells the Shipper that the trail may have grown (it also polls).
func (s *Shipper) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Status reports the sink's position and health.
func (s *Shipper) Status() SinkStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Gaps = slices.Clone(s.st.Gaps)
	return st
}

// Run ships until ctx ends, then closes the sink. It returns nil then;
// any other trouble (a receiver down, a trail file missing) is retried,
// logged and reported in Status, never returned.
func (s *Shipper) Run(ctx context.Context) error {
	defer func() {
		if s.f != nil {
			s.f.Close()
		}
		if err := s.sink.Close(); err != nil {
			s.log.Warn("audit sink: close", "err", err)
		}
	}()
	var batch []Record
	var first time.Time // when the oldest record of a partial batch was read
	backoff := sinkMinBackoff
	for ctx.Err() == nil {
		if len(batch) < s.cfg.BatchRecords {
			var err error
			if batch, err = s.read(batch); err != nil {
				s.failed(err)
				s.resetRead()
				batch, first = batch[:0], time.Time{}
				if !s.wait(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, sinkMaxBackoff)
				continue
			}
		}
		if len(batch) == 0 {
			if !s.wait(ctx, s.cfg.Poll) {
				return nil
			}
			continue
		}
		if len(batch) < s.cfg.BatchRecords && s.cfg.BatchWait > 0 {
			now := s.now()
			if first.IsZero() {
				first = now
			}
			if rest := s.cfg.BatchWait - now.Sub(first); rest > 0 {
				if !s.wait(ctx, min(rest, s.cfg.Poll)) {
					return nil
				}
				continue
			}
		}
		if !s.deliver(ctx, batch) {
			return nil
		}
		backoff = sinkMinBackoff
		batch, first = batch[:0], time.Time{}
	}
	return nil
}

// wait sleeps for d, or until Notify or ctx ends (false).
func (s *Shipper) wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.notify:
		return true
	case <-s.after(d):
		return true
	}
}

// deliver sends batch until the sink acknowledges it, then records the
// new position durably. It returns false when ctx ended first.
func (s *Shipper) deliver(ctx context.Context, batch []Record) bool {
	backoff := sinkMinBackoff
	for {
		err := s.sink.Send(ctx, batch)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		s.failed(fmt.Errorf("send seq %d..%d: %w", batch[0].Seq, batch[len(batch)-1].Seq, err))
		select {
		case <-ctx.Done():
			return false
		case <-s.after(backoff):
		}
		backoff = min(2*backoff, sinkMaxBackoff)
	}
	last := batch[len(batch)-1]
	sum := sha256.Sum256(last.Line)
	// Reading stops at a full batch, so the read position is where the
	// line after last starts (only lines that are skipped anyway may have
	// been consumed after it).
	c := cursor{Sink: s.cfg.Name, Instance: s.cfg.Instance, File: s.file, Offset: s.off, Seq: last.Seq, Hash: hex.EncodeToString(sum[:])}
	for {
		err := s.saveCursor(c)
		if err == nil {
			break
		}
		// Delivery happened; the cursor lags. Keep shipping from memory:
		// a restart before a cursor write succeeds resends (at least
		// once), it never skips.
		s.failed(fmt.Errorf("cursor %s: %w", s.cpath, err))
		if !s.wait(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, sinkMaxBackoff)
	}
	s.ack = c
	s.mu.Lock()
	if s.st.Failing {
		s.log.Info("audit sink: delivering again", "seq", last.Seq, "failing_for", s.now().Sub(s.st.FailingSince).String())
	}
	s.st.Failing, s.st.LastError = false, ""
	s.st.Shipped = last.Seq
	s.st.Delivered += uint64(len(batch))
	s.mu.Unlock()
	return true
}

// failed records err in the status and logs it: the first failure at
// error level, then at most once a minute.
func (s *Shipper) failed(err error) {
	now := s.now()
	s.mu.Lock()
	first := !s.st.Failing
	if first {
		s.st.Failing, s.st.FailingSince = true, now
	}
	s.st.LastError = err.Error()
	logIt := first || now.Sub(s.lastLog) >= sinkFailLogEvery
	if logIt {
		s.lastLog = now
	}
	behind := s.st.Behind()
	s.mu.Unlock()
	if logIt {
		s.log.Error("audit sink failing: records wait in the trail and are shipped when it recovers", "err", err, "behind", behind)
	}
}
