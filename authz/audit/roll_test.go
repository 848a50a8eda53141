package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock is an injected clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// emitDays writes perDay events on each of days consecutive days (the
// clock advances through each day), syncing after every event.
func emitDays(t *testing.T, l *FileLog, clock *testClock, days, perDay int) {
	t.Helper()
	for d := range days {
		for i := range perDay {
			l.Emit(context.Background(), Event{Type: TypeDecision, UserID: fmt.Sprintf("user-%d-%d", d, i), Decision: Allow})
			if err := l.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			clock.Add(time.Minute)
		}
		// The next day starts after midnight, whatever perDay was.
		next := clock.Now().Truncate(24 * time.Hour).Add(24*time.Hour + time.Minute)
		clock.Add(next.Sub(clock.Now()))
	}
}

// trailFiles lists dir's *.jsonl names, sorted by name.
func trailFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range m {
		out = append(out, filepath.Base(p))
	}
	slices.Sort(out)
	return out
}

// TestRollDaily: over several simulated days the active file rolls at the
// first commit after each midnight; rolled names sort by time and seq
// before the active file, each file starts where the previous one ended,
// Verify reads one chain over all of them, and a reopened log continues it.
func TestRollDaily(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t)
	clock := newTestClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	cfg := FileConfig{Dir: dir, Instance: "gw", SigningKey: key, CheckpointEvery: 4, FlushInterval: time.Hour}
	l, err := OpenFile(cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	emitDays(t, l, clock, 4, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := trailFiles(t, dir)
	want := []string{
		"audit-gw.20260301T090000Z.00000000000000000001.jsonl",
		"audit-gw.20260302T000100Z.",
		"audit-gw.20260303T000100Z.",
		"audit-gw.jsonl",
	}
	if len(files) != 4 {
		t.Fatalf("files %v, want 3 rolled and the active one", files)
	}
	for i, w := range want {
		if !strings.HasPrefix(files[i], w) {
			t.Errorf("file %d is %s, want %s…", i, files[i], w)
		}
	}
	// Each rolled file's name names its first record; the next file starts
	// right after its last.
	var next uint64 = 1
	for _, name := range files {
		n := len(readRecords(t, filepath.Join(dir, name)))
		first, last := recordSeq(t, filepath.Join(dir, name), 0), recordSeq(t, filepath.Join(dir, name), n-1)
		if first != next {
			t.Errorf("%s starts at seq %d, want %d", name, first, next)
		}
		if s, ok := parseSegmentName("audit-gw", name); ok && s.firstSeq != first {
			t.Errorf("%s: name says first seq %d, file %d", name, s.firstSeq, first)
		}
		next = last + 1
	}
	rep := mustVerify(t, dir)
	if got := rep.Chains[0].Files; !slices.Equal(got, files) {
		t.Errorf("verify read %v, want %v", got, files)
	}

	// Reopen on the same day: the active file keeps its start, and the
	// chain continues in it.
	l, err = OpenFile(cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	emitDays(t, l, clock, 2, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(trailFiles(t, dir)); n != 6 {
		t.Errorf("after two more days: %d files %v, want 6", n, trailFiles(t, dir))
	}
	mustVerify(t, dir)
}

// recordSeq is the seq of line i of the file at path.
func recordSeq(t *testing.T, path string, i int) uint64 {
	t.Helper()
	lines := fileLines(t, path)
	var r record
	var p parsed
	if err := parseRecord([]byte(strings.TrimSuffix(lines[i], "\n")), &r, &p); err != nil {
		t.Fatalf("%s line %d: %v", path, i+1, err)
	}
	return r.seq
}

// TestRollSize: a size limit rolls within a day; records never span files.
func TestRollSize(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw", SigningKey: testKey(t), RollSize: 2000, FlushInterval: time.Hour},
		Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		l.Emit(context.Background(), Event{Type: TypeDecision, UserID: fmt.Sprintf("user-%03d", i), Decision: Allow})
		if i%3 == 0 {
			if err := l.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files := trailFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("files %v: want several", files)
	}
	for _, f := range files[:len(files)-1] {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		// A file may exceed the limit only by the one batch that started it.
		if fi.Size() > 2000+1000 {
			t.Errorf("%s is %d bytes", f, fi.Size())
		}
		readRecords(t, filepath.Join(dir, f)) // whole lines only
	}
	rep := mustVerify(t, dir)
	if rep.Chains[0].Records != 61 { // 60 events and the final checkpoint
		t.Errorf("verify read %d records:\n%s", rep.Chains[0].Records, rep)
	}
}

// TestRollRecovery: openTrail continues the chain from the newest rolled
// file when a crash left the active file missing, empty or holding only a
// torn line, and accepts a head marker that names the last record of the
// rolled file while the active file holds newer records (the head is
// fsynced at each roll, not at each commit).
func TestRollRecovery(t *testing.T) {
	// rollActive renames the active file as a roll does.
	rollActive := func(t *testing.T, dir, active string) {
		s := segmentName("gw", time.Date(2026, 3, 2, 0, 1, 0, 0, time.UTC), recordSeq(t, active, 0))
		if err := os.Rename(active, filepath.Join(dir, s)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		crash func(t *testing.T, dir, active, rolled string, cfg FileConfig)
	}{
		{"active file missing (crash after the rename)", func(t *testing.T, dir, active, rolled string, cfg FileConfig) {
			rollActive(t, dir, active)
		}},
		{"active file empty", func(t *testing.T, dir, active, rolled string, cfg FileConfig) {
			rollActive(t, dir, active)
			if err := os.WriteFile(active, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"active file holds a torn line", func(t *testing.T, dir, active, rolled string, cfg FileConfig) {
			rollActive(t, dir, active)
			if err := os.WriteFile(active, []byte(`{"time":"2026-03-02T00:01:00Z","type":"deci`), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"head marker at the end of the rolled file", func(t *testing.T, dir, active, rolled string, cfg FileConfig) {
			lines := fileLines(t, rolled)
			last := len(lines) - 1
			writeHead(t, dir, "gw", cfg.SigningKey, recordSeq(t, rolled, last), lineHash(lines[last]), false)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newTestClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
			cfg := FileConfig{Dir: dir, Instance: "gw", SigningKey: testKey(t), FlushInterval: time.Hour}
			l, err := OpenFile(cfg, Options{Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			emitDays(t, l, clock, 2, 3)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			files := trailFiles(t, dir)
			if len(files) != 2 {
				t.Fatalf("files %v", files)
			}
			tc.crash(t, dir, filepath.Join(dir, files[1]), filepath.Join(dir, files[0]), cfg)

			l, err = OpenFile(cfg, Options{Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			l.Emit(context.Background(), Event{Type: TypeDecision, UserID: "after", Decision: Allow})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			rep := mustVerify(t, dir)
			if !strings.Contains(readAll(t, dir), `"user_id":"after"`) {
				t.Fatalf("new record not written:\n%s", rep)
			}
		})
	}
}

// readAll concatenates every trail file of dir.
func readAll(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, f := range trailFiles(t, dir) {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

// TestVerifyRolledFiles: Verify reads the files of one instance as one
// chain and names a file deleted from the middle, or a line cut from the
// end of a rolled file.
func TestVerifyRolledFiles(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string, files []string) uint64 // returns the seq Verify must name
	}{
		{"middle file deleted", func(t *testing.T, dir string, files []string) uint64 {
			if err := os.Remove(filepath.Join(dir, files[2])); err != nil {
				t.Fatal(err)
			}
			return recordSeq(t, filepath.Join(dir, files[3]), 0)
		}},
		{"last line of a rolled file cut", func(t *testing.T, dir string, files []string) uint64 {
			p := filepath.Join(dir, files[1])
			lines := fileLines(t, p)
			writeLines(t, p, lines[:len(lines)-1])
			return recordSeq(t, filepath.Join(dir, files[2]), 0)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newTestClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
			l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw", SigningKey: testKey(t), FlushInterval: time.Hour}, Options{Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			emitDays(t, l, clock, 5, 3)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			seq := tc.damage(t, dir, trailFiles(t, dir))
			rep, err := Verify(dir, nil, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.Problems[0].Kind != ProblemDeleted || rep.Problems[0].Seq != seq {
				t.Fatalf("want records deleted before seq %d:\n%s", seq, rep)
			}
		})
	}
}
