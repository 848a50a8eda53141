package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFiles exercises every way a secret file can be wrong, and the
// accepted encodings, through the real loader.
func TestSecretFiles(t *testing.T) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	raw[0] = 0xff // certainly not printable text
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p256DER, _ := x509.MarshalECPrivateKey(p256)
	tests := []struct {
		name    string
		content []byte // nil: do not create
		mode    os.FileMode
		dir     bool
		key     string // which secret: "mfa" (32 bytes) or "assertion" (PEM)
		wantErr string // substring of the error; "" = success
		warn    string // substring of a warning
		group   int    // processGroup for the case; 0 = the real one
	}{
		{name: "raw 32 bytes", content: raw, mode: 0o600, key: "mfa"},
		{name: "hex with newline", content: []byte("3031323334353637383961626364656630313233343536373839616263646566\n"), mode: 0o600, key: "mfa"},
		{name: "base64", content: []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), mode: 0o400, key: "mfa"},
		{name: "too short", content: []byte("short\n"), mode: 0o600, key: "mfa", wantErr: "must hold exactly 32 bytes"},
		{name: "all zero key", content: make([]byte, 32), mode: 0o600, key: "mfa", wantErr: "must be random"},
		{name: "missing file", key: "mfa", wantErr: "does not exist"},
		{name: "world readable", content: raw, mode: 0o644, key: "mfa", wantErr: "accessible to all users (mode 0644)"},
		{name: "group readable warns", content: raw, mode: 0o640, key: "mfa", warn: "readable by its group", group: -1},
		{name: "readable by own group is quiet", content: raw, mode: 0o640, key: "mfa"},
		{name: "directory", dir: true, key: "mfa", wantErr: "not a regular file"},
		{name: "empty", content: []byte{}, mode: 0o600, key: "mfa", wantErr: "is empty"},
		{name: "EC P-256 SEC1", content: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p256DER}), mode: 0o600, key: "assertion"},
		{name: "EC P-384 refused", content: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: p384DER}), mode: 0o600, key: "assertion", wantErr: "expected P-256"},
		{name: "not PEM", content: []byte("hello"), mode: 0o600, key: "assertion", wantErr: "no PEM block"},
		{name: "certificate not key", content: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), mode: 0o600, key: "assertion", wantErr: "expected \"EC PRIVATE KEY\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.group != 0 {
				saved := processGroup
				processGroup = func() int { return tc.group }
				t.Cleanup(func() { processGroup = saved })
			}
			dir := t.TempDir()
			secret := filepath.Join(dir, "secret")
			switch {
			case tc.dir:
				if err := os.Mkdir(secret, 0o700); err != nil {
					t.Fatal(err)
				}
			case tc.content != nil:
				if err := os.WriteFile(secret, tc.content, tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(secret, tc.mode); err != nil { // umask
					t.Fatal(err)
				}
			}
			yml := minimalYAML
			if tc.key == "mfa" {
				yml = strings.Replace(yml, "mfa: {key_env: MFA_KEY}", "mfa: {key_file: secret}", 1)
			} else {
				yml = strings.Replace(yml, "assertion_key_env: ASSERTION_KEY", "assertion_key_file: secret", 1)
			}
			cfgPath := filepath.Join(dir, "portcullis.yaml")
			if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, warns, err := Load(cfgPath, testOptions(t))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "portcullis.yaml:") {
				t.Errorf("error lacks file and line: %v", err)
			}
			var warnText string
			for _, w := range warns {
				warnText += w.String() + "\n"
			}
			if tc.warn != "" && !strings.Contains(warnText, tc.warn) {
				t.Errorf("warnings %q, want %q", warnText, tc.warn)
			}
			if tc.warn == "" && warnText != "" {
				t.Errorf("unexpected warnings %q", warnText)
			}
		})
	}
}

// TestTLSFiles checks the gateway certificate pair is loaded and checked.
func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	yml := strings.Replace(minimalYAML, "tls: {mode: acme}", "tls: {mode: files, cert_file: tls.crt, key_file: tls.key}", 1)
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(cfgPath, testOptions(t))
	if err == nil || !strings.Contains(err.Error(), "gateway.tls.cert_file: file "+filepath.Join(dir, "tls.crt")+" does not exist") {
		t.Fatalf("missing certificate not reported: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(cfgPath, testOptions(t))
	if err == nil || !strings.Contains(err.Error(), "certificate and key do not load") {
		t.Fatalf("bad pair not reported: %v", err)
	}
}
