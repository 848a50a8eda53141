package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Tailing the trail for a Shipper. The read position (file, off, next,
// prev) moves forward as records are read into a batch; the acknowledged
// position (the cursor) only after the sink took them.

// headBound returns the seq the instance's head marker names: every
// record up to it is written and fsynced. ok is false when there is no
// readable head marker yet (nothing is shipped then). The signature is
// not checked: the bound only says how far the writer got, and verify is
// what judges the trail.
func headBound(dir, base, instance string) (seq uint64, ok bool, err error) {
	f, err := os.Open(filepath.Join(dir, base+".head"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	slots, err := readHeadSlots(f)
	if err != nil {
		return 0, false, err
	}
	var best *headMarker
	for i := range slots {
		sl := &slots[i]
		if sl.present && sl.err == nil && sl.m.Instance == instance && (best == nil || sl.m.Gen > best.Gen) {
			best = &sl.m
		}
	}
	if best == nil {
		return 0, false, nil
	}
	return best.Seq, true, nil
}

// read appends to batch the records after the read position, up to the
// head marker's seq and the batch size.
func (s *Shipper) read(batch []Record) ([]Record, error) {
	bound, ok, err := headBound(s.cfg.Dir, s.base, s.cfg.Instance)
	if err != nil {
		return batch, fmt.Errorf("head marker: %w", err)
	}
	if ok {
		s.mu.Lock()
		s.st.Head = max(bound, s.st.Head)
		s.mu.Unlock()
	}
	var r record
	var p parsed
	for ok && len(batch) < s.cfg.BatchRecords && s.next <= bound {
		if s.f == nil {
			if err := s.open(); err != nil {
				return batch, err
			}
		}
		line, err := s.peekLine()
		if err != nil {
			return batch, err
		}
		if line == nil {
			// The head says there is more, but not in this file: the
			// trail moved on to another file (retention splits it), or
			// this one was cut or replaced.
			if err := s.locate(); err != nil {
				return batch, err
			}
			continue
		}
		err = parseRecord(line, &r, &p)
		switch {
		case errors.Is(err, errNoChain):
			s.consume(line) // a line written before chaining: not part of the chain
			continue
		case err != nil:
			s.gap(fmt.Sprintf("unreadable line at offset %d of %s (%v) skipped; run audit verify", s.off, s.file, err))
			s.consume(line)
			continue
		case string(p.instance) != s.cfg.Instance:
			s.gap(fmt.Sprintf("record of instance %q at offset %d of %s skipped; run audit verify", p.instance, s.off, s.file))
			s.consume(line)
			continue
		}
		if r.seq > bound {
			break // written, not yet durable: wait for the next group commit
		}
		if r.seq < s.next {
			s.consume(line) // shipped already (a rescan from a file's start)
			continue
		}
		if r.seq > s.next {
			s.gap(fmt.Sprintf("records %d..%d are not in the trail (deleted, or purged before they were shipped)", s.next, r.seq-1))
			s.havePrev = false
		}
		if s.havePrev && r.prev != s.prev {
			s.gap(fmt.Sprintf("record %d does not link to the record before it: the trail was changed; run audit verify", r.seq))
		}
		batch = append(batch, Record{
			Instance: s.cfg.Instance, Seq: r.seq, Type: string(p.typ), Time: string(p.time),
			Line: bytes.Clone(line),
		})
		s.prev, s.havePrev = sha256.Sum256(line), true
		s.next = r.seq + 1
		s.consume(line)
	}
	return batch, nil
}

// gap notes records the shipper could not ship (kept in Status, logged).
func (s *Shipper) gap(note string) {
	s.log.Error("audit sink: trail gap", "note", note)
	s.mu.Lock()
	if len(s.st.Gaps) < 16 {
		s.st.Gaps = append(s.st.Gaps, note)
	}
	s.mu.Unlock()
}

// open opens the read position's file and checks that the position is
// still right: the line that ends there must be the last record read
// (hash prev). A file that is gone, was rolled (renamed, and a new file
// took its name), cut or replaced fails that check, and the reader looks
// for record next by seq instead. A position with no record read yet
// always searches: the trail may have rolled before anything was shipped.
func (s *Shipper) open() error {
	if !s.havePrev || s.off == 0 {
		return s.locate()
	}
	f, err := os.Open(filepath.Join(s.cfg.Dir, s.file))
	if errors.Is(err, fs.ErrNotExist) {
		return s.locate()
	}
	if err != nil {
		return err
	}
	var nl [1]byte
	if _, err := f.ReadAt(nl[:], s.off-1); err != nil || nl[0] != '\n' {
		f.Close()
		return s.locate()
	}
	if line, _, err := lineBefore(f, s.off); err != nil || sha256.Sum256(line) != s.prev {
		f.Close()
		return s.locate()
	}
	s.f, s.rbuf = f, s.rbuf[:0]
	return nil
}

// peekLine returns the next complete line at the read position without
// consuming it, or nil at the end of the complete lines.
func (s *Shipper) peekLine() ([]byte, error) {
	for {
		if i := bytes.IndexByte(s.rbuf, '\n'); i >= 0 {
			return s.rbuf[:i], nil
		}
		if len(s.rbuf) > maxLineLen {
			return nil, fmt.Errorf("%s: line at offset %d longer than %d bytes", s.file, s.off, maxLineLen)
		}
		// Move the partial line to the front of the buffer (copy is a
		// memmove) and read more after it.
		n, old := len(s.rbuf), s.rbuf
		if cap(s.rb) < n+sinkReadChunk {
			s.rb = make([]byte, 0, 2*n+sinkReadChunk)
		}
		s.rbuf = s.rb[:n]
		copy(s.rbuf, old)
		m, err := s.f.ReadAt(s.rb[n:cap(s.rb)], s.off+int64(n))
		s.rbuf = s.rbuf[:n+m]
		if m == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				return nil, nil
			}
			return nil, err
		}
	}
}

// consume advances the read position past line (returned by peekLine).
func (s *Shipper) consume(line []byte) {
	n := len(line) + 1
	s.off += int64(n)
	s.rbuf = s.rbuf[n:]
}

// trailFirst is a trail file of the instance and its first seq.
type trailFirst struct {
	name  string
	first uint64
}

// locate finds the file holding record s.next: the instance's file with
// the greatest first seq not above it. When every file starts after it,
// the records before were deleted: the gap is noted and reading resumes
// at the first record there is.
func (s *Shipper) locate() error {
	files, err := s.instanceFiles()
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no trail file of instance %q in %s", s.cfg.Instance, s.cfg.Dir)
	}
	i := len(files) - 1
	for i > 0 && files[i].first > s.next {
		i--
	}
	pick := files[i]
	if pick.first > s.next {
		s.gap(fmt.Sprintf("records %d..%d are not in the trail (deleted, or purged before they were shipped)", s.next, pick.first-1))
		s.next, s.havePrev = pick.first, false
	}
	f, err := os.Open(filepath.Join(s.cfg.Dir, pick.name))
	if err != nil {
		return err
	}
	if s.f != nil {
		same := false
		if a, err := s.f.Stat(); err == nil {
			if b, err := f.Stat(); err == nil {
				same = os.SameFile(a, b)
			}
		}
		if same {
			// Already reading the right file and it has nothing more:
			// the head names records it does not hold.
			f.Close()
			return fmt.Errorf("%s ends before seq %d that its head marker names: the trail was cut; run audit verify", pick.name, s.next)
		}
		s.f.Close()
		s.f = nil
	}
	s.f, s.file, s.off, s.rbuf = f, pick.name, 0, s.rbuf[:0]
	return nil
}

// instanceFiles lists the trail files whose first chained record belongs
// to the instance, by first seq.
func (s *Shipper) instanceFiles() ([]trailFirst, error) {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var out []trailFirst
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		inst, first, ok := firstChained(filepath.Join(s.cfg.Dir, e.Name()))
		if ok && inst == s.cfg.Instance {
			out = append(out, trailFirst{e.Name(), first})
		}
	}
	slices.SortFunc(out, func(a, b trailFirst) int { return cmpUint(a.first, b.first) })
	return out, nil
}

// firstChained returns the instance and seq of a file's first chained
// record.
func firstChained(path string) (string, uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, false
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var r record
	var p parsed
	for {
		line, err := readLine(br)
		if err != nil || line == nil {
			return "", 0, false
		}
		if perr := parseRecord(line, &r, &p); perr == nil {
			return string(p.instance), r.seq, true
		} else if !errors.Is(perr, errNoChain) {
			return "", 0, false
		}
	}
}
