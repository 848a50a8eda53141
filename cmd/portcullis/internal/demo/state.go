package demo

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// state is what the demo keeps in its data directory so that a restart
// keeps users' passwords, TOTP enrolments (encrypted with the same key),
// sessions (MAC'd with the same cookie key) and the accepted certificate.
type state struct {
	Passwords    map[string]string // username → password
	ClientSecret string            // the gateway's secret at the dev IdP
	CookieKey    []byte
	MFAKey       []byte
	AssertionKey *ecdsa.PrivateKey
}

// secretsFile holds the generated passwords and the client secret.
type secretsFile struct {
	Passwords    map[string]string `json:"passwords"`
	ClientSecret string            `json:"client_secret"`
}

const (
	secretsName   = "demo-secrets.json"
	cookieKeyName = "cookie.key"
	mfaKeyName    = "mfa.key"
	assertionName = "assertion.pem"
)

// loadState reads the demo's secrets from dir, generating (and writing,
// mode 0600) whatever is missing. A present but damaged file is an error
// naming it, never silently replaced: replacing a key would invalidate
// enrolments without saying why.
func loadState(dir string, usernames []string) (*state, error) {
	st := &state{}
	var sf secretsFile
	err := readOrCreate(filepath.Join(dir, secretsName), func() ([]byte, error) {
		sf = secretsFile{Passwords: map[string]string{}}
		for _, u := range usernames {
			p, err := password()
			if err != nil {
				return nil, err
			}
			sf.Passwords[u] = p
		}
		var err error
		if sf.ClientSecret, err = password(); err != nil {
			return nil, err
		}
		return json.MarshalIndent(sf, "", "  ")
	}, func(b []byte) error {
		if err := json.Unmarshal(b, &sf); err != nil {
			return err
		}
		for _, u := range usernames {
			if sf.Passwords[u] == "" {
				return fmt.Errorf("no password for %s", u)
			}
		}
		if sf.ClientSecret == "" {
			return errors.New("no client secret")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	st.Passwords, st.ClientSecret = sf.Passwords, sf.ClientSecret
	for _, k := range []struct {
		name string
		dst  *[]byte
	}{{cookieKeyName, &st.CookieKey}, {mfaKeyName, &st.MFAKey}} {
		err := readOrCreate(filepath.Join(dir, k.name), func() ([]byte, error) {
			return keys.GenerateSymmetric(nil)
		}, func(b []byte) error {
			key, err := keys.ParseSymmetric(b)
			*k.dst = key
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	err = readOrCreate(filepath.Join(dir, assertionName), func() ([]byte, error) {
		_, pemBytes, err := keys.GenerateECPrivateKey()
		return pemBytes, err
	}, func(b []byte) error {
		key, err := keys.ParseECPrivateKey(b)
		st.AssertionKey = key
		return err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// readOrCreate parses path with parse, first writing it (0600, only if
// absent) from create.
func readOrCreate(path string, create func() ([]byte, error), parse func([]byte) error) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if b, err = create(); err != nil {
			return err
		}
		if err := writeNew(path, b); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if err := parse(b); err != nil {
		return fmt.Errorf("%s is damaged (%v): delete the demo data directory to start afresh", path, err)
	}
	return nil
}

// writeNew creates path with mode 0600; it fails if the file exists.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// password returns 16 characters from an alphabet without look-alikes
// (about 80 bits).
func password() (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY345679"
	out := make([]byte, 16)
	for i := range out {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", err
		}
		out[i] = alphabet[n.Int64()]
	}
	return string(out), nil
}
