package harness

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// KindS3SecretKey is the secret kind of an S3 secret access key (the
// final scan looks for it in everything portcullis wrote).
const KindS3SecretKey = "s3-secret-key"

// S3 is a running versitygw (Versity S3 Gateway: a production S3 server,
// POSIX backend): a bucket is a directory under Data, an object a file
// in it, so tests can damage an object behind the server's back.
type S3 struct {
	Endpoint  string // https://127.0.0.1:port (http:// without a CA)
	Addr      string // 127.0.0.1:port
	Data      string // the POSIX root
	AccessKey string
	SecretKey string // recorded for the secrets scan
	ca        *CA

	mu   sync.Mutex
	proc *proc
	t    TB
	args []string
}

// StartS3 runs versitygw (installed by e2e/setup.sh into $GOPATH/bin, next
// to pebble) on a reserved port of 127.0.0.1, with TLS under a
// certificate from ca for 127.0.0.1 and localhost (plain http when ca is
// nil), and creates buckets with the S3 API. It stops with the test.
func StartS3(t TB, ca *CA, buckets ...string) *S3 {
	t.Helper()
	bin := versitygwPath(t)
	port := FreePort(t)
	s := &S3{
		Addr: "127.0.0.1:" + strconv.Itoa(port), Data: filepath.Join(t.TempDir(), "s3"),
		AccessKey: "E2EACCESS" + strings.ToUpper(RandomString(8)), SecretKey: "s3s-" + RandomString(24), ca: ca, t: t,
	}
	RecordSecret(KindS3SecretKey, s.SecretKey)
	if err := os.MkdirAll(s.Data, 0o700); err != nil {
		t.Fatalf("s3 data dir: %v", err)
	}
	s.args = []string{bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Addr}
	s.Endpoint = "http://" + s.Addr
	if ca != nil {
		cert, key := ca.Issue(t, "127.0.0.1", "localhost")
		s.args = append(s.args, "--cert", cert, "--key", key)
		s.Endpoint = "https://" + s.Addr
	}
	s.args = append(s.args, "posix", s.Data)
	s.Restart()
	c := s.client()
	for _, b := range buckets {
		if err := c.MakeBucket(context.Background(), b, minio.MakeBucketOptions{}); err != nil {
			t.Fatalf("s3: make bucket %s: %v\n%s", b, err, s.Output())
		}
	}
	return s
}

// Restart starts the server again after Stop (same port and data).
func (s *S3) Restart() {
	s.t.Helper()
	cmd := exec.Command(s.args[0], s.args[1:]...)
	p := startPolled(s.t, "versitygw", cmd, 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
}

// Stop ends the server: the bucket is down until Restart.
func (s *S3) Stop() {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	p.stop()
}

// Output is what the running (or last) server printed.
func (s *S3) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc.Output()
}

// ObjectPath is where the server keeps bucket/key on disk.
func (s *S3) ObjectPath(bucket, key string) string {
	return filepath.Join(s.Data, bucket, filepath.FromSlash(key))
}

// client is a plain S3 client (set-up only).
func (s *S3) client() *minio.Client {
	tr := &http.Transport{}
	if s.ca != nil {
		tr.TLSClientConfig = s.ca.ClientTLS()
	}
	c, err := minio.New(s.Addr, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Secure: s.ca != nil, Transport: tr})
	if err != nil {
		s.t.Fatalf("s3 client: %v", err)
	}
	return c
}

func versitygwPath(t TB) string {
	t.Helper()
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			t.Fatalf("go env GOPATH: %v", err)
		}
		gopath = strings.TrimSpace(string(out))
	}
	bin := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "versitygw")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("versitygw not installed at %s: run e2e/setup.sh (make test does)", bin)
	}
	return bin
}
