package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Scan reads the trail in dir (every *.jsonl file, written by any
// instance) and calls fn with each event whose time lies in
// [since, until) (zero bounds are open), in file order. Records the log
// writes itself (checkpoints, recovery and purge records) are skipped, as
// is a last line still being written. A line that does not decode is an
// error: readers of the trail must not silently skip records.
//
// Scan does not verify the chain (that is Verify's job, offline, with a
// trusted key); it is how access reviews and trail searches read what
// happened. It streams in constant memory; fn may return ErrStopScan to
// end early without error.
func Scan(ctx context.Context, dir string, since, until time.Time, fn func(*Event) error) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	slices.Sort(files)
	for _, f := range files {
		if err := scanFile(ctx, f, since, until, fn); err != nil {
			if errors.Is(err, ErrStopScan) {
				return nil
			}
			return err
		}
	}
	return nil
}

// ErrStopScan ends a Scan early.
var ErrStopScan = errors.New("audit: stop scan")

func scanFile(ctx context.Context, name string, since, until time.Time, fn func(*Event) error) error {
	fh, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) { // purged while we listed
			return nil
		}
		return fmt.Errorf("audit: %w", err)
	}
	defer fh.Close()
	br := bufio.NewReaderSize(fh, 256<<10)
	base := filepath.Base(name)
	var (
		ev   Event
		line []byte
	)
	for n := 1; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line = line[:0]
		for {
			chunk, err := br.ReadSlice('\n')
			line = append(line, chunk...)
			if len(line) > maxLineLen {
				return fmt.Errorf("audit: %s:%d: line longer than %d bytes", base, n, maxLineLen)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				return nil // end of file, or a torn last line being written
			}
			if err != nil {
				return fmt.Errorf("audit: %s: %w", base, err)
			}
			break
		}
		body := bytes.TrimSpace(line)
		if len(body) == 0 {
			continue
		}
		ev = Event{}
		if err := json.Unmarshal(body, &ev); err != nil {
			// The decoder's message may quote the whole offending value
			// (up to maxLineLen): the error is logged, so it is cut short.
			return fmt.Errorf("audit: %s:%d: record does not decode: %.200v", base, n, err)
		}
		if reservedType(ev.Type) {
			continue
		}
		if !since.IsZero() && ev.Time.Before(since) {
			continue
		}
		if !until.IsZero() && !ev.Time.Before(until) {
			continue
		}
		if err := fn(&ev); err != nil {
			return err
		}
	}
}

// Query selects events for a trail search; empty fields match anything.
type Query struct {
	UserID, Type, App, Target, Decision, Reason, Ref string
	// TypePrefix matches types starting with it ("access." for all of
	// just-in-time access).
	TypePrefix   string
	Since, Until time.Time
	// Limit caps the result (most recent kept); zero means 1000, and it is
	// never above 10000.
	Limit int
}

// Validate bounds a query that arrives from outside.
func (q *Query) Validate() error {
	for _, s := range []string{q.UserID, q.Type, q.App, q.Target, q.Decision, q.Reason, q.Ref, q.TypePrefix} {
		if len(s) > 512 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return errors.New("query field too long or contains control characters")
		}
	}
	if q.Limit < 0 || q.Limit > 10000 {
		return errors.New("limit must be between 1 and 10000")
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return errors.New("since must be before until")
	}
	return nil
}

// Match reports whether e is selected by q (bounds on time excepted).
func (q *Query) Match(e *Event) bool {
	return (q.UserID == "" || e.UserID == q.UserID || e.Actor == q.UserID) &&
		(q.Type == "" || e.Type == q.Type) &&
		(q.TypePrefix == "" || strings.HasPrefix(e.Type, q.TypePrefix)) &&
		(q.App == "" || e.App == q.App) &&
		(q.Target == "" || e.Target == q.Target) &&
		(q.Decision == "" || e.Decision == q.Decision) &&
		(q.Reason == "" || e.Reason == q.Reason) &&
		(q.Ref == "" || e.Ref == q.Ref)
}

// Search returns the most recent events in dir matching q (at most
// q.Limit, oldest first) and whether older matches were left out. Files
// of several instances interleave in time, so matches are ordered by time
// (stable, so one instance's records keep their chain order).
func Search(ctx context.Context, dir string, q Query) ([]Event, bool, error) {
	if err := q.Validate(); err != nil {
		return nil, false, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = 1000
	}
	byTime := func(a, b Event) int { return a.Time.Compare(b.Time) }
	var out []Event
	more := false
	// Keep at most 2×limit matches: when full, keep the newest limit.
	// Memory stays bounded whatever the trail's size.
	trim := func() {
		slices.SortStableFunc(out, byTime)
		if len(out) > limit {
			more = true
			out = slices.Delete(out, 0, len(out)-limit)
		}
	}
	err := Scan(ctx, dir, q.Since, q.Until, func(e *Event) error {
		if !q.Match(e) {
			return nil
		}
		out = append(out, *e)
		if len(out) >= 2*limit {
			trim()
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	trim()
	return out, more, nil
}
