package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/gateway"
)

var recT0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func recKey(t *testing.T, b byte) *recording.Key {
	t.Helper()
	k, err := recording.NewKey(bytes.Repeat([]byte{b}, recording.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeSession records a short shell session of userID as session id,
// starting at start, ended (with a trailer) at start+1m.
func writeSession(t *testing.T, dir string, key *recording.Key, id, userID string, start time.Time) string {
	t.Helper()
	now := start
	w, err := recording.Create(dir, recording.Meta{SessionID: id, UserID: userID, Target: "db-1", Login: "root", Start: start},
		recording.Options{Key: key, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Resize(1, 100, 30))
	now = now.Add(time.Second)
	must(w.Data(1, recording.StreamStdout, []byte("$ uptime\r\n up 3 days\r\n")))
	must(w.Close(recording.Trailer{End: start.Add(time.Minute), Reason: "client-closed"}))
	return w.Path()
}

// TestRecordingStore: the gateway's view of the recordings directory —
// listing (all, one user's, newest first), info, asciicast export, and
// what is refused: unknown or malformed IDs, links, a tampered recording,
// one under another key, one renamed to another session's ID. Nothing of
// a recording that does not authenticate reaches the writer.
func TestRecordingStore(t *testing.T) {
	dir := t.TempDir()
	key := recKey(t, 7)
	alice, bob := "https://idp#alice", "https://idp#bob"
	writeSession(t, dir, key, "sess-a1", alice, recT0)
	writeSession(t, dir, key, "sess-a2", alice, recT0.Add(time.Hour))
	bobPath := writeSession(t, dir, key, "sess-b1", bob, recT0.Add(30*time.Minute))

	// Damaged ones, each under its own name.
	tampered := writeSession(t, dir, key, "sess-tampered", bob, recT0)
	data, err := os.ReadFile(tampered)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-20] ^= 0x01 // inside the end chunk's ciphertext
	if err := os.WriteFile(tampered, data, 0o600); err != nil {
		t.Fatal(err)
	}
	writeSession(t, dir, recKey(t, 9), "sess-otherkey", bob, recT0)
	bobData, err := os.ReadFile(bobPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sess-renamed"+recording.FileExt), bobData, 0o600); err != nil {
		t.Fatal(err)
	}
	// Cut before its end chunk: incomplete (a crash, or still live).
	cut := writeSession(t, dir, key, "sess-cut", alice, recT0.Add(2*time.Hour))
	cutData, _ := os.ReadFile(cut)
	if err := os.WriteFile(cut, cutData[:len(cutData)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bobPath, filepath.Join(dir, "sess-link"+recording.FileExt)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a recording"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := newRecordingStore(dir, key, nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()

	ids := func(list []gateway.RecordingInfo) string {
		var out []string
		for _, r := range list {
			out = append(out, r.ID)
		}
		return strings.Join(out, ",")
	}
	t.Run("list", func(t *testing.T) {
		for _, tc := range []struct{ user, want string }{
			{"", "sess-cut,sess-a2,sess-b1,sess-a1"},
			{alice, "sess-cut,sess-a2,sess-a1"},
			{bob, "sess-b1"},
			{"https://idp#nobody", ""},
		} {
			for range 2 { // the second time from the cache
				got, err := s.ListRecordings(ctx, tc.user)
				if err != nil {
					t.Fatal(err)
				}
				if ids(got) != tc.want {
					t.Errorf("ListRecordings(%q) = %s, want %s", tc.user, ids(got), tc.want)
				}
			}
		}
	})
	t.Run("info", func(t *testing.T) {
		info, err := s.RecordingInfo(ctx, "sess-b1")
		if err != nil {
			t.Fatal(err)
		}
		want := gateway.RecordingInfo{ID: "sess-b1", UserID: bob, Target: "db-1", Login: "root",
			Start: recT0.Add(30 * time.Minute), End: recT0.Add(31 * time.Minute), Bytes: int64(len(bobData))}
		if !info.Start.Equal(want.Start) || !info.End.Equal(want.End) {
			t.Errorf("times %v–%v, want %v–%v", info.Start, info.End, want.Start, want.End)
		}
		info.Start, info.End, want.Start, want.End = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if info != want {
			t.Errorf("info %+v, want %+v", info, want)
		}
		if info, err := s.RecordingInfo(ctx, "sess-cut"); err != nil || !info.End.IsZero() || info.UserID != alice {
			t.Errorf("incomplete recording: %+v %v (want no end)", info, err)
		}
	})
	t.Run("export", func(t *testing.T) {
		var out bytes.Buffer
		if err := s.ExportRecording(ctx, "sess-a1", &out); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		var hdr struct {
			Version int `json:"version"`
			Width   int `json:"width"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &hdr); err != nil || hdr.Version != 2 || hdr.Width != 100 {
			t.Fatalf("asciicast header %q: %v", lines[0], err)
		}
		if !strings.Contains(out.String(), `up 3 days`) {
			t.Errorf("output missing from the export:\n%s", out.String())
		}
		out.Reset()
		if err := s.ExportRecording(ctx, "sess-cut", &out); err != nil || !strings.HasPrefix(out.String(), `{"version":2`) {
			t.Errorf("incomplete recording export: %v %q", err, out.String())
		}
	})
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			id   string
			want error
		}{
			{"sess-missing", store.ErrNotFound},
			{"", store.ErrNotFound},
			{"../sess-a1", store.ErrNotFound},
			{"sess-a1/..", store.ErrNotFound},
			{"sess-a1.pcrec", store.ErrNotFound},
			{strings.Repeat("a", 129), store.ErrNotFound},
			{"sess-link", store.ErrNotFound},
			{"sess-tampered", recording.ErrTampered},
			{"sess-otherkey", recording.ErrWrongKey},
			{"sess-renamed", recording.ErrTampered},
		} {
			if _, err := s.RecordingInfo(ctx, tc.id); !errors.Is(err, tc.want) {
				t.Errorf("RecordingInfo(%q): %v, want %v", tc.id, err, tc.want)
			}
			var out bytes.Buffer
			if err := s.ExportRecording(ctx, tc.id, &out); !errors.Is(err, tc.want) {
				t.Errorf("ExportRecording(%q): %v, want %v", tc.id, err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("ExportRecording(%q) wrote %d bytes of a recording that does not authenticate", tc.id, out.Len())
			}
		}
	})
	t.Run("purged recordings leave the listing", func(t *testing.T) {
		if err := os.Remove(bobPath); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListRecordings(ctx, "")
		if err != nil || ids(got) != "sess-cut,sess-a2,sess-a1" {
			t.Errorf("after purge: %s %v", ids(got), err)
		}
		if _, err := s.RecordingInfo(ctx, "sess-b1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("purged recording: %v", err)
		}
	})
	t.Run("no directory yet", func(t *testing.T) {
		empty := newRecordingStore(filepath.Join(dir, "none"), key, nil, slog.New(slog.DiscardHandler))
		got, err := empty.ListRecordings(ctx, "")
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("%v %v", got, err)
		}
	})
}
