package mfa

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
)

func testSealer(t *testing.T, key []byte) sealer {
	t.Helper()
	s, _, err := deriveKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealRoundTrip(t *testing.T) {
	s := testSealer(t, testKey)
	secret := []byte("twenty bytes secret!")
	a, err := s.seal(rand.Reader, "u", secret)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.seal(rand.Reader, "u", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) || bytes.Equal(a[1:1+nonceSize], b[1:1+nonceSize]) {
		t.Fatal("two seals of one secret share a nonce/ciphertext")
	}
	if a[0] != sealVersion1 || bytes.Contains(a, secret) {
		t.Fatalf("sealed record %x: wrong version or secret in clear", a)
	}
	for _, blob := range [][]byte{a, b} {
		got, err := s.openSecret("u", blob)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("open = %q, %v", got, err)
		}
	}
}

func TestSealTamper(t *testing.T) {
	s := testSealer(t, testKey)
	secret := []byte("twenty bytes secret!")
	blob, err := s.seal(rand.Reader, "u", secret)
	if err != nil {
		t.Fatal(err)
	}
	for i := range blob {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(blob)
			bad[i] ^= bit
			if got, err := s.openSecret("u", bad); !errors.Is(err, ErrCorruptRecord) || got != nil {
				t.Fatalf("byte %d ^ %#x: open = %x, %v; want ErrCorruptRecord", i, bit, got, err)
			}
		}
	}
	malformed := map[string][]byte{
		"nil":            nil,
		"version only":   {sealVersion1},
		"no tag":         blob[:1+nonceSize],
		"truncated":      blob[:len(blob)-1],
		"extended":       append(bytes.Clone(blob), 0),
		"future version": append([]byte{0x02}, blob[1:]...),
	}
	for name, b := range malformed {
		if _, err := s.openSecret("u", b); !errors.Is(err, ErrCorruptRecord) {
			t.Fatalf("%s: %v, want ErrCorruptRecord", name, err)
		}
	}
	// A well-authenticated record of the wrong size is refused too.
	short, _ := s.seal(rand.Reader, "u", secret[:10])
	if _, err := s.openSecret("u", short); !errors.Is(err, ErrCorruptRecord) {
		t.Fatalf("short secret: %v", err)
	}
}

func TestSealBinding(t *testing.T) {
	s := testSealer(t, testKey)
	blob, err := s.seal(rand.Reader, "alice", []byte("twenty bytes secret!"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		sealer sealer
		user   string
	}{
		{"other user", s, "mallory"},
		{"user prefix", s, "alic"},
		{"user with separator", s, "alice|"},
		{"wrong key", testSealer(t, []byte("another key, also 32 bytes long!")), "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.sealer.openSecret(tc.user, blob); !errors.Is(err, ErrCorruptRecord) {
				t.Fatalf("open: %v, want ErrCorruptRecord", err)
			}
		})
	}
}

// End to end through the store: a record copied to another user, a record
// opened with another key and a tampered record all fail closed, and are
// not counted as the user's failures (the user did nothing wrong).
func TestVerifyCorruptRecords(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		corrupt func(fx *fixture) *Manager
		user    string
	}{
		{"copied to another user", func(fx *fixture) *Manager {
			fx.st.enrol["mallory"] = bytes.Clone(fx.st.enrol["alice"])
			return fx.m
		}, "mallory"},
		{"wrong key", func(fx *fixture) *Manager {
			return newManager(t, fx.st, fx.clk, []byte("another key, also 32 bytes long!"))
		}, "alice"},
		{"flipped byte", func(fx *fixture) *Manager {
			fx.st.enrol["alice"][len(fx.st.enrol["alice"])/2] ^= 0x10
			return fx.m
		}, "alice"},
		{"emptied", func(fx *fixture) *Manager {
			fx.st.enrol["alice"] = []byte{}
			return fx.m
		}, "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			secret, _ := fx.enrol(t, "alice")
			if bytes.Contains(fx.st.enrol["alice"], []byte(secret)) {
				t.Fatal("enrolment stored with the secret in clear")
			}
			m := tc.corrupt(fx)
			err := m.Verify(ctx, tc.user, codeAt(t, secret, fx.clk.Now()))
			if !errors.Is(err, ErrCorruptRecord) || errors.Is(err, ErrInvalidCode) {
				t.Fatalf("Verify: %v, want ErrCorruptRecord", err)
			}
			if n := mustFailures(t, m, tc.user); n != 0 {
				t.Fatalf("failures = %d, want 0", n)
			}
		})
	}
}
