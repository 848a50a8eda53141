package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// testKeyHex is the recording key of these tests, in a key file's hex form.
var testKeyHex = strings.Repeat("5a", 32) + "\n"

// keyFile writes a recording key file (hex, like openssl rand -hex 32)
// and returns its path.
func keyFile(t *testing.T, hexKey string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recording.key")
	if err := os.WriteFile(p, []byte(hexKey), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testKey is the key testKeyHex encodes.
func testKey(t *testing.T) *recording.Key {
	t.Helper()
	k, err := readRecordingKey(keyFile(t, testKeyHex))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

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
	}, recording.Options{Now: stepClock(t0), Key: testKey(t), BufferSize: 512}) // several chunks, as a long session has
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
	rec, kf := writeRecording(t, t.TempDir()), keyFile(t, testKeyHex)
	code, out, errOut := runCLI(t, "recording", "info", "--key", kf, rec)
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

	code, out, _ = runCLI(t, "recording", "info", "--key", kf, "--json", rec)
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

	// An incomplete recording is described, then reported: exit 1, or
	// 0 with --allow-incomplete.
	code, out, errOut = runCLI(t, "recording", "info", "--key", kf, truncate(t, rec))
	if code != exitFail || !strings.Contains(out, "truncated:    YES: recording: incomplete: ended inside chunk") || !strings.Contains(errOut, "incomplete") {
		t.Fatalf("truncated info: %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "recording", "info", "--key", kf, "--allow-incomplete", truncate(t, rec))
	if code != exitOK || !strings.Contains(out, "truncated:    YES") || !strings.Contains(errOut, "warning") {
		t.Fatalf("truncated info with --allow-incomplete: %d\n%s%s", code, out, errOut)
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
	rec, kf := writeRecording(t, t.TempDir()), keyFile(t, testKeyHex)
	code, out, errOut := runCLI(t, "recording", "export", "--key", kf, "--format", "asciicast", rec)
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
	if code, _, errOut := runCLI(t, "recording", "export", "--key", kf, rec, "-o", dst); code != exitOK {
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

	// A truncated recording exports up to its end: exit 1, or a warning
	// with --allow-incomplete.
	code, _, errOut = runCLI(t, "recording", "export", "--key", kf, "--format", "asciicast", truncate(t, rec))
	if code != exitFail || !strings.Contains(errOut, "incomplete") {
		t.Fatalf("truncated export: %d %s", code, errOut)
	}
	code, out, errOut = runCLI(t, "recording", "export", "--key", kf, "--allow-incomplete", "--format", "asciicast", truncate(t, rec))
	if code != exitOK || !strings.Contains(errOut, "warning: recording: incomplete") {
		t.Fatalf("truncated export: %d %s", code, errOut)
	}
	if _, events := asciicastLines(t, out); len(events) == 0 {
		t.Error("truncated export has no events")
	}
}

func TestPlay(t *testing.T) {
	rec, kf := writeRecording(t, t.TempDir()), keyFile(t, testKeyHex)
	code, out, errOut := runCLI(t, "play", "--key", kf, "--speed", "1000", "--max-idle", "1ms", rec)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "root@db-1:~# uname\r\nLinux\r\nwarning: disk 91% full\r\n" {
		t.Fatalf("played %q", out)
	}
	code, out, errOut = runCLI(t, "play", "--key", kf, "--speed", "1000", "--allow-incomplete", truncate(t, rec))
	if code != exitOK || !strings.Contains(errOut, "incomplete") || !strings.HasPrefix(out, "root@db-1:~# ") {
		t.Fatalf("truncated play: %d %q %s", code, out, errOut)
	}
}

func TestRecordingCommandErrors(t *testing.T) {
	notRec := filepath.Join(t.TempDir(), "x.pcrec")
	if err := os.WriteFile(notRec, []byte("not a recording at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	kf := keyFile(t, testKeyHex)
	badKey := keyFile(t, "0123")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"recording without command", []string{"recording"}, exitUsage, "recording info"},
		{"recording unknown command", []string{"recording", "convert", "x"}, exitUsage, `unknown command "convert"`},
		{"info without file", []string{"recording", "info"}, exitUsage, "expected exactly one RECORDING"},
		{"info without key", []string{"recording", "info", notRec}, exitUsage, "recordings are encrypted: give --key FILE"},
		{"info with key and config", []string{"recording", "info", "--key", kf, "--config", "x.yaml", notRec}, exitUsage, "only one of --key and --config"},
		{"info missing key file", []string{"recording", "info", "--key", "/nonexistent.key", notRec}, exitFail, "no such file"},
		{"info bad key file", []string{"recording", "info", "--key", badKey, notRec}, exitFail, "must hold exactly 32 bytes"},
		{"info config without bastion", []string{"recording", "info", "--config", "/nonexistent.yaml", notRec}, exitFail, "does not exist"},
		{"info missing file", []string{"recording", "info", "--key", kf, "/nonexistent.pcrec"}, exitFail, "no such file"},
		{"info not a recording", []string{"recording", "info", "--key", kf, notRec}, exitFail, "corrupt"},
		{"export unknown format", []string{"recording", "export", "--key", kf, "--format", "mp4", notRec}, exitUsage, `unknown --format "mp4"`},
		{"export without key", []string{"recording", "export", notRec}, exitUsage, "recordings are encrypted"},
		{"export not a recording", []string{"recording", "export", "--key", kf, notRec}, exitFail, "corrupt"},
		{"export into a missing directory", []string{"recording", "export", "--key", kf, "-o", "/nonexistent/dir/x.cast", notRec}, exitFail, "no such file"},
		{"play without file", []string{"play"}, exitUsage, "expected exactly one RECORDING"},
		{"play without key", []string{"play", notRec}, exitUsage, "recordings are encrypted"},
		{"play zero speed", []string{"play", "--key", kf, "--speed", "0", notRec}, exitUsage, "--speed must be above 0"},
		{"play negative idle", []string{"play", "--key", kf, "--max-idle", "-1s", notRec}, exitUsage, "--max-idle must not be negative"},
		{"play not a recording", []string{"play", "--key", kf, notRec}, exitFail, "corrupt"},
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

// chunkSpans returns each chunk's [start, end) in a recording file
// (format 2: a fixed header, then type, sequence number, length, data).
func chunkSpans(b []byte) [][2]int {
	var out [][2]int
	for off := recording.HeaderSize; off+13 <= len(b); {
		end := off + 13 + int(binary.BigEndian.Uint32(b[off+9:]))
		out = append(out, [2]int{off, end})
		off = end
	}
	return out
}

// TestRecordingIntegrity: play, export and info refuse a wrong key, a
// modified, reordered or truncated recording, each with its own message
// and exit 1, and show nothing of the damaged chunk.
func TestRecordingIntegrity(t *testing.T) {
	dir := t.TempDir()
	kf := keyFile(t, testKeyHex)
	otherKey := keyFile(t, strings.Repeat("17", 32))
	// One output frame per chunk: each chunk shows one marker.
	w, err := recording.Create(dir, recording.Meta{SessionID: "sess-int", Start: time.Unix(0, 0)}, recording.Options{Key: testKey(t), BufferSize: 8, Now: stepClock(time.Unix(0, 0))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := w.Data(1, recording.StreamStdout, []byte(fmt.Sprintf("<chunk-%d>", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(recording.Trailer{Reason: "client-closed"}); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	sp := chunkSpans(orig)
	variant := func(name string, b []byte) string {
		p := filepath.Join(dir, name+recording.FileExt)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := slices.Clone(orig)
	flipped[sp[3][0]+20] ^= 0x40
	swapped := slices.Concat(orig[:sp[2][0]], orig[sp[3][0]:sp[3][1]], orig[sp[2][0]:sp[2][1]], orig[sp[3][1]:])
	cut := orig[:sp[len(sp)-1][0]]
	for _, tc := range []struct {
		name, file, key, want, shown string
	}{
		{"untouched", variant("ok", orig), kf, "", "<chunk-1><chunk-2><chunk-3><chunk-4>"},
		{"wrong key", variant("ok2", orig), otherKey, "wrong key: the recording was encrypted with key", ""},
		{"flipped byte", variant("flipped", flipped), kf, "tampered: chunk 3 does not authenticate", "<chunk-1><chunk-2>"},
		{"swapped chunks", variant("swapped", swapped), kf, "tampered: chunk 2 has sequence number 3", "<chunk-1>"},
		{"truncated", variant("cut", cut), kf, "incomplete: ended without a final chunk after 5 chunks", "<chunk-1><chunk-2><chunk-3><chunk-4>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cmd := range [][]string{
				{"play", "--key", tc.key, "--speed", "1000", tc.file},
				{"recording", "export", "--key", tc.key, tc.file},
				{"recording", "info", "--key", tc.key, tc.file},
			} {
				code, out, errOut := runCLI(t, cmd...)
				if tc.want == "" {
					if code != exitOK || errOut != "" {
						t.Fatalf("%v: exit %d %s", cmd, code, errOut)
					}
				} else if code != exitFail || !strings.Contains(errOut, tc.want) {
					t.Fatalf("%v: exit %d, stderr %q; want %q", cmd, code, errOut, tc.want)
				}
				if cmd[0] == "play" && out != tc.shown {
					t.Fatalf("play showed %q, want %q", out, tc.shown)
				}
				for i := strings.Count(tc.shown, "<") + 1; i <= 4 && cmd[1] == "export"; i++ {
					if strings.Contains(out, fmt.Sprintf("<chunk-%d>", i)) {
						t.Fatalf("export showed chunk %d of a damaged recording:\n%s", i, out)
					}
				}
			}
		})
	}
	code, out, _ := runCLI(t, "recording", "info", "--key", kf, variant("ok3", orig))
	if code != exitOK || !strings.Contains(out, "6 chunks authenticated") || !strings.Contains(out, "digest:") {
		t.Fatalf("info: %d\n%s", code, out)
	}
}

// TestAdminRotateKey rotates a directory: the old key then fails, the
// new one works, and a second run has nothing left to do.
func TestAdminRotateKey(t *testing.T) {
	dir := t.TempDir()
	rec := writeRecording(t, dir)
	oldKey, newKey := keyFile(t, testKeyHex), keyFile(t, strings.Repeat("c3", 32))
	code, out, errOut := runCLI(t, "admin", "rotate-key", "--old-key", oldKey, "--new-key", newKey, "--dir", dir)
	if code != exitOK || !strings.Contains(out, "1 rekeyed, 0 already under the new key, 0 failed") {
		t.Fatalf("rotate: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "recording", "info", "--key", oldKey, rec); code != exitFail || !strings.Contains(errOut, "wrong key") {
		t.Fatalf("old key after rotation: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "recording", "info", "--key", newKey, rec); code != exitOK {
		t.Fatalf("new key after rotation: %d %s", code, errOut)
	}
	code, out, _ = runCLI(t, "admin", "rotate-key", "--old-key", oldKey, "--new-key", newKey, "--dir", dir)
	if code != exitOK || !strings.Contains(out, "0 rekeyed, 1 already under the new key, 0 failed") {
		t.Fatalf("second run: %d %s", code, out)
	}
	// A recording under neither key fails the run (exit 1) and is named.
	foreign := keyFile(t, strings.Repeat("99", 32))
	code, _, errOut = runCLI(t, "admin", "rotate-key", "--old-key", foreign, "--new-key", keyFile(t, strings.Repeat("98", 32)), "--dir", dir)
	if code != exitFail || !strings.Contains(errOut, "sess-abc.pcrec: recording: wrong key") {
		t.Fatalf("foreign key: %d %s", code, errOut)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing flags", []string{"--old-key", oldKey}, exitUsage, "are required"},
		{"same key", []string{"--old-key", oldKey, "--new-key", oldKey, "--dir", dir}, exitUsage, "the same key"},
		{"missing dir", []string{"--old-key", oldKey, "--new-key", newKey, "--dir", "/nonexistent"}, exitFail, "no such file"},
		{"extra argument", []string{"--old-key", oldKey, "--new-key", newKey, "--dir", dir, "x"}, exitUsage, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"admin", "rotate-key"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d %q, want %d %q", code, errOut, tc.code, tc.want)
			}
		})
	}
}
