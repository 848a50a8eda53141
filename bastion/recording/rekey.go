package recording

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// RekeyOutcome says what Rekey did.
type RekeyOutcome int

// Outcomes.
const (
	RekeyFailed   RekeyOutcome = iota // see the error
	Rekeyed                           // the data key is now wrapped under the new key only
	AlreadyNewKey                     // nothing to do: the old key does not open it, the new one does
)

func (o RekeyOutcome) String() string {
	switch o {
	case Rekeyed:
		return "rekeyed"
	case AlreadyNewKey:
		return "already under the new key"
	}
	return "failed"
}

// slotFile is what rekey needs of a recording file (tests inject
// crashes).
type slotFile interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Rekey re-wraps the data key of the recording at path from oldKey to
// newKey in place. Only the header's key slots change (the chunks and the
// digest do not), so it is safe while the bastion is still appending to
// the file, and crash-safe: the new wrap goes first into the slot not
// holding the old one and is synced, then over the old one. A crash
// leaves the recording readable with the old or the new key; running
// Rekey again finishes the job.
func Rekey(path string, oldKey, newKey *Key) (RekeyOutcome, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return RekeyFailed, fmt.Errorf("recording: %w", err)
	}
	// Retention ages recordings by modification time: re-wrapping a key
	// must not make an old recording look new (it would never be purged).
	fi, serr := f.Stat()
	out, err := rekey(f, oldKey, newKey, rand.Reader)
	if cerr := f.Close(); err == nil && cerr != nil {
		return RekeyFailed, fmt.Errorf("recording: %w", cerr)
	}
	if err == nil && serr == nil {
		if terr := os.Chtimes(path, time.Time{}, fi.ModTime()); terr != nil {
			return out, fmt.Errorf("recording: keeping the modification time: %w", terr)
		}
	}
	return out, err
}

func rekey(f slotFile, oldKey, newKey *Key, rnd io.Reader) (RekeyOutcome, error) {
	if oldKey == nil || newKey == nil {
		return RekeyFailed, errors.New("recording: rekey needs the old and the new key")
	}
	if oldKey.id == newKey.id {
		return RekeyFailed, errors.New("recording: the old and the new key are the same")
	}
	var raw [HeaderSize]byte
	n, err := f.ReadAt(raw[:], 0)
	if err != nil && err != io.EOF {
		return RekeyFailed, fmt.Errorf("recording: %w", err)
	}
	h, err := readHeader(bytes.NewReader(raw[:n]))
	if err != nil {
		return RekeyFailed, err
	}
	dek, slot, err := h.openSlots(oldKey)
	order := []int{1 - slot, slot} // other slot first: until it is synced, the old one is untouched
	if err != nil {
		// Not (or no longer) under the old key. If the new key opens it,
		// the rotation is done, or was interrupted inside the second slot
		// write: then the other slot is torn and gets the new wrap too.
		ndek, nslot, nerr := h.openSlots(newKey)
		if nerr != nil {
			return RekeyFailed, err
		}
		dek, order = ndek, []int{1 - nslot}
		other := h.slot(1 - nslot)
		if _, ok := h.unwrapSlot(1-nslot, newKey); (ok && h.slotID(1-nslot) == newKey.id) || isZero(other) {
			clear(dek)
			return AlreadyNewKey, nil
		}
	}
	defer clear(dek)
	wrapped, err := wrapSlot(h.fixed(), newKey, dek, rnd)
	if err != nil {
		return RekeyFailed, err
	}
	for _, i := range order {
		if _, err := f.WriteAt(wrapped, int64(slotOffset(i))); err != nil {
			return RekeyFailed, fmt.Errorf("recording: writing key slot %d: %w", i, err)
		}
		if err := f.Sync(); err != nil {
			return RekeyFailed, fmt.Errorf("recording: syncing key slot %d: %w", i, err)
		}
	}
	return Rekeyed, nil
}

// RekeyDir rekeys every recording (*.pcrec) in dir, in name order; each
// recording's outcome is in its entry. Recordings already under newKey
// are skipped, so running it again (say after the bastion switched to
// the new key, for recordings it created meanwhile) is safe.
func RekeyDir(dir string, oldKey, newKey *Key) ([]DirEntry, error) {
	paths, err := listRecordings(dir)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(paths))
	for _, p := range paths {
		o, err := Rekey(p, oldKey, newKey)
		out = append(out, DirEntry{Path: p, Rekey: o, Err: err})
	}
	return out, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
