package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var errClosed = errors.New("store is closed")

// EmbeddedOptions are the injected dependencies of the embedded store.
type EmbeddedOptions struct {
	// Now is the clock every expiry is measured against (default
	// time.Now). The embedded store never reads the wall clock itself.
	Now    func() time.Time
	Logger *slog.Logger // default: discard
	// SweepInterval is how often expired records are deleted from the
	// file (default 1 minute). Reads ignore expired records regardless.
	SweepInterval time.Duration
	// LockTimeout bounds the wait for the file lock when another process
	// holds the file (default 5 seconds).
	LockTimeout time.Duration
	// FeedBuffer is the per-subscriber event buffer (default
	// DefaultFeedBuffer).
	FeedBuffer int
}

// Embedded is the single-node store: one bbolt file, in-process feed.
// Every method is safe for concurrent use. bbolt serializes writers, which
// is what makes ClaimStep, ConsumeRecoveryCode, Incr and TakeEphemeral
// atomic here.
type Embedded struct {
	db   *bbolt.DB
	path string
	now  func() time.Time
	log  *slog.Logger
	hub  *hub

	closeOnce sync.Once
	stop      chan struct{} // closed by Close: stops the sweeper
	swept     chan struct{} // closed when the sweeper has returned
}

var _ Store = (*Embedded)(nil)

// Bucket names. Each namespace has its own bucket, so no key in one can
// ever address a record of another.
var (
	bucketUsers     = []byte("users")
	bucketSessions  = []byte("sessions")
	bucketSessIndex = []byte("session-index") // indexKey(user, id) → empty
	bucketEnrol     = []byte("enrolments")
	bucketSteps     = []byte("totp-steps")
	bucketRecovery  = []byte("recovery-codes")
	bucketCounters  = []byte("counters")
	bucketLocks     = []byte("locks")
	bucketEphemeral = []byte("ephemeral")
	bucketPresence  = []byte("presence") // indexKey(kind, id) → record
	bucketRecords   = []byte("records")  // indexKey(kind, id) → record, never expiring

	allBuckets = [][]byte{bucketUsers, bucketSessions, bucketSessIndex, bucketEnrol,
		bucketSteps, bucketRecovery, bucketCounters, bucketLocks, bucketEphemeral, bucketPresence, bucketRecords}
)

// OpenEmbedded opens (creating if needed) the bbolt file at path with mode
// 0600, checks its consistency and starts the sweeper. A truncated or
// corrupted file, or one held by another process, is an error wrapping
// ErrUnavailable that names the file.
func OpenEmbedded(path string, opts EmbeddedOptions) (*Embedded, error) {
	if path == "" {
		return nil, invalid("store path", "is empty")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if err := tightenMode(path, opts.Logger); err != nil {
		return nil, fmt.Errorf("%w: state file %s: %v", ErrUnavailable, path, err)
	}
	db, err := openBolt(path, opts.LockTimeout, opts.Logger)
	if err != nil {
		return nil, err
	}
	e := &Embedded{
		db:    db,
		path:  path,
		now:   opts.Now,
		log:   opts.Logger,
		hub:   newHub(opts.FeedBuffer),
		stop:  make(chan struct{}),
		swept: make(chan struct{}),
	}
	go e.sweeper(opts.SweepInterval)
	return e, nil
}

// openBolt opens the file, creates the buckets and verifies the file
// before anything relies on it, so damage shows at start-up with the file
// name rather than as a failing login later: the file must be as long as
// its metadata says, every page must be readable (a truncated file faults
// on access to the mapping; the fault is turned into an error here), and
// bbolt's consistency check must pass. The state file holds sessions and
// counters, so reading it whole at start-up is cheap.
func openBolt(path string, lockTimeout time.Duration, log *slog.Logger) (db *bbolt.DB, err error) {
	fail := func(what string, cause any) error {
		return fmt.Errorf("%w: state file %s %s: %v", ErrUnavailable, path, what, cause)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		// bbolt panics on some kinds of page damage, and faults become
		// panics above: a damaged file is an error, never a crash.
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, fail("is truncated or corrupted", r)
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fail("is locked", "another process has it open")
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum), err != nil && strings.Contains(err.Error(), "file size too small"):
		return nil, fail("is truncated or corrupted", err)
	case err != nil:
		return nil, fail("cannot be opened", err)
	}
	if err := verifyBolt(db, log); err != nil {
		_ = db.Close()
		return nil, fail("is truncated or corrupted", err)
	}
	return db, nil
}

func verifyBolt(db *bbolt.DB, log *slog.Logger) error {
	fi, err := os.Stat(db.Path())
	if err != nil {
		return err
	}
	bad := 0
	err = db.Update(func(tx *bbolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("metadata says %d bytes, file has %d", tx.Size(), fi.Size())
		}
		for _, name := range allBuckets {
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			// Touch every page in this goroutine (faults are errors here;
			// in tx.Check's own goroutine they would be fatal).
			if err := b.ForEach(func(k, v []byte) error {
				if bytes.Equal(name, bucketSessIndex) {
					return nil
				}
				if _, err := decodeRecord(v, -1); err != nil {
					bad++
				}
				return nil
			}); err != nil {
				return err
			}
		}
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if bad > 0 {
		// Damaged records are reported when read (ErrUnavailable); they do
		// not stop the whole gateway from starting.
		log.Error("state file holds corrupted records", "path", db.Path(), "count", bad)
	}
	return err
}

// tightenMode makes an existing state file private: it holds sessions and
// enrolments, and a file created by an older version or by hand may be
// group- or world-readable.
func tightenMode(path string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	log.Warn("state file was readable by others; restricting to 0600", "path", path, "mode", fi.Mode().Perm().String())
	return os.Chmod(path, 0o600)
}

// Close stops the sweeper, closes every feed subscription and the file.
// Later calls return nil; later method calls fail with ErrUnavailable.
func (e *Embedded) Close() error {
	var err error
	e.closeOnce.Do(func() {
		close(e.stop)
		<-e.swept
		e.hub.close()
		err = e.db.Close()
	})
	return err
}

// Ping reports whether the file is open and readable.
func (e *Embedded) Ping(ctx context.Context) error {
	return e.view(ctx, func(*bbolt.Tx) error { return nil })
}

// view and update run fn in a transaction. They fail closed: a canceled
// context, a closed store, a bbolt error or a panic inside bbolt all come
// back wrapping ErrUnavailable. fn's own ErrNotFound/ErrInvalid/
// ErrUnavailable errors pass through unchanged.
func (e *Embedded) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	return e.run(ctx, e.db.View, fn)
}

func (e *Embedded) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	return e.run(ctx, e.db.Update, fn)
}

func (e *Embedded) run(ctx context.Context, txn func(func(*bbolt.Tx) error) error, fn func(*bbolt.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return unavailable(err)
	}
	// A damaged page faults on access to the mapping: make that a panic
	// (recovered below) for the duration of the transaction.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		// bbolt's managed transactions roll back on panic, so recovering
		// here leaves the file consistent.
		if r := recover(); r != nil {
			e.log.Error("state store panicked; treating as unavailable", "path", e.path, "panic", fmt.Sprint(r))
			err = unavailable(fmt.Errorf("internal error: %v", r))
		}
	}()
	err = txn(fn)
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid), errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return unavailable(errClosed)
	}
	return unavailable(err)
}

// get returns the decoded live record at key, or ErrNotFound.
func (e *Embedded) get(tx *bbolt.Tx, bucket, key []byte, fields int) (record, error) {
	v := tx.Bucket(bucket).Get(key)
	if v == nil {
		return record{}, ErrNotFound
	}
	r, err := decodeRecord(v, fields)
	if err != nil {
		e.log.Error("corrupted record in state file", "path", e.path, "bucket", string(bucket), "err", err)
		return record{}, err
	}
	if !r.live(e.now()) {
		return record{}, ErrNotFound
	}
	return r, nil
}

// sweeper deletes expired records every interval until Close.
func (e *Embedded) sweeper(interval time.Duration) {
	defer close(e.swept)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if n, err := e.sweep(); err != nil {
				e.log.Warn("sweeping expired records failed", "path", e.path, "err", err)
			} else if n > 0 {
				e.log.Debug("swept expired records", "path", e.path, "count", n)
			}
		}
	}
}

// sweep deletes every expired record (and the index entries of expired
// sessions) in one write transaction and returns how many it removed.
// Corrupted records are left in place for inspection; reads report them.
func (e *Embedded) sweep() (int, error) {
	now := e.now()
	removed := 0
	err := e.update(context.Background(), func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketSessions, bucketSteps, bucketCounters, bucketLocks, bucketEphemeral, bucketPresence} {
			b := tx.Bucket(name)
			var dead [][]byte
			var deadIndex [][]byte
			err := b.ForEach(func(k, v []byte) error {
				r, err := decodeRecord(v, -1)
				if err != nil || r.live(now) {
					return nil
				}
				// Collect first: deleting while iterating a bbolt
				// cursor can skip entries.
				dead = append(dead, append([]byte{}, k...))
				if bytes.Equal(name, bucketSessions) && len(r.fields) == sessionFields {
					deadIndex = append(deadIndex, indexKey(string(r.fields[0]), string(k)))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			idx := tx.Bucket(bucketSessIndex)
			for _, k := range deadIndex {
				if err := idx.Delete(k); err != nil {
					return err
				}
			}
			removed += len(dead)
		}
		return nil
	})
	return removed, err
}
