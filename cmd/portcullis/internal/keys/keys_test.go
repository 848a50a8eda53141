package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
)

func TestParseSymmetric(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"raw", key, true},
		{"hex", []byte(hex.EncodeToString(key)), true},
		{"hex upper with newline", []byte(strings.ToUpper(hex.EncodeToString(key)) + "\n"), true},
		{"base64 std", []byte(base64.StdEncoding.EncodeToString(key)), true},
		{"base64 raw url", []byte(base64.RawURLEncoding.EncodeToString(key) + "\r\n"), true},
		{"31 raw bytes", key[:31], false},
		{"33 raw bytes", append(bytes.Clone(key), 1), false},
		{"short hex (32 printable bytes are text, not raw)", []byte(hex.EncodeToString(key[:16])), false},
		{"32-character passphrase", []byte("correct horse battery staple 123"), false},
		{"long base64", []byte(base64.StdEncoding.EncodeToString(append(key, key...))), false},
		{"bad hex chars", []byte(strings.Repeat("zz", 32)), false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSymmetric(tc.in)
			if tc.ok {
				if err != nil || !bytes.Equal(got, key) {
					t.Fatalf("got %x, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %q as %x", tc.in, got)
			}
		})
	}
}

func TestGenerateSymmetricRoundTrip(t *testing.T) {
	a, err := GenerateSymmetric(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateSymmetric(nil)
	ka, err := ParseSymmetric(a)
	if err != nil || len(ka) != SymmetricSize {
		t.Fatalf("round trip: %v", err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two generated keys are equal")
	}
	if _, err := GenerateSymmetric(bytes.NewReader(nil)); err == nil {
		t.Fatal("short random source accepted")
	}
}

func TestParseECPrivateKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	sec1 := func(k *ecdsa.PrivateKey) []byte {
		der, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	pkcs8 := func(k any) []byte {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"SEC1 P-256", sec1(p256), ""},
		{"PKCS8 P-256", pkcs8(p256), ""},
		{"SEC1 P-384", sec1(p384), "expected P-256"},
		{"PKCS8 RSA", pkcs8(rsaKey), "expected an EC P-256 key"},
		{"PKCS8 Ed25519", pkcs8(edKey), "expected an EC P-256 key"},
		{"RSA block type", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}}), "expected \"EC PRIVATE KEY\""},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "cannot parse"},
		{"no PEM", []byte("not a key"), "no PEM block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseECPrivateKey(tc.in)
			if tc.wantErr == "" {
				if err != nil || k == nil {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestGenerateECPrivateKey(t *testing.T) {
	k, pemBytes, err := GenerateECPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseECPrivateKey(pemBytes)
	if err != nil || !back.Equal(k) {
		t.Fatalf("round trip: %v", err)
	}
}
