package s3store

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// The tests run against versitygw (Versity S3 Gateway, a production S3
// server with a POSIX backend), installed by e2e/setup.sh next to pebble.
// Each test starts its own on a Unix socket, so no TCP port is shared
// with anything else on the machine; the Store dials the socket through
// Options.DialContext, the way production dials TCP.

const (
	testAccess = "PORTCULLISTESTKEY"
	testSecret = "portcullis-test-secret-do-not-log"
)

// versitygwPath finds the gateway binary: $GOPATH/bin (where setup.sh
// installs it), else $PATH. Missing, the test fails under CI and is
// skipped (saying why) elsewhere.
func versitygwPath(t testing.TB) string {
	t.Helper()
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath != "" {
		bin := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "versitygw")
		if _, err := os.Stat(bin); err == nil {
			return bin
		}
	}
	if bin, err := exec.LookPath("versitygw"); err == nil {
		return bin
	}
	msg := "versitygw is not installed ($GOPATH/bin/versitygw): run e2e/setup.sh (make test does)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// gw is a running versitygw.
type gw struct {
	sock string // the Unix socket it serves on
	data string // its POSIX root: data/<bucket>/<key>
	tls  *x509.CertPool
	bin  string
	args []string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *syncBuffer
}

// syncBuffer is the gateway's output, read while it writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startGW starts versitygw (with TLS when withTLS) and creates bucket
// (unless it is "").
func startGW(t *testing.T, bucket string, withTLS bool) *gw {
	t.Helper()
	bin := versitygwPath(t)
	// Unix socket paths are limited to 108 bytes: a short directory.
	sockDir, err := os.MkdirTemp("", "vgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	g := &gw{sock: filepath.Join(sockDir, "s3.sock"), data: filepath.Join(t.TempDir(), "data"), out: &syncBuffer{}}
	if err := os.MkdirAll(g.data, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"--access", testAccess, "--secret", testSecret, "--port", g.sock}
	if withTLS {
		cert, key, pool := testCert(t)
		args = append(args, "--cert", cert, "--key", key)
		g.tls = pool
	}
	g.bin, g.args = bin, append(args, "posix", g.data)
	g.start(t)
	if bucket != "" {
		s := g.store(t, "")
		if err := s.c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
			t.Fatalf("make bucket: %v", err)
		}
	}
	return g
}

// start runs the gateway and waits until it accepts connections.
func (g *gw) start(t *testing.T) {
	t.Helper()
	os.Remove(g.sock) // a stale socket of a stopped gateway
	g.cmd = exec.Command(g.bin, g.args...)
	g.cmd.Stdout, g.cmd.Stderr = g.out, g.out
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	cmd, exited := g.cmd, make(chan struct{})
	g.done = exited
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Polling for readiness, not timing anything: the deadline only
	// bounds a gateway that never comes up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", g.sock); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("versitygw exited:\n%s", g.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s:\n%s", g.sock, g.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// config is a Config for the gateway; the host is never dialled (the
// socket is), it only has to pass Validate.
func (g *gw) config(bucket, prefix string) Config {
	cfg := Config{Endpoint: "http://127.0.0.1:9000", Bucket: bucket, Prefix: prefix, AccessKey: testAccess, SecretKey: testSecret}
	if g.tls != nil {
		cfg.Endpoint, cfg.RootCAs = "https://localhost:9000", g.tls
	}
	return cfg
}

func (g *gw) options() Options {
	return Options{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", g.sock)
	}}
}

// store is a Store on bucket "recordings" (or bucket, when given).
func (g *gw) store(t *testing.T, prefix string) *Store {
	t.Helper()
	s, err := New(g.config("recordings", prefix), g.options())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stop ends the gateway (the socket goes away: the bucket is down).
func (g *gw) stop() {
	g.cmd.Process.Kill()
	<-g.done
	os.Remove(g.sock)
}

// testCert makes a CA-less self-signed server certificate for localhost
// and returns its files and a pool trusting it.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "versitygw test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}
