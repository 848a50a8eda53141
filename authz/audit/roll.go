package audit

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rolling: the trail is split into files so that retention can delete
// whole expired files (see retention.go).
//
// The active file is always Dir/audit-<instance>.jsonl. When it holds
// records from an earlier roll period (RollEvery, aligned to UTC: a day by
// default, so a new file starts at the first commit after midnight UTC) or
// would grow past RollSize, the writer renames it to
//
//	audit-<instance>.<start, UTC, 20060102T150405Z>.<first seq, 20 digits>.jsonl
//
// and creates a new, empty active file. Rolled names sort by time and by
// seq, and sort before the active file. The chain does not restart: the
// first record of the new file links to the last record of the previous
// one, so Verify (which groups files by the instance in their records and
// orders them by first seq) reads one chain across all of them.
//
// Crash safety. Before renaming, the writer fsyncs the head marker, so
// the signed head on disk covers the whole of the file being rolled. A
// crash between the rename and the first write into the new active file
// leaves the active file missing or empty: openTrail then continues the
// chain from the newest rolled file. Records are only ever written to one
// file at a time, and a record never spans two files (a roll happens only
// between batches, never while a failed write's remainder is pending).

const (
	// DefaultRollEvery is the default roll period: one trail file per UTC day.
	DefaultRollEvery  = 24 * time.Hour
	segmentTimeLayout = "20060102T150405Z"
	segmentSeqDigits  = 20
)

// segment is one rolled trail file of an instance.
type segment struct {
	name     string // base name
	start    time.Time
	firstSeq uint64
}

// segmentName is the name a rolled file of instance gets.
func segmentName(instance string, start time.Time, firstSeq uint64) string {
	return fmt.Sprintf("%s.%s.%0*d.jsonl", fileBase(instance), start.UTC().Format(segmentTimeLayout), segmentSeqDigits, firstSeq)
}

// parseSegmentName reports whether name is a rolled file of the instance
// whose file base is base, with its start and first seq.
func parseSegmentName(base, name string) (segment, bool) {
	rest, ok := strings.CutPrefix(name, base+".")
	if !ok {
		return segment{}, false
	}
	rest, ok = strings.CutSuffix(rest, ".jsonl")
	if !ok {
		return segment{}, false
	}
	ts, seq, ok := strings.Cut(rest, ".")
	if !ok || len(seq) != segmentSeqDigits || len(ts) != len(segmentTimeLayout) {
		return segment{}, false
	}
	start, err := time.Parse(segmentTimeLayout, ts)
	if err != nil {
		return segment{}, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || n == 0 {
		return segment{}, false
	}
	return segment{name: name, start: start, firstSeq: n}, true
}

// listSegments returns the rolled files of instance in dir, oldest first
// (by first seq). The active file is not among them.
func listSegments(dir, instance string) ([]segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	base := fileBase(instance)
	var out []segment
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if s, ok := parseSegmentName(base, e.Name()); ok {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b segment) int { return cmpUint(a.firstSeq, b.firstSeq) })
	return out, nil
}

// firstRecordIn returns the first chain record of f and its time (ok
// false when f has none).
func firstRecordIn(f *os.File) (r record, t time.Time, ok bool, err error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 64<<10)
	var p parsed
	for {
		line, err := readLine(br)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return record{}, time.Time{}, false, nil
		}
		if err != nil {
			return record{}, time.Time{}, false, err
		}
		if parseRecord(line, &r, &p) == nil {
			t, _ := time.Parse(time.RFC3339Nano, string(p.time))
			return r, t, true, nil
		}
	}
}

// rollDue reports whether the active file must be rolled before n more
// bytes are written to it at now.
func (w *writer) rollDue(now time.Time, n int) bool {
	l := w.l
	if l.dir == "" || !w.segRecords {
		return false
	}
	if l.rollEvery > 0 && now.Truncate(l.rollEvery).After(w.segStart.Truncate(l.rollEvery)) {
		return true
	}
	return l.rollSize > 0 && w.segBytes+int64(n) > l.rollSize
}

// maybeRoll rolls the active file when it is due. A failed roll is logged
// and retried before the next batch; writing goes on in the current file
// meanwhile, so a roll never costs an event.
func (w *writer) maybeRoll() {
	now := w.l.now()
	if !w.rollDue(now, len(w.buf)) {
		return
	}
	if err := w.roll(now); err != nil {
		if !w.rollFailing {
			w.l.log.Error("audit: cannot start a new trail file; still writing to the current one", "path", w.curPath, "err", err)
		}
		w.rollFailing = true
		return
	}
	if w.rollFailing {
		w.l.log.Info("audit: new trail file started after earlier failures", "path", w.l.path)
	}
	w.rollFailing = false
}

// roll renames the current file to its rolled name and switches to a new
// active file.
func (w *writer) roll(now time.Time) error {
	l := w.l
	// The signed head must cover the end of the file being rolled before
	// anything is written after it (the head is not fsynced per commit).
	if err := w.head.f.Sync(); err != nil {
		return fmt.Errorf("sync head marker: %w", err)
	}
	if w.curPath == l.path {
		rolled := filepath.Join(l.dir, segmentName(l.instance, w.segStart, w.segFirst))
		if _, err := os.Lstat(rolled); err == nil {
			return fmt.Errorf("%s already exists", rolled)
		}
		if err := os.Rename(l.path, rolled); err != nil {
			return err
		}
		w.curPath = rolled
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		if err = syncDir(l.dir); err != nil {
			f.Close()
			os.Remove(l.path)
		}
	}
	if err != nil {
		// Put the name back so the active file stays where readers look;
		// if even that fails, writing continues through the open file
		// under its rolled name (openTrail continues from it after a
		// restart) and the next roll only creates the active file.
		if os.Rename(w.curPath, l.path) == nil {
			w.curPath = l.path
		}
		return err
	}
	old := l.f
	l.f = f
	if err := old.Close(); err != nil {
		l.log.Warn("audit: closing the rolled trail file", "err", err)
	}
	w.curPath = l.path
	w.segStart, w.segFirst, w.segBytes, w.segRecords = now, w.lastWritten+1, 0, false
	return nil
}
