package recording

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sampleRecording writes a small session: pty 100x30, output with a
// multi-byte character cut across frames, invalid UTF-8, a resize,
// input, and a trailer unless truncated.
func sampleRecording(t testing.TB, truncated bool) []byte {
	t.Helper()
	w, path := newTestWriter(t, Options{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Event(1, Event{Type: EventPTY, Term: "xterm-256color", Cols: 100, Rows: 30}))
	must(w.Resize(1, 100, 30))
	must(w.Event(1, Event{Type: EventShell}))
	must(w.Data(1, StreamStdout, []byte("héllo \xe2\x82")))    // "€" cut after 2 of 3 bytes
	must(w.Data(1, StreamStdout, []byte("\xac world\r\n")))    // …and completed here
	must(w.Data(1, StreamStderr, []byte("bad \xff byte\r\n"))) // not UTF-8
	must(w.Data(1, StreamStdin, []byte("secret-password\r")))  // only with Input
	must(w.Resize(1, 80, 24))
	must(w.Data(2, StreamStdout, []byte("other channel\r\n")))
	if truncated {
		// Simulate a crash: the batch reaches the file, no trailer.
		w.mu.Lock()
		must(w.queueLocked(chunkData))
		w.closed = true
		w.mu.Unlock()
		w.drains.Wait()
		w.f.Close()
	} else {
		must(w.Close(Trailer{Reason: "client-closed"}))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parseCast checks the asciicast v2 structure and returns header and
// events.
func parseCast(t *testing.T, data []byte) (map[string]any, [][]any) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() {
		t.Fatal("empty asciicast")
	}
	var hdr map[string]any
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil {
		t.Fatalf("header: %v", err)
	}
	var evs [][]any
	last := -1.0
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		ts, ok1 := ev[0].(float64)
		_, ok2 := ev[1].(string)
		s, ok3 := ev[2].(string)
		if !ok1 || !ok2 || !ok3 || ts < last || !utf8.ValidString(s) {
			t.Fatalf("bad event %v", ev)
		}
		last = ts
		evs = append(evs, ev)
	}
	return hdr, evs
}

func TestExportAsciicast(t *testing.T) {
	rec := sampleRecording(t, false)
	for _, tc := range []struct {
		name   string
		opts   AsciicastOptions
		width  float64
		term   any
		want   []string // "code:data" in order
		absent string
	}{
		{"all channels", AsciicastOptions{}, 100, "xterm-256color", []string{"o:héllo ", "o:€ world\r\n", "o:bad \ufffd byte\r\n", "r:80x24", "o:other channel\r\n"}, "secret-password"},
		{"one channel without a terminal", AsciicastOptions{Channel: 2}, 80, nil, []string{"o:other channel\r\n"}, "héllo"},
		{"with input", AsciicastOptions{Channel: 1, Input: true}, 100, "xterm-256color", []string{"o:héllo ", "o:€ world\r\n", "o:bad \ufffd byte\r\n", "i:secret-password\r", "r:80x24"}, "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := ExportAsciicast(&out, bytes.NewReader(rec), testKEK, tc.opts); err != nil {
				t.Fatal(err)
			}
			hdr, evs := parseCast(t, out.Bytes())
			if hdr["version"] != 2.0 || hdr["width"] != tc.width || hdr["timestamp"] != float64(testStart.Unix()) {
				t.Fatalf("header %v", hdr)
			}
			if env, _ := hdr["env"].(map[string]any); env["TERM"] != tc.term {
				t.Fatalf("header env %v", hdr["env"])
			}
			var got []string
			for _, ev := range evs {
				got = append(got, ev[1].(string)+":"+ev[2].(string))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("events\n got %q\nwant %q", got, tc.want)
			}
			if strings.Contains(out.String(), tc.absent) {
				t.Fatalf("export contains %q", tc.absent)
			}
		})
	}
	t.Run("truncated recording", func(t *testing.T) {
		var out bytes.Buffer
		err := ExportAsciicast(&out, bytes.NewReader(sampleRecording(t, true)), testKEK, AsciicastOptions{})
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("got %v", err)
		}
		if _, evs := parseCast(t, out.Bytes()); len(evs) != 5 {
			t.Fatalf("%d events exported from the truncated recording", len(evs))
		}
	})
	t.Run("not a recording", func(t *testing.T) {
		if err := ExportAsciicast(&bytes.Buffer{}, strings.NewReader("{\"version\": 2}\n"), testKEK, AsciicastOptions{}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestPlay(t *testing.T) {
	rec := sampleRecording(t, false)
	var slept []time.Duration
	sleep := func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}
	var out bytes.Buffer
	if err := Play(context.Background(), &out, bytes.NewReader(rec), testKEK, PlayOptions{Speed: 2, Channel: 1, Sleep: sleep}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "héllo \xe2\x82\xac world\r\nbad \xff byte\r\n" {
		t.Fatalf("played %q", got)
	}
	// The fake clock advances 250ms per frame: the first output frame is
	// the fourth (1s), the next two follow one frame apart; speed 2 halves.
	want := []time.Duration{500 * time.Millisecond, 125 * time.Millisecond, 125 * time.Millisecond}
	if len(slept) != len(want) {
		t.Fatalf("slept %v", slept)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Fatalf("slept %v, want %v", slept, want)
		}
	}
	t.Run("max idle", func(t *testing.T) {
		slept = nil
		if err := Play(context.Background(), &bytes.Buffer{}, bytes.NewReader(rec), testKEK, PlayOptions{MaxIdle: 100 * time.Millisecond, Sleep: sleep}); err != nil {
			t.Fatal(err)
		}
		for _, d := range slept {
			if d > 100*time.Millisecond {
				t.Fatalf("slept %v", slept)
			}
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := Play(ctx, &bytes.Buffer{}, bytes.NewReader(rec), testKEK, PlayOptions{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}

// FuzzReader feeds arbitrary bytes (seeded from testdata/fuzz/FuzzReader:
// recordings under testKEK, complete, cut and damaged) to every reader:
// no panic, no unbounded allocation, exactly one error class, and the
// keyless digest agrees with an authenticated read.
func FuzzReader(f *testing.F) {
	f.Add(sampleRecording(f, false))
	f.Add(sampleRecording(f, true))
	f.Add([]byte(Magic))
	f.Add([]byte(Magic + "\x00\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Summarize(bytes.NewReader(data), testKEK)
		if err == nil && s.Trailer == nil && !s.Truncated {
			t.Fatal("neither a trailer nor truncated")
		}
		res, err := VerifyReader(bytes.NewReader(data), testKEK)
		classes := 0
		for _, c := range []error{ErrCorrupt, ErrTampered, ErrTruncated, ErrWrongKey} {
			if errors.Is(err, c) {
				classes++
			}
		}
		if err != nil && classes != 1 {
			t.Fatalf("error %v is in %d classes", err, classes)
		}
		if err == nil {
			if d, _, derr := Digest(bytes.NewReader(data)); derr != nil || d != res.Digest {
				t.Fatalf("keyless digest %x (%v), authenticated %x", d, derr, res.Digest)
			}
		}
		ExportAsciicast(&bytes.Buffer{}, bytes.NewReader(data), testKEK, AsciicastOptions{Input: true})
		Play(context.Background(), io.Discard, bytes.NewReader(data), testKEK, PlayOptions{Sleep: noSleep})
	})
}
