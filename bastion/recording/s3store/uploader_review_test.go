package s3store

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestUploaderMarkerNamesTheServer: recordings uploaded to one server's
// bucket are uploaded again when storage moves to another server with a
// bucket of the same name and prefix. Before, the marker named only the
// bucket and key, so with the default keep_local (until retention) the
// new server never received them and retention then deleted the only
// copies.
func TestUploaderMarkerNamesTheServer(t *testing.T) {
	ctx := context.Background()
	e := newUpEnv(t, KeepLocalUntilRetention)
	writeRecording(t, e.dir, "sess-1", false)
	path := filepath.Join(e.dir, "sess-1.pcrec")
	e.u.Closed(path)
	e.u.RunDue(ctx)
	local, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.object(t, "sess-1.pcrec"); !bytes.Equal(got, local) {
		t.Fatal("not uploaded to the first server")
	}

	// The same bucket name on another server (the configuration moved).
	g2 := startGW(t, "recordings", false)
	cfg := g2.config("recordings", "bastion")
	cfg.Endpoint = "http://127.0.0.1:9001"
	s2, err := New(cfg, g2.options())
	if err != nil {
		t.Fatal(err)
	}
	u2, err := NewUploader(s2, UploaderOptions{Dir: e.dir, KeepLocal: KeepLocalUntilRetention, Audit: e.ev, Logger: slog.New(e.log), Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := u2.Scan(); err != nil {
		t.Fatal(err)
	}
	u2.RunDue(ctx)
	if _, err := s2.Stat(ctx, "sess-1.pcrec"); err != nil {
		t.Fatalf("the recording never reached the new server: %v", err)
	}
}
