package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/bastion/recording/s3store/s3test"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// testfixtureWithStorage is a fixture with a bastion whose recordings go
// to g's bucket "recordings" under "bastion" (credentials in files);
// keep is an extra recording_storage line ("" for none).
func testfixtureWithStorage(t *testing.T, g *s3test.Gateway, keep string) *testfixture.Fixture {
	t.Helper()
	f := testfixture.New(t)
	f.WithBastion(t)
	for name, v := range map[string]string{"s3-access": s3test.AccessKey, "s3-secret": s3test.SecretKey + "\n"} {
		if err := os.WriteFile(filepath.Join(f.Dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The bastion section is the file's last: these lines continue it.
	appendConfig(t, f, `  recording_storage:
    endpoint: `+g.Endpoint()+`
    bucket: recordings
    prefix: bastion
    access_key_file: s3-access
    secret_key_file: s3-secret
`+keep)
	return f
}

// TestServeUploadsRecordings: a served instance with recording_storage
// uploads a session's recording once the session ends, audits it,
// removes the local copy (keep_local: 0s), and still serves the
// recording — from the bucket. A recording left by an earlier run is
// uploaded at start-up.
func TestServeUploadsRecordings(t *testing.T) {
	g := s3test.Start(t, false, "recordings")
	f := testfixtureWithStorage(t, g, "    keep_local: 0s\n")
	cfg := load(t, f)
	// Left by a previous run that crashed: uploaded at start-up.
	leftover := writeSession(t, cfg.Bastion.RecordingDir, cfg.Bastion.RecordingKey, "sess-leftover", "u", recT0)
	r := runWith(t, f, Options{RecordingStorageDial: g.Dial})
	st := r.in.recStore
	ctx := context.Background()

	signer, _ := r.issue(t, "https://idp.example#alice")
	c, err := r.dial(signer)
	if err != nil {
		t.Fatal(err)
	}
	stdin, ended := testfixture.LiveCat(t, c)
	io.WriteString(stdin, "hello-bucket\n")
	var id string
	waitUntil(t, "the live session", func() bool {
		s := r.sshSessions(t)
		if len(s) == 1 {
			id = s[0].ID
		}
		return id != ""
	})
	stdin.Close()
	<-ended
	c.Close()
	local := filepath.Join(cfg.Bastion.RecordingDir, id+recording.FileExt)
	waitUntil(t, "the upload and the local copy's removal", func() bool {
		_, serr := st.Stat(ctx, id+recording.FileExt)
		_, lerr := os.Stat(local)
		return serr == nil && errors.Is(lerr, os.ErrNotExist)
	})
	waitUntil(t, "the leftover's upload", func() bool {
		_, serr := st.Stat(ctx, "sess-leftover.pcrec")
		_, lerr := os.Stat(leftover)
		return serr == nil && errors.Is(lerr, os.ErrNotExist)
	})
	rs := newRecordingStore(cfg.Bastion.RecordingDir, cfg.Bastion.RecordingKey, st, slog.New(slog.DiscardHandler))
	var out bytes.Buffer
	if err := rs.ExportRecording(ctx, id, &out); err != nil || !strings.Contains(out.String(), "hello-bucket") {
		t.Fatalf("export from the bucket: %v\n%s", err, out.String())
	}
	if notes := r.in.healthNotes(); len(notes) != 0 {
		t.Fatalf("health notes %q", notes)
	}
	if err := r.in.Audit.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := findEvents(t, cfg.Audit.Dir, func(e audit.Event) bool {
		return e.Type == s3store.TypeRecordingUpload && e.SessionID == id && e.Reason == s3store.ReasonUploaded &&
			e.Attrs["key"] == "s3://recordings/bastion/"+id+recording.FileExt
	}); len(got) != 1 {
		t.Fatalf("%d upload events for the session, want 1", len(got))
	}
	if strings.Contains(auditText(t, f), s3test.SecretKey) {
		t.Fatal("the secret key reached the trail")
	}
}

// TestRecordingStorageRestartSection: changing recording_storage is
// reported as a section that needs a restart.
func TestRecordingStorageRestartSection(t *testing.T) {
	g := s3test.Start(t, false)
	f := testfixtureWithStorage(t, g, "")
	a := load(t, f)
	b := load(t, f)
	if changed := restartSections(a, b); len(changed) != 0 {
		t.Fatalf("the same file: %v", changed)
	}
	b.RecordingStorage.Bucket = "other"
	if changed := restartSections(a, b); strings.Join(changed, ",") != "bastion.recording_storage" {
		t.Fatalf("changed %v", changed)
	}
}
