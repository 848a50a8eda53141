package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// storageYAML is a valid bastion (files from writeBastionFiles) with the
// recording_storage lines appended.
func storageYAML(t *testing.T, dir, storage string) string {
	files := writeBastionFiles(t, dir)
	return minimalYAML + strings.Replace(bastionYAML, "%s", keys.AuthorizedKey(files.targetKey.PublicKey()), 1) +
		"  recording_storage:\n" + storage
}

// TestRecordingStorageParsed: the section's values, secrets from a file
// and from the environment, the CA file, and the three keep_local
// meanings (absent: until retention; 0s: at once; a duration).
func TestRecordingStorageParsed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "s3-secret"), []byte("wJalrXUtnFEMI/K7MDENG\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "s3-ca.pem"), testCACert(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		keep string // keep_local line ("" = absent)
		want time.Duration
	}{
		{"keep until retention", "", s3store.KeepLocalUntilRetention},
		{"remove at once", "    keep_local: 0s\n", 0},
		{"keep two hours", "    keep_local: 2h\n", 2 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := storageYAML(t, dir, `    endpoint: https://s3.eu-west-1.amazonaws.com
    bucket: pc-recordings
    prefix: prod/bastion-a
    region: eu-west-1
    access_key_env: OIDC_SECRET
    secret_key_file: s3-secret
    ca_file: s3-ca.pem
`+tc.keep)
			cfg, warns, err := Parse(filepath.Join(dir, "portcullis.yaml"), []byte(data), testOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) > 0 {
				t.Errorf("warnings %v", warns)
			}
			rs := cfg.RecordingStorage
			if rs == nil {
				t.Fatal("no recording storage")
			}
			checks := []struct {
				name      string
				got, want any
			}{
				{"endpoint", rs.Endpoint, "https://s3.eu-west-1.amazonaws.com"},
				{"bucket", rs.Bucket, "pc-recordings"},
				{"prefix", rs.Prefix, "prod/bastion-a"},
				{"region", rs.Region, "eu-west-1"},
				{"access key from env", rs.AccessKey, "client-secret"},
				{"secret key from file, newline trimmed", rs.SecretKey, "wJalrXUtnFEMI/K7MDENG"},
				{"CA pool", rs.RootCAs != nil, true},
				{"CA file absolute", rs.CAFile, filepath.Join(dir, "s3-ca.pem")},
				{"keep local", rs.KeepLocal, tc.want},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
				}
			}
			if err := rs.Validate(); err != nil {
				t.Fatalf("built config does not validate: %v", err)
			}
		})
	}
	// Without the section: local disk only.
	cfg, _, err := Parse(filepath.Join(dir, "p.yaml"), []byte(minimalYAML+strings.Replace(bastionYAML, "%s", keys.AuthorizedKey(writeBastionFiles(t, dir).targetKey.PublicKey()), 1)), testOptions(t))
	if err != nil || cfg.RecordingStorage != nil {
		t.Fatalf("no section: %+v, %v", cfg.RecordingStorage, err)
	}
}

// TestRecordingStorageHostile: each bad setting is refused at its key
// and line, and no secret value is echoed.
func TestRecordingStorageHostile(t *testing.T) {
	good := map[string]string{
		"endpoint":       "https://minio.internal:9000",
		"bucket":         "recordings",
		"access_key_env": "OIDC_SECRET",
		"secret_key_env": "WEBHOOK_SECRET",
	}
	cases := []struct {
		name string
		set  map[string]string // replaces (or with "" removes) good's lines
		want string            // "LINE-KEY: message" fragment after the file name
	}{
		{"http to a LAN address", map[string]string{"endpoint": "http://10.1.2.3:9000"}, "bastion.recording_storage.endpoint: http only to a loopback address"},
		{"http to a name that resolves locally", map[string]string{"endpoint": "http://minio:9000"}, "bastion.recording_storage.endpoint: http only to a loopback address"},
		{"endpoint with bucket path", map[string]string{"endpoint": "https://s3.example.com/recordings"}, "endpoint: must be a bare https://host[:port]"},
		{"endpoint with credentials", map[string]string{"endpoint": "https://AKIA:pw@s3.example.com"}, "endpoint: must not hold credentials"},
		{"bucket too short", map[string]string{"bucket": "ab"}, "bucket: \"ab\" must be 3-63 characters"},
		{"bucket an IP", map[string]string{"bucket": "10.0.0.1"}, "bucket: \"10.0.0.1\" must not look like an IP address"},
		{"bucket with traversal", map[string]string{"bucket": "../etc"}, "bucket: \"../etc\" may hold only lowercase"},
		{"prefix absolute", map[string]string{"prefix": "/recordings"}, "prefix: \"/recordings\" has an empty segment"},
		{"missing secret key", map[string]string{"secret_key_env": ""}, "bastion.recording_storage.secret_key: missing: give secret_key_file"},
		{"secret key env unset", map[string]string{"secret_key_env": "NO_SUCH_VARIABLE"}, "secret_key_env: environment variable NO_SUCH_VARIABLE is not set"},
		{"secret key file world-readable", map[string]string{"secret_key_env": "", "secret_key_file": "open-secret"}, "secret_key_file: secret file"},
		{"secret key inline", map[string]string{"secret_key_env": "", "secret_key": "hunter2-inline"}, "secret_key: secrets must not be written in the config file"},
		{"both file and env", map[string]string{"secret_key_file": "open-secret"}, "secret_key"},
		{"ca_file with http", map[string]string{"endpoint": "http://127.0.0.1:9000", "ca_file": "ca.pem"}, "ca_file: only with an https endpoint"},
		{"ca_file not PEM", map[string]string{"ca_file": "open-secret"}, "ca_file: no PEM certificate found"},
		{"keep_local negative", map[string]string{"keep_local": "-5m"}, "keep_local: duration must not be negative"},
		{"keep_local in days", map[string]string{"keep_local": "7d"}, "keep_local: invalid duration \"7d\""},
		{"unknown key", map[string]string{"path_style": "true"}, "recording_storage.path_style: unknown key"},
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "open-secret"), []byte("world-readable-secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), testCACert(t), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := map[string]string{}
			for k, v := range good {
				lines[k] = v
			}
			for k, v := range tc.set {
				lines[k] = v
			}
			var sb strings.Builder
			for _, k := range []string{"endpoint", "bucket", "prefix", "access_key_env", "secret_key_env", "secret_key_file", "secret_key", "ca_file", "keep_local", "path_style"} {
				if v := lines[k]; v != "" {
					sb.WriteString("    " + k + ": " + v + "\n")
				}
			}
			data := storageYAML(t, dir, sb.String())
			path := filepath.Join(dir, "portcullis.yaml")
			_, _, err := Parse(path, []byte(data), testOptions(t))
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("error does not contain %q:\n%s", tc.want, msg)
			}
			// FILE:LINE on the recording_storage lines.
			var found bool
			for _, l := range strings.Split(msg, "\n") {
				if strings.Contains(l, tc.want) && strings.HasPrefix(l, path+":") {
					found = true
				}
			}
			if !found {
				t.Fatalf("no FILE:LINE for %q:\n%s", tc.want, msg)
			}
			for _, secret := range []string{"hunter2-inline", "world-readable-secret", "webhook-hmac-key", "client-secret", "AKIA:pw"} {
				if strings.Contains(msg, secret) {
					t.Fatalf("error echoes a secret (%s):\n%s", secret, msg)
				}
			}
		})
	}
}
