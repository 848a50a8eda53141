package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestStoreRoundTrip: Put (one PUT, then multipart), Stat, Get, List and
// Delete against a real S3 server; what comes back is byte for byte what
// went in, under prefix/<name>.
func TestStoreRoundTrip(t *testing.T) {
	g := startGW(t, "recordings", false)
	s := g.store(t, "rec/eu")
	ctx := context.Background()
	cases := []struct {
		name      string
		size      int
		multipart bool
	}{
		{"empty.pcrec", 0, false},
		{"small.pcrec", 1000, false},
		{"one-put-limit.pcrec", 5 << 20, false},
		{"multipart.pcrec", 11<<20 + 17, true},
	}
	// Lowered so that a test-sized file goes in parts (S3's smallest
	// part is 5 MiB).
	s.maxSingle, s.partSize = 5<<20, 5<<20
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(tc.size, uint64(i))
			sum, err := s.Sum(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if sum.SHA256 != sha256.Sum256(data) || (sum.Parts != nil) != tc.multipart {
				t.Fatalf("sums: sha %x parts %d", sum.SHA256, len(sum.Parts))
			}
			obj, err := s.Put(ctx, tc.name, bytes.NewReader(data), sum)
			if err != nil {
				t.Fatalf("put: %v\n%s", err, g.output())
			}
			if obj.Key != "rec/eu/"+tc.name || obj.Name != tc.name || obj.Size != int64(tc.size) || obj.ETag == "" {
				t.Fatalf("object %+v", obj)
			}
			// The POSIX backend keeps the object as a file: the key is
			// where the bytes are.
			onDisk, err := os.ReadFile(filepath.Join(g.data, "recordings", "rec", "eu", tc.name))
			if err != nil || !bytes.Equal(onDisk, data) {
				t.Fatalf("object file: %v (equal %v)", err, bytes.Equal(onDisk, data))
			}
			st, err := s.Stat(ctx, tc.name)
			if err != nil || st.Size != obj.Size || st.ETag != obj.ETag {
				t.Fatalf("stat %+v, %v; put %+v", st, err, obj)
			}
			rc, got, err := s.Get(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(back, data) || got.Size != obj.Size {
				t.Fatalf("get: %v, equal %v, %+v", err, bytes.Equal(back, data), got)
			}
		})
	}
	var names []string
	if err := s.List(ctx, func(o Object) error { names = append(names, o.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"empty.pcrec", "multipart.pcrec", "one-put-limit.pcrec", "small.pcrec"}
	if !slices.Equal(names, want) {
		t.Fatalf("list %v, want %v", names, want)
	}
	for _, n := range want {
		if err := s.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, n); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat after delete: %v", err)
		}
	}
	if err := s.Delete(ctx, "small.pcrec"); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
}

// changingReader serves data, except that byte at of the second pass over
// it reads flipped: a file modified between checksum and upload.
type changingReader struct {
	data   []byte
	at     int64
	passes map[int64]int // reads of offset 0 seen, per start offset
}

func (c *changingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(c.data)) {
		return 0, io.EOF
	}
	n := copy(p, c.data[off:])
	if c.passes == nil {
		c.passes = map[int64]int{}
	}
	c.passes[off]++
	if c.at >= off && c.at < off+int64(n) && c.passes[off] > 1 {
		p[c.at-off] ^= 0x01
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestStorePutRefusesChangedBody: the server checks the SHA-256 computed
// before the upload, so a body that changed meanwhile (one PUT, or one
// part of a multipart upload) is refused and no object is left behind.
func TestStorePutRefusesChangedBody(t *testing.T) {
	g := startGW(t, "recordings", false)
	s := g.store(t, "")
	s.maxSingle, s.partSize = 5<<20, 5<<20
	ctx := context.Background()
	cases := []struct {
		name string
		size int
		at   int64
	}{
		{"one-put.pcrec", 4096, 100},
		{"multipart-last-part.pcrec", 11 << 20, 10<<20 + 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &changingReader{data: randomBytes(tc.size, 9), at: tc.at}
			sum, err := s.Sum(r, int64(tc.size))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Put(ctx, tc.name, r, sum)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "BadDigest") {
				t.Fatalf("put of a changed body: %v", err)
			}
			if _, err := s.Stat(ctx, tc.name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("object after a refused upload: %v", err)
			}
		})
	}
}

// TestStoreFailures: each way the bucket can fail is an error of the
// right class, and none names the secret key.
func TestStoreFailures(t *testing.T) {
	g := startGW(t, "recordings", false)
	ctx := context.Background()
	good := g.store(t, "")
	data := []byte("recording bytes")
	sum, err := good.Sum(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := g.config("recordings", "")
	wrongSecret.SecretKey = "not-the-secret-either"
	noBucket := g.config("no-such-bucket", "")
	cases := []struct {
		name string
		cfg  Config
		op   func(*Store) error
		want error
	}{
		{"get missing", g.config("recordings", ""), func(s *Store) error { _, _, err := s.Get(ctx, "missing.pcrec"); return err }, ErrNotFound},
		{"stat missing", g.config("recordings", ""), func(s *Store) error { _, err := s.Stat(ctx, "missing.pcrec"); return err }, ErrNotFound},
		{"get path traversal", g.config("recordings", ""), func(s *Store) error { _, _, err := s.Get(ctx, "../x"); return err }, ErrNotFound},
		{"put bad name", g.config("recordings", ""), func(s *Store) error { _, err := s.Put(ctx, "a/b", bytes.NewReader(data), sum); return err }, nil},
		{"wrong secret put", wrongSecret, func(s *Store) error { _, err := s.Put(ctx, "x.pcrec", bytes.NewReader(data), sum); return err }, ErrUnavailable},
		{"wrong secret get", wrongSecret, func(s *Store) error { _, _, err := s.Get(ctx, "x.pcrec"); return err }, ErrUnavailable},
		{"wrong secret check", wrongSecret, func(s *Store) error { return s.CheckBucket(ctx) }, ErrUnavailable},
		{"missing bucket check", noBucket, func(s *Store) error { return s.CheckBucket(ctx) }, ErrUnavailable},
		{"missing bucket put", noBucket, func(s *Store) error { _, err := s.Put(ctx, "x.pcrec", bytes.NewReader(data), sum); return err }, ErrUnavailable},
		{"missing bucket list", noBucket, func(s *Store) error { return s.List(ctx, func(Object) error { return nil }) }, ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg, g.options())
			if err != nil {
				t.Fatal(err)
			}
			err = tc.op(s)
			switch {
			case err == nil:
				t.Fatal("no error")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("error %v, want %v", err, tc.want)
			case strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), tc.cfg.SecretKey):
				t.Fatalf("error names the secret key: %v", err)
			}
		})
	}
	if err := good.CheckBucket(ctx); err != nil {
		t.Fatalf("check bucket: %v", err)
	}
	// The server gone: unavailable, not "not found".
	g.stop()
	if _, err := good.Stat(ctx, "x.pcrec"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stat with the server down: %v", err)
	}
}

// TestStoreTLS: with ca_file the gateway's certificate verifies; with the
// system roots alone it does not, and nothing is sent.
func TestStoreTLS(t *testing.T) {
	g := startGW(t, "recordings", true)
	ctx := context.Background()
	s := g.store(t, "")
	data := []byte("over tls")
	sum, _ := s.Sum(bytes.NewReader(data), int64(len(data)))
	if _, err := s.Put(ctx, "tls.pcrec", bytes.NewReader(data), sum); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	cfg := g.config("recordings", "")
	cfg.RootCAs = nil
	untrusted, err := New(cfg, g.options())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusted.Stat(ctx, "tls.pcrec"); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("stat without the CA: %v", err)
	}
}

// TestStoreListScope: List reports the objects directly under the prefix
// and nothing else: not other prefixes, not deeper folders.
func TestStoreListScope(t *testing.T) {
	g := startGW(t, "recordings", false)
	ctx := context.Background()
	put := func(key string) { g.PutObject(t, "recordings", key, []byte("x")) }
	for _, k := range []string{"a/one.pcrec", "a/two.pcrec", "a/deeper/three.pcrec", "ab/four.pcrec", "five.pcrec"} {
		put(k)
	}
	s := g.store(t, "a/")
	var names []string
	if err := s.List(ctx, func(o Object) error { names = append(names, o.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"one.pcrec", "two.pcrec"}; !slices.Equal(names, want) {
		t.Fatalf("list %v, want %v", names, want)
	}
	stop := errors.New("enough")
	n := 0
	if err := s.List(ctx, func(Object) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("list stopped by fn: %v after %d", err, n)
	}
}
