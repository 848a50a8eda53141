package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/bastion/recording/s3store/s3test"
	"github.com/portcullis/portcullis/gateway"
)

// bucketStore is an s3store.Store on the gateway's bucket "recordings"
// under prefix "bastion".
func bucketStore(t *testing.T, g *s3test.Gateway) *s3store.Store {
	t.Helper()
	st, err := s3store.New(s3store.Config{Endpoint: g.Endpoint(), Bucket: "recordings", Prefix: "bastion",
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}, s3store.Options{DialContext: g.Dial})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// upload puts the local recording file into the bucket (as the uploader
// does) and, when removeLocal, removes the local copy (keep_local: 0s).
func upload(t *testing.T, st *s3store.Store, path string, removeLocal bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := st.Sum(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), filepath.Base(path), bytes.NewReader(data), sum); err != nil {
		t.Fatal(err)
	}
	if removeLocal {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecordingStoreBucket: recordings whose local copy is gone are
// listed, described and exported from the bucket, authenticated like
// local files: a modified object, one under another key or renamed to
// another session's ID is refused with nothing written; the bucket
// down is "unavailable" (503), never "not found", and local recordings
// are still served.
func TestRecordingStoreBucket(t *testing.T) {
	g := s3test.Start(t, false, "recordings")
	st := bucketStore(t, g)
	dir := t.TempDir()
	key := recKey(t, 7)
	alice, bob := "https://idp#alice", "https://idp#bob"
	upload(t, st, writeSession(t, dir, key, "sess-a1", alice, recT0), true)
	upload(t, st, writeSession(t, dir, key, "sess-both", alice, recT0.Add(time.Hour)), false)
	writeSession(t, dir, key, "sess-local", bob, recT0.Add(2*time.Hour))
	bobPath := writeSession(t, dir, key, "sess-b1", bob, recT0.Add(30*time.Minute))
	bobData, _ := os.ReadFile(bobPath)
	upload(t, st, bobPath, true)
	// Damaged objects.
	upload(t, st, writeSession(t, dir, key, "sess-tampered", bob, recT0), true)
	upload(t, st, writeSession(t, dir, recKey(t, 9), "sess-otherkey", bob, recT0), true)
	g.PutObject(t, "recordings", "bastion/sess-renamed.pcrec", bobData)
	g.PutObject(t, "recordings", "bastion/notes.txt", []byte("not a recording"))
	g.PutObject(t, "recordings", "elsewhere/sess-x.pcrec", bobData)

	s := newRecordingStore(dir, key, st, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	ids := func(list []gateway.RecordingInfo) string {
		var out []string
		for _, r := range list {
			out = append(out, r.ID)
		}
		return strings.Join(out, ",")
	}
	// Listed before the damage below: the listing caches the info of
	// sess-tampered as it was.
	for _, tc := range []struct{ user, want string }{
		{"", "sess-local,sess-both,sess-b1,sess-a1,sess-tampered"},
		{alice, "sess-both,sess-a1"},
		{bob, "sess-local,sess-b1,sess-tampered"},
	} {
		for range 2 { // the second time from the caches
			got, err := s.ListRecordings(ctx, tc.user)
			if err != nil || ids(got) != tc.want {
				t.Fatalf("ListRecordings(%q) = %s, %v; want %s", tc.user, ids(got), err, tc.want)
			}
		}
	}
	// Flip one byte of the object on the server's disk (its ETag and
	// size stay as they were).
	obj := g.ObjectPath("recordings", "bastion/sess-tampered.pcrec")
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x01
	if err := os.WriteFile(obj, data, 0o644); err != nil {
		t.Fatal(err)
	}

	info, err := s.RecordingInfo(ctx, "sess-b1")
	if err != nil || info.UserID != bob || info.Bytes != int64(len(bobData)) || !info.End.Equal(recT0.Add(31*time.Minute)) {
		t.Fatalf("info from the bucket: %+v %v", info, err)
	}
	var out bytes.Buffer
	if err := s.ExportRecording(ctx, "sess-a1", &out); err != nil || !strings.Contains(out.String(), "up 3 days") {
		t.Fatalf("export from the bucket: %v\n%s", err, out.String())
	}
	if left, _ := os.ReadDir(s3store.FetchDir(dir)); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}

	fresh := newRecordingStore(dir, key, st, slog.New(slog.DiscardHandler)) // no cache
	for _, tc := range []struct {
		id   string
		want error
	}{
		{"sess-missing", store.ErrNotFound},
		{"../bastion/sess-a1", store.ErrNotFound},
		{"sess-x", store.ErrNotFound}, // another prefix: not ours
		{"sess-tampered", recording.ErrTampered},
		{"sess-otherkey", recording.ErrWrongKey},
		{"sess-renamed", recording.ErrTampered},
	} {
		for _, rs := range []*recordingStore{s, fresh} {
			var out bytes.Buffer
			if err := rs.ExportRecording(ctx, tc.id, &out); !errors.Is(err, tc.want) || out.Len() != 0 {
				t.Errorf("ExportRecording(%q): %v with %d bytes, want %v and none", tc.id, err, out.Len(), tc.want)
			}
		}
		if _, err := fresh.RecordingInfo(ctx, tc.id); !errors.Is(err, tc.want) {
			t.Errorf("RecordingInfo(%q): %v, want %v", tc.id, err, tc.want)
		}
	}

	g.Stop()
	if _, err := s.ListRecordings(ctx, ""); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("listing with the bucket down: %v", err)
	}
	if _, err := fresh.RecordingInfo(ctx, "sess-a1"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("info with the bucket down: %v", err)
	}
	if err := s.ExportRecording(ctx, "sess-a1", &bytes.Buffer{}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("export with the bucket down: %v", err)
	}
	if _, err := s.RecordingInfo(ctx, "sess-local"); err != nil {
		t.Fatalf("a local recording with the bucket down: %v", err)
	}
	if err := s.ExportRecording(ctx, "sess-both", &bytes.Buffer{}); err != nil {
		t.Fatalf("a recording kept locally with the bucket down: %v", err)
	}
}

// TestPurgeBucket: the purge (dry run, then for real) deletes the
// objects older than retention.recordings, after recording their keys
// in the trail; newer objects stay and the trail verifies.
func TestPurgeBucket(t *testing.T) {
	g := s3test.Start(t, false, "recordings")
	f := testfixtureWithStorage(t, g, "")
	appendConfig(t, f, "retention: {recordings: 240h, force_below_90_days: true}")
	cfg := load(t, f)
	in, err := Open(context.Background(), cfg, Options{RecordingStorageDial: g.Dial})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	ctx := context.Background()
	for _, n := range []string{"old", "new"} {
		p := writeSession(t, t.TempDir(), recKey(t, 1), "sess-"+n, "u", recT0)
		upload(t, in.recStore, p, false)
	}
	// The POSIX backend's modification time is the object's.
	old := time.Now().Add(-11 * 24 * time.Hour)
	if err := os.Chtimes(g.ObjectPath("recordings", "bastion/sess-old.pcrec"), old, old); err != nil {
		t.Fatal(err)
	}
	// Receipts this host would hold for both (local copies removed).
	receipt := func(n string) string {
		return filepath.Join(cfg.Bastion.RecordingDir, ".s3", "sess-"+n+".pcrec.receipt")
	}
	for _, n := range []string{"old", "new"} {
		if err := os.MkdirAll(filepath.Dir(receipt(n)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(receipt(n), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dry, err := in.Purge(ctx, "tester", true)
	if err != nil || len(dry.Recordings) != 1 || dry.Recordings[0].Name != "s3://recordings/bastion/sess-old.pcrec" {
		t.Fatalf("dry run %+v %v", dry.Recordings, err)
	}
	if _, err := in.recStore.Stat(ctx, "sess-old.pcrec"); err != nil {
		t.Fatalf("the dry run deleted: %v", err)
	}
	res, err := in.Purge(ctx, "tester", false)
	if err != nil || len(res.Recordings) != 1 {
		t.Fatalf("purge %+v %v", res, err)
	}
	if _, err := in.recStore.Stat(ctx, "sess-old.pcrec"); !errors.Is(err, s3store.ErrNotFound) {
		t.Fatalf("expired object: %v", err)
	}
	if _, err := in.recStore.Stat(ctx, "sess-new.pcrec"); err != nil {
		t.Fatalf("recent object: %v", err)
	}
	if _, err := os.Stat(receipt("old")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the purged object's receipt is left: %v", err)
	}
	if _, err := os.Stat(receipt("new")); err != nil {
		t.Fatalf("a kept object's receipt is gone: %v", err)
	}
	if err := in.Audit.Flush(); err != nil {
		t.Fatal(err)
	}
	mustVerifyTrail(t, cfg.Audit.Dir)
	if got := findEvents(t, cfg.Audit.Dir, func(e audit.Event) bool {
		return e.Type == typeRecordingPurge && e.Actor == "tester" && e.Reason == "retention" &&
			e.Attrs["recording_keys"] == "bastion/sess-old.pcrec" && e.Attrs["bucket"] == "recordings" && e.Attrs["recording_retention"] == "240h0m0s"
	}); len(got) != 1 {
		t.Fatalf("%d purge records of the bucket, want 1", len(got))
	}
	// The bucket down: the purge says so, the local part still runs.
	g.Stop()
	if _, err := in.Purge(ctx, "tester", false); err == nil || !strings.Contains(err.Error(), "recording bucket") {
		t.Fatalf("purge with the bucket down: %v", err)
	}
}
