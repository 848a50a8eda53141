package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineHash is the chain hash of a trail line (with or without newline).
func lineHash(line string) [32]byte { return sha256.Sum256([]byte(strings.TrimSuffix(line, "\n"))) }

// TestOpenRecovery covers what OpenFile accepts and refuses on a trail
// it did not close (a crash) or that was edited.
func TestOpenRecovery(t *testing.T) {
	const inst = "gw"
	tests := []struct {
		name    string
		edit    func(t *testing.T, dir, path string, key ed25519.PrivateKey, lines []string)
		refuse  string // substring of the OpenFile error; "" means it opens
		note    string // before reopening, verify passes with this note
		problem string // before reopening, verify fails with this kind
	}{
		{"records after the head (killed before the head update)", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			writeHead(t, dir, inst, key, 5, lineHash(l[4]), false)
		}, "", "not yet covered by a signature", ""},
		{"records after an empty head (killed after the first commit)", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			writeHead(t, dir, inst, key, 0, sha256.Sum256(nil), false)
		}, "", "not yet covered by a signature", ""},
		{"records after the head that do not link", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			writeHead(t, dir, inst, key, 5, lineHash(l[4]), false)
			l[7] = strings.Replace(l[7], "user-007", "user-666", 1)
			writeLines(t, path, l)
		}, "do not link up", "", ProblemModified},
		{"trail cut behind the head", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			writeLines(t, path, l[:8])
		}, "records were cut off", "", ProblemTruncated},
		{"last record modified", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			n := len(l) - 1
			l[n] = strings.Replace(l[n], "05:06:07", "05:06:08", 1) // Close's checkpoint
			writeLines(t, path, l)
		}, "does not match its signed head marker", "", ProblemBadSignature},
		{"head deleted", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			os.Remove(filepath.Join(dir, "audit-gw.head"))
		}, "without a valid head marker", "", ProblemMissingHead},
		{"head signed by another key", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			writeHead(t, dir, inst, testKey(t), uint64(len(l)), lineHash(l[len(l)-1]), true)
		}, "not in audit-gw.pub", "", ProblemForeignKey},
		{"torn newest head slot", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			f, _ := os.OpenFile(filepath.Join(dir, "audit-gw.head"), os.O_RDWR, 0)
			defer f.Close()
			slots, _ := readHeadSlots(f)
			newest := 0
			if slots[1].m.Gen > slots[0].m.Gen {
				newest = 1
			}
			f.WriteAt([]byte(`{"instance":"gw","gen":99,"se`+"\n"), int64(newest)*headSlotStride)
		}, "", "unreadable", ""},
		{"records of another instance", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			other := strings.ReplaceAll(strings.Join(l, ""), `"instance":"gw"`, `"instance":"gw2"`)
			os.WriteFile(path, []byte(other), 0o600)
		}, "belongs to instance", "", ""},
		{"a non-record line after the chain", func(t *testing.T, dir, path string, key ed25519.PrivateKey, l []string) {
			writeLines(t, path, append(l, `{"type":"admin"}`+"\n"))
		}, "not a chain record", "", ProblemInserted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey(t)
			path := writeTrail(t, dir, inst, key, 12, 100) // 12 events + Close's checkpoint
			tc.edit(t, dir, path, key, fileLines(t, path))
			rep, err := Verify(dir, nil, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.problem != "":
				if rep.OK() || rep.Problems[0].Kind != tc.problem {
					t.Fatalf("verify before reopening: want %s:\n%s", tc.problem, rep)
				}
			case tc.note != "":
				if !rep.OK() || !strings.Contains(rep.String(), tc.note) {
					t.Fatalf("verify before reopening: want OK with note %q:\n%s", tc.note, rep)
				}
			}
			l, err := OpenFile(FileConfig{Dir: dir, Instance: inst, SigningKey: key}, Options{Now: fixedNow})
			if tc.refuse != "" {
				if err == nil {
					l.Close()
					t.Fatal("OpenFile accepted the trail")
				}
				if !strings.Contains(err.Error(), tc.refuse) {
					t.Fatalf("OpenFile: %v, want %q", err, tc.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: "after"})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			rep = mustVerify(t, dir)
			if c := rep.Chains[0]; c.Unsigned != 0 || c.Records != 15 {
				t.Fatalf("after reopening: %+v", c)
			}
		})
	}
}

// A file written before chaining keeps its lines; the chain starts after
// them and its first prev covers them, so editing them is detected.
func TestOpenLegacyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName("gw"))
	legacy := `{"time":"2025-01-01T00:00:00Z","instance":"gw","type":"admin","reason":"old"}` + "\n" + `{"time":"2025-` + "\n"
	os.WriteFile(path, []byte(legacy), 0o600)
	key := testKey(t)
	l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw", SigningKey: key}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: "new"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if !strings.Contains(rep.String(), "2 lines before the first record") {
		t.Fatalf("legacy lines not reported:\n%s", rep)
	}
	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), `"old"`, `"new"`, 1)), 0o600)
	rep, _ = Verify(dir, nil, VerifyOptions{})
	if rep.OK() || rep.Problems[0].Kind != ProblemModified || rep.Problems[0].Seq != 1 {
		t.Fatalf("edited legacy line not detected:\n%s", rep)
	}
}

// Retention will delete the oldest records and record a purge record;
// verify accepts a chain that starts late only with a matching, signed
// purge record.
func TestVerifyPurgedStart(t *testing.T) {
	tests := []struct {
		name    string
		through int    // records deleted from the start
		hash    string // through_hash; "" means the correct one
		ok      bool
	}{
		{"purge record matches", 10, "", true},
		{"purge record names another seq", 9, "", false},
		{"purge record with a wrong hash", 10, zeroHash, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := testKey(t)
			path := writeTrail(t, dir, "gw", key, 15, 100)
			lines := fileLines(t, path)
			h := lineHash(lines[9]) // record seq 10
			hash := hex.EncodeToString(h[:])
			if tc.hash != "" {
				hash = tc.hash
			}
			l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw", SigningKey: key}, Options{Now: fixedNow})
			if err != nil {
				t.Fatal(err)
			}
			l.emit(Event{Type: TypePurge, Attrs: map[string]string{"through_seq": strconv.Itoa(tc.through), "through_hash": hash}})
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			writeLines(t, path, fileLines(t, path)[10:])
			rep, err := Verify(dir, nil, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() != tc.ok {
				t.Fatalf("verify OK=%v, want %v:\n%s", rep.OK(), tc.ok, rep)
			}
			if tc.ok && !strings.Contains(rep.String(), "purged by retention") || !tc.ok && rep.Problems[0].Kind != ProblemDeleted {
				t.Fatalf("report:\n%s", rep)
			}
		})
	}
}

// A producer cannot forge the log's own record types.
func TestEmitReservedTypes(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw"}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{TypeCheckpoint, TypeRecovery, TypePurge} {
		l.Emit(context.Background(), Event{Type: typ})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range readLines(t, l.Path()) {
		got = append(got, e.Type)
	}
	if want := "reserved.audit.checkpoint,reserved.audit.recovery,reserved.audit.purge"; strings.Join(got, ",") != want {
		t.Fatalf("types %v, want %s", got, want)
	}
	mustVerify(t, dir)
}

// A checkpoint follows CheckpointInterval after the last one even when
// fewer than CheckpointEvery records were written, and even when the log
// then stays idle.
func TestCheckpointInterval(t *testing.T) {
	var mu sync.Mutex
	clock := sampleTime
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	advance := func(d time.Duration) {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
	}
	l, err := OpenFile(FileConfig{Dir: t.TempDir(), Instance: "gw", CheckpointInterval: time.Second}, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	count := func() int {
		n := 0
		for _, e := range readRecords(t, l.Path()) {
			if e.Type == TypeCheckpoint {
				n++
			}
		}
		return n
	}
	l.Emit(context.Background(), Event{Type: TypeAdmin})
	if err := l.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d checkpoints before the interval", n)
	}
	advance(2 * time.Second)
	// Idle: the writer's checkpoint timer fires on its own.
	waitFor(t, l, "the idle checkpoint", func() bool {
		data, _ := os.ReadFile(l.Path())
		return strings.Contains(string(data), `"type":"audit.checkpoint"`) && strings.HasSuffix(string(data), "\n")
	})
	if n := count(); n != 1 {
		t.Fatalf("%d checkpoints after the interval, want 1", n)
	}
}

// Sync honours its context; the events are still written afterwards.
func TestSyncContext(t *testing.T) {
	l, f := openCounting(t, DefaultBuffer, true)
	l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: "held"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Sync(ctx) }()
	<-f.entered // the writer is stuck in Write
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync with a cancelled context: %v", err)
	}
	f.open()
	if err := Sync(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if got := reasons(t, l.Path()); got != "held" {
		t.Fatalf("events %q", got)
	}
	// Emitters that are not logs.
	var m Memory
	if err := Sync(context.Background(), Multi{&m, nil, l, Discard}); err != nil {
		t.Fatal(err)
	}
	if err := Sync(context.Background(), Discard); err != nil {
		t.Fatal(err)
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second load: %v, same key %v", err, k1.Equal(k2))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode().Perm())
	}
	pub := k1.Public().(ed25519.PublicKey)
	two := append(MarshalPublicKey(pub), MarshalPublicKey(testKey(t).Public().(ed25519.PublicKey))...)
	if keys, err := ParsePublicKeys(two); err != nil || len(keys) != 2 || !keys[0].Equal(pub) {
		t.Fatalf("ParsePublicKeys: %v %d", err, len(keys))
	}
	priv, _ := os.ReadFile(path)
	for name, data := range map[string][]byte{
		"private key":   priv,
		"nothing":       []byte("hello"),
		"trailing junk": append(MarshalPublicKey(pub), "junk"...),
	} {
		if _, err := ParsePublicKeys(data); err == nil {
			t.Errorf("ParsePublicKeys(%s) succeeded", name)
		}
	}
	if _, err := ParsePrivateKey(MarshalPublicKey(pub)); err == nil {
		t.Error("ParsePrivateKey accepted a public key")
	}
	os.WriteFile(path, []byte("garbage"), 0o600)
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Error("LoadOrCreateKey accepted garbage")
	}
	// OpenFile: the key's public half is added to the .pub beside the
	// trail, once per key (rotation keeps the old ones).
	for range 2 {
		for _, k := range []ed25519.PrivateKey{k1, k2, testKey(t)} {
			l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw", SigningKey: k}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			l.Emit(context.Background(), Event{Type: TypeAdmin})
			l.Close()
		}
	}
	keys, err := ReadPublicKeys(filepath.Join(dir, "audit-gw.pub"))
	if err != nil || len(keys) != 3 {
		t.Fatalf(".pub: %v, %d keys, want 3", err, len(keys))
	}
	mustVerify(t, dir)
}
