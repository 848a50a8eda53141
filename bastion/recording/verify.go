package recording

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// VerifyResult describes a recording that was read to its end.
type VerifyResult struct {
	SessionID string
	KeyID     KeyID
	// Chunks counts the whole chunks that authenticated (all of them on
	// success; on ErrTruncated, those before the cut).
	Chunks  int
	Digest  [32]byte // zero unless the recording is complete
	Trailer *Trailer // nil unless the recording is complete
}

// Verify authenticates every chunk of the recording at path with key, in
// order, to its end chunk. The error wraps ErrTampered (modified,
// reordered, deleted or spliced chunks, or a modified header),
// ErrTruncated (incomplete: no end chunk, e.g. the bastion was killed;
// "ended without a final chunk after N chunks"), ErrWrongKey (a
// *KeyMismatchError naming the recording's key IDs) or ErrCorrupt (not a
// recording). The result is non-nil whenever the header opened.
func Verify(path string, key *Key) (*VerifyResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	defer f.Close()
	return VerifyReader(f, key)
}

// VerifyReader is Verify on an open recording.
func VerifyReader(r io.Reader, key *Key) (*VerifyResult, error) {
	rd, err := NewReader(r, key)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{SessionID: rd.Meta.SessionID, KeyID: rd.KeyID()}
	for {
		_, err := rd.Next()
		res.Chunks = rd.Chunks()
		if err == io.EOF {
			t, _ := rd.Trailer()
			res.Trailer = &t
			res.Digest, _ = rd.Digest()
			return res, nil
		}
		if err != nil {
			return res, err
		}
	}
}

// DirEntry is one recording's outcome in VerifyDir or RekeyDir.
type DirEntry struct {
	Path   string
	Result *VerifyResult // VerifyDir only
	Rekey  RekeyOutcome  // RekeyDir only
	Err    error
}

// VerifyDir verifies every recording (*.pcrec) in dir, in name order.
// The error is only for a directory that cannot be listed; each
// recording's own problem is in its entry.
func VerifyDir(dir string, key *Key) ([]DirEntry, error) {
	paths, err := listRecordings(dir)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(paths))
	for _, p := range paths {
		res, err := Verify(p, key)
		out = append(out, DirEntry{Path: p, Result: res, Err: err})
	}
	return out, nil
}

// listRecordings returns dir's regular *.pcrec files, sorted.
func listRecordings(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), FileExt) && !strings.HasPrefix(e.Name(), ".") {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(paths)
	return paths, nil
}

// Digest computes a recording's chain value without any key, checking
// only the structure (sequence numbers, types, lengths, the end chunk).
// It equals Writer.Digest for the untouched file. Compared with a digest
// kept elsewhere (an audit event signed into the trail) it tells a
// recording cut at a chunk boundary, or replaced by another, from the
// crash-cut one the file alone cannot tell apart; it covers the chunks'
// tags, not their ciphertext, so only Verify (with the key) proves the
// content. It authenticates nothing by itself.
func Digest(r io.Reader) (d [32]byte, chunks int, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := readHeader(br)
	if err != nil {
		return d, 0, err
	}
	c, err := newChain(h, nil)
	if err != nil {
		return d, 0, err
	}
	cr := chunkReader{r: br, c: c}
	for {
		_, _, err := cr.next()
		if err == io.EOF {
			return c.sum, cr.chunks, nil
		}
		if err != nil {
			return d, cr.chunks, err
		}
	}
}
