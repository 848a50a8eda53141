package bastion

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/bastion/recording"
)

// TestRecordingClosedHook: Deps.RecordingClosed hears of each session's
// recording once, after its writer closed it (the file holds its end
// chunk: it will not change any more); a connection refused before it
// had a recording is not reported.
func TestRecordingClosedHook(t *testing.T) {
	closed := make(chan string, 10)
	e := newEnv(t, envOptions{deps: func(d *Deps) {
		d.RecordingClosed = func(path string) { closed <- path }
	}})
	if r := e.ssh(e.alice(), "root@db-1", "echo hello"); r.code != 0 || r.stdout != "hello\n" {
		t.Fatalf("%+v", r)
	}
	id := e.lastSession().SessionID
	e.waitSessionEnd(id)
	var path string
	select {
	case path = <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("RecordingClosed was not called")
	}
	if want := filepath.Join(e.recDir, id+recording.FileExt); path != want {
		t.Fatalf("path %q, want %q", path, want)
	}
	res, err := recording.Verify(path, testRecordingKey)
	if err != nil || res.SessionID != id {
		t.Fatalf("the reported recording is not closed and complete: %+v, %v", res, err)
	}
	// Denied by policy: no recording, nothing reported.
	mallory := e.issue("mallory", []string{"nobody"}, []string{"root"}, nil)
	if r := e.ssh(mallory, "root@db-1", "echo hello"); r.code == 0 {
		t.Fatalf("mallory got in: %+v", r)
	}
	select {
	case p := <-closed:
		t.Fatalf("reported %q for a denied connection (or twice)", p)
	default:
	}
}
