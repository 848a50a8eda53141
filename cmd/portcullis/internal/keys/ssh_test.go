package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestParseSSHPrivateKey(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaShort, _ := rsa.GenerateKey(rand.Reader, 1024)
	openssh := func(k any, pass string) []byte {
		var blk *pem.Block
		var err error
		if pass == "" {
			blk, err = ssh.MarshalPrivateKey(k, "c")
		} else {
			blk, err = ssh.MarshalPrivateKeyWithPassphrase(k, "c", []byte(pass))
		}
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(blk)
	}
	sec1, _ := x509.MarshalECPrivateKey(p256)
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"OpenSSH Ed25519", openssh(edKey, ""), ""},
		{"OpenSSH ECDSA", openssh(p256, ""), ""},
		{"SEC1 ECDSA", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ""},
		{"encrypted", openssh(edKey, "hunter2"), "passphrase"},
		{"short RSA", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaShort)}), "too short"},
		{"public key", ssh.MarshalAuthorizedKey(mustSigner(t, edKey).PublicKey()), "not an SSH private key"},
		{"garbage", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"), "not an SSH private key"},
		{"empty", nil, "not an SSH private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSSHPrivateKey(tc.in)
			if tc.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("error echoes the passphrase")
			}
		})
	}
}

func mustSigner(t *testing.T, k any) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGenerateSSHKey(t *testing.T) {
	s, pemBytes, err := GenerateSSHKey(nil, "host")
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSSHPrivateKey(pemBytes)
	if err != nil || !bytes.Equal(back.PublicKey().Marshal(), s.PublicKey().Marshal()) {
		t.Fatalf("round trip: %v", err)
	}
	line := AuthorizedKey(s.PublicKey())
	if !strings.HasPrefix(line, "ssh-ed25519 ") || strings.HasSuffix(line, "\n") {
		t.Fatalf("authorized key line %q", line)
	}
	if _, _, err := GenerateSSHKey(bytes.NewReader(nil), ""); err == nil {
		t.Fatal("short random source accepted")
	}
}
