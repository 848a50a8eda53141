package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// manualClock is a minimal injected clock for this package's own tests
// (storetest.Clock cannot be imported here: storetest imports store).
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *manualClock { return &manualClock{t: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)} }

func openTestEmbedded(t *testing.T, path string, opts EmbeddedOptions) *Embedded {
	t.Helper()
	e, err := OpenEmbedded(path, opts)
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// fill writes one record of every kind, so the file has real pages.
func fill(t *testing.T, e *Embedded, n int) {
	t.Helper()
	e.db.NoSync = true // test data only: skip the fsyncs
	defer func() { e.db.NoSync = false }()
	ctx := t.Context()
	exp := e.now().Add(time.Hour)
	for i := range n {
		id := strings.Repeat("x", i%50) + string(rune('a'+i%26))
		must(t, e.PutSession(ctx, Session{ID: id + "-s", UserID: id, ExpiresAt: exp, Data: make([]byte, 300)}))
		must(t, e.PutUser(ctx, id, []byte("{}")))
		must(t, e.PutLock(ctx, Lock{Subject: "user:" + id, Reason: "r"}))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedFileMode(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		before os.FileMode // 0: the file does not exist yet
	}{
		{"new file", 0},
		{"existing world-readable file is tightened", 0o644},
		{"existing group-writable file is tightened", 0o660},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, string(rune('a'+i))+".db")
			if tc.before != 0 {
				e := openTestEmbedded(t, path, EmbeddedOptions{})
				must(t, e.Close())
				must(t, os.Chmod(path, tc.before))
			}
			e := openTestEmbedded(t, path, EmbeddedOptions{})
			fi, err := os.Stat(path)
			must(t, err)
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
			}
			must(t, e.Close())
		})
	}
}

func TestEmbeddedOpenErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	e := openTestEmbedded(t, good, EmbeddedOptions{Now: newClock().Now})
	fill(t, e, 200)
	var used int64 // bytes the metadata accounts for (the file may be longer)
	must(t, e.db.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil }))
	must(t, e.Close())
	data, err := os.ReadFile(good)
	must(t, err)
	if len(data) < 16<<10 {
		t.Fatalf("test file too small to truncate meaningfully: %d bytes", len(data))
	}
	writeFile := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, b, 0o600))
		return p
	}
	garbage := make([]byte, 3*4096)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	flipped := append([]byte{}, data...)
	for i := 4096 * 2; i < len(flipped); i += 97 {
		flipped[i] ^= 0xff // damage every data page, leave the metas intact
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"empty path", "", "path"},
		{"directory", dir, "cannot be opened"},
		{"truncated to 100 bytes", writeFile("t100.db", data[:100]), "truncated or corrupted"},
		{"truncated to one page", writeFile("t4k.db", data[:4096]), "truncated or corrupted"},
		{"truncated to the meta pages", writeFile("t8k.db", data[:8192]), "truncated or corrupted"},
		{"truncated to half", writeFile("thalf.db", data[:len(data)/2]), "truncated or corrupted"},
		{"last used page cut", writeFile("tpage.db", data[:used-4096]), "truncated or corrupted"},
		{"not a database", writeFile("garbage.db", garbage), "truncated or corrupted"},
		{"damaged data pages", writeFile("flipped.db", flipped), "truncated or corrupted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := OpenEmbedded(tc.path, EmbeddedOptions{})
			if err == nil {
				_ = e.Close()
				t.Fatal("OpenEmbedded succeeded on a bad file")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if tc.path != "" && !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

func TestEmbeddedLockedByAnotherHandle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openTestEmbedded(t, path, EmbeddedOptions{})
	_, err := OpenEmbedded(path, EmbeddedOptions{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second open = %v, want a 'locked' error wrapping ErrUnavailable", err)
	}
}

// TestEmbeddedCorruptRecords overwrites a record in every bucket with bad
// bytes: reads must fail closed, never panic.
func TestEmbeddedCorruptRecords(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	e := openTestEmbedded(t, filepath.Join(t.TempDir(), "state.db"), EmbeddedOptions{Now: clock.Now})
	exp := clock.Now().Add(time.Hour)
	must(t, e.PutSession(ctx, Session{ID: "s", UserID: "u", ExpiresAt: exp}))
	bad := [][]byte{
		{},
		{recordVersion},
		{9, 0, 0, 0, 0, 0, 0, 0, 0},
		{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		{recordVersion, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 5, 'a'},
		encodeRecord(0, []byte("u"), []byte("not a time"), nil),
		encodeRecord(0, []byte("1234567")),
		encodeRecord(0, nil, nil, []byte("bad time"), nil, nil),
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"GetSession", func() error { _, err := e.GetSession(ctx, "s"); return err }},
		{"ListSessions(user)", func() error { _, err := e.ListSessions(ctx, "u"); return err }},
		{"ListSessions(all)", func() error { _, err := e.ListSessions(ctx, ""); return err }},
		{"GetUser", func() error { _, err := e.GetUser(ctx, "k"); return err }},
		{"ListUsers", func() error { _, err := e.ListUsers(ctx); return err }},
		{"GetEnrolment", func() error { _, err := e.GetEnrolment(ctx, "k"); return err }},
		{"ClaimStep", func() error { _, err := e.ClaimStep(ctx, "k", 1, time.Minute); return err }},
		{"ConsumeRecoveryCode", func() error { _, err := e.ConsumeRecoveryCode(ctx, "k", "h"); return err }},
		{"RecoveryCodesLeft", func() error { _, err := e.RecoveryCodesLeft(ctx, "k"); return err }},
		{"Incr", func() error { _, err := e.Incr(ctx, "k", 1, time.Minute); return err }},
		{"Count", func() error { _, err := e.Count(ctx, "k"); return err }},
		{"GetLock", func() error { _, err := e.GetLock(ctx, "k"); return err }},
		{"ListLocks", func() error { _, err := e.ListLocks(ctx); return err }},
		{"GetEphemeral", func() error { _, err := e.GetEphemeral(ctx, "k"); return err }},
		{"TakeEphemeral", func() error { _, err := e.TakeEphemeral(ctx, "k"); return err }},
		{"ListPresence", func() error { _, err := e.ListPresence(ctx, "k"); return err }},
		{"GetRecord", func() error { _, err := e.GetRecord(ctx, "k", "k"); return err }},
		{"CreateRecord", func() error { _, err := e.CreateRecord(ctx, "k", "k", nil); return err }},
		{"SwapRecord", func() error { _, err := e.SwapRecord(ctx, "k", "k", nil, nil); return err }},
		{"ListRecords", func() error { _, err := e.ListRecords(ctx, "k"); return err }},
	}
	for i, b := range bad {
		must(t, e.db.Update(func(tx *bbolt.Tx) error {
			for _, name := range allBuckets {
				key := []byte("k")
				switch {
				case string(name) == string(bucketSessions):
					key = []byte("s")
				case string(name) == string(bucketSteps):
					key = stepKey("k", 1)
				case string(name) == string(bucketPresence), string(name) == string(bucketRecords):
					key = indexKey("k", "k")
				case string(name) == string(bucketSessIndex):
					continue
				}
				if err := tx.Bucket(name).Put(key, b); err != nil {
					return err
				}
			}
			return nil
		}))
		for _, c := range calls {
			err := c.call()
			// A record that happens to decode for one bucket may be fine
			// there (e.g. a 0-field step mark); everything else must be
			// a clean ErrUnavailable, never a panic or ErrNotFound.
			if err == nil && okFor(c.name, b) {
				continue
			}
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
				t.Errorf("record %d: %s = %v, want ErrUnavailable", i, c.name, err)
			}
		}
		// The sweeper skips what it cannot decode.
		if _, err := e.sweep(); err != nil {
			t.Errorf("record %d: sweep: %v", i, err)
		}
	}
}

// okFor reports whether b is a valid record for the bucket behind call
// (some bad inputs are only bad for some buckets).
func okFor(call string, b []byte) bool {
	want, opaque := map[string]int{"GetUser": 1, "ListUsers": 1, "GetEnrolment": 1, "GetEphemeral": 1, "TakeEphemeral": 1,
		"ListPresence": 1, "GetRecord": 1, "ListRecords": 1, "CreateRecord": 1, "SwapRecord": 1, "ClaimStep": 0, "RecoveryCodesLeft": -1, "ConsumeRecoveryCode": -1}[call]
	if !opaque {
		return false
	}
	_, err := decodeRecord(b, want)
	return err == nil
}

func TestEmbeddedSweep(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	e := openTestEmbedded(t, filepath.Join(t.TempDir(), "state.db"), EmbeddedOptions{Now: clock.Now})
	now := clock.Now()
	must(t, e.PutSession(ctx, Session{ID: "short", UserID: "u", ExpiresAt: now.Add(time.Minute)}))
	must(t, e.PutSession(ctx, Session{ID: "long", UserID: "u", ExpiresAt: now.Add(time.Hour)}))
	must(t, e.PutLock(ctx, Lock{Subject: "temp", ExpiresAt: now.Add(time.Minute)}))
	must(t, e.PutLock(ctx, Lock{Subject: "perm"}))
	must(t, e.PutEphemeral(ctx, "eph", nil, time.Minute))
	must(t, e.PutPresence(ctx, "k", "gone", nil, time.Minute))
	must(t, e.PutPresence(ctx, "k", "kept", nil, time.Hour))
	_, err := e.ClaimStep(ctx, "u", 1, time.Minute)
	must(t, err)
	_, err = e.Incr(ctx, "c", 1, time.Minute)
	must(t, err)
	must(t, e.PutUser(ctx, "u", nil))
	must(t, e.PutRecord(ctx, "access-grant", "g", nil))

	if n, err := e.sweep(); err != nil || n != 0 {
		t.Fatalf("sweep before expiry removed %d (%v)", n, err)
	}
	clock.Advance(time.Minute)
	n, err := e.sweep()
	must(t, err)
	if n != 6 {
		t.Fatalf("sweep removed %d records, want 6", n)
	}
	counts := rawCounts(t, e)
	want := map[string]int{"sessions": 1, "session-index": 1, "locks": 1, "users": 1, "presence": 1, "records": 1}
	for _, b := range allBuckets {
		if counts[string(b)] != want[string(b)] {
			t.Errorf("bucket %s holds %d records after sweep, want %d", b, counts[string(b)], want[string(b)])
		}
	}
}

func rawCounts(t *testing.T, e *Embedded) map[string]int {
	t.Helper()
	out := map[string]int{}
	must(t, e.db.View(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			out[string(b)] = tx.Bucket(b).Stats().KeyN
		}
		return nil
	}))
	return out
}

func TestEmbeddedSweeperRunsAndStops(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	e := openTestEmbedded(t, filepath.Join(t.TempDir(), "state.db"), EmbeddedOptions{Now: clock.Now, SweepInterval: time.Millisecond})
	must(t, e.PutEphemeral(ctx, "eph", nil, time.Minute))
	clock.Advance(time.Minute)
	deadline := time.Now().Add(15 * time.Second)
	for rawCounts(t, e)["ephemeral"] != 0 {
		if time.Now().After(deadline) {
			t.Fatal("sweeper never removed the expired record")
		}
		time.Sleep(time.Millisecond)
	}
	must(t, e.Close())
	select {
	case <-e.swept:
	default:
		t.Fatal("Close returned before the sweeper stopped")
	}
}
