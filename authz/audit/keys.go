package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Keys are stored as PEM: the private key as PKCS #8 ("PRIVATE KEY"), public
// keys as PKIX ("PUBLIC KEY"), the formats `openssl genpkey -algorithm
// ed25519` and `openssl pkey -pubout` use, so operators can make and copy
// them with standard tools.

// KeyID is the short fingerprint written in checkpoints and head markers
// (the first 8 bytes of the SHA-256 of the raw public key, in hex). It
// lets verify name the key that signed, including a foreign one; it is
// not a security boundary (the signature is checked with the full key).
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// MarshalPublicKey returns pub as a PEM "PUBLIC KEY" block.
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil { // only for a malformed key, which ed25519 keys never are
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKeys returns every Ed25519 key in the PEM "PUBLIC KEY" blocks
// of data (a file may hold several: keys rotate, old checkpoints keep
// their signer). Other PEM blocks and text between blocks are an error,
// so a private key pasted by mistake is refused rather than ignored.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("audit: PEM block %q is not a PUBLIC KEY", b.Type)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("audit: public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("audit: public key is %T, want Ed25519", k)
		}
		out = append(out, pub)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("audit: unexpected data after the PEM blocks")
	}
	if len(out) == 0 {
		return nil, errors.New("audit: no PEM PUBLIC KEY block")
	}
	return out, nil
}

// ReadPublicKeys reads a file of PEM public keys (ParsePublicKeys).
func ReadPublicKeys(path string) ([]ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return keys, nil
}

// ParsePrivateKey parses a PEM PKCS #8 Ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("audit: want exactly one PEM PRIVATE KEY block (PKCS #8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("audit: private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("audit: private key is %T, want Ed25519", k)
	}
	return priv, nil
}

// MarshalPrivateKey returns priv as a PEM PKCS #8 "PRIVATE KEY" block.
func MarshalPrivateKey(priv ed25519.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// LoadOrCreateKey reads the Ed25519 signing key at path, creating it
// (0600, with a fresh random key) when it does not exist. Two processes
// racing to create it end up with the same key (exclusive create; the
// loser reads the winner's file).
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	for range 2 {
		data, err := os.ReadFile(path)
		if err == nil {
			k, err := ParsePrivateKey(data)
			if err != nil {
				return nil, fmt.Errorf("%w (%s)", err, path)
			}
			return k, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("audit: %w", err)
		}
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		switch err := writeNewFile(path, MarshalPrivateKey(priv)); {
		case err == nil:
			return priv, nil
		case !errors.Is(err, fs.ErrExist):
			return nil, fmt.Errorf("audit: %w", err)
		}
		// Someone else created it meanwhile: read theirs.
	}
	return nil, fmt.Errorf("audit: cannot load or create %s", path)
}

// writeNewFile creates path exclusively (0600), writes data, fsyncs the
// file and its directory; a partly written file is removed.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	d.Close()
	return err
}

// addPublicKey appends pub to the PEM file at path unless it is already
// there. The file is a convenience copy for verify; keys are only ever
// added, so checkpoints signed before a key rotation still verify with it.
func addPublicKey(path string, pub ed25519.PublicKey) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(data) > 0 {
		keys, err := ParsePublicKeys(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, k := range keys {
			if k.Equal(pub) {
				return nil
			}
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(MarshalPublicKey(pub))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}
