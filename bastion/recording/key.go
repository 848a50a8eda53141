package recording

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the size of a key-encryption key (AES-256).
const KeySize = 32

// KeyID names a key-encryption key without revealing it: the first 8
// bytes of a domain-separated SHA-256 of the key. It is stored beside
// each wrapped data key so that a reader given the wrong key can say
// which key the recording needs instead of only "does not decrypt".
type KeyID [8]byte

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports an unused key slot.
func (id KeyID) IsZero() bool { return id == KeyID{} }

// Key is a key-encryption key (KEK): it wraps each recording's random
// data key. The raw bytes are not kept (only the AES-GCM instance), so a
// Key cannot leak into logs or JSON.
type Key struct {
	id   KeyID
	aead cipher.AEAD
}

// NewKey makes a Key from 32 raw bytes (cmd reads key files in hex,
// base64 or raw form and passes the decoded bytes).
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("recording: key must be %d bytes, got %d", KeySize, len(raw))
	}
	if subtle.ConstantTimeCompare(raw, make([]byte, KeySize)) == 1 {
		return nil, errors.New("recording: key is all zero")
	}
	aead, err := newGCM(raw)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte("portcullis recording key id\x00"))
	h.Write(raw)
	k := &Key{aead: aead}
	copy(k.id[:], h.Sum(nil))
	return k, nil
}

// ID is the key's identifier.
func (k *Key) ID() KeyID { return k.id }

// String shows only the key ID.
func (k *Key) String() string { return "recording key " + k.id.String() }

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	return cipher.NewGCM(block)
}

// KeyMismatchError says a recording's data key is wrapped only under
// other keys than the one given (errors.Is ErrWrongKey).
type KeyMismatchError struct {
	Have []KeyID // the key IDs in the recording's header
	Want KeyID   // the key that was given
}

func (e *KeyMismatchError) Error() string {
	if len(e.Have) == 0 {
		return "recording: wrong key: the recording has no wrapped data key"
	}
	s := ""
	for i, id := range e.Have {
		if i > 0 {
			s += " or "
		}
		s += id.String()
	}
	return fmt.Sprintf("recording: wrong key: the recording was encrypted with key %s, not the given key %s", s, e.Want)
}

func (e *KeyMismatchError) Is(target error) bool { return target == ErrWrongKey }
