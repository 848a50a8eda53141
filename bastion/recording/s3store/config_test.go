package s3store

import (
	"errors"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz"
)

// TestConfigValidate: hostile and boundary settings are refused at the
// key that is wrong; credentials never cross a network in the clear.
func TestConfigValidate(t *testing.T) {
	base := Config{Endpoint: "https://s3.eu-west-1.amazonaws.com", Bucket: "pc-recordings", Prefix: "prod/bastion",
		Region: "eu-west-1", AccessKey: "AKIAEXAMPLE", SecretKey: "wJalrXUtnFEMI-K7MDENG"}
	cases := []struct {
		name   string
		mutate func(*Config)
		path   string // "" = valid
		msg    string
	}{
		{"valid", func(*Config) {}, "", ""},
		{"https with port", func(c *Config) { c.Endpoint = "https://minio.internal:9000" }, "", ""},
		{"http to 127.0.0.1", func(c *Config) { c.Endpoint = "http://127.0.0.1:7070" }, "", ""},
		{"http to ::1", func(c *Config) { c.Endpoint = "http://[::1]:7070" }, "", ""},
		{"http to localhost", func(c *Config) { c.Endpoint = "http://localhost:7070/" }, "", ""},
		{"http to a LAN address", func(c *Config) { c.Endpoint = "http://10.0.0.5:9000" }, "endpoint", "http only to a loopback"},
		{"http to a mapped non-loopback", func(c *Config) { c.Endpoint = "http://[::ffff:10.0.0.5]:9000" }, "endpoint", "loopback"},
		{"http to a name", func(c *Config) { c.Endpoint = "http://s3.example.com" }, "endpoint", "use https"},
		{"http to localhost.evil", func(c *Config) { c.Endpoint = "http://localhost.evil.example" }, "endpoint", "loopback"},
		{"missing", func(c *Config) { c.Endpoint = "" }, "endpoint", "missing"},
		{"no scheme", func(c *Config) { c.Endpoint = "s3.amazonaws.com" }, "endpoint", "URL"},
		{"ftp", func(c *Config) { c.Endpoint = "ftp://s3.example.com" }, "endpoint", "https://"},
		{"credentials in URL", func(c *Config) { c.Endpoint = "https://key:secret@s3.example.com" }, "endpoint", "credentials"},
		{"path", func(c *Config) { c.Endpoint = "https://s3.example.com/bucket" }, "endpoint", "no path"},
		{"query", func(c *Config) { c.Endpoint = "https://s3.example.com?x=1" }, "endpoint", "no path or query"},
		{"bad port", func(c *Config) { c.Endpoint = "https://s3.example.com:99999" }, "endpoint", "port"},
		{"empty port", func(c *Config) { c.Endpoint = "https://s3.example.com:" }, "endpoint", "port"},
		{"bucket missing", func(c *Config) { c.Bucket = "" }, "bucket", "missing"},
		{"bucket short", func(c *Config) { c.Bucket = "ab" }, "bucket", "3-63"},
		{"bucket long", func(c *Config) { c.Bucket = strings.Repeat("a", 64) }, "bucket", "3-63"},
		{"bucket upper case", func(c *Config) { c.Bucket = "Recordings" }, "bucket", "lowercase"},
		{"bucket underscore", func(c *Config) { c.Bucket = "pc_recordings" }, "bucket", "lowercase"},
		{"bucket slash", func(c *Config) { c.Bucket = "a/../b" }, "bucket", "lowercase"},
		{"bucket leading dash", func(c *Config) { c.Bucket = "-recordings" }, "bucket", "begin and end"},
		{"bucket trailing dot", func(c *Config) { c.Bucket = "recordings." }, "bucket", "begin and end"},
		{"bucket double dot", func(c *Config) { c.Bucket = "pc..recordings" }, "bucket", "'..'"},
		{"bucket IP", func(c *Config) { c.Bucket = "192.168.1.10" }, "bucket", "IP address"},
		{"bucket reserved", func(c *Config) { c.Bucket = "xn--recordings" }, "bucket", "reserves"},
		{"bucket at 63", func(c *Config) { c.Bucket = strings.Repeat("a", 63) }, "", ""},
		{"prefix empty is the top", func(c *Config) { c.Prefix = "" }, "", ""},
		{"prefix trailing slash", func(c *Config) { c.Prefix = "prod/" }, "", ""},
		{"prefix leading slash", func(c *Config) { c.Prefix = "/prod" }, "prefix", "empty segment"},
		{"prefix dotdot", func(c *Config) { c.Prefix = "prod/../other" }, "prefix", "'..'"},
		{"prefix doubled slash", func(c *Config) { c.Prefix = "a//b" }, "prefix", "empty segment"},
		{"prefix space", func(c *Config) { c.Prefix = "my recordings" }, "prefix", "only letters"},
		{"prefix newline", func(c *Config) { c.Prefix = "a\nb" }, "prefix", "only letters"},
		{"prefix too long", func(c *Config) { c.Prefix = strings.Repeat("a", 513) }, "prefix", "512"},
		{"region odd", func(c *Config) { c.Region = "eu west" }, "region", "letters"},
		{"region default", func(c *Config) { c.Region = "" }, "", ""},
		{"access key missing", func(c *Config) { c.AccessKey = "" }, "access_key", "anonymously"},
		{"access key with space", func(c *Config) { c.AccessKey = "AKIA EXAMPLE" }, "access_key", "printable"},
		{"secret missing", func(c *Config) { c.SecretKey = "" }, "secret_key", "anonymously"},
		{"secret with newline", func(c *Config) { c.SecretKey = "abc\n" }, "secret_key", "printable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			err := c.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				if _, err := New(c, Options{}); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			errs := authz.Flatten(err)
			if len(errs) != 1 {
				t.Fatalf("want one error at %s, got %v", tc.path, err)
			}
			var fe *authz.FieldError
			if !errors.As(errs[0], &fe) || fe.Path != tc.path || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("error %v, want %s: ...%s...", errs[0], tc.path, tc.msg)
			}
			if strings.Contains(err.Error(), c.SecretKey) && c.SecretKey != "" {
				t.Fatalf("error names the secret: %v", err)
			}
			if _, err := New(c, Options{}); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}
