package bastion

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/bastion/recording"
)

// TestRegistry: list, get, watch a live session, and the export to
// asciicast of what was watched.
func TestRegistry(t *testing.T) {
	e := newEnv(t, envOptions{})
	reg := e.b.Registry()
	if _, err := reg.Get("nope"); !errors.Is(err, ErrNoSuchSession) {
		t.Fatalf("Get unknown: %v", err)
	}
	if err := reg.Kill("nope", KillCause("x")); !errors.Is(err, ErrNoSuchSession) {
		t.Fatalf("Kill unknown: %v", err)
	}
	if _, err := reg.Watch("nope", 0); !errors.Is(err, ErrNoSuchSession) {
		t.Fatalf("Watch unknown: %v", err)
	}
	ls := e.startCat(e.alice())
	info, err := reg.Get(ls.id)
	if err != nil {
		t.Fatal(err)
	}
	if info.UserID != "alice" || info.Login != "root" || info.Target != "db-1" || info.SourceIP != "127.0.0.1" ||
		info.Instance != "test-1" || !strings.HasSuffix(info.Recording, ls.id+recording.FileExt) || info.Deadline.IsZero() {
		t.Fatalf("info %+v", info)
	}
	w, err := reg.Watch(ls.id, 16)
	if err != nil {
		t.Fatal(err)
	}
	ls.echo(t, "watched-line")
	var seen bytes.Buffer
	for !strings.Contains(seen.String(), "watched-line") {
		select {
		case f, ok := <-w.C:
			if !ok {
				t.Fatal("watch closed early")
			}
			if f.Stream == recording.StreamStdout {
				seen.Write(f.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watched %q", seen.String())
		}
	}
	if err := e.b.Kill(context.Background(), ls.id, "admin", "done watching"); err != nil {
		t.Fatal(err)
	}
	ls.waitEnded(t)
	for range w.C {
		// Drained: the watch closes with the recording.
	}
	e.waitSessionEnd(ls.id)
	var cast bytes.Buffer
	f, err := os.Open(filepath.Join(e.recDir, ls.id+recording.FileExt))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := recording.ExportAsciicast(&cast, f, testRecordingKey, recording.AsciicastOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cast.String(), `"o","watched-line\n"`) {
		t.Fatalf("asciicast lacks the output:\n%s", cast.String())
	}
	var played bytes.Buffer
	f.Seek(0, io.SeekStart)
	if err := recording.Play(context.Background(), &played, f, testRecordingKey, recording.PlayOptions{Speed: 1000, MaxIdle: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(played.String(), "watched-line") {
		t.Fatalf("played %q", played.String())
	}
}
