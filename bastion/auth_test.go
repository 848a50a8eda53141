package bastion

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// TestAuthRefused drives the real OpenSSH client with certificates the
// bastion must refuse; each case asserts the refusal, the audit reason
// and that no session started.
func TestAuthRefused(t *testing.T) {
	// Every case is alice's: her failures must not lock her here
	// (TestRiskLockdown counts them).
	rc := testRiskConfig()
	rc.User = map[risk.Signal]risk.Threshold{risk.SignalSSHAuthFailure: {Count: 0, Window: time.Minute}}
	e := newEnv(t, envOptions{risk: &rc})
	otherCA, _ := newSigner(t)
	now := time.Now()
	validCert := func(principals ...string) *ssh.Certificate {
		return &ssh.Certificate{
			CertType: ssh.UserCert, KeyId: "alice", Serial: 77, ValidPrincipals: principals,
			ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
			Permissions: ssh.Permissions{Extensions: map[string]string{session.ExtRoles: "eng"}},
		}
	}
	for _, tc := range []struct {
		name   string
		user   func() *user
		dest   string
		clock  time.Duration
		reason string
	}{
		{"plain key", func() *user {
			s, p := newSigner(t)
			return e.saveUser(s, p, nil, "")
		}, "root@db-1", 0, ReasonNotCertificate},
		{"expired", e.alice, "root@db-1", 2 * time.Hour, ReasonExpired},
		{"not yet valid", e.alice, "root@db-1", -time.Hour, ReasonNotYetValid},
		{"untrusted CA", func() *user { return e.signRaw(otherCA, validCert("root")) }, "root@db-1", 0, ReasonUntrustedCA},
		{"revoked serial", func() *user {
			u := e.alice()
			if err := e.rev.RevokeSerial(context.Background(), u.cert.Serial, "test"); err != nil {
				t.Fatal(err)
			}
			return u
		}, "root@db-1", 0, ReasonRevoked},
		{"revoked key ID", func() *user {
			u := e.issue("frank", []string{"eng"}, []string{"root"}, nil)
			if err := e.rev.RevokeKeyID(context.Background(), "frank", "offboarded"); err != nil {
				t.Fatal(err)
			}
			return u
		}, "root@db-1", 0, ReasonRevoked},
		{"empty principals", func() *user { return e.signRaw(e.caSigner, validCert()) }, "root@db-1", 0, ReasonEmptyPrincipals},
		{"wrong principal", func() *user {
			return e.issue("alice", []string{"eng"}, []string{"deploy"}, nil)
		}, "root@db-1", 0, ReasonPrincipal},
		{"never expires", func() *user {
			c := validCert("root")
			c.ValidBefore = ssh.CertTimeInfinity
			return e.signRaw(e.caSigner, c)
		}, "root@db-1", 0, ReasonNoExpiry},
		{"lifetime beyond the CA maximum", func() *user {
			c := validCert("root")
			c.ValidBefore = uint64(now.Add(30 * 24 * time.Hour).Unix())
			return e.signRaw(e.caSigner, c)
		}, "root@db-1", 0, ReasonNoExpiry},
		{"unknown critical option", func() *user {
			c := validCert("root")
			c.CriticalOptions = map[string]string{"force-command": "/bin/true"}
			return e.signRaw(e.caSigner, c)
		}, "root@db-1", 0, ReasonBadCertificate},
		{"source address elsewhere", func() *user {
			return e.issue("alice", []string{"eng"}, []string{"root"}, func(r *session.CertRequest) { r.SourceAddress = "10.9.9.9/32" })
		}, "root@db-1", 0, ReasonSourceAddress},
		{"no key ID", func() *user {
			c := validCert("root")
			c.KeyId = ""
			return e.signRaw(e.caSigner, c)
		}, "root@db-1", 0, ReasonNoKeyID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			e.audit.Reset()
			u := tc.user()
			e.clock.Advance(tc.clock)
			defer e.clock.Advance(-tc.clock)
			r := e.ssh(u, tc.dest, "echo hello")
			if r.code != 255 || strings.Contains(r.stdout, "hello") || !strings.Contains(r.stderr, "Permission denied") {
				t.Fatalf("not refused: %+v", r)
			}
			ev := e.waitAudit(TypeSSHAuth, tc.reason)
			if ev.Decision != audit.Deny || ev.UserID != "" {
				t.Fatalf("audit event %+v", ev)
			}
			if evs := e.audit.Find(TypeSSHSessionStart, ""); len(evs) != 0 {
				t.Fatalf("a session started: %+v", evs)
			}
		})
	}
}

// TestAuthOfferedNotSigned: the client offers alice's certificate (the
// server says it would accept it) but cannot sign with it — its key is
// passphrase-protected and the client runs in batch mode — and then
// authenticates with bob's. The connection must be bob's.
func TestAuthOfferedNotSigned(t *testing.T) {
	e := newEnv(t, envOptions{})
	aliceSigner, alicePriv := newSigner(t)
	aliceCert, err := e.ca.Issue(session.CertRequest{
		PublicKey: aliceSigner.PublicKey(), UserID: "alice", Roles: []string{"eng"}, Principals: []string{"root"}, TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := e.saveUser(aliceSigner, alicePriv, aliceCert, "passphrase")
	bob := e.issue("bob", []string{"readonly"}, []string{"root"}, nil)
	host, _, _ := net.SplitHostPort(e.addr)
	r := e.run("", "ssh", []*user{alice, bob}, "root@db-1@"+host, "echo hello")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "hello" {
		t.Fatalf("bob's login failed: %+v", r)
	}
	dec := e.waitAudit("decision", "allowed")
	if dec.UserID != "bob" {
		t.Fatalf("decision for %q, want bob", dec.UserID)
	}
	for _, ev := range e.audit.Events() {
		if ev.UserID == "alice" || (ev.Decision == audit.Allow && ev.Attrs["claimed_key_id"] == "alice") {
			t.Fatalf("alice's merely offered certificate produced %+v", ev)
		}
	}
	if s := e.lastSession(); s.UserID != "bob" {
		t.Fatalf("session of %q", s.UserID)
	}
}

// fakeMeta is ssh.ConnMetadata for calling the callbacks directly.
type fakeMeta struct{ user string }

func (m fakeMeta) User() string          { return m.user }
func (m fakeMeta) SessionID() []byte     { return []byte("sid") }
func (m fakeMeta) ClientVersion() []byte { return []byte("SSH-2.0-test") }
func (m fakeMeta) ServerVersion() []byte { return []byte("SSH-2.0-Portcullis") }
func (m fakeMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555} }
func (m fakeMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222} }

// TestAuthBinding checks the CVE-2024-45337 defence at the callback level:
// Permissions made for one key are refused for another, and unverified
// Permissions never yield a certificate.
func TestAuthBinding(t *testing.T) {
	e := newEnv(t, envOptions{noTarget: true})
	alice, bob := e.alice(), e.issue("bob", []string{"readonly"}, []string{"root"}, nil)
	meta := fakeMeta{user: "root@db-1"}
	permsA, err := e.b.publicKeyCallback(meta, alice.cert)
	if err != nil {
		t.Fatal(err)
	}
	permsB, err := e.b.publicKeyCallback(meta, bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	if verifiedCert(permsA) != nil {
		t.Fatal("permissions count as verified before any signature")
	}
	a := e.b.newAuthConn(context.Background(), nil)
	a.src = sourceAddr(meta.RemoteAddr())
	if _, err := a.verifiedKey(meta, bob.cert, permsA, ""); err == nil {
		t.Fatal("alice's permissions accepted for bob's key")
	}
	e.waitAudit(TypeSSHAuth, ReasonBindingMismatch)
	got, err := a.verifiedKey(meta, bob.cert, permsB, "")
	if err != nil {
		t.Fatal(err)
	}
	if c := verifiedCert(got); c == nil || c.KeyId != "bob" {
		t.Fatalf("verified certificate %v", c)
	}
	// Tampering after verification (ExtraData swapped) is caught too.
	got.ExtraData[certKey{}] = alice.cert
	if verifiedCert(got) != nil {
		t.Fatal("swapped certificate accepted")
	}
	for _, tc := range []struct {
		name  string
		perms *ssh.Permissions
	}{
		{"nil", nil},
		{"empty", &ssh.Permissions{}},
		{"no certificate", &ssh.Permissions{Extensions: map[string]string{permKeyFP: "x", permVerified: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if verifiedCert(tc.perms) != nil {
				t.Fatal("accepted")
			}
			if permsBoundTo(tc.perms, bob.cert) {
				t.Fatal("bound")
			}
		})
	}
}

// failingRevocations reports the store as down.
type failingRevocations struct{}

func (failingRevocations) Check(context.Context, *ssh.Certificate) error {
	return errors.Join(store.ErrUnavailable, errors.New("connection refused"))
}

// TestAuthCallbackCases covers inputs the OpenSSH client cannot send.
func TestAuthCallbackCases(t *testing.T) {
	e := newEnv(t, envOptions{noTarget: true})
	alice := e.alice()
	// A "CA" that is itself a certificate: signed by hand, since
	// x/crypto refuses to sign with one.
	caCertSigner, err := ssh.NewCertSigner(alice.cert, alice.signer)
	if err != nil {
		t.Fatal(err)
	}
	caIsCert := &ssh.Certificate{
		Key: alice.signer.PublicKey(), CertType: ssh.UserCert, KeyId: "mallory", ValidPrincipals: []string{"root"},
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
		SignatureKey: caCertSigner.PublicKey(),
	}
	unsigned := *caIsCert
	unsigned.Signature = nil
	blob := unsigned.Marshal()
	caIsCert.Signature, err = alice.signer.Sign(rand.Reader, blob[:len(blob)-4])
	if err != nil {
		t.Fatal(err)
	}
	hostCert := e.issue("alice", []string{"eng"}, []string{"root"}, nil).cert
	hostCert.CertType = ssh.HostCert
	if err := hostCert.SignCert(rand.Reader, e.caSigner); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		user   string
		key    ssh.PublicKey
		rev    Revocations
		reason string
	}{
		{"CA key is a certificate", "root@db-1", caIsCert, nil, ReasonCAIsCertificate},
		{"empty login", "@db-1", alice.cert, nil, ReasonBadUsername},
		{"empty target", "root@", alice.cert, nil, ReasonBadUsername},
		{"login with a space", "ro ot@db-1", alice.cert, nil, ReasonBadUsername},
		{"login starting with a dash", "-oProxyCommand@db-1", alice.cert, nil, ReasonBadUsername},
		{"control character", "root\n@db-1", alice.cert, nil, ReasonBadUsername},
		{"store down", "root@db-1", alice.cert, failingRevocations{}, ReasonRevocationUnknown},
		{"host certificate", "root@db-1", hostCert, nil, ReasonNotUserCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.audit.Reset()
			if tc.rev != nil {
				old := e.b.rev
				e.b.rev = tc.rev
				defer func() { e.b.rev = old }()
			}
			perms, err := e.b.publicKeyCallback(fakeMeta{user: tc.user}, tc.key)
			if err == nil || perms != nil {
				t.Fatal("accepted")
			}
			if len(e.audit.Find(TypeSSHAuth, tc.reason)) != 1 {
				t.Fatalf("audit %+v", e.audit.Events())
			}
		})
	}
}

func TestSplitUser(t *testing.T) {
	for _, tc := range []struct {
		in, login, target string
		ok                bool
	}{
		{"root@db-1", "root", "db-1", true},
		{"a@corp@db-1", "a@corp", "db-1", true},
		{"alice", "alice", "", true},
		{"root@", "", "", false},
		{"@db-1", "", "", false},
		{"root@db 1", "", "", false},
		{"", "", "", false},
		{"-l@x", "", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			login, target, ok := splitUser(tc.in)
			if ok != tc.ok || (ok && (login != tc.login || target != tc.target)) {
				t.Fatalf("got %q %q %v", login, target, ok)
			}
		})
	}
}

func FuzzSplitUser(f *testing.F) {
	for _, s := range []string{"root@db-1", "a@b@c", "@", "x@", "\x00@y", "ü@db"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		login, target, ok := splitUser(s)
		if !ok {
			return
		}
		if strings.ContainsAny(target, "@ \t\r\n") || !validLogin(login) {
			t.Fatalf("%q → %q %q", s, login, target)
		}
		if target != "" && login+"@"+target != s {
			t.Fatalf("%q → %q %q", s, login, target)
		}
	})
}
