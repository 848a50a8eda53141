package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestScanAndSearch(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for _, inst := range []string{"gw-1", "gw-2"} {
		l := openTest(t, FileConfig{Dir: dir, Instance: inst})
		for i := range 50 {
			ev := Event{Time: base.Add(time.Duration(i) * time.Minute), Type: TypeDecision, UserID: "u" + inst, Decision: Allow, Role: "eng"}
			if inst == "gw-2" {
				ev.Time = ev.Time.Add(30 * time.Second) // interleaved in time
			}
			l.Emit(context.Background(), ev)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := Scan(context.Background(), dir, time.Time{}, time.Time{}, func(e *Event) error {
		if reservedType(e.Type) {
			t.Fatalf("reserved record %q passed to fn", e.Type)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("scanned %d events, want 100", n)
	}

	tests := []struct {
		name     string
		q        Query
		want     int
		more     bool
		lastUser string
	}{
		{"all", Query{}, 100, false, "ugw-2"},
		{"one user", Query{UserID: "ugw-1"}, 50, false, "ugw-1"},
		{"limit keeps newest", Query{Limit: 3}, 3, true, "ugw-2"},
		{"window", Query{Since: base.Add(10 * time.Minute), Until: base.Add(20 * time.Minute)}, 20, false, "ugw-2"},
		{"no match", Query{Type: "nope"}, 0, false, ""},
		{"prefix", Query{TypePrefix: "deci", Limit: 10}, 10, true, "ugw-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, more, err := Search(context.Background(), dir, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want || more != tc.more {
				t.Fatalf("got %d events (more=%v), want %d (more=%v)", len(got), more, tc.want, tc.more)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Time.Before(got[i-1].Time) {
					t.Fatalf("results not in time order at %d", i)
				}
			}
			if tc.want > 0 && got[len(got)-1].UserID != tc.lastUser {
				t.Fatalf("newest event is %s's, want %s's", got[len(got)-1].UserID, tc.lastUser)
			}
			if tc.want > 0 && got[0].Role != "eng" {
				t.Fatalf("role not kept: %+v", got[0])
			}
		})
	}
}

func TestSearchRejectsHostileQueries(t *testing.T) {
	for name, q := range map[string]Query{
		"control char":  {UserID: "a\nb"},
		"huge field":    {Type: string(make([]byte, 600))},
		"limit too big": {Limit: 10001},
		"negative":      {Limit: -1},
		"inverted":      {Since: time.Unix(10, 0), Until: time.Unix(5, 0)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Search(context.Background(), t.TempDir(), q); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestScanCorruptLineIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "audit-x.jsonl"), []byte("{\"type\":\"a\"}\nnot json\n{\"type\":\"torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Scan(context.Background(), dir, time.Time{}, time.Time{}, func(*Event) error { return nil })
	if err == nil {
		t.Fatal("a line that does not decode was skipped silently")
	}
	// A torn last line alone (being written) is not an error.
	if err := os.WriteFile(filepath.Join(dir, "audit-x.jsonl"), []byte("{\"type\":\"a\"}\n{\"type\":\"torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := Scan(context.Background(), dir, time.Time{}, time.Time{}, func(*Event) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("n=%d err=%v", n, err)
	}
}
