package mfa

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// Sealed record format (version 1):
//
//	0x01 | nonce (12 bytes, random per write) | AES-256-GCM(secret) with tag
//
// The additional data is aadPrefix + userID, so a record copied to another
// user's slot fails authentication instead of granting that user the
// copied secret. The version byte lets a later format (new cipher, new
// plaintext layout) coexist with records already at rest.
const (
	sealVersion1 = 0x01
	aadPrefix    = "portcullis-mfa-v1|"
	nonceSize    = 12
)

// HKDF labels: one key, two independent purposes. Separating them means a
// weakness in one use (say, an oracle on recovery hashes) says nothing
// about the other.
const (
	infoSeal     = "portcullis mfa secret encryption v1"
	infoRecovery = "portcullis mfa recovery code hmac v1"
)

type sealer struct{ aead cipher.AEAD }

// deriveKeys splits the configured key into the AES-256-GCM sealer and the
// HMAC key for recovery-code hashes.
func deriveKeys(key []byte) (sealer, []byte, error) {
	encKey, err := hkdf.Key(sha256.New, key, nil, infoSeal, KeySize)
	if err != nil {
		return sealer{}, nil, err
	}
	recKey, err := hkdf.Key(sha256.New, key, nil, infoRecovery, KeySize)
	if err != nil {
		return sealer{}, nil, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return sealer{}, nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealer{}, nil, err
	}
	return sealer{aead: aead}, recKey, nil
}

func aad(userID string) []byte { return []byte(aadPrefix + userID) }

// seal encrypts plaintext for userID with a fresh random nonce from r.
// Random 96-bit nonces are safe here: a key seals at most a few writes per
// user, far below the 2^32 messages where collisions become a concern.
func (s sealer) seal(r io.Reader, userID string, plaintext []byte) ([]byte, error) {
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion1
	if _, err := io.ReadFull(r, out[1:]); err != nil {
		return nil, fmt.Errorf("mfa: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:1+nonceSize], plaintext, aad(userID)), nil
}

// open decrypts a sealed record for userID. Every failure (short, unknown
// version, wrong key, tampered, other user's record) is ErrCorruptRecord:
// the caller has nothing to distinguish and must deny.
func (s sealer) open(userID string, blob []byte) ([]byte, error) {
	if len(blob) < 1+nonceSize+s.aead.Overhead() || blob[0] != sealVersion1 {
		return nil, ErrCorruptRecord
	}
	pt, err := s.aead.Open(nil, blob[1:1+nonceSize], blob[1+nonceSize:], aad(userID))
	if err != nil {
		return nil, ErrCorruptRecord
	}
	return pt, nil
}

// openSecret opens a sealed TOTP secret and checks its size.
func (s sealer) openSecret(userID string, blob []byte) ([]byte, error) {
	secret, err := s.open(userID, blob)
	if err != nil {
		return nil, err
	}
	if len(secret) != secretSize {
		return nil, ErrCorruptRecord
	}
	return secret, nil
}

// recoveryHash is what the store keeps for a normalised recovery code. It
// is keyed (HMAC with a subkey of Config.Key), so a dump of the store alone
// cannot be brute-forced offline over the 50-bit code space, and bound to
// the user, so hashes copied between users do not match.
func (m *Manager) recoveryHash(userID, normalised string) string {
	h := hmac.New(sha256.New, m.recKey)
	h.Write([]byte(userID))
	h.Write([]byte{0})
	h.Write([]byte(normalised))
	return hex.EncodeToString(h.Sum(nil))
}
