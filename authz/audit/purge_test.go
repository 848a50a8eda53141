package audit

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
)

func TestRetentionConfig(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name  string
		cfg   RetentionConfig
		paths []string // fields with an error
	}{
		{"defaults", RetentionConfig{}, nil},
		{"long", RetentionConfig{Audit: 9600 * time.Hour, Recordings: 4000 * time.Hour}, nil},
		{"exactly 90 days", RetentionConfig{Audit: 90 * day, Recordings: 90 * day}, nil},
		{"short audit", RetentionConfig{Audit: 30 * day}, []string{"audit"}},
		{"short recordings", RetentionConfig{Recordings: 89 * day}, []string{"recordings"}},
		{"short both, forced", RetentionConfig{Audit: 7 * day, Recordings: 24 * time.Hour, ForceShort: true}, nil},
		{"below an hour, forced", RetentionConfig{Audit: time.Minute, ForceShort: true}, []string{"audit"}},
		{"negative", RetentionConfig{Audit: -day, Recordings: -day, ForceShort: true}, []string{"audit", "recordings"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range authz.Flatten(tc.cfg.Validate()) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a field error: %v", e)
				}
				got = append(got, fe.Path)
			}
			if !slices.Equal(got, tc.paths) {
				t.Errorf("errors on %v, want %v", got, tc.paths)
			}
		})
	}
	if c := (RetentionConfig{}).WithDefaults(); c.Audit != 400*day || c.Recordings != 90*day {
		t.Errorf("defaults %+v", c)
	}
}

// purgeTrail writes days of events (a trail file per day) and returns the
// open log, its clock and directory.
func purgeTrail(t *testing.T, days int) (*FileLog, *testClock, string, FileConfig) {
	t.Helper()
	dir := t.TempDir()
	clock := newTestClock(time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC))
	cfg := FileConfig{Dir: dir, Instance: "gw", SigningKey: testKey(t), FlushInterval: time.Hour}
	l, err := OpenFile(cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	emitDays(t, l, clock, days, 4)
	return l, clock, dir, cfg
}

var shortRetention = RetentionConfig{Audit: 10 * 24 * time.Hour, Recordings: 5 * 24 * time.Hour, ForceShort: true}

// purgeRecords returns the purge records in the trail.
func purgeRecords(t *testing.T, dir string) []Event {
	t.Helper()
	var out []Event
	for _, f := range trailFiles(t, dir) {
		for _, e := range readRecords(t, filepath.Join(dir, f)) {
			if e.Type == TypePurge {
				out = append(out, e)
			}
		}
	}
	return out
}

// TestPurgeKeepsTrailVerifiable: events over 30 simulated days, purged
// with a 10-day retention: the expired files go, signed purge records
// account for them, and verify still passes — after a second purge too.
// Deleting a file without a purge is named as a deletion.
func TestPurgeKeepsTrailVerifiable(t *testing.T) {
	l, clock, dir, _ := purgeTrail(t, 30)
	before := trailFiles(t, dir)
	if len(before) != 30 {
		t.Fatalf("%d files, want 30", len(before))
	}
	ctx := context.Background()

	dry, err := l.Purge(ctx, PurgeOptions{Retention: shortRetention, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || len(dry.Files) != 20 || !slices.Equal(trailFiles(t, dir), before) || len(purgeRecords(t, dir)) != 0 {
		t.Fatalf("dry run: %d files listed (want 20), files now %d, %d purge records", len(dry.Files), len(trailFiles(t, dir)), len(purgeRecords(t, dir)))
	}

	res, err := l.Purge(ctx, PurgeOptions{Retention: shortRetention, Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	// The clock is just past midnight after day 30; files whose newest
	// record is older than 10 days go: days 1..20.
	if len(res.Files) != 20 || res.Files[0].Name != before[0] || res.Files[19].Name != before[19] {
		t.Fatalf("purged %+v", res.Files)
	}
	for _, f := range res.Files {
		if !f.Newest.Before(res.AuditCutoff) {
			t.Errorf("%s newest %v is not before the cutoff %v", f.Name, f.Newest, res.AuditCutoff)
		}
	}
	// The purge records went into a new day's file: the active file of
	// day 30 rolled first.
	after := trailFiles(t, dir)
	if len(after) != 11 || !slices.Equal(after[:9], before[20:29]) {
		t.Fatalf("files after purge %v, want %v, day 30 rolled, and the active file", after, before[20:29])
	}
	if first := recordSeq(t, filepath.Join(dir, after[0]), 0); first != res.ThroughSeq+1 {
		t.Errorf("the trail now starts at seq %d, purged through %d", first, res.ThroughSeq)
	}
	recs := purgeRecords(t, dir)
	if len(recs) != 21 { // one per file and the summary
		t.Fatalf("%d purge records", len(recs))
	}
	sum := recs[len(recs)-1]
	if sum.Actor != "alice" || sum.Attrs["files"] != "20" || sum.Attrs["through_seq"] == "" ||
		sum.Attrs["records"] == "" || !strings.Contains(sum.Attrs["file_names"], before[0]) {
		t.Errorf("summary record %+v", sum)
	}
	rep := mustVerify(t, dir)
	if !strings.Contains(rep.String(), "purged by retention") {
		t.Errorf("report does not mention the purge:\n%s", rep)
	}

	// Ten more days, a second purge.
	emitDays(t, l, clock, 10, 4)
	res2, err := l.Purge(ctx, PurgeOptions{Retention: shortRetention})
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Files) != 10 || res2.Files[0].Name != before[20] {
		t.Fatalf("second purge %+v", res2.Files)
	}
	mustVerify(t, dir)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}

	// Delete the oldest remaining file by hand: verify names the gap.
	files := trailFiles(t, dir)
	gone := filepath.Join(dir, files[0])
	firstGone := recordSeq(t, gone, 0)
	lines := fileLines(t, gone)
	lastGone := recordSeq(t, gone, len(lines)-1)
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(dir, nil, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Problems[0].Kind != ProblemDeleted || rep.Problems[0].Seq != lastGone+1 {
		t.Fatalf("hand deletion not named:\n%s", rep)
	}
	if want := "records seq " + itoa(firstGone) + ".." + itoa(lastGone) + " are missing"; !strings.Contains(rep.Problems[0].Detail, want) {
		t.Errorf("problem %q does not say %q", rep.Problems[0].Detail, want)
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// TestPurgeRefusesGap: a purge never covers up a gap someone else made.
func TestPurgeRefusesGap(t *testing.T) {
	l, _, dir, _ := purgeTrail(t, 20)
	files := trailFiles(t, dir)
	if err := os.Remove(filepath.Join(dir, files[3])); err != nil {
		t.Fatal(err)
	}
	_, err := l.Purge(context.Background(), PurgeOptions{Retention: shortRetention})
	if err == nil || !strings.Contains(err.Error(), "do not link up") {
		t.Fatalf("purge over a gap: %v", err)
	}
	if got := trailFiles(t, dir); len(got) != len(files)-1 || len(purgeRecords(t, dir)) != 0 {
		t.Fatalf("purge deleted or wrote something: %v", got)
	}
}

// TestPurgeInterrupted: a purge that stops after deleting some of its
// files leaves a trail that verifies (each file has its own record).
func TestPurgeInterrupted(t *testing.T) {
	l, _, dir, _ := purgeTrail(t, 20)
	n := 0
	removeFile = func(p string) error {
		if n++; n > 3 {
			return errors.New("interrupted")
		}
		return os.Remove(p)
	}
	t.Cleanup(func() { removeFile = os.Remove })
	res, err := l.Purge(context.Background(), PurgeOptions{Retention: shortRetention})
	if err == nil || len(res.Files) != 10 {
		t.Fatalf("interrupted purge: %v, %d files", err, len(res.Files))
	}
	// 20 days' files and the day the purge records were written, less 3.
	if got := len(trailFiles(t, dir)); got != 21-3 {
		t.Fatalf("%d files left, want 18", got)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir)
}

// TestPurgeRecordings: recordings older than their retention go (by
// modification time, whatever they contain) and are listed in the purge
// record; other files in the directory are left alone.
func TestPurgeRecordings(t *testing.T) {
	l, clock, dir, _ := purgeTrail(t, 3)
	recDir := t.TempDir()
	now := clock.Now()
	files := map[string]time.Duration{ // name → age
		"old-1.pcrec":    6 * 24 * time.Hour,
		"old-2.pcrec":    30 * 24 * time.Hour,
		"new.pcrec":      4 * 24 * time.Hour,
		"old.txt":        60 * 24 * time.Hour, // not a recording
		".probe-1.pcrec": 60 * 24 * time.Hour, // a writer's probe
	}
	for name, age := range files {
		p := filepath.Join(recDir, name)
		if err := os.WriteFile(p, []byte("opaque"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	opts := PurgeOptions{Retention: shortRetention, RecordingDir: recDir, RecordingExts: []string{".pcrec"}, Actor: "local-admin"}
	res, err := l.Purge(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range res.Recordings {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"old-1.pcrec", "old-2.pcrec"}) || len(res.Files) != 0 {
		t.Fatalf("purged recordings %v, files %v", names, res.Files)
	}
	if left, _ := os.ReadDir(recDir); len(left) != 3 {
		t.Errorf("left %v", left)
	}
	recs := purgeRecords(t, dir)
	if len(recs) != 1 || recs[0].Attrs["recording_names"] != "old-1.pcrec,old-2.pcrec" || recs[0].Attrs["recordings"] != "2" ||
		recs[0].Actor != "local-admin" || recs[0].Attrs["through_seq"] != "" {
		t.Fatalf("purge records %+v", recs)
	}
	mustVerify(t, dir)

	// Nothing left to purge: no record.
	if res, err := l.Purge(context.Background(), opts); err != nil || len(res.Recordings)+len(res.Files) != 0 {
		t.Fatalf("second purge: %+v %v", res, err)
	}
	if len(purgeRecords(t, dir)) != 1 {
		t.Error("an empty purge wrote a record")
	}
}

// TestPurgeManyRecordingNames: names are spread over several records.
func TestPurgeManyRecordingNames(t *testing.T) {
	l, clock, dir, _ := purgeTrail(t, 1)
	recDir := t.TempDir()
	old := clock.Now().Add(-100 * 24 * time.Hour)
	for i := range maxNamesPerRecord*2 + 5 {
		p := filepath.Join(recDir, "r"+itoa(uint64(1000+i))+".pcrec")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Purge(context.Background(), PurgeOptions{RecordingDir: recDir, RecordingExts: []string{".pcrec"}}); err != nil {
		t.Fatal(err)
	}
	recs := purgeRecords(t, dir)
	total := 0
	for _, r := range recs {
		total += len(strings.Split(r.Attrs["recording_names"], ","))
	}
	if len(recs) != 3 || total != maxNamesPerRecord*2+5 || recs[2].Attrs["recording_names_part"] != "3/3" {
		t.Fatalf("%d records listing %d names", len(recs), total)
	}
}

// TestPurgeRefusesShortRetention: below 90 days only when forced.
func TestPurgeRefusesShortRetention(t *testing.T) {
	l, _, _, _ := purgeTrail(t, 1)
	if _, err := l.Purge(context.Background(), PurgeOptions{Retention: RetentionConfig{Audit: time.Hour}}); err == nil {
		t.Fatal("purge with one hour of retention, unforced, accepted")
	}
}
