package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
)

// writeAuditTrail writes a trail with a real FileLog (several group
// commits and checkpoints), closes it and returns the public key as PEM.
func writeAuditTrail(t *testing.T, dir string) []byte {
	t.Helper()
	l, err := audit.OpenFile(audit.FileConfig{Dir: dir, Instance: "gw-1", CheckpointEvery: 50}, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		l.Emit(context.Background(), audit.Event{Type: audit.TypeDecision, UserID: "user-" + strings.Repeat("x", i%7), Decision: audit.Allow, Reason: "ok"})
		if i%100 == 0 {
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub := audit.MarshalPublicKey(l.PublicKey())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestAuditVerifyCLI(t *testing.T) {
	dir := t.TempDir()
	pub := writeAuditTrail(t, dir)
	keyDir := t.TempDir()
	pubFile := filepath.Join(keyDir, "audit.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(keyDir, "foreign.pub")
	other := t.TempDir()
	if err := os.WriteFile(foreign, writeAuditTrail(t, other), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(keyDir, "garbage.pub")
	os.WriteFile(garbage, []byte("not a key"), 0o644)

	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    string
		wantErr    string
		wantNotErr string
	}{
		{"beside key, loudly", []string{"audit", "verify", dir}, exitOK, "audit trail " + dir + ": OK", "WARNING: no --pubkey given", ""},
		{"--pubkey", []string{"audit", "verify", "--pubkey", pubFile, dir}, exitOK, "keys: --pubkey " + pubFile, "", "WARNING"},
		{"--pubkey after the directory", []string{"audit", "verify", dir, "--pubkey", pubFile}, exitOK, ": OK", "", "WARNING"},
		{"foreign key", []string{"audit", "verify", "--pubkey", foreign, dir}, 1, "FAILED", "", ""},
		{"unreadable key", []string{"audit", "verify", "--pubkey", filepath.Join(keyDir, "missing.pub"), dir}, exitUsage, "", "missing.pub", ""},
		{"not a key", []string{"audit", "verify", "--pubkey", garbage, dir}, exitUsage, "", "garbage.pub", ""},
		{"missing directory", []string{"audit", "verify", filepath.Join(dir, "nope")}, exitUsage, "", "no such file", ""},
		{"no directory", []string{"audit", "verify"}, exitUsage, "", "exactly one audit directory", ""},
		{"two directories", []string{"audit", "verify", dir, dir}, exitUsage, "", "exactly one audit directory", ""},
		{"no subcommand", []string{"audit"}, exitUsage, "", "portcullis audit COMMAND", ""},
		{"unknown subcommand", []string{"audit", "check"}, exitUsage, "", `unknown command "check"`, ""},
		{"help", []string{"audit", "--help"}, exitOK, "verify [--pubkey FILE] [--recordings DIR", "", ""},
		{"--key without --recordings", []string{"audit", "verify", "--key", "k", dir}, exitUsage, "", "go with --recordings", ""},
		{"--recordings without a key", []string{"audit", "verify", "--recordings", dir, dir}, exitUsage, "", "recordings are encrypted", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantErr) ||
				(tc.wantNotErr != "" && strings.Contains(errOut, tc.wantNotErr)) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
		})
	}
}

// TestAuditVerifyCLITampered flips one byte in the middle of a trail
// written by a real FileLog: verify exits 1 and names the record.
func TestAuditVerifyCLITampered(t *testing.T) {
	dir := t.TempDir()
	pub := writeAuditTrail(t, dir)
	pubFile := filepath.Join(t.TempDir(), "audit.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	trail := filepath.Join(dir, audit.FileName("gw-1"))
	data, err := os.ReadFile(trail)
	if err != nil {
		t.Fatal(err)
	}
	// A byte of a user ID in the middle of the file: still valid JSON.
	i := strings.Index(string(data[len(data)/2:]), `"user_id":"user-`) + len(data)/2 + len(`"user_id":"user-`)
	data[i-2] = 'X'
	if err := os.WriteFile(trail, data, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	os.Chtimes(trail, now, now)
	code, out, errOut := runCLI(t, "audit", "verify", "--pubkey", pubFile, dir)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "modified") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// TestAuditVerifyRecordings: with --recordings, verify also authenticates
// every recording, and a modified, cut or foreign-key recording fails it
// even when the trail itself is fine.
func TestAuditVerifyRecordings(t *testing.T) {
	trail := t.TempDir()
	writeAuditTrail(t, trail)
	key := keyFile(t, testKeyHex)
	otherKey := keyFile(t, strings.Repeat("a5", 32)+"\n")
	good := func(t *testing.T) string {
		dir := t.TempDir()
		writeRecording(t, dir)
		return dir
	}
	for _, tc := range []struct {
		name  string
		dir   func(t *testing.T) string
		key   string
		extra []string
		code  int
		want  string
	}{
		{"intact", good, key, nil, exitOK, "recordings: 1 verified, 0 incomplete, 0 failed"},
		{"byte flipped", func(t *testing.T) string {
			dir := good(t)
			p, _ := filepath.Glob(filepath.Join(dir, "*"+recording.FileExt))
			b, _ := os.ReadFile(p[0])
			b[len(b)/2] ^= 1
			os.WriteFile(p[0], b, 0o600)
			return dir
		}, key, nil, exitFail, "FAILED"},
		{"cut short", func(t *testing.T) string {
			dir := good(t)
			p, _ := filepath.Glob(filepath.Join(dir, "*"+recording.FileExt))
			cut := truncate(t, p[0])
			os.Remove(p[0])
			os.Rename(cut, p[0])
			return dir
		}, key, nil, exitFail, "INCOMPLETE"},
		{"cut short, allowed", func(t *testing.T) string {
			dir := good(t)
			p, _ := filepath.Glob(filepath.Join(dir, "*"+recording.FileExt))
			cut := truncate(t, p[0])
			os.Remove(p[0])
			os.Rename(cut, p[0])
			return dir
		}, key, []string{"--allow-incomplete"}, exitOK, "1 incomplete"},
		{"another key", good, otherKey, nil, exitFail, "FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"audit", "verify", "--recordings", tc.dir(t), "--key", tc.key}, tc.extra...)
			code, out, errOut := runCLI(t, append(args, trail)...)
			if code != tc.code || !strings.Contains(out, tc.want) || !strings.Contains(out, ": OK") {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
		})
	}
}
