package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
)

// MinRSABits is the smallest RSA key accepted for SSH host and CA keys.
const MinRSABits = 2048

// ParseSSHPrivateKey decodes an SSH private key (OpenSSH format, or PEM
// PKCS #1, SEC 1 or PKCS #8) into a signer: Ed25519, ECDSA, or RSA of at
// least MinRSABits. Keys protected by a passphrase are refused with a
// message saying so (a server cannot prompt for one), and so are DSA and
// short RSA keys (too weak to be an authority).
func ParseSSHPrivateKey(b []byte) (ssh.Signer, error) {
	raw, err := ssh.ParseRawPrivateKey(b)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, errors.New("the key is protected by a passphrase, which a server cannot type: store it unencrypted with mode 0600 (ssh-keygen -p -N '' -f FILE)")
	case err != nil:
		return nil, fmt.Errorf("not an SSH private key (OpenSSH or PEM): %v", err)
	}
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		raw = *k
	case ed25519.PrivateKey, *ecdsa.PrivateKey:
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too short (at least %d; Ed25519 is preferred)", bits, MinRSABits)
		}
	default:
		return nil, fmt.Errorf("unsupported key type %T (use Ed25519, ECDSA or RSA)", raw)
	}
	s, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("unusable SSH key: %v", err)
	}
	return s, nil
}

// GenerateSSHKey returns a new Ed25519 key as a signer and in OpenSSH
// private key format (what ssh-keygen writes), with comment as its
// comment. r defaults to crypto/rand.
func GenerateSSHKey(r io.Reader, comment string) (ssh.Signer, []byte, error) {
	if r == nil {
		r = rand.Reader
	}
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, nil, fmt.Errorf("generate SSH key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("encode SSH key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, err
	}
	return s, pem.EncodeToMemory(blk), nil
}

// AuthorizedKey is k as one authorized_keys / .pub line without the
// trailing newline.
func AuthorizedKey(k ssh.PublicKey) string {
	b := ssh.MarshalAuthorizedKey(k)
	return string(b[:len(b)-1])
}
