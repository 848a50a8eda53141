package session

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/store"
)

// revTestClock is a settable clock shared by the CA, the revocations and
// the embedded store.
type revTestClock struct{ t atomic.Int64 }

func (c *revTestClock) Now() time.Time          { return time.Unix(0, c.t.Load()).UTC() }
func (c *revTestClock) Set(t time.Time)         { c.t.Store(t.UnixNano()) }
func (c *revTestClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

type revTestEnv struct {
	clock *revTestClock
	st    *store.Embedded
	ca    *SSHCA
	rev   *CertRevocations
}

func newRevTestEnv(t *testing.T) *revTestEnv {
	t.Helper()
	clock := &revTestClock{}
	clock.Set(caTestNow)
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), store.EmbeddedOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := NewSSHCA(caTestSigner(t), SSHCAOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := NewCertRevocations(st, SSHCAOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &revTestEnv{clock: clock, st: st, ca: ca, rev: rev}
}

func (e *revTestEnv) issue(t *testing.T, userID string) *ssh.Certificate {
	t.Helper()
	req := caTestRequest(t)
	req.UserID = userID
	cert, err := e.ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestCertRevocations(t *testing.T) {
	ctx := context.Background()
	t.Run("by serial", func(t *testing.T) {
		e := newRevTestEnv(t)
		a, b := e.issue(t, "alice"), e.issue(t, "alice")
		if err := e.rev.RevokeSerial(ctx, a.Serial, "lost laptop"); err != nil {
			t.Fatal(err)
		}
		if err := e.rev.Check(ctx, a); !errors.Is(err, ErrCertRevoked) {
			t.Fatalf("revoked serial: %v", err)
		}
		if err := e.rev.Check(ctx, b); err != nil {
			t.Fatalf("other serial: %v", err)
		}
	})
	t.Run("by key ID covers earlier certificates only", func(t *testing.T) {
		e := newRevTestEnv(t)
		old, bob := e.issue(t, "alice"), e.issue(t, "bob")
		e.clock.Advance(time.Minute)
		if err := e.rev.RevokeKeyID(ctx, "alice", "offboarded"); err != nil {
			t.Fatal(err)
		}
		if err := e.rev.Check(ctx, old); !errors.Is(err, ErrCertRevoked) {
			t.Fatalf("old certificate: %v", err)
		}
		if err := e.rev.Check(ctx, bob); err != nil {
			t.Fatalf("another user: %v", err)
		}
		// Issued in the same second as the revocation: still revoked.
		if err := e.rev.Check(ctx, e.issue(t, "alice")); !errors.Is(err, ErrCertRevoked) {
			t.Fatalf("same-second certificate: %v", err)
		}
		e.clock.Advance(time.Second)
		if err := e.rev.Check(ctx, e.issue(t, "alice")); err != nil {
			t.Fatalf("certificate after a fresh login: %v", err)
		}
	})
	t.Run("seen by a second instance on the same store", func(t *testing.T) {
		e := newRevTestEnv(t)
		other, err := NewCertRevocations(e.st, SSHCAOptions{Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		c := e.issue(t, "alice")
		if err := other.Check(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := e.rev.RevokeSerial(ctx, c.Serial, ""); err != nil {
			t.Fatal(err)
		}
		if err := other.Check(ctx, c); !errors.Is(err, ErrCertRevoked) {
			t.Fatalf("second instance: %v", err)
		}
	})
	t.Run("records outlive every certificate they cover", func(t *testing.T) {
		e := newRevTestEnv(t)
		c := e.issue(t, "alice")
		if err := e.rev.RevokeSerial(ctx, c.Serial, ""); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(MaxCertTTL + CertBackdate)
		if err := e.rev.Check(ctx, c); !errors.Is(err, ErrCertRevoked) {
			t.Fatalf("at the longest possible expiry: %v", err)
		}
		e.clock.Advance(revocationTTL)
		if _, err := e.st.GetEphemeral(ctx, serialKey(c.Serial)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record kept forever: %v", err)
		}
	})
	t.Run("feed event", func(t *testing.T) {
		e := newRevTestEnv(t)
		sub, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := e.st.Subscribe(sub)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.rev.RevokeKeyID(ctx, "alice", "offboarded"); err != nil {
			t.Fatal(err)
		}
		for ev := range ch {
			if ev.Kind == store.EventResync {
				continue
			}
			if ev.Kind != EventSSHCertRevoked || ev.Subject != RevokedKeyIDPrefix+"alice" || ev.Reason != "offboarded" {
				t.Fatalf("event %+v", ev)
			}
			return
		}
		t.Fatal("feed closed")
	})
	t.Run("unreadable record means revoked", func(t *testing.T) {
		e := newRevTestEnv(t)
		c := e.issue(t, "alice")
		if err := e.st.PutEphemeral(ctx, keyIDKey("alice"), []byte("{garbage"), time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := e.rev.Check(ctx, c); !errors.Is(err, ErrCertRevoked) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestCertRevocationsRefuses(t *testing.T) {
	ctx := context.Background()
	e := newRevTestEnv(t)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"serial 0", func() error { return e.rev.RevokeSerial(ctx, 0, "") }},
		{"empty key ID", func() error { return e.rev.RevokeKeyID(ctx, "", "") }},
		{"key ID with newline", func() error { return e.rev.RevokeKeyID(ctx, "a\nb", "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, ErrCertRequest) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if err := e.rev.Check(ctx, nil); !errors.Is(err, ErrCertRevoked) {
		t.Fatalf("nil certificate: %v", err)
	}
	if _, err := NewCertRevocations(nil, SSHCAOptions{}); err == nil {
		t.Fatal("nil store accepted")
	}
}

func TestCertRevocationsFailClosed(t *testing.T) {
	ctx := context.Background()
	e := newRevTestEnv(t)
	c := e.issue(t, "alice")
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"check", func() error { return e.rev.Check(ctx, c) }},
		{"revoke serial", func() error { return e.rev.RevokeSerial(ctx, c.Serial, "") }},
		{"revoke key ID", func() error { return e.rev.RevokeKeyID(ctx, "alice", "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrCertRevoked) {
				t.Fatalf("got %v, want store.ErrUnavailable", err)
			}
		})
	}
}
