package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PurgeOptions say what Purge deletes.
type PurgeOptions struct {
	Retention RetentionConfig // zero values: the defaults
	// RecordingDir holds session recordings: the regular files directly
	// in it whose names end in one of RecordingExts are deleted once their
	// modification time (a recording's last write, never before its start)
	// is older than Retention.Recordings. Their contents are not read, so
	// any recording format works. "": no recordings.
	RecordingDir  string
	RecordingExts []string
	DryRun        bool   // list what would be deleted; write and delete nothing
	Actor         string // who asked ("retention" for the daily run); recorded in the purge record
}

// PurgedFile is one file a purge deleted (or would delete).
type PurgedFile struct {
	Name    string    `json:"name"`
	Newest  time.Time `json:"newest"`            // newest record (trail) or modification time (recording)
	Bytes   int64     `json:"bytes"`             //
	Records uint64    `json:"records,omitempty"` // chain records (trail files)
}

// PurgeResult is what a purge did (or, with DryRun, would do).
type PurgeResult struct {
	DryRun          bool         `json:"dry_run"`
	Time            time.Time    `json:"time"`
	AuditCutoff     time.Time    `json:"audit_cutoff"`     // trail files whose newest record is older go
	RecordingCutoff time.Time    `json:"recording_cutoff"` // recordings last written before this go
	Files           []PurgedFile `json:"files"`            // trail files, oldest first
	ThroughSeq      uint64       `json:"through_seq,omitempty"`
	Records         uint64       `json:"records"`    // chain records in Files
	Recordings      []PurgedFile `json:"recordings"` // by name
	RecordSeq       uint64       `json:"record_seq,omitempty"`
}

// maxNamesPerRecord bounds the recording names listed in one purge record
// (more go into further records), so a purge after a busy quarter does
// not write one enormous line.
const maxNamesPerRecord = 200

// segInfo is what Purge reads from a rolled trail file: its first and
// last records.
type segInfo struct {
	name      string
	size      int64
	firstSeq  uint64
	firstPrev [32]byte
	lastSeq   uint64
	lastHash  [32]byte
	newest    time.Time
}

// readSegInfo reads the first and the last record of a rolled file,
// refusing one that does not hold a complete chain of instance.
func readSegInfo(path, instance string) (segInfo, error) {
	si := segInfo{name: filepath.Base(path)}
	f, err := os.Open(path)
	if err != nil {
		return si, err
	}
	defer f.Close()
	t, err := readTail(f, path)
	if err != nil {
		return si, err
	}
	switch {
	case t.seq == 0:
		return si, errors.New("holds no chain record")
	case t.end != t.size:
		return si, errors.New("ends in an incomplete line, which a rolled file never does")
	case t.instance != instance:
		return si, fmt.Errorf("belongs to instance %q", t.instance)
	}
	line, _, err := lineBefore(f, t.end)
	if err != nil {
		return si, err
	}
	var r record
	var p parsed
	if err := parseRecord(line, &r, &p); err != nil {
		return si, err
	}
	newest, err := time.Parse(time.RFC3339Nano, string(p.time))
	if err != nil {
		return si, fmt.Errorf("last record has no valid time: %v", err)
	}
	first, _, ok, err := firstRecordIn(f)
	if err != nil || !ok {
		return si, fmt.Errorf("no first record: %v", err)
	}
	si.size, si.newest = t.size, newest
	si.firstSeq, si.firstPrev = first.seq, first.prev
	si.lastSeq, si.lastHash = t.seq, t.hash
	return si, nil
}

// Purge deletes what has outlived its retention: the oldest rolled trail
// files (never the active one) whose newest record is older than
// Retention.Audit — a run of them from the start of the chain, since a
// gap in the middle would be a deletion — and the recordings older than
// Retention.Recordings.
//
// Before deleting anything it appends purge records (TypePurge) to the
// chain and waits until a signed checkpoint covering them is durable: one
// per trail file, whose through_seq and through_hash name that file's last
// record (so that a purge interrupted after any file still leaves a
// chain that verifies), and a summary with the actor, the files, the
// counts and the recordings. Verify then accepts a chain that starts
// after seq 1 because a signed record accounts for the gap; deleting a
// file any other way is reported as records deleted.
//
// Purge refuses (and deletes nothing) when the files to delete do not
// link up with each other and with the first file kept: it never writes
// a record that would cover up a gap someone else made.
func (l *FileLog) Purge(ctx context.Context, opts PurgeOptions) (PurgeResult, error) {
	if l.dir == "" {
		return PurgeResult{}, errors.New("audit: purge: the log has no directory")
	}
	ret := opts.Retention.WithDefaults()
	if err := ret.Validate(); err != nil {
		return PurgeResult{}, fmt.Errorf("audit: purge: retention: %w", err)
	}
	if opts.RecordingDir != "" && len(opts.RecordingExts) == 0 {
		return PurgeResult{}, errors.New("audit: purge: a recording directory needs the recordings' file extensions")
	}
	l.purgeMu.Lock()
	defer l.purgeMu.Unlock()
	now := l.now()
	res := PurgeResult{DryRun: opts.DryRun, Time: now, AuditCutoff: now.Add(-ret.Audit), RecordingCutoff: now.Add(-ret.Recordings),
		Files: []PurgedFile{}, Recordings: []PurgedFile{}}

	files, err := l.expiredFiles(res.AuditCutoff)
	if err != nil {
		return res, err
	}
	for _, si := range files {
		n := si.lastSeq - si.firstSeq + 1
		res.Files = append(res.Files, PurgedFile{Name: si.name, Newest: si.newest, Bytes: si.size, Records: n})
		res.Records += n
		res.ThroughSeq = si.lastSeq
	}
	if opts.RecordingDir != "" {
		if res.Recordings, err = expiredRecordings(opts.RecordingDir, opts.RecordingExts, res.RecordingCutoff); err != nil {
			return res, err
		}
	}
	if opts.DryRun || len(res.Files) == 0 && len(res.Recordings) == 0 {
		return res, nil
	}

	// The records first, signed and durable; then the deletions.
	actor := opts.Actor
	if actor == "" {
		actor = "retention"
	}
	var last uint64
	emit := func(attrs map[string]string) error {
		seq := l.emit(Event{Time: now, Type: TypePurge, Actor: actor, Reason: "retention", Attrs: attrs})
		if seq == 0 {
			return ErrClosed
		}
		last = seq
		return nil
	}
	for _, si := range files {
		if err := emit(map[string]string{
			"through_seq":  strconv.FormatUint(si.lastSeq, 10),
			"through_hash": hex.EncodeToString(si.lastHash[:]),
			"file":         si.name,
			"first_seq":    strconv.FormatUint(si.firstSeq, 10),
			"records":      strconv.FormatUint(si.lastSeq-si.firstSeq+1, 10),
			"bytes":        strconv.FormatInt(si.size, 10),
			"newest":       string(appendTime(nil, si.newest)),
		}); err != nil {
			return res, err
		}
	}
	summary := map[string]string{
		"files":               strconv.Itoa(len(res.Files)),
		"records":             strconv.FormatUint(res.Records, 10),
		"audit_retention":     ret.Audit.String(),
		"audit_cutoff":        string(appendTime(nil, res.AuditCutoff)),
		"recordings":          strconv.Itoa(len(res.Recordings)),
		"recording_retention": ret.Recordings.String(),
		"recording_cutoff":    string(appendTime(nil, res.RecordingCutoff)),
	}
	if n := len(files); n > 0 {
		summary["through_seq"] = strconv.FormatUint(files[n-1].lastSeq, 10)
		summary["through_hash"] = hex.EncodeToString(files[n-1].lastHash[:])
		names := make([]string, n)
		for i, f := range files {
			names[i] = f.name
		}
		summary["file_names"] = strings.Join(names, ",")
	}
	parts := (len(res.Recordings) + maxNamesPerRecord - 1) / maxNamesPerRecord
	for p := range max(parts, 1) {
		attrs := summary
		if p > 0 {
			attrs = map[string]string{}
		}
		if parts > 1 {
			attrs["recording_names_part"] = fmt.Sprintf("%d/%d", p+1, parts)
		}
		if parts > 0 {
			chunk := res.Recordings[p*maxNamesPerRecord : min((p+1)*maxNamesPerRecord, len(res.Recordings))]
			names := make([]string, len(chunk))
			for i, r := range chunk {
				names[i] = r.Name
			}
			attrs["recording_names"] = strings.Join(names, ",")
		}
		if err := emit(attrs); err != nil {
			return res, err
		}
		if p == 0 {
			res.RecordSeq = last
		}
	}
	if err := l.checkpointAfter(ctx, last); err != nil {
		return res, fmt.Errorf("audit: purge: the purge records are not signed and durable, nothing deleted: %w", err)
	}

	// Oldest first: wherever this stops, the chain starts right after a
	// file whose own purge record is in the trail.
	var errs []error
	for _, si := range files {
		if err := removeFile(filepath.Join(l.dir, si.name)); err != nil {
			errs = append(errs, err)
			break // a later file must not go while an earlier one stays
		}
	}
	if err := syncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	for _, r := range res.Recordings {
		if err := os.Remove(filepath.Join(opts.RecordingDir, r.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(res.Recordings) > 0 {
		if err := syncDir(opts.RecordingDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("audit: purge: %w", err)
	}
	return res, nil
}

// removeFile deletes a trail file (a seam for tests that interrupt a purge).
var removeFile = os.Remove

// expiredFiles returns the run of rolled files, from the oldest, whose
// newest record is before cutoff, after checking that they link up with
// each other and with the file after them.
func (l *FileLog) expiredFiles(cutoff time.Time) ([]segInfo, error) {
	segs, err := listSegments(l.dir, l.instance)
	if err != nil {
		return nil, fmt.Errorf("audit: purge: %w", err)
	}
	var out []segInfo
	var next *segInfo // the first file kept
	for _, s := range segs {
		si, err := readSegInfo(filepath.Join(l.dir, s.name), l.instance)
		if err != nil {
			return nil, fmt.Errorf("audit: purge: %s: %v: run audit verify", s.name, err)
		}
		if !si.newest.Before(cutoff) {
			next = &si
			break
		}
		out = append(out, si)
	}
	if len(out) == 0 {
		return nil, nil
	}
	if next == nil {
		// Every rolled file expires: the active file must continue them.
		f, err := os.Open(l.path)
		if err != nil {
			return nil, fmt.Errorf("audit: purge: %w", err)
		}
		r, _, ok, err := firstRecordIn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("audit: purge: %w", err)
		}
		if ok {
			next = &segInfo{name: filepath.Base(l.path), firstSeq: r.seq, firstPrev: r.prev}
		}
	}
	check := slices.Clone(out)
	if next != nil {
		check = append(check, *next)
	}
	for i := 1; i < len(check); i++ {
		a, b := check[i-1], check[i]
		if b.firstSeq != a.lastSeq+1 || b.firstPrev != a.lastHash {
			return nil, fmt.Errorf("audit: purge: %s (seq %d..%d) and %s (from seq %d) do not link up: records are missing or were changed; nothing purged: run audit verify",
				a.name, a.firstSeq, a.lastSeq, b.name, b.firstSeq)
		}
	}
	return out, nil
}

// expiredRecordings lists the recordings in dir last written before
// cutoff, by name.
func expiredRecordings(dir string, exts []string, cutoff time.Time) ([]PurgedFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []PurgedFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: purge: recordings: %w", err)
	}
	out := []PurgedFile{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") ||
			!slices.ContainsFunc(exts, func(x string) bool { return strings.HasSuffix(name, x) }) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("audit: purge: recordings: %w", err)
		}
		if fi.ModTime().Before(cutoff) {
			out = append(out, PurgedFile{Name: name, Newest: fi.ModTime().UTC(), Bytes: fi.Size()})
		}
	}
	return out, nil
}

// checkpointAfter appends a signed checkpoint unless one after record
// seq is already durable, and waits until one is.
func (l *FileLog) checkpointAfter(ctx context.Context, seq uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ckptSeq > seq {
		return nil
	}
	since := l.attempts
	l.forceCkpt, l.urgent = true, true
	l.signal()
	return l.waitLocked(ctx, since, func() bool { return l.ckptSeq > seq })
}
