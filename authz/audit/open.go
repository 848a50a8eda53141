package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// openState is what OpenFile learned from the files on disk: where the
// chain continues, the head marker file, and the recovery event to record
// first (a torn last line was cut), if any.
type openState struct {
	chain    chain
	head     *headFile
	recovery *Event

	// The active file (roll.go): when it started, its first seq, its
	// size, and whether it holds a chain record.
	segStart   time.Time
	segFirst   uint64
	segBytes   int64
	segRecords bool
}

// openTrail opens the trail for appending and recovers its chain position.
//
// What it accepts and what it refuses (it refuses rather than continue a
// chain that would hide tampering: a server that cannot write its audit
// trail does not start):
//
//   - a torn last line (no newline: the process died in a write) beyond
//     the signed head is cut off, and the cut is recorded as the first new
//     record (TypeRecovery) with its offset, length and SHA-256;
//   - complete records after the head's seq (killed between the trail's
//     fsync and the head update) are accepted after checking that they
//     link to the record the head names;
//   - a trail that ends before the head's seq, or whose record at that
//     seq has another hash, or a chained trail without a valid head, or a
//     head signed by a key not in the .pub file, is refused with an error
//     that says so (run audit verify; move the files aside to start anew);
//   - a file written before chaining (no seq/prev anywhere) is kept as it
//     is: the first record's prev is the SHA-256 of all its bytes.
//
// Only the tail is read on a normal start (plus the records after the
// head), so opening a large trail is fast; verify reads everything.
func openTrail(dir, instance string, key ed25519.PrivateKey, now time.Time) (f *os.File, st openState, err error) {
	base := fileBase(instance)
	path := filepath.Join(dir, base+".jsonl")
	pub := key.Public().(ed25519.PublicKey)
	if err := addPublicKey(filepath.Join(dir, base+".pub"), pub); err != nil {
		return nil, st, err
	}
	keys, err := ReadPublicKeys(filepath.Join(dir, base+".pub"))
	if err != nil {
		return nil, st, err
	}

	f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, st, err
	}
	hf, err := os.OpenFile(filepath.Join(dir, base+".head"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return nil, st, err
	}
	defer func() {
		if err != nil {
			f.Close()
			hf.Close()
		}
	}()
	for _, x := range []*os.File{f, hf} {
		fi, err := x.Stat()
		if err != nil {
			return nil, st, err
		}
		if !fi.Mode().IsRegular() {
			return nil, st, fmt.Errorf("%s is not a regular file", x.Name())
		}
	}
	slots, err := readHeadSlots(hf)
	if err != nil {
		return nil, st, err
	}
	hs := checkHeadSlots(slots, newKeyring(keys))
	switch {
	case hs.foreign != nil:
		return nil, st, fmt.Errorf("%s: head marker signed by key %x, which is not in %s.pub: the trail may have been re-signed; run audit verify", hf.Name(), hs.foreign.Key, base)
	case hs.badSig != nil:
		return nil, st, fmt.Errorf("%s: head marker signature does not verify: it was modified; run audit verify", hf.Name())
	case hs.best != nil && hs.best.Instance != instance:
		return nil, st, fmt.Errorf("%s: head marker belongs to instance %q, not %q", hf.Name(), hs.best.Instance, instance)
	}

	active, err := readTail(f, path)
	if err != nil {
		return nil, st, err
	}
	// The chain ends in the active file, unless that holds no record yet
	// (a crash right after a roll, roll.go): then in the newest rolled file.
	src, srcPath, tail := f, path, active
	if active.seq == 0 {
		segs, err := listSegments(dir, instance)
		if err != nil {
			return nil, st, err
		}
		if len(segs) > 0 {
			if active.end > 0 {
				return nil, st, fmt.Errorf("%s holds lines without chain fields although rolled trail files precede it: it was damaged or written by something else; run audit verify", path)
			}
			last := filepath.Join(dir, segs[len(segs)-1].name)
			rf, err := os.OpenFile(last, os.O_RDWR|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return nil, st, err
			}
			defer rf.Close()
			if tail, err = readTail(rf, last); err != nil {
				return nil, st, err
			}
			if tail.seq == 0 {
				return nil, st, fmt.Errorf("%s holds no chain record: run audit verify", last)
			}
			if tail.size > tail.end && active.size > 0 {
				return nil, st, fmt.Errorf("%s and %s both end in an incomplete line: run audit verify", last, path)
			}
			src, srcPath = rf, last
		}
	}
	if tail.seq > 0 && tail.instance != instance {
		return nil, st, fmt.Errorf("%s: last record belongs to instance %q, not %q", srcPath, tail.instance, instance)
	}
	if err := checkAgainstHead(src, srcPath, tail, hs.best); err != nil {
		return nil, st, err
	}

	// Everything up to tail.end is consistent with the signed head: cut the
	// torn remainder and record the cut.
	cutFile, cutEnd, cutSize := src, tail.end, tail.size
	if src != f && active.size > 0 {
		cutFile, cutEnd, cutSize = f, 0, active.size
	}
	if cut := cutSize - cutEnd; cut > 0 {
		sum, err := hashRange(cutFile, cutEnd, cut)
		if err != nil {
			return nil, st, err
		}
		if err := cutFile.Truncate(cutEnd); err != nil {
			return nil, st, err
		}
		if err := cutFile.Sync(); err != nil {
			return nil, st, err
		}
		st.recovery = &Event{Type: TypeRecovery, Reason: "torn_tail", Attrs: map[string]string{
			"cut_offset": strconv.FormatInt(cutEnd, 10),
			"cut_bytes":  strconv.FormatInt(cut, 10),
			"cut_sha256": hex.EncodeToString(sum[:]),
			"after_seq":  strconv.FormatUint(tail.seq, 10),
		}}
		if cutFile != f {
			st.recovery.Attrs["file"] = filepath.Base(srcPath)
		}
	}

	st.segStart, st.segFirst, st.segBytes = now, tail.seq+1, active.end
	if active.seq > 0 {
		first, t, ok, err := firstRecordIn(f)
		if err != nil {
			return nil, st, err
		}
		if ok {
			st.segFirst, st.segRecords = first.seq, true
			if !t.IsZero() {
				st.segStart = t
			}
		}
	}
	st.chain = chain{instance: instance, key: key, keyID: KeyID(pub), seq: tail.seq, head: tail.hash, lastCkpt: now}
	st.head = &headFile{f: hf, key: key}
	if hs.best != nil {
		st.head.gen = hs.best.Gen
		st.head.next = hs.slot ^ 1
	}
	// Reopen the head before appending anything: an old "closed" marker
	// followed by new records would read as records forged after Close.
	if err := st.head.write(instance, tail.seq, tail.hash, now, false, true); err != nil {
		return nil, st, err
	}
	if err := syncDir(dir); err != nil {
		return nil, st, err
	}
	return f, st, nil
}

// tailInfo describes where a trail's chain ends.
type tailInfo struct {
	size      int64    // file size
	end       int64    // end of the last complete line (torn bytes follow)
	seq       uint64   // seq of the last record; 0 when there is none
	hash      [32]byte // its hash, or the genesis prev when seq is 0
	instance  string
	lastStart int64 // offset of the last record's line
}

// readTail finds the last complete record of the trail.
func readTail(f *os.File, path string) (tailInfo, error) {
	var t tailInfo
	fi, err := f.Stat()
	if err != nil {
		return t, err
	}
	t.size = fi.Size()
	nl, err := lastNewline(f, t.size)
	if err != nil {
		return t, err
	}
	t.end = nl + 1 // 0 when there is no complete line
	if t.end > 0 {
		line, start, err := lineBefore(f, t.end)
		if err != nil {
			return t, err
		}
		var r record
		var p parsed
		if perr := parseRecord(line, &r, &p); perr == nil {
			t.seq, t.hash, t.instance, t.lastStart = r.seq, sha256.Sum256(line), string(p.instance), start
			return t, nil
		}
	}
	// No chain record at the end: a file written before chaining (then the
	// chain starts here, its genesis hash covering those bytes) — or a
	// damaged chain, which is refused.
	h := sha256.New()
	var r record
	var p parsed
	sc := bufio.NewReaderSize(io.NewSectionReader(f, 0, t.end), 1<<20)
	var lineNo int64
	for {
		line, err := readLine(sc)
		if err == io.EOF {
			break
		}
		if err != nil {
			return t, fmt.Errorf("%s: %w", path, err)
		}
		lineNo++
		if parseRecord(line, &r, &p) == nil {
			return t, fmt.Errorf("%s: the last complete line is not a chain record but line %d is: the trail was damaged or appended to by something else; run audit verify", path, lineNo)
		}
		h.Write(line)
		h.Write([]byte{'\n'})
	}
	h.Sum(t.hash[:0])
	return t, nil
}

// checkAgainstHead refuses a trail that does not reach, or does not
// match, its signed head marker.
func checkAgainstHead(f *os.File, path string, t tailInfo, head *headMarker) error {
	if head == nil {
		if t.seq > 0 {
			return fmt.Errorf("%s: chained trail without a valid head marker (the .head file was deleted or damaged): truncation cannot be ruled out; run audit verify", path)
		}
		return nil
	}
	switch {
	case t.seq < head.Seq:
		return fmt.Errorf("%s: the trail ends at seq %d but its signed head marker covers seq %d: records were cut off; run audit verify", path, t.seq, head.Seq)
	case t.seq == head.Seq:
		if t.hash != head.Hash {
			return fmt.Errorf("%s: record seq %d does not match its signed head marker: it was modified; run audit verify", path, t.seq)
		}
		return nil
	}
	// Records after the head (the writer died between the trail's fsync and
	// the head update): walk back to the head's record, checking links.
	if head.Seq == 0 {
		return checkGenesis(f, path, t, head.Hash)
	}
	end, want, seq := t.lastStart, [32]byte{}, t.seq
	line, _, err := lineBefore(f, t.end)
	if err != nil {
		return err
	}
	var r record
	var p parsed
	if err := parseRecord(line, &r, &p); err != nil {
		return err
	}
	want = r.prev
	for seq > head.Seq {
		if end == 0 {
			if seq == head.Seq+1 && want == head.Hash {
				return nil // the head's record ends the previous (rolled) file
			}
			return fmt.Errorf("%s: record seq %d not found", path, head.Seq)
		}
		line, start, err := lineBefore(f, end)
		if err != nil {
			return err
		}
		if err := parseRecord(line, &r, &p); err != nil || r.seq != seq-1 || sha256.Sum256(line) != want {
			return fmt.Errorf("%s: the records after the signed head (seq %d) do not link up: run audit verify", path, head.Seq)
		}
		seq, want, end = r.seq, r.prev, start
		if seq == head.Seq && sha256.Sum256(line) != head.Hash {
			return fmt.Errorf("%s: record seq %d does not match its signed head marker: it was modified; run audit verify", path, seq)
		}
	}
	return nil
}

// checkGenesis checks that the first record links to the (empty-chain)
// head's genesis hash.
func checkGenesis(f *os.File, path string, t tailInfo, genesis [32]byte) error {
	sc := bufio.NewReaderSize(io.NewSectionReader(f, 0, t.end), 1<<20)
	h := sha256.New()
	var r record
	var p parsed
	for {
		line, err := readLine(sc)
		if err != nil {
			return fmt.Errorf("%s: no first record: %w", path, err)
		}
		if parseRecord(line, &r, &p) == nil {
			var sum [32]byte
			h.Sum(sum[:0])
			if r.seq != 1 || r.prev != genesis || sum != genesis {
				return fmt.Errorf("%s: the first record does not match the signed head marker; run audit verify", path)
			}
			return nil
		}
		h.Write(line)
		h.Write([]byte{'\n'})
	}
}

// readLine reads one complete line (without the newline); a last line
// without a newline is io.ErrUnexpectedEOF, no more data io.EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		long := bytes.Clone(line)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(long) > maxLineLen {
				return nil, errors.New("line too long")
			}
			line, err = r.ReadSlice('\n')
			long = append(long, line...)
		}
		if err == nil {
			return long[:len(long)-1], nil
		}
		line = long
	}
	if err == io.EOF {
		if len(line) == 0 {
			return nil, io.EOF
		}
		return line, io.ErrUnexpectedEOF
	}
	return nil, err
}

const backChunk = 64 << 10

// lastNewline returns the offset of the last '\n' before size, or -1.
func lastNewline(f io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, backChunk)
	for pos := size; pos > 0; {
		n := min(int64(len(buf)), pos)
		if _, err := f.ReadAt(buf[:n], pos-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return pos - n + int64(i), nil
		}
		pos -= n
	}
	return -1, nil
}

// lineBefore returns the line that ends with the '\n' at end-1, without
// it, and the offset where it starts.
func lineBefore(f io.ReaderAt, end int64) ([]byte, int64, error) {
	var line []byte
	pos := end - 1
	for pos > 0 {
		n := min(backChunk, pos)
		b := make([]byte, n)
		if _, err := f.ReadAt(b, pos-n); err != nil {
			return nil, 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return append(b[i+1:], line...), pos - n + int64(i) + 1, nil
		}
		line = append(b, line...)
		pos -= n
		if len(line) > maxLineLen {
			return nil, 0, errors.New("line too long")
		}
	}
	return line, 0, nil
}

// hashRange returns the SHA-256 of n bytes at off.
func hashRange(f io.ReaderAt, off, n int64) ([32]byte, error) {
	var sum [32]byte
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}
