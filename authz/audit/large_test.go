package audit

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// genTrail writes a closed trail of n records quickly: one encoded event
// body (records differ by seq and prev), sealed with the
// writer's own chain code, a checkpoint after every 1000 records, and a
// closed head marker. It bypasses the FileLog goroutines, not the format.
func genTrail(t testing.TB, dir, instance string, key ed25519.PrivateKey, n int) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, FileName(instance)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	c := chain{instance: instance, key: key, keyID: KeyID(key.Public().(ed25519.PublicKey)), head: sha256.Sum256(nil)}
	// A typical decision event; records differ by seq and prev.
	e := Event{Time: sampleTime, Instance: instance, Type: TypeDecision, UserID: "https://idp.example#alice",
		SourceIP: "192.0.2.7", App: "grafana", Method: "GET", Path: "/d/abc", Decision: Allow, Reason: "allowed"}
	body := AppendJSON(nil, &e)
	var buf []byte
	for c.seq < uint64(n) {
		if c.since == DefaultCheckpointEvery {
			buf = c.appendCheckpoint(buf[:0], sampleTime)
		} else {
			buf = appendRecord(buf[:0], body, c.seq+1)
			c.seal(buf)
		}
		bw.Write(buf)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	writeHead(t, dir, instance, key, c.seq, c.head, true)
	if err := os.WriteFile(filepath.Join(dir, fileBase(instance)+".pub"), MarshalPublicKey(key.Public().(ed25519.PublicKey)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// An untouched trail of 1,000,000 records verifies, streaming: the heap
// stays small whatever the trail's size (about 300 MB here). The 1M case
// runs in normal test runs (about 2 s here; `make test` runs it so after
// the race-enabled pass); under the race detector,
// which instruments every byte the parser reads, and with -short, the
// same test runs on 100,000 records. AUDIT_VERIFY_N overrides the count.
func TestVerifyMillion(t *testing.T) {
	n := 1_000_000
	if raceEnabled || testing.Short() {
		n = 100_000
	}
	if s := os.Getenv("AUDIT_VERIFY_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	dir := t.TempDir()
	key := testKey(t)
	start := time.Now()
	genTrail(t, dir, "gw-1", key, n)
	gen := time.Since(start)
	fi, _ := os.Stat(filepath.Join(dir, FileName("gw-1")))

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done, stop := make(chan struct{}), make(chan struct{})
	peak := uint64(0)
	go func() { // sample the live heap while Verify runs
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-stop:
				return
			}
		}
	}()
	start = time.Now()
	rep, err := Verify(dir, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, VerifyOptions{KeySource: "--pubkey"})
	took := time.Since(start)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Chains) != 1 || rep.Chains[0].Records != uint64(n) || rep.Chains[0].Checkpoints != uint64(n/(DefaultCheckpointEvery+1)) {
		t.Fatalf("report:\n%s", rep)
	}
	// Constant memory: the 1 MiB read buffer and small change, not the
	// trail (a bound far below its size, loose enough for the race runtime).
	if grew := int64(peak) - int64(before.HeapInuse); grew > 64<<20 {
		t.Fatalf("heap grew by %d MiB while verifying a %d MiB trail", grew>>20, fi.Size()>>20)
	}
	t.Logf("%d records, %d MiB: generated in %v, verified in %v (%.0f records/s), heap peak %d MiB",
		n, fi.Size()>>20, gen.Round(time.Millisecond), took.Round(time.Millisecond), float64(n)/took.Seconds(), peak>>20)
}
