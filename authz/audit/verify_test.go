package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mustVerify fails the test unless dir verifies (with its own keys).
func mustVerify(t *testing.T, dir string) *Report {
	t.Helper()
	rep, err := Verify(dir, nil, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.ExitCode() != 0 {
		t.Fatalf("verify failed:\n%s", rep)
	}
	return rep
}

func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeTrail writes n events through a FileLog (a checkpoint after every
// ckpt records; Sync after each event so group commits are predictable)
// and closes it.
func writeTrail(t *testing.T, dir, instance string, key ed25519.PrivateKey, n, ckpt int) string {
	t.Helper()
	l, err := OpenFile(FileConfig{Dir: dir, Instance: instance, SigningKey: key, CheckpointEvery: ckpt, FlushInterval: time.Hour},
		Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		l.Emit(context.Background(), Event{Type: TypeDecision, UserID: fmt.Sprintf("user-%03d", i), Decision: Allow, Reason: fmt.Sprint(i)})
		if err := l.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return l.Path()
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(data), "\n")[:strings.Count(string(data), "\n")]
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lineType is the type field of a trail line.
func lineType(t *testing.T, line string) string {
	t.Helper()
	var e Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatal(err)
	}
	return e.Type
}

// rechain rewrites lines into a fresh, consistent chain signed by key
// (what an attacker with their own key would produce after editing), and
// writes a matching closed head marker.
func rechain(t *testing.T, dir, instance string, lines []string, key ed25519.PrivateKey) []string {
	t.Helper()
	c := chain{instance: instance, key: key, keyID: KeyID(key.Public().(ed25519.PublicKey)), head: sha256.Sum256(nil)}
	var out []string
	for _, ln := range lines {
		var e Event
		if err := json.Unmarshal([]byte(ln), &e); err != nil {
			t.Fatal(err)
		}
		var b []byte
		if e.Type == TypeCheckpoint {
			b = c.appendCheckpoint(nil, e.Time)
		} else {
			body := ln[:strings.LastIndex(ln, `,"seq":`)] + "}"
			b = appendRecord(nil, []byte(body), c.seq+1)
			c.seal(b)
		}
		out = append(out, string(b))
	}
	writeHead(t, dir, instance, key, c.seq, c.head, true)
	return out
}

// writeHead replaces the head marker file with one signed by key.
func writeHead(t testing.TB, dir, instance string, key ed25519.PrivateKey, seq uint64, hash [32]byte, closed bool) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, fileBase(instance)+".head"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := &headFile{f: f, key: key}
	if err := h.write(instance, seq, hash, fixedNow(), closed, true); err != nil {
		t.Fatal(err)
	}
}

// flipByte changes one character inside the first occurrence of sub.
func flipByte(t *testing.T, line, sub string, at int) string {
	t.Helper()
	i := strings.Index(line, sub)
	if i < 0 {
		t.Fatalf("%q not in %q", sub, line)
	}
	b := []byte(line)
	c := b[i+at]
	switch {
	case c >= '0' && c <= '8', c >= 'a' && c <= 'e':
		b[i+at] = c + 1
	default:
		b[i+at] = '1'
	}
	return string(b)
}

// TestTamper edits a closed trail (41 events, a checkpoint after every 10
// records and one at Close: 46 lines) in one way each and checks that Verify names the problem and
// the record. Line i holds seq i+1.
func TestTamper(t *testing.T) {
	const inst = "gw-1"
	key := testKey(t)
	foreign := testKey(t)
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string, lines []string) []string // returns the new lines (nil: leave the file)
		kind    string
		seq     uint64
		pubkey  bool // verify with --pubkey (the true key) instead of the copy beside
		wantMsg string
		line    int64 // the line the problem names; 0: the seq's own line
	}{
		{"flip a byte in an event", func(t *testing.T, dir string, l []string) []string {
			l[4] = flipByte(t, l[4], "user-004", 7)
			return l
		}, ProblemModified, 5, false, "was modified", 0},
		{"flip a byte in the last event", func(t *testing.T, dir string, l []string) []string {
			n := len(l) - 2 // the last line is Close's checkpoint
			l[n] = flipByte(t, l[n], "user-", 6)
			return l
		}, ProblemModified, 45, false, "was modified", 0},
		{"flip a byte in a seq field", func(t *testing.T, dir string, l []string) []string {
			l[6] = flipByte(t, l[6], `"seq":7`, 6)
			return l
		}, ProblemModified, 7, false, "seq was modified", 0},
		{"flip a byte in a prev field", func(t *testing.T, dir string, l []string) []string {
			l[6] = flipByte(t, l[6], `"prev":"`, 20)
			return l
		}, ProblemModified, 7, false, "prev hash does not match", 0},
		{"flip a byte in a checkpoint signature", func(t *testing.T, dir string, l []string) []string {
			i := 10
			if lineType(t, l[i]) != TypeCheckpoint {
				t.Fatalf("line %d is not a checkpoint: %s", i, l[i])
			}
			l[i] = flipByte(t, l[i], `"sig":"`, 30)
			return l
		}, ProblemBadSignature, 11, false, "signature does not verify", 0},
		{"delete a record", func(t *testing.T, dir string, l []string) []string {
			return append(l[:14:14], l[15:]...)
		}, ProblemDeleted, 16, false, "seq 15 is missing", 15},
		{"delete two records", func(t *testing.T, dir string, l []string) []string {
			return append(l[:14:14], l[16:]...)
		}, ProblemDeleted, 17, false, "seq 15..16 are missing", 15},
		{"delete the first record", func(t *testing.T, dir string, l []string) []string {
			return l[1:]
		}, ProblemDeleted, 2, false, "missing from the start", 1},
		{"swap two adjacent records", func(t *testing.T, dir string, l []string) []string {
			l[20], l[21] = l[21], l[20]
			return l
		}, ProblemReordered, 22, false, "swapped", 21},
		{"swap two records apart", func(t *testing.T, dir string, l []string) []string {
			l[20], l[23] = l[23], l[20]
			return l
		}, ProblemReordered, 24, false, "belongs later", 21},
		{"insert a copy of a record", func(t *testing.T, dir string, l []string) []string {
			return append(l[:30:30], append([]string{l[3]}, l[30:]...)...)
		}, ProblemInserted, 4, false, "inserted", 31},
		{"insert a forged record that links", func(t *testing.T, dir string, l []string) []string {
			// Same seq and prev as the real record 31, other content.
			forged := strings.Replace(l[30], `"decision":"allow"`, `"decision":"deny"`, 1)
			return append(l[:30:30], append([]string{forged}, l[30:]...)...)
		}, ProblemInserted, 31, false, "this one was inserted", 31},
		{"insert a line without chain fields", func(t *testing.T, dir string, l []string) []string {
			return append(l[:30:30], append([]string{`{"time":"2025-01-01T00:00:00Z","type":"admin"}` + "\n"}, l[30:]...)...)
		}, ProblemInserted, 0, false, "without seq/prev", 31},
		{"truncate the tail behind the head", func(t *testing.T, dir string, l []string) []string {
			return l[:len(l)-5]
		}, ProblemTruncated, 41, false, "were cut off", 0},
		{"truncate the tail after a checkpoint", func(t *testing.T, dir string, l []string) []string {
			return l[:33] // line 33 (seq 33) is a checkpoint: the trail alone still ends signed
		}, ProblemTruncated, 33, false, "were cut off", 0},
		{"truncate mid-line", func(t *testing.T, dir string, l []string) []string {
			n := len(l) - 3
			l[n] = l[n][:len(l[n])/2]
			return l[:n+1]
		}, ProblemTruncated, 43, false, "and an incomplete line", 0},
		{"re-sign a checkpoint with a foreign key", func(t *testing.T, dir string, l []string) []string {
			var e Event
			json.Unmarshal([]byte(l[21]), &e)
			if e.Type != TypeCheckpoint {
				t.Fatalf("line 22 is not a checkpoint: %s", l[21])
			}
			c := chain{instance: inst, key: foreign, keyID: KeyID(foreign.Public().(ed25519.PublicKey)), seq: 21}
			var r record
			var p parsed
			if err := parseRecord([]byte(strings.TrimSuffix(l[21], "\n")), &r, &p); err != nil {
				t.Fatal(err)
			}
			c.head = r.prev
			l[21] = string(c.appendCheckpoint(nil, e.Time))
			return l
		}, ProblemForeignKey, 22, false, "not a trusted key", 0},
		{"re-sign everything and replace the key beside the trail", func(t *testing.T, dir string, l []string) []string {
			l[4] = strings.Replace(l[4], `"decision":"allow"`, `"decision":"deny"`, 1)
			l = rechain(t, dir, inst, l, foreign)
			pub := filepath.Join(dir, fileBase(inst)+".pub")
			if err := os.WriteFile(pub, MarshalPublicKey(foreign.Public().(ed25519.PublicKey)), 0o644); err != nil {
				t.Fatal(err)
			}
			return l
		}, ProblemForeignKey, 11, true, "not a trusted key", 0},
		{"modify a record and re-link the rest without the key", func(t *testing.T, dir string, l []string) []string {
			l[4] = strings.Replace(l[4], `"decision":"allow"`, `"decision":"deny"`, 1)
			relinked := rechain(t, t.TempDir(), inst, l, foreign)
			for i := range 10 { // records 1..10 re-linked; checkpoint 11 keeps the true signature
				l[i] = relinked[i]
			}
			return l
		}, ProblemModified, 10, false, "or a record after seq 0", 0},
		{"delete the head marker", func(t *testing.T, dir string, l []string) []string {
			os.Remove(filepath.Join(dir, fileBase(inst)+".head"))
			return nil
		}, ProblemMissingHead, 46, false, "no valid head marker", 0},
		{"append after close", func(t *testing.T, dir string, l []string) []string {
			c := chain{instance: inst, seq: uint64(len(l))}
			var r record
			var p parsed
			parseRecord([]byte(strings.TrimSuffix(l[len(l)-1], "\n")), &r, &p)
			c.head = sha256.Sum256([]byte(strings.TrimSuffix(l[len(l)-1], "\n")))
			e := sampleEvent()
			e.Instance = inst
			b := appendRecord(nil, AppendJSON(nil, &e), c.seq+1)
			c.seal(b)
			return append(l, string(b))
		}, ProblemInserted, 47, false, "appended afterwards", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeTrail(t, dir, inst, key, 41, 10)
			lines := fileLines(t, path)
			if len(lines) != 46 || lineType(t, lines[45]) != TypeCheckpoint {
				t.Fatalf("%d lines, want 41 events and 5 checkpoints", len(lines))
			}
			mustVerify(t, dir)
			if nl := tc.tamper(t, dir, lines); nl != nil {
				writeLines(t, path, nl)
			}
			var keys []ed25519.PublicKey
			if tc.pubkey {
				keys = []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
				// Without --pubkey the re-signed trail verifies, and the
				// report says which key it trusted.
				rep, err := Verify(dir, nil, VerifyOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if !rep.OK() || !rep.BesideKey || !strings.Contains(rep.String(), "public key stored beside the trail") {
					t.Fatalf("re-signed trail with the replaced key beside it:\n%s", rep)
				}
			}
			rep, err := Verify(dir, keys, VerifyOptions{KeySource: "--pubkey test.pub"})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.ExitCode() != 1 || len(rep.Problems) != 1 {
				t.Fatalf("tampered trail verified or problems miscounted:\n%s", rep)
			}
			p := rep.Problems[0]
			line := tc.line
			if line == 0 {
				line = int64(tc.seq)
			}
			if p.Kind != tc.kind || p.Seq != tc.seq || p.Line != line || !strings.Contains(p.Detail, tc.wantMsg) || p.Instance != inst {
				t.Fatalf("problem %+v\nwant kind %s, seq %d, line %d, detail containing %q\n%s", p, tc.kind, tc.seq, line, tc.wantMsg, rep)
			}
			if p.File != FileName(inst) {
				t.Fatalf("problem names file %q", p.File)
			}
			t.Log(p)
		})
	}
}

// Two instances share a directory: each chain is verified on its own, and
// a problem in one names that instance only.
func TestVerifyTwoInstances(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := testKey(t), testKey(t)
	writeTrail(t, dir, "gw-1", k1, 25, 10)
	p2 := writeTrail(t, dir, "gw-2", k2, 25, 10)
	rep := mustVerify(t, dir)
	if len(rep.Chains) != 2 || rep.Chains[0].Instance != "gw-1" || rep.Chains[1].Instance != "gw-2" {
		t.Fatalf("chains: %+v", rep.Chains)
	}
	lines := fileLines(t, p2)
	lines[7] = strings.Replace(lines[7], "user-007", "user-666", 1)
	writeLines(t, p2, lines)
	// Both public keys, as --pubkey would give them.
	rep, err := Verify(dir, []ed25519.PublicKey{k1.Public().(ed25519.PublicKey), k2.Public().(ed25519.PublicKey)}, VerifyOptions{KeySource: "--pubkey keys.pem"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Problems) != 1 {
		t.Fatalf("report:\n%s", rep)
	}
	if p := rep.Problems[0]; p.Instance != "gw-2" || p.Kind != ProblemModified || p.Seq != 8 || p.File != FileName("gw-2") {
		t.Fatalf("problem %+v", p)
	}
	if rep.Chains[0].Problem != nil || rep.Chains[0].Records != 28 {
		t.Fatalf("gw-1: %+v", rep.Chains[0])
	}
	if rep.BesideKey || strings.Contains(rep.String(), "WARNING") {
		t.Fatalf("explicit keys reported as the copy beside:\n%s", rep)
	}
	// A record moved from one instance's file into the other's.
	p1 := filepath.Join(dir, FileName("gw-1"))
	l1 := fileLines(t, p1)
	writeLines(t, p1, append(l1[:3:3], append([]string{lines[3]}, l1[3:]...)...))
	rep, _ = Verify(dir, nil, VerifyOptions{})
	if rep.Chains[0].Problem == nil || rep.Chains[0].Problem.Kind != ProblemInserted || rep.Chains[0].Problem.Line != 4 {
		t.Fatalf("record of another instance not named:\n%s", rep)
	}
}

func TestVerifyReport(t *testing.T) {
	dir := t.TempDir()
	writeTrail(t, dir, "gw", nil, 3, 0) // default key: Dir/audit-gw.key
	rep := mustVerify(t, dir)
	s := rep.String()
	for _, want := range []string{"OK", "WARNING: verified with the public key stored beside the trail", "private signing key is stored beside the trail",
		"instance gw: OK: 4 records (seq 1..4)", "head seq 4 (closed"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	// --pubkey with the right key, read from a PEM file.
	pub := filepath.Join(t.TempDir(), "audit.pub")
	os.WriteFile(pub, MarshalPublicKey(rep.chainKey(t, dir)), 0o644)
	keys, err := ReadPublicKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(dir, keys, VerifyOptions{KeySource: "--pubkey " + pub})
	if err != nil || !rep.OK() || rep.BesideKey || strings.Contains(rep.String(), "WARNING") {
		t.Fatalf("with --pubkey: %v\n%s", err, rep)
	}
	// An empty directory, a missing one, no key at all.
	if rep, err := Verify(t.TempDir(), keys, VerifyOptions{}); err != nil || rep.OK() || rep.ExitCode() != 1 {
		t.Fatalf("empty dir: %v %v", err, rep)
	}
	if _, err := Verify(filepath.Join(dir, "nope"), keys, VerifyOptions{}); err == nil {
		t.Fatal("missing dir: no error")
	}
	os.Remove(filepath.Join(dir, "audit-gw.pub"))
	if rep, err := Verify(dir, nil, VerifyOptions{}); err != nil || rep.OK() || rep.Problems[0].Kind != ProblemNoKey {
		t.Fatalf("no key: %v %v", err, rep)
	}
}

// chainKey reads the public key a test trail was signed with (the copy
// beside it).
func (r *Report) chainKey(t *testing.T, dir string) ed25519.PublicKey {
	t.Helper()
	keys, err := ReadPublicKeys(filepath.Join(dir, "audit-gw.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return keys[0]
}

// Verifying a trail that is being written never reports a problem: heads
// are read before trails, the head never runs ahead of the durable trail,
// a line being written is only a note.
func TestVerifyWhileWriting(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenFile(FileConfig{Dir: dir, Instance: "live", FlushInterval: time.Millisecond, CheckpointEvery: 25}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 4000 { // bounded: each Verify reads the whole trail
			select {
			case <-stop:
				return
			default:
			}
			l.Emit(context.Background(), Event{Type: TypeAdmin, Reason: fmt.Sprint(i), Attrs: map[string]string{"pad": strings.Repeat("y", i%500)}})
			if i%50 == 0 {
				l.Sync(context.Background())
			}
		}
	}()
	finished := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	for i := 0; i < 30 && (i < 3 || !finished()); i++ {
		rep, err := Verify(dir, nil, VerifyOptions{})
		if err != nil || !rep.OK() {
			close(stop)
			<-done
			t.Fatalf("verify %d of a live trail: %v\n%s", i, err, rep)
		}
	}
	close(stop)
	<-done
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir)
}
