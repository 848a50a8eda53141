// Package s3test runs a real S3 server for tests: versitygw (Versity S3
// Gateway, a production S3 gateway with a POSIX backend), installed by
// e2e/setup.sh next to pebble. Each Gateway serves on its own Unix
// socket, so no TCP port is shared with anything else on the machine;
// clients dial it through an injected dialer (Gateway.Dial) while their
// configured endpoint only has to look right. A bucket is a directory
// under Gateway.Data and an object a file in it, so tests can damage
// what the bucket holds behind the client's back.
package s3test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credentials of every test gateway.
const (
	AccessKey = "PORTCULLISTESTKEY"
	SecretKey = "portcullis-test-secret-do-not-log"
)

// Path finds the versitygw binary: $GOPATH/bin (where e2e/setup.sh
// installs it), else $PATH. Missing, the test fails (like the ACME tests
// without pebble): a storage test that skips would prove nothing.
func Path(t testing.TB) string {
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
	t.Fatal("versitygw is not installed ($GOPATH/bin/versitygw): run e2e/setup.sh (make test does)")
	return ""
}

// Gateway is a running versitygw.
type Gateway struct {
	Sock    string         // the Unix socket it serves on
	Data    string         // its POSIX root: Data/<bucket>/<key>
	RootCAs *x509.CertPool // trusts its certificate (nil without TLS)

	bin  string
	args []string
	out  *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// Start starts a gateway (serving TLS for localhost when withTLS) and
// creates buckets. It stops with the test.
func Start(t testing.TB, withTLS bool, buckets ...string) *Gateway {
	t.Helper()
	bin := Path(t)
	// Unix socket paths are limited to 108 bytes: a short directory.
	sockDir, err := os.MkdirTemp("", "vgw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	g := &Gateway{Sock: filepath.Join(sockDir, "s3.sock"), Data: filepath.Join(t.TempDir(), "data"), bin: bin, out: &syncBuffer{}}
	if err := os.MkdirAll(g.Data, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"--access", AccessKey, "--secret", SecretKey, "--port", g.Sock}
	if withTLS {
		cert, key, pool := selfSigned(t)
		args = append(args, "--cert", cert, "--key", key)
		g.RootCAs = pool
	}
	g.args = append(args, "posix", g.Data)
	g.Restart(t)
	for _, b := range buckets {
		if err := g.client(t).MakeBucket(context.Background(), b, minio.MakeBucketOptions{}); err != nil {
			t.Fatalf("make bucket %s: %v", b, err)
		}
	}
	return g
}

// Restart starts the gateway again after Stop (same socket and data).
func (g *Gateway) Restart(t testing.TB) {
	t.Helper()
	os.Remove(g.Sock) // a stopped gateway's socket
	cmd := exec.Command(g.bin, g.args...)
	cmd.Stdout, cmd.Stderr = g.out, g.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	g.mu.Lock()
	g.cmd, g.done = cmd, exited
	g.mu.Unlock()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	// Polling for readiness, not timing anything: the deadline only
	// bounds a gateway that never comes up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", g.Sock); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("versitygw exited:\n%s", g.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s:\n%s", g.Sock, g.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the gateway: its socket goes away, the bucket is down.
func (g *Gateway) Stop() {
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.mu.Unlock()
	cmd.Process.Kill()
	<-done
	os.Remove(g.Sock)
}

// Output is what the gateway logged (one line per request).
func (g *Gateway) Output() string { return g.out.String() }

// Endpoint is an endpoint URL for client configurations: it only has to
// pass validation (Dial goes to the socket whatever it names).
func (g *Gateway) Endpoint() string {
	if g.RootCAs != nil {
		return "https://localhost:9000"
	}
	return "http://127.0.0.1:9000"
}

// Dial connects to the gateway's socket, whatever address is asked for.
func (g *Gateway) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "unix", g.Sock)
}

// ObjectPath is where the gateway keeps bucket/key on disk.
func (g *Gateway) ObjectPath(bucket, key string) string {
	return filepath.Join(g.Data, bucket, filepath.FromSlash(key))
}

// client is a plain minio client of the gateway (for set-up).
func (g *Gateway) client(t testing.TB) *minio.Client {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimPrefix(g.Endpoint(), "https://"), "http://")
	c, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4(AccessKey, SecretKey, ""),
		Secure:    g.RootCAs != nil,
		Transport: &http.Transport{DialContext: g.Dial, TLSClientConfig: &tls.Config{RootCAs: g.RootCAs}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// PutObject stores data as bucket/key directly (set-up: objects the code
// under test did not write).
func (g *Gateway) PutObject(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if _, err := g.client(t).PutObject(context.Background(), bucket, key, strings.NewReader(string(data)), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// selfSigned makes a self-signed server certificate for localhost and
// returns its files and a pool trusting it.
func selfSigned(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "versitygw test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
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
