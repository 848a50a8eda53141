package s3store

import (
	"testing"

	"github.com/portcullis/portcullis/bastion/recording/s3store/s3test"
)

// The store's tests run against a real S3 server (s3test: versitygw on a
// Unix socket, dialled through Options.DialContext).

const (
	testAccess = s3test.AccessKey
	testSecret = s3test.SecretKey
)

// gw is a running gateway with the helpers the tests use.
type gw struct {
	*s3test.Gateway
	data string // its POSIX root: data/<bucket>/<key>
}

// startGW starts a gateway (TLS when withTLS) with bucket (unless "").
func startGW(t *testing.T, bucket string, withTLS bool) *gw {
	t.Helper()
	var buckets []string
	if bucket != "" {
		buckets = append(buckets, bucket)
	}
	g := s3test.Start(t, withTLS, buckets...)
	return &gw{Gateway: g, data: g.Data}
}

func (g *gw) config(bucket, prefix string) Config {
	return Config{Endpoint: g.Endpoint(), Bucket: bucket, Prefix: prefix, AccessKey: testAccess, SecretKey: testSecret, RootCAs: g.RootCAs}
}

func (g *gw) options() Options { return Options{DialContext: g.Dial} }

// store is a Store on bucket "recordings".
func (g *gw) store(t *testing.T, prefix string) *Store {
	t.Helper()
	s, err := New(g.config("recordings", prefix), g.options())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (g *gw) stop()              { g.Stop() }
func (g *gw) start(t *testing.T) { g.Restart(t) }
func (g *gw) output() string     { return g.Output() }
