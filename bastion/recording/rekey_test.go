package recording

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestRekey: after rotation the old key fails with ErrWrongKey naming
// the new key, the new key reads the same recording (same digest), and a
// second run is a no-op.
func TestRekey(t *testing.T) {
	oldKey, newKey, otherKey := testKEK, mustKey(2), mustKey(3)
	dir := t.TempDir()
	b, digest := markerRecording(t, "s1", oldKey, 3)
	path := filepath.Join(dir, "s1"+FileExt)
	writeTestFile(t, path, string(b))
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		old, new *Key
		want     RekeyOutcome
		err      error
	}{
		{"same key", oldKey, oldKey, RekeyFailed, nil},
		{"wrong old key", otherKey, newKey, RekeyFailed, ErrWrongKey},
		{"rotate", oldKey, newKey, Rekeyed, nil},
		{"again", oldKey, newKey, AlreadyNewKey, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Rekey(path, tc.old, tc.new)
			if got != tc.want || (tc.want != RekeyFailed && err != nil) || (tc.want == RekeyFailed && err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("got %v %v", got, err)
			}
		})
	}
	var mm *KeyMismatchError
	if _, err := Verify(path, oldKey); !errors.As(err, &mm) || !slices.Equal(mm.Have, []KeyID{newKey.ID()}) {
		t.Fatalf("old key after rotation: %v", err)
	}
	res, err := Verify(path, newKey)
	if err != nil || res.Digest != digest || res.KeyID != newKey.ID() {
		t.Fatalf("new key: %+v %v", res, err)
	}
	// Retention ages recordings by modification time.
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(old) {
		t.Fatalf("rotation changed the modification time: %v %v", fi.ModTime(), err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after[HeaderSize:], b[HeaderSize:]) || !bytes.Equal(after[:fixedSize], b[:fixedSize]) {
		t.Fatal("rotation changed more than the key slots")
	}
}

// crashFile is a recording in memory whose WriteAt number crashAt (from
// 0) writes only its first keep bytes and fails: the process died there.
type crashFile struct {
	b       []byte
	writes  int
	crashAt int
	keep    int
	syncErr bool
}

var errCrash = errors.New("crash")

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(f.b)) {
		return 0, io.EOF
	}
	n := copy(p, f.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	i := f.writes
	f.writes++
	if i == f.crashAt {
		copy(f.b[off:], p[:f.keep])
		return f.keep, errCrash
	}
	copy(f.b[off:], p)
	return len(p), nil
}

func (f *crashFile) Sync() error {
	if f.syncErr && f.writes > f.crashAt {
		return errCrash
	}
	return nil
}

// TestRekeyCrash: a crash at any point of a rotation (inside either slot
// write, or at a sync) leaves the recording readable in full with the old
// or the new key, and a second run completes the rotation.
func TestRekeyCrash(t *testing.T) {
	oldKey, newKey := testKEK, mustKey(2)
	orig, digest := markerRecording(t, "s1", oldKey, 2)
	readable := func(b []byte, k *Key) bool {
		res, err := VerifyReader(bytes.NewReader(b), k)
		return err == nil && res.Digest == digest
	}
	for _, crashAt := range []int{0, 1} {
		for _, keep := range []int{0, 1, 8, 19, 20, 40, slotSize - 1} {
			for _, syncErr := range []bool{false, true} {
				f := &crashFile{b: slices.Clone(orig), crashAt: crashAt, keep: keep, syncErr: syncErr}
				if syncErr {
					f.keep = slotSize // the write went through, the sync did not
				}
				if _, err := rekey(f, oldKey, newKey, rand.Reader); err == nil {
					t.Fatalf("crash at write %d (%d bytes): no error", crashAt, keep)
				}
				oldOK, newOK := readable(f.b, oldKey), readable(f.b, newKey)
				if !oldOK && !newOK {
					t.Fatalf("crash at write %d after %d bytes (sync error %v): readable with neither key", crashAt, keep, syncErr)
				}
				if crashAt == 0 && !oldOK {
					t.Fatalf("crash in the first slot write after %d bytes: the old key no longer works", keep)
				}
				// Finish the rotation.
				f.crashAt, f.syncErr = -1, false
				out, err := rekey(f, oldKey, newKey, rand.Reader)
				if err != nil || (out != Rekeyed && out != AlreadyNewKey) {
					t.Fatalf("second run after a crash at write %d after %d bytes: %v %v", crashAt, keep, out, err)
				}
				if readable(f.b, oldKey) || !readable(f.b, newKey) {
					t.Fatalf("after the second run (crash at write %d after %d bytes): old %v new %v", crashAt, keep, readable(f.b, oldKey), readable(f.b, newKey))
				}
			}
		}
	}
}

// TestRekeyLive: rotating a recording the bastion is still writing
// changes only its header; the writer's later chunks land after it and
// the finished recording verifies with the new key.
func TestRekeyLive(t *testing.T) {
	w, path := newTestWriter(t, Options{BufferSize: 16})
	if err := w.Data(1, StreamStdout, []byte("before rotation")); err != nil {
		t.Fatal(err)
	}
	if out, err := Rekey(path, testKEK, mustKey(2)); err != nil || out != Rekeyed {
		t.Fatalf("%v %v", out, err)
	}
	if err := w.Data(1, StreamStdout, []byte("after rotation")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(mustOpen(t, path), mustKey(2))
	if err != nil || s.Truncated || s.Bytes[StreamStdout] != int64(len("before rotation")+len("after rotation")) {
		t.Fatalf("%+v %v", s, err)
	}
}

// TestRekeyDir reports each recording's outcome.
func TestRekeyDir(t *testing.T) {
	dir := t.TempDir()
	a, _ := markerRecording(t, "a", testKEK, 1)
	b, _ := markerRecording(t, "b", mustKey(2), 1)
	c, _ := markerRecording(t, "c", mustKey(3), 1)
	for name, data := range map[string][]byte{"a" + FileExt: a, "b" + FileExt: b, "c" + FileExt: c, "d" + FileExt: []byte("junk")} {
		writeTestFile(t, filepath.Join(dir, name), string(data))
	}
	got, err := RekeyDir(dir, testKEK, mustKey(2))
	if err != nil || len(got) != 4 {
		t.Fatalf("%v %v", got, err)
	}
	if got[0].Rekey != Rekeyed || got[1].Rekey != AlreadyNewKey || !errors.Is(got[2].Err, ErrWrongKey) || !errors.Is(got[3].Err, ErrCorrupt) {
		t.Fatalf("%+v", got)
	}
}
