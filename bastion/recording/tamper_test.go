package recording

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// markerRecording writes a recording whose data chunks each hold one
// output frame "marker-<i>" (BufferSize is below a frame), so a test can
// see exactly which chunks a reader let through.
func markerRecording(t testing.TB, id string, key *Key, n int) ([]byte, [32]byte) {
	t.Helper()
	dir := t.TempDir()
	w, err := Create(dir, testMeta(id), Options{Key: key, BufferSize: 16, Now: (&fakeClock{t: testStart, step: 1e6}).Now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Data(1, StreamStdout, []byte(marker(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(Trailer{Reason: "client-closed"}); err != nil {
		t.Fatal(err)
	}
	d, ok := w.Digest()
	if !ok {
		t.Fatal("no digest after Close")
	}
	b, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	return b, d
}

func marker(i int) string { return fmt.Sprintf("marker-%02d;", i) }

// spans returns each chunk's [start, end) in a recording.
func spans(t testing.TB, b []byte) [][2]int {
	t.Helper()
	var out [][2]int
	for off := HeaderSize; off < len(b); {
		end := off + chunkHeaderSize + int(binary.BigEndian.Uint32(b[off+9:]))
		out = append(out, [2]int{off, end})
		off = end
	}
	return out
}

func flip(off int) func(t testing.TB, b []byte) []byte {
	return func(t testing.TB, b []byte) []byte {
		b[off] ^= 0x01
		return b
	}
}

// TestTamper: every kind of change to a recording is detected by the
// reader with the right class of error, and nothing of the first bad
// chunk (or after it) reaches the output.
func TestTamper(t *testing.T) {
	const n = 6 // data chunks 1..6 hold marker-00..05; chunk 7 is the end
	orig, digest := markerRecording(t, "s1", testKEK, n)
	other, _ := markerRecording(t, "s2", testKEK, n)
	sameID, _ := markerRecording(t, "s1", testKEK, n) // same session ID, other data key
	sp := spans(t, orig)
	if len(sp) != n+2 {
		t.Fatalf("%d chunks, want %d", len(sp), n+2)
	}
	chunk := func(b []byte, i int) []byte { s := spans(t, b)[i]; return slices.Clone(b[s[0]:s[1]]) }
	splice := func(b []byte, i int, c []byte) []byte {
		s := spans(t, b)[i]
		return slices.Concat(b[:s[0]], c, b[s[1]:])
	}
	for _, tc := range []struct {
		name   string
		mutate func(t testing.TB, b []byte) []byte
		key    *Key
		want   error
		msg    string // in the error
		shown  int    // markers that may be shown (all before the damage)
	}{
		{"untouched", nil, nil, nil, "", n},
		{"flip byte in magic", flip(2), nil, ErrCorrupt, "bad magic", 0},
		{"flip byte in version", flip(offVersion + 1), nil, ErrCorrupt, "unsupported format version", 0},
		{"flip byte in flags", flip(offFlags + 1), nil, ErrTampered, "key slot 0", 0},
		{"flip byte in nonce prefix", flip(offNoncePrefix), nil, ErrTampered, "header", 0},
		{"flip byte in recording ID", flip(offID), nil, ErrTampered, "header", 0},
		{"flip byte in slot key ID", flip(slotOffset(0) + 3), nil, ErrTampered, "key ID was modified", 0},
		{"flip byte in wrapped key", flip(slotOffset(0) + 40), nil, ErrTampered, "does not open", 0},
		{"flip byte in metadata chunk", flip(sp[0][1] - 1), nil, ErrTampered, "chunk 0 does not authenticate", 0},
		{"flip byte in chunk ciphertext", flip(sp[3][0] + chunkHeaderSize + 2), nil, ErrTampered, "chunk 3 does not authenticate", 2},
		{"flip byte in chunk tag", flip(sp[3][1] - 1), nil, ErrTampered, "chunk 3 does not authenticate", 2},
		{"flip chunk type", flip(sp[3][0]), nil, ErrTampered, "chunk 3", 2},
		{"flip sequence number", flip(sp[3][0] + 8), nil, ErrTampered, "chunk 3 has sequence number 2", 2},
		{"flip chunk length", flip(sp[3][0] + 12), nil, ErrTampered, "chunk 3 does not authenticate", 2},
		{"flip high length byte", flip(sp[3][0] + 9), nil, ErrTampered, "out of bounds", 2},
		{"flip byte in end chunk", flip(sp[n+1][1] - 1), nil, ErrTampered, fmt.Sprintf("chunk %d does not authenticate", n+1), n},
		{"swap chunks", func(t testing.TB, b []byte) []byte {
			c2, c3 := chunk(b, 2), chunk(b, 3)
			return slices.Concat(b[:sp[2][0]], c3, c2, b[sp[3][1]:])
		}, nil, ErrTampered, "chunk 2 has sequence number 3", 1},
		{"swap chunks, sequence numbers fixed up", func(t testing.TB, b []byte) []byte {
			c2, c3 := chunk(b, 2), chunk(b, 3)
			copy(c2[1:9], b[sp[3][0]+1:sp[3][0]+9])
			copy(c3[1:9], b[sp[2][0]+1:sp[2][0]+9])
			return slices.Concat(b[:sp[2][0]], c3, c2, b[sp[3][1]:])
		}, nil, ErrTampered, "chunk 2 does not authenticate", 1},
		{"delete chunk", func(t testing.TB, b []byte) []byte {
			return slices.Concat(b[:sp[2][0]], b[sp[2][1]:])
		}, nil, ErrTampered, "chunk 2 has sequence number 3", 1},
		{"duplicate chunk", func(t testing.TB, b []byte) []byte {
			return slices.Concat(b[:sp[3][0]], chunk(b, 2), b[sp[3][0]:])
		}, nil, ErrTampered, "chunk 3 has sequence number 2", 2},
		{"splice chunk from another recording", func(t testing.TB, b []byte) []byte {
			return splice(b, 3, chunk(other, 3))
		}, nil, ErrTampered, "chunk 3 does not authenticate", 2},
		{"splice chunk from a recording with the same session ID", func(t testing.TB, b []byte) []byte {
			return splice(b, 3, chunk(sameID, 3))
		}, nil, ErrTampered, "chunk 3 does not authenticate", 2},
		{"another recording's header", func(t testing.TB, b []byte) []byte {
			return slices.Concat(other[:HeaderSize], b[HeaderSize:])
		}, nil, ErrTampered, "chunk 0 does not authenticate", 0},
		{"end chunk replaced by a data chunk", func(t testing.TB, b []byte) []byte {
			return b[:sp[n][1]]
		}, nil, ErrTruncated, fmt.Sprintf("ended without a final chunk after %d chunks", n+1), n},
		{"truncated inside a chunk", func(t testing.TB, b []byte) []byte {
			return b[:sp[4][0]+20]
		}, nil, ErrTruncated, "ended inside chunk 4, after 4 whole chunks", 3},
		{"truncated inside the header", func(t testing.TB, b []byte) []byte {
			return b[:HeaderSize-1]
		}, nil, ErrTruncated, "inside the header", 0},
		{"data after the end chunk", func(t testing.TB, b []byte) []byte {
			return append(b, 0)
		}, nil, ErrTampered, "data after the end chunk", n},
		{"a second end chunk appended", func(t testing.TB, b []byte) []byte {
			return append(b, chunk(b, n+1)...)
		}, nil, ErrTampered, "data after the end chunk", n},
		{"wrong key", nil, mustKey(2), ErrWrongKey, "encrypted with key " + testKEK.ID().String() + ", not the given key " + mustKey(2).ID().String(), 0},
		{"format 1 file", func(t testing.TB, b []byte) []byte {
			return []byte(legacyMagic + "\x02{}")
		}, nil, ErrCorrupt, "unencrypted format-1", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := slices.Clone(orig)
			if tc.mutate != nil {
				b = tc.mutate(t, b)
			}
			key := cmpKey(tc.key)
			res, err := VerifyReader(bytes.NewReader(b), key)
			if tc.want == nil {
				if err != nil || res.Digest != digest || res.Chunks != n+2 || res.Trailer.Reason != "client-closed" {
					t.Fatalf("untouched: %+v %v", res, err)
				}
			} else {
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %v, want %v containing %q", err, tc.want, tc.msg)
				}
				for _, other := range []error{ErrCorrupt, ErrTampered, ErrTruncated, ErrWrongKey} {
					if other != tc.want && errors.Is(err, other) {
						t.Fatalf("error %v is also %v", err, other)
					}
				}
			}
			// Play shows the markers of the chunks before the damage,
			// nothing of the damaged chunk or after it.
			var out bytes.Buffer
			perr := Play(context.Background(), &out, bytes.NewReader(b), key, PlayOptions{Sleep: noSleep})
			if (perr == nil) != (tc.want == nil) || (tc.want != nil && !errors.Is(perr, tc.want)) {
				t.Fatalf("play: %v", perr)
			}
			want := ""
			for i := range tc.shown {
				want += marker(i)
			}
			if out.String() != want {
				t.Fatalf("play showed %q, want %q", out.String(), want)
			}
			// The keyless digest changes with any change to the chunks'
			// headers, tags or order (not with the key slots, which
			// rotation rewrites; a ciphertext byte is Verify's job).
			keyless := !strings.Contains(tc.name, "header") && !strings.Contains(tc.name, "slot") && !strings.Contains(tc.name, "wrapped") && !strings.Contains(tc.name, "ciphertext")
			if d, _, derr := Digest(bytes.NewReader(b)); derr == nil && d == digest && tc.want != nil && tc.want != ErrWrongKey && keyless {
				t.Fatal("digest unchanged by the change")
			}
		})
	}
}

func cmpKey(k *Key) *Key {
	if k == nil {
		return testKEK
	}
	return k
}

func noSleep(context.Context, time.Duration) error { return nil }

// TestDigest: Writer.Digest, the keyless Digest and Verify agree, and
// the keyless Digest refuses an incomplete recording.
func TestDigest(t *testing.T) {
	b, d := markerRecording(t, "s1", testKEK, 3)
	got, chunks, err := Digest(bytes.NewReader(b))
	if err != nil || got != d || chunks != 5 {
		t.Fatalf("digest %x (%d chunks, %v), writer said %x", got, chunks, err, d)
	}
	res, err := VerifyReader(bytes.NewReader(b), testKEK)
	if err != nil || res.Digest != d {
		t.Fatalf("verify %+v %v", res, err)
	}
	if _, _, err := Digest(bytes.NewReader(b[:len(b)-1])); !errors.Is(err, ErrTruncated) {
		t.Fatalf("cut: %v", err)
	}
}

// TestKey: key IDs are stable and distinct, and bad keys are refused.
func TestKey(t *testing.T) {
	if mustKey(1).ID() != testKEK.ID() || mustKey(1).ID() == mustKey(2).ID() {
		t.Fatal("key IDs")
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(testKEK.ID().String()) || strings.Contains(fmt.Sprint(testKEK), "\x01") {
		t.Fatalf("key prints as %v", testKEK)
	}
	for _, raw := range [][]byte{nil, make([]byte, 31), make([]byte, 33), make([]byte, 32)} {
		if _, err := NewKey(raw); err == nil {
			t.Errorf("NewKey(%d bytes) accepted", len(raw))
		}
	}
	if _, err := Create(t.TempDir(), testMeta("s"), Options{}); err == nil {
		t.Fatal("Create without a key")
	}
	if _, err := NewReader(bytes.NewReader(nil), nil); err == nil {
		t.Fatal("NewReader without a key")
	}
}

// TestVerifyDir checks each recording of a directory on its own.
func TestVerifyDir(t *testing.T) {
	dir := t.TempDir()
	good, _ := markerRecording(t, "good", testKEK, 2)
	bad := slices.Clone(good)
	bad[len(bad)-1] ^= 1
	for name, b := range map[string][]byte{"a-good" + FileExt: good, "b-bad" + FileExt: bad, "c-cut" + FileExt: good[:len(good)-40], "notes.txt": []byte("x")} {
		writeTestFile(t, filepath.Join(dir, name), string(b))
	}
	got, err := VerifyDir(dir, testKEK)
	if err != nil || len(got) != 3 {
		t.Fatalf("%v %v", got, err)
	}
	if got[0].Err != nil || !errors.Is(got[1].Err, ErrTampered) || !errors.Is(got[2].Err, ErrTruncated) || got[2].Result == nil || got[2].Result.Chunks != 3 {
		t.Fatalf("%+v / %v / %v", got[0], got[1].Err, got[2].Err)
	}
}
