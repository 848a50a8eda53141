// Package keys reads and writes the key material Portcullis keeps in files:
// 32-byte symmetric keys (cookie MAC, TOTP secret encryption) and the ES256
// private key that signs upstream JWT assertions.
//
// Symmetric key files may hold the 32 raw bytes, 64 hex characters or
// base64 (standard or URL alphabet, padded or not); text forms may end in a
// newline. Anything else is refused: a short or mistyped key must never be
// stretched or padded into a weak one.
package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// SymmetricSize is the length of every symmetric key.
const SymmetricSize = 32

// ParseSymmetric decodes a 32-byte key from raw, hex or base64 form.
//
// A 32-byte file that is all printable ASCII is not taken as raw: it is
// text (a 32-character hex string or passphrase carries at most 128 bits
// and usually far less), and a random binary key is printable by chance
// with probability below 1e-14.
func ParseSymmetric(b []byte) ([]byte, error) {
	if len(b) == SymmetricSize && !printable(b) {
		return bytes.Clone(b), nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 2*SymmetricSize {
		if k, err := hex.DecodeString(string(t)); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(string(t)); err == nil && len(k) == SymmetricSize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("must hold exactly %d bytes: raw, %d hex characters or base64 (got %d bytes that are none of these)", SymmetricSize, 2*SymmetricSize, len(b))
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// GenerateSymmetric returns a new random key in its file form (hex and a
// newline, so the file can be inspected and copied safely).
func GenerateSymmetric(r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	k := make([]byte, SymmetricSize)
	if _, err := io.ReadFull(r, k); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return []byte(hex.EncodeToString(k) + "\n"), nil
}

// ParseECPrivateKey decodes a PEM "EC PRIVATE KEY" (SEC 1) or "PRIVATE KEY"
// (PKCS #8) block holding a P-256 key — the only curve ES256 allows.
func ParseECPrivateKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block found (expected an EC P-256 private key)")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block is %q, expected \"EC PRIVATE KEY\" or \"PRIVATE KEY\"", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot parse private key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, expected an EC P-256 key", key)
	}
	if ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key is on %s, expected P-256 (ES256)", ec.Curve.Params().Name)
	}
	return ec, nil
}

// GenerateECPrivateKey returns a new P-256 key (from crypto/rand: key
// generation is never worth making injectable) and its PKCS #8 PEM form.
func GenerateECPrivateKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
