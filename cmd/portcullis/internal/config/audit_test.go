package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

const auditBase = `
gateway:
  access_host: access.example.com
  tls: {mode: acme}
  routes:
    - {name: app, host: app.example.com, upstream: "http://127.0.0.1:1"}
identity:
  issuer: https://login.example.com
  client_id: portcullis
  client_secret_env: OIDC_SECRET
mfa: {key_env: MFA_KEY}
session: {cookie_key_env: COOKIE_KEY, assertion_key_env: ASSERTION_KEY}
policy:
  roles:
    - {name: r, groups: [g], allow: [{apps: [app]}]}
`

// TestAuditParsed checks what a full audit section turns into: the
// signing key from a file, checkpoint settings, personal-data switches,
// and one sink of each kind with their secrets and TLS settings.
func TestAuditParsed(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := os.WriteFile(filepath.Join(dir, "audit.key"), audit.MarshalPrivateKey(priv), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "siem-ca.pem"), testCACert(t), 0o644); err != nil {
		t.Fatal(err)
	}
	yml := auditBase + `
audit:
  dir: trail
  signing_key_file: audit.key
  checkpoint_every: 200
  checkpoint_interval: 500ms
  include_email: true
  sinks:
    - {name: siem, kind: syslog, address: "siem.example.com:6514", ca_file: siem-ca.pem, server_name: siem.internal, hostname: gw-a}
    - {name: relay, kind: syslog, address: "127.0.0.1:514", transport: tcp}
    - name: archive
      kind: webhook
      url_env: SLACK_URL
      secret_env: WEBHOOK_SECRET
      batch_records: 100
      batch_wait: 250ms
      timeout: 5s
    - {name: console, kind: stdout}
`
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, warns, err := Load(path, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) > 0 {
		t.Errorf("warnings: %v", warns)
	}
	a := cfg.Audit
	s := cfg.AuditSinks
	checks := []struct {
		name      string
		got, want any
	}{
		{"dir relative to the file", a.Dir, filepath.Join(dir, "trail")},
		{"signing key", priv.Equal(a.SigningKey), true},
		{"checkpoint every", a.CheckpointEvery, 200},
		{"checkpoint interval", a.CheckpointInterval, 500 * time.Millisecond},
		{"include email", a.IncludeEmail, true},
		{"include name", a.IncludeName, false},
		{"sinks", len(s), 4},
		{"syslog kind", s[0].Kind, audit.SinkSyslog},
		{"syslog tls by default", s[0].TLS != nil && s[0].TLS.RootCAs != nil, true},
		{"syslog server name", s[0].TLS.ServerName, "siem.internal"},
		{"syslog hostname", s[0].Hostname, "gw-a"},
		{"tcp has no tls", s[1].TLS == nil, true},
		{"webhook url from env, newline trimmed", s[2].URL, "https://hooks.slack.example/services/T0/B0/do-not-echo"},
		{"webhook secret", string(s[2].Secret), "webhook-hmac-key"},
		{"webhook batch", s[2].BatchRecords, 100},
		{"webhook wait", s[2].BatchWait, 250 * time.Millisecond},
		{"webhook timeout", s[2].Timeout, 5 * time.Second},
		{"stdout", s[3].Kind, audit.SinkStdout},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	for i, sc := range s {
		if err := sc.Validate(); err != nil {
			t.Errorf("sink %d does not validate: %v", i, err)
		}
	}
}

// TestAuditDefaults: no audit section means a generated key beside the
// trail (nil here), the package defaults, no personal data, no sinks.
func TestAuditDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte(auditBase+"data_dir: state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(path, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Audit
	if a.SigningKey != nil || a.CheckpointEvery != 0 || a.CheckpointInterval != 0 || a.IncludeEmail || a.IncludeName ||
		len(cfg.AuditSinks) != 0 || a.Dir != filepath.Join(dir, "state", "audit") || a.Instance != "test-host" {
		t.Errorf("defaults: %+v, sinks %v", a, cfg.AuditSinks)
	}
}

// TestAuditSigningKeyFile: a key file others may read is refused, and
// the message names the key.
func TestAuditSigningKeyFile(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"world readable", nil, 0o644, "audit.signing_key_file: secret file"},
		{"not ed25519", mustECKeyPEM(t), 0o600, "audit.signing_key_file: private key is"},
		{"public key", audit.MarshalPublicKey(ed25519.PublicKey(make([]byte, 32))), 0o600, "want exactly one PEM PRIVATE KEY block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			content := tc.content
			if content == nil {
				_, priv, _ := ed25519.GenerateKey(rand.Reader)
				content = audit.MarshalPrivateKey(priv)
			}
			if err := os.WriteFile(filepath.Join(dir, "k.pem"), content, tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(filepath.Join(dir, "k.pem"), tc.mode)
			path := filepath.Join(dir, "portcullis.yaml")
			os.WriteFile(path, []byte(auditBase+"audit: {signing_key_file: k.pem}\n"), 0o600)
			_, _, err := Load(path, testOptions(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func mustECKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func testCACert(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "siem ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
