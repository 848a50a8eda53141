package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// FuzzScan runs Scan over a trail file of arbitrary content (a crash, a
// bad disk, an operator's editor) and checks it against a model of its
// contract: every complete line, in order, that decodes is delivered
// (records the log writes itself and events outside [since, until)
// excepted), blank lines are skipped, a torn last line ends the file
// quietly, and the first complete line that does not decode is an error
// naming the file, short and printable (it is logged), never a skip.
// Seeds are in testdata/fuzz/FuzzScan/ and replay on every `go test`.
func FuzzScan(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, since, until int64) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "gw-1.jsonl"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		var s, u time.Time
		if since != 0 {
			s = time.Unix(0, since)
		}
		if until != 0 {
			u = time.Unix(0, until)
		}
		var got []Event
		err := Scan(context.Background(), dir, s, u, func(e *Event) error {
			got = append(got, *e)
			return nil
		})
		want, wantErr := scanModel(data, s, u)
		if (err != nil) != wantErr {
			t.Fatalf("Scan error %v, model expects an error: %v", err, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Scan delivered %d events, model %d:\n got  %+v\n want %+v", len(got), len(want), got, want)
		}
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, "gw-1.jsonl") {
				t.Fatalf("error does not name the file: %q", msg)
			}
			if len(msg) > 512 || !utf8.ValidString(msg) || strings.ContainsFunc(msg, unicode.IsControl) {
				t.Fatalf("error not short and printable (%d bytes): %.300q", len(msg), msg)
			}
		}

		// Search reads the same lines; it must agree on failure and
		// never return more than it was asked for.
		evs, _, serr := Search(context.Background(), dir, Query{Since: s, Until: u, Limit: 3})
		if !s.IsZero() && !u.IsZero() && !s.Before(u) {
			if serr == nil {
				t.Fatalf("Search accepted since %v ≥ until %v", s, u)
			}
			return
		}
		if (serr != nil) != wantErr || len(evs) > 3 || len(evs) > len(want) {
			t.Fatalf("Search: %d events, error %v; Scan: %d events, error %v", len(evs), serr, len(want), err)
		}
	})
}

// scanModel is Scan's contract over one file's bytes.
func scanModel(data []byte, since, until time.Time) ([]Event, bool) {
	var out []Event
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return out, len(data) > maxLineLen // torn last line
		}
		line := data[:i+1]
		data = data[i+1:]
		if len(line) > maxLineLen {
			return out, true
		}
		body := bytes.TrimSpace(line)
		if len(body) == 0 {
			continue
		}
		var e Event
		if json.Unmarshal(body, &e) != nil {
			return out, true
		}
		if reservedType(e.Type) || !since.IsZero() && e.Time.Before(since) || !until.IsZero() && !e.Time.Before(until) {
			continue
		}
		out = append(out, e)
	}
	return out, false
}
