package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/bastion/recording"
)

// stepClock returns t0 plus 100 ms more on every call: frames get
// distinct, known offsets without sleeping.
func stepClock(t0 time.Time) func() time.Time {
	var mu sync.Mutex
	n := 0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		n++
		return t0.Add(time.Duration(n) * 100 * time.Millisecond)
	}
}

const uploaded = "the uploaded file\n"

// writeRecording produces a recording the way the bastion does: a shell
// with a terminal and a resize, an exec, SFTP and scp transfers, a port
// forward, refused requests, and a trailer (unless truncated).
func writeRecording(t *testing.T, dir string) string {
	t.Helper()
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	w, err := recording.Create(dir, recording.Meta{
		Version: recording.FormatVersion, SessionID: "sess-abc", Instance: "gw-1", UserID: "https://idp#alice",
		SourceIP: "192.0.2.7", Target: "db-1", TargetAddr: "10.0.0.5:22", Login: "root", Roles: []string{"admin"},
		CertSerial: 4242, Start: t0,
	}, recording.Options{Now: stepClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	status0, status3 := 0, 3
	no := false
	sum := sha256.Sum256([]byte(uploaded))
	steps := []func() error{
		func() error { return w.Event(1, recording.Event{Type: recording.EventChannelOpen, Kind: "session"}) },
		func() error {
			return w.Event(1, recording.Event{Type: recording.EventPTY, Term: "xterm-256color", Cols: 100, Rows: 30})
		},
		func() error { return w.Resize(1, 100, 30) },
		func() error { return w.Event(1, recording.Event{Type: recording.EventShell}) },
		func() error {
			return w.Event(1, recording.Event{Type: recording.EventEnv, Name: "LD_PRELOAD", Allowed: &no})
		},
		func() error { return w.Data(1, recording.StreamStdout, []byte("root@db-1:~# ")) },
		func() error { return w.Data(1, recording.StreamStdout, []byte("uname\r\nLinux\r\n")) },
		func() error { return w.Resize(1, 120, 40) },
		func() error { return w.Data(1, recording.StreamStderr, []byte("warning: disk 91% full\r\n")) },
		func() error { return w.Event(1, recording.Event{Type: recording.EventExitStatus, Status: &status0}) },
		func() error { return w.Event(1, recording.Event{Type: recording.EventChannelClose}) },
		func() error { return w.Event(2, recording.Event{Type: recording.EventChannelOpen, Kind: "session"}) },
		func() error { return w.Event(2, recording.Event{Type: recording.EventExec, Command: "ls -la /etc"}) },
		func() error { return w.Event(2, recording.Event{Type: recording.EventExitStatus, Status: &status3}) },
		func() error { return w.Event(3, recording.Event{Type: recording.EventSubsystem, Name: "sftp"}) },
		func() error {
			return w.Event(3, recording.Event{Type: recording.EventSFTP, Op: recording.OpOpen, Path: "/tmp/up.txt", Flags: "write,create", Result: "ok"})
		},
		func() error {
			return w.Event(3, recording.Event{Type: recording.EventSFTP, Op: recording.OpWrite, Path: "/tmp/up.txt", BytesWritten: int64(len(uploaded)), SHA256: hex.EncodeToString(sum[:])})
		},
		func() error {
			return w.Event(3, recording.Event{Type: recording.EventSFTP, Op: recording.OpRename, Path: "/tmp/up.txt", Path2: "/tmp/\x1b[31mevil", Result: "ok"})
		},
		func() error {
			return w.Event(4, recording.Event{Type: recording.EventSCP, Op: recording.OpUpload, Path: "notes.txt", Path2: "/root", BytesWritten: 5, SHA256: strings.Repeat("ab", 32), Result: "ok"})
		},
		func() error {
			return w.Event(5, recording.Event{Type: recording.EventForwardOpen, Dest: "localhost:5432", Resolved: "127.0.0.1:5432"})
		},
		func() error {
			return w.Event(5, recording.Event{Type: recording.EventForwardClose, Dest: "localhost:5432", Resolved: "127.0.0.1:5432", BytesIn: 2048, BytesOut: 512})
		},
		func() error {
			return w.Event(6, recording.Event{Type: recording.EventDenied, Kind: "x11-req", Reason: "x11-not-permitted"})
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := w.Close(recording.Trailer{End: t0.Add(time.Minute), Reason: "killed", Detail: "incident 42"}); err != nil {
		t.Fatal(err)
	}
	return w.Path()
}

// truncate writes a copy of path cut in its last frames (the bastion was
// killed before it closed the recording).
func truncate(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "cut"+recording.FileExt)
	if err := os.WriteFile(out, b[:len(b)-40], 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordingInfo(t *testing.T) {
	rec := writeRecording(t, t.TempDir())
	code, out, errOut := runCLI(t, "recording", "info", rec)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	sum := sha256.Sum256([]byte(uploaded))
	for _, want := range []string{
		"session:      sess-abc", "user:         https://idp#alice", "source ip:    192.0.2.7", "login:        root",
		"target:       db-1 (10.0.0.5:22)", "cert serial:  4242", "end reason:   killed: incident 42", "truncated:    no",
		"input:        not recorded", "(after 1m0s)",
		"pty xterm-256color 100x30, shell", "status 0", `exec "ls -la /etc"`, "status 3", "subsystem sftp",
		"File transfers:", "sftp      write   /tmp/up.txt", hex.EncodeToString(sum[:]), "written 18", "upload  notes.txt -> /root",
		"Port forwards:", "forward-close  localhost:5432  127.0.0.1:5432  2048      512",
		"Refused:", "x11-req", "x11-not-permitted", "env LD_PRELOAD",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	if strings.ContainsRune(out, 0x1b) || !strings.Contains(out, "/tmp/?[31mevil") {
		t.Errorf("a control character from the recording reached the terminal:\n%s", out)
	}

	code, out, _ = runCLI(t, "recording", "info", "--json", rec)
	var parsed struct {
		Meta      recording.Meta `json:"meta"`
		Truncated bool           `json:"truncated"`
		Bytes     map[string]int64
		Events    []struct {
			Channel uint32 `json:"channel"`
			Type    string `json:"type"`
			SHA256  string `json:"sha256"`
		}
	}
	if code != exitOK || json.Unmarshal([]byte(out), &parsed) != nil || parsed.Meta.SessionID != "sess-abc" || parsed.Truncated || len(parsed.Events) < 10 || parsed.Bytes["stdout"] == 0 {
		t.Fatalf("info --json: %d %+v\n%s", code, parsed, out)
	}

	code, out, _ = runCLI(t, "recording", "info", truncate(t, rec))
	if code != exitOK || !strings.Contains(out, "truncated:    YES") {
		t.Fatalf("truncated info: %d\n%s", code, out)
	}
}

// asciicastLines parses an asciicast v2 file: a header object, then
// [time, code, data] events.
func asciicastLines(t *testing.T, data string) (map[string]any, [][]any) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(data))
	if !sc.Scan() {
		t.Fatal("empty asciicast")
	}
	var header map[string]any
	if err := json.Unmarshal(sc.Bytes(), &header); err != nil {
		t.Fatalf("header %q: %v", sc.Text(), err)
	}
	var events [][]any
	for sc.Scan() {
		var ev []any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		events = append(events, ev)
	}
	return header, events
}

func TestRecordingExport(t *testing.T) {
	rec := writeRecording(t, t.TempDir())
	code, out, errOut := runCLI(t, "recording", "export", "--format", "asciicast", rec)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	header, events := asciicastLines(t, out)
	if header["version"] != float64(2) || header["width"] == nil || header["height"] == nil {
		t.Fatalf("header %v", header)
	}
	var output strings.Builder
	var resized, last float64
	for _, ev := range events {
		at, _ := ev[0].(float64)
		if at < last {
			t.Errorf("time goes backwards at %v", ev)
		}
		last = at
		switch ev[1] {
		case "o":
			output.WriteString(ev[2].(string))
		case "r":
			if ev[2] == "120x40" {
				resized++
			}
		}
	}
	for _, want := range []string{"root@db-1:~# ", "uname\r\nLinux", "warning: disk 91% full"} {
		if !strings.Contains(output.String(), want) {
			t.Errorf("asciicast output lacks %q: %q", want, output.String())
		}
	}
	if resized != 1 {
		t.Errorf("resize to 120x40 not exported: %v", events)
	}

	// -o writes a private file with the same content, through a temporary
	// file that does not stay behind.
	dir := t.TempDir()
	dst := filepath.Join(dir, "session.cast")
	if code, _, errOut := runCLI(t, "recording", "export", rec, "-o", dst); code != exitOK {
		t.Fatalf("export -o: %s", errOut)
	}
	b, err := os.ReadFile(dst)
	if err != nil || string(b) != out {
		t.Fatalf("file differs from stdout export: %v", err)
	}
	if st, _ := os.Stat(dst); st.Mode().Perm() != 0o600 {
		t.Errorf("export mode %v", st.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}

	// A truncated recording exports up to its end, with a warning.
	code, out, errOut = runCLI(t, "recording", "export", "--format", "asciicast", truncate(t, rec))
	if code != exitOK || !strings.Contains(errOut, "truncated") {
		t.Fatalf("truncated export: %d %s", code, errOut)
	}
	if _, events := asciicastLines(t, out); len(events) == 0 {
		t.Error("truncated export has no events")
	}
}

func TestPlay(t *testing.T) {
	rec := writeRecording(t, t.TempDir())
	code, out, errOut := runCLI(t, "play", "--speed", "1000", "--max-idle", "1ms", rec)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "root@db-1:~# uname\r\nLinux\r\nwarning: disk 91% full\r\n" {
		t.Fatalf("played %q", out)
	}
	code, out, errOut = runCLI(t, "play", "--speed", "1000", truncate(t, rec))
	if code != exitOK || !strings.Contains(errOut, "truncated") || !strings.HasPrefix(out, "root@db-1:~# ") {
		t.Fatalf("truncated play: %d %q %s", code, out, errOut)
	}
}

func TestRecordingCommandErrors(t *testing.T) {
	notRec := filepath.Join(t.TempDir(), "x.pcrec")
	if err := os.WriteFile(notRec, []byte("not a recording at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"recording without command", []string{"recording"}, exitUsage, "recording info"},
		{"recording unknown command", []string{"recording", "convert", "x"}, exitUsage, `unknown command "convert"`},
		{"info without file", []string{"recording", "info"}, exitUsage, "expected exactly one RECORDING"},
		{"info missing file", []string{"recording", "info", "/nonexistent.pcrec"}, exitFail, "no such file"},
		{"info not a recording", []string{"recording", "info", notRec}, exitFail, "corrupt"},
		{"export unknown format", []string{"recording", "export", "--format", "mp4", notRec}, exitUsage, `unknown --format "mp4"`},
		{"export not a recording", []string{"recording", "export", notRec}, exitFail, "corrupt"},
		{"export into a missing directory", []string{"recording", "export", "-o", "/nonexistent/dir/x.cast", notRec}, exitFail, "no such file"},
		{"play without file", []string{"play"}, exitUsage, "expected exactly one RECORDING"},
		{"play zero speed", []string{"play", "--speed", "0", notRec}, exitUsage, "--speed must be above 0"},
		{"play negative idle", []string{"play", "--max-idle", "-1s", notRec}, exitUsage, "--max-idle must not be negative"},
		{"play not a recording", []string{"play", notRec}, exitFail, "corrupt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut, tc.code, tc.wantErr)
			}
		})
	}
}
