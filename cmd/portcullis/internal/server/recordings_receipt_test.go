package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/bastion/recording/s3store/s3test"
)

// TestBucketCutRecordingRefused: whoever can write to the bucket cuts a
// recording whose local copy was removed (keep_local: 0s) at a chunk
// boundary. Such a recording still authenticates up to its cut (as after
// a crash) and would be exported without its end; the receipt this host
// kept when it removed its copy makes the cut object a tampered one. The
// control (receipt removed) shows the cut object alone is accepted.
func TestBucketCutRecordingRefused(t *testing.T) {
	g := s3test.Start(t, false, "recordings")
	st := bucketStore(t, g)
	dir := t.TempDir()
	key := recKey(t, 9)
	path := writeSession(t, dir, key, "sess-cut", "https://idp#alice", recT0)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The longest prefix that still authenticates (up to its cut).
	cut := -1
	for n := len(full) - 1; n > 0; n-- {
		if _, err := recording.VerifyReader(bytes.NewReader(full[:n]), key); errors.Is(err, recording.ErrTruncated) {
			cut = n
			break
		}
	}
	if cut < 0 {
		t.Fatal("no prefix of the recording authenticates up to a cut")
	}

	u, err := s3store.NewUploader(st, s3store.UploaderOptions{Dir: dir, KeepLocal: 0, Audit: audit.Discard, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Scan(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u.RunDue(ctx)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("local copy not removed after the upload: %v", err)
	}
	if _, ok, err := s3store.ReadReceipt(dir, "sess-cut"+recording.FileExt); !ok || err != nil {
		t.Fatalf("no receipt after removing the local copy: %v %v", ok, err)
	}
	// A restart's scan keeps the receipt (it is not an upload marker).
	if err := u.Scan(); err != nil {
		t.Fatal(err)
	}

	obj := g.ObjectPath("recordings", "bastion/sess-cut"+recording.FileExt)
	if err := os.WriteFile(obj, full[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	rs := newRecordingStore(dir, key, st, slog.New(slog.DiscardHandler))
	var out bytes.Buffer
	if err := rs.ExportRecording(ctx, "sess-cut", &out); !errors.Is(err, recording.ErrTampered) || out.Len() != 0 {
		t.Fatalf("export of the cut object: err %v, %d bytes written; want tampered, nothing", err, out.Len())
	}
	if _, err := rs.RecordingInfo(ctx, "sess-cut"); !errors.Is(err, recording.ErrTampered) {
		t.Fatalf("info of the cut object: %v, want tampered", err)
	}

	// Control: without the receipt the cut object passes as a recording
	// cut by a crash — the attack the receipt stops.
	s3store.RemoveReceipt(dir, "sess-cut"+recording.FileExt)
	rs = newRecordingStore(dir, key, st, slog.New(slog.DiscardHandler))
	if err := rs.ExportRecording(ctx, "sess-cut", io.Discard); err != nil {
		t.Fatalf("control: the cut object without a receipt: %v", err)
	}

	// A corrupt receipt refuses the read (never "no receipt").
	if err := os.WriteFile(filepath.Join(dir, ".s3", "sess-cut"+recording.FileExt+".receipt"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rs.ExportRecording(ctx, "sess-cut", io.Discard); err == nil {
		t.Fatal("a corrupt receipt was ignored")
	}
}

// TestBucketFetchesBounded: exports of bucket-only recordings download
// at most maxFetches at once; one more waits for a slot or for its
// request to end, fetching nothing.
func TestBucketFetchesBounded(t *testing.T) {
	g := s3test.Start(t, false, "recordings")
	rs := newRecordingStore(t.TempDir(), recKey(t, 3), bucketStore(t, g), slog.New(slog.DiscardHandler))
	for range maxFetches {
		rs.fetches <- struct{}{} // every slot taken by a download in flight
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rs.ExportRecording(ctx, "sess-waiting", io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("export with every fetch slot taken: %v, want to wait and give up with its request", err)
	}
	<-rs.fetches
	if err := rs.ExportRecording(context.Background(), "sess-missing", io.Discard); err == nil {
		t.Fatal("a recording in neither place was exported")
	}
}
