package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// appendConfig appends YAML to the fixture's configuration file.
func appendConfig(t *testing.T, f *testfixture.Fixture, yaml string) {
	t.Helper()
	fh, err := os.OpenFile(f.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString("\n" + yaml + "\n"); err != nil {
		t.Fatal(err)
	}
}

// serveAdmin serves in's admin handler on its socket until the test ends.
func serveAdmin(t *testing.T, in *Instance) *adminclient.Client {
	t.Helper()
	ln, err := ListenAdmin(in.Config.AdminSocket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = ServeAdmin(ctx, ln, in.AdminHandler(), in.log) }()
	t.Cleanup(func() { cancel(); <-done })
	return adminclient.NewUnix(in.Config.AdminSocket, 10*time.Second)
}

// emitDays writes perDay events on each of days days, the clock moving
// through each day and past the next midnight.
func emitDays(t *testing.T, in *Instance, clock *testClock, days, perDay int) {
	t.Helper()
	for d := range days {
		for i := range perDay {
			in.Audit.Emit(context.Background(), audit.Event{Type: audit.TypeDecision, UserID: fmt.Sprintf("user-%d-%d", d, i), Decision: audit.Allow})
			if err := in.Audit.Flush(); err != nil {
				t.Fatal(err)
			}
			clock.Add(time.Minute)
		}
		next := clock.Now().Truncate(24 * time.Hour).Add(24*time.Hour + time.Minute)
		clock.Add(next.Sub(clock.Now()))
	}
}

// writeRecording creates a recording file last written age ago.
func writeRecording(t *testing.T, dir, name string, now time.Time, age time.Duration) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("not parsed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
		t.Fatal(err)
	}
}

func mustVerifyTrail(t *testing.T, dir string) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(dir, nil, audit.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("audit verify failed:\n%s", rep)
	}
	return rep
}

// TestRetentionDaily: the daily purge runs shortly after start and then
// every day (an injected timer), deletes the trail files and recordings
// that have outlived the configured retention, and the trail verifies.
func TestRetentionDaily(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	appendConfig(t, f, "retention: {audit: 240h, recordings: 120h, force_below_90_days: true}")
	cfg := load(t, f)
	clock := &testClock{t: time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)}
	in, err := Open(context.Background(), cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	emitDays(t, in, clock, 15, 3)
	recDir := cfg.Bastion.RecordingDir
	writeRecording(t, recDir, "old.pcrec", clock.Now(), 6*24*time.Hour)
	writeRecording(t, recDir, "recent.pcrec", clock.Now(), 4*24*time.Hour)
	before, _ := filepath.Glob(filepath.Join(cfg.Audit.Dir, "*.jsonl"))

	type timer struct {
		d  time.Duration
		ch chan time.Time
	}
	timers := make(chan timer)
	after := func(d time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		timers <- timer{d, ch}
		return ch
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); in.runRetention(ctx, after) }()

	first := <-timers
	if first.d != retentionFirstRun {
		t.Errorf("first purge after %v, want %v", first.d, retentionFirstRun)
	}
	if n, _ := filepath.Glob(filepath.Join(cfg.Audit.Dir, "*.jsonl")); len(n) != len(before) {
		t.Fatal("purged before the timer fired")
	}
	first.ch <- clock.Now()
	next := <-timers // the purge is done when the next timer is set
	if next.d != retentionEvery {
		t.Errorf("next purge after %v, want %v", next.d, retentionEvery)
	}
	cancel()
	<-done

	after_, _ := filepath.Glob(filepath.Join(cfg.Audit.Dir, "*.jsonl"))
	// Days 1..5 are older than 10 days; the purge records started a new
	// day's file.
	if len(after_) != len(before)-5+1 {
		t.Errorf("%d trail files before, %d after, want 5 fewer and a new one", len(before), len(after_))
	}
	if _, err := os.Stat(filepath.Join(recDir, "old.pcrec")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("expired recording still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(recDir, "recent.pcrec")); err != nil {
		t.Errorf("recent recording: %v", err)
	}
	if err := in.Audit.Flush(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerifyTrail(t, cfg.Audit.Dir)
	if !strings.Contains(rep.String(), "purged by retention") {
		t.Errorf("report:\n%s", rep)
	}
	if got := findEvents(t, cfg.Audit.Dir, func(e audit.Event) bool {
		return e.Type == audit.TypePurge && e.Actor == retentionActor && e.Attrs["recording_names"] == "old.pcrec"
	}); len(got) != 1 {
		t.Errorf("%d summary purge records by the daily run, want 1", len(got))
	}
}

// findEvents returns the trail's records (all files of dir) that match.
func findEvents(t *testing.T, dir string, match func(audit.Event) bool) []audit.Event {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var out []audit.Event
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var e audit.Event
			if line == "" {
				continue
			}
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if match(e) {
				out = append(out, e)
			}
		}
	}
	return out
}

// TestPurgeOverAdminSocket: admin purge over the socket, dry run first;
// the call is audited with its actor and the trail verifies afterwards.
func TestPurgeOverAdminSocket(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	r := runInstance(t, f)
	ctx := context.Background()
	recDir := r.in.Config.Bastion.RecordingDir
	now := time.Now()
	writeRecording(t, recDir, "old.pcrec", now, 100*24*time.Hour)
	writeRecording(t, recDir, "new.pcrec", now, time.Hour)

	purge := func(dry bool) adminclient.PurgeResult {
		t.Helper()
		body, err := r.admin.Call(ctx, adminclient.Purge(dry))
		if err != nil {
			t.Fatalf("purge (dry run %v): %v", dry, err)
		}
		var res adminclient.PurgeResult
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatalf("answer %s: %v", body, err)
		}
		return res
	}
	dry := purge(true)
	if !dry.DryRun || len(dry.Recordings) != 1 || dry.Recordings[0].Name != "old.pcrec" {
		t.Fatalf("dry run %+v", dry)
	}
	if _, err := os.Stat(filepath.Join(recDir, "old.pcrec")); err != nil {
		t.Fatalf("dry run deleted: %v", err)
	}
	res := purge(false)
	if res.DryRun || len(res.Recordings) != 1 || res.RecordSeq == 0 {
		t.Fatalf("purge %+v", res)
	}
	if _, err := os.Stat(filepath.Join(recDir, "old.pcrec")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old recording: %v", err)
	}
	if _, err := r.admin.Call(ctx, adminclient.Request{Method: http.MethodGet, Path: "/api/admin/purge"}); err == nil {
		t.Error("GET purge accepted")
	}
	r.stop()
	mustVerifyTrail(t, f.AuditDir)
	for _, c := range []struct {
		what  string
		match func(audit.Event) bool
	}{
		{"purge record", func(e audit.Event) bool {
			return e.Type == audit.TypePurge && e.Actor == localActor && e.Attrs["recording_names"] == "old.pcrec"
		}},
		{"admin event of the dry run", func(e audit.Event) bool {
			return e.Type == audit.TypeAdmin && e.Actor == localActor && e.Reason == reasonPurgeDry && e.Attrs["recordings"] == "1"
		}},
		{"admin event of the purge", func(e audit.Event) bool {
			return e.Type == audit.TypeAdmin && e.Actor == localActor && e.Reason == reasonPurge && e.Attrs["purge_record_seq"] != ""
		}},
	} {
		if got := findEvents(t, f.AuditDir, c.match); len(got) != 1 {
			t.Errorf("%d %s(s), want 1", len(got), c.what)
		}
	}
}

// loadAs loads the fixture's configuration as another instance: its own
// name and data directory, and the extra YAML appended.
func loadAs(t *testing.T, f *testfixture.Fixture, name, extra string) *config.Config {
	t.Helper()
	data, err := os.ReadFile(f.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "instance: test\n", "instance: "+name+"\n", 1)
	text = strings.Replace(text, "data_dir: data\n", "data_dir: data-"+name+"\n", 1)
	path := filepath.Join(f.Dir, name+".yaml")
	if err := os.WriteFile(path, []byte(text+"\n"+extra+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
