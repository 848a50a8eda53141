package session

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var caTestNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func caTestSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func caTestCA(t testing.TB) (*SSHCA, ssh.Signer) {
	t.Helper()
	signer := caTestSigner(t)
	ca, err := NewSSHCA(signer, SSHCAOptions{Now: func() time.Time { return caTestNow }})
	if err != nil {
		t.Fatal(err)
	}
	return ca, signer
}

func caTestRequest(t testing.TB) CertRequest {
	return CertRequest{
		PublicKey:  caTestSigner(t).PublicKey(),
		UserID:     "https://idp.example#alice",
		Principals: []string{"root", "deploy", "root"},
		Roles:      []string{"engineer", "db"},
		TTL:        time.Hour,
	}
}

func TestSSHCAIssue(t *testing.T) {
	ca, signer := caTestCA(t)
	req := caTestRequest(t)
	req.PermitPTY = true
	req.WebSessionID = "sess-123"
	req.SourceAddress = "::ffff:10.1.2.3,192.168.0.0/16"
	cert, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if cert.KeyId != req.UserID || cert.CertType != ssh.UserCert || cert.Serial == 0 {
		t.Fatalf("key ID %q type %d serial %d", cert.KeyId, cert.CertType, cert.Serial)
	}
	if got := strings.Join(cert.ValidPrincipals, ","); got != "deploy,root" {
		t.Fatalf("principals %q", got)
	}
	if got, want := cert.ValidAfter, uint64(caTestNow.Add(-time.Minute).Unix()); got != want {
		t.Fatalf("valid after %d, want %d", got, want)
	}
	if got, want := cert.ValidBefore, uint64(caTestNow.Add(time.Hour).Unix()); got != want {
		t.Fatalf("valid before %d, want %d", got, want)
	}
	if !IssuedAt(cert).Equal(caTestNow) {
		t.Fatalf("IssuedAt %v", IssuedAt(cert))
	}
	if got := cert.CriticalOptions[OptSourceAddress]; got != "10.1.2.3,192.168.0.0/16" {
		t.Fatalf("source-address %q", got)
	}
	if _, ok := cert.Extensions[ExtPermitPTY]; !ok {
		t.Fatal("permit-pty missing")
	}
	for _, ext := range []string{ExtPermitPortForwarding, ExtPermitAgentForward, "permit-X11-forwarding", "permit-user-rc"} {
		if _, ok := cert.Extensions[ext]; ok {
			t.Fatalf("%s granted without being asked for", ext)
		}
	}
	if got := cert.Extensions[ExtWebSession]; got != "sess-123" {
		t.Fatalf("web session %q", got)
	}
	if got := strings.Join(RolesFromCert(cert), ","); got != "db,engineer" {
		t.Fatalf("roles %q", got)
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), signer.PublicKey().Marshal()) {
		t.Fatal("signed by another key")
	}
	// The signature verifies with a standard checker at a time in range.
	checker := ssh.CertChecker{
		IsUserAuthority:          func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), ca.PublicKey().Marshal()) },
		SupportedCriticalOptions: []string{OptSourceAddress},
		Clock:                    func() time.Time { return caTestNow },
	}
	if err := checker.CheckCert("root", cert); err != nil {
		t.Fatalf("CheckCert: %v", err)
	}
	if err := checker.CheckCert("admin", cert); err == nil {
		t.Fatal("a principal outside the certificate was accepted")
	}
}

func TestSSHCAIssueTTLCap(t *testing.T) {
	ca, _ := caTestCA(t)
	req := caTestRequest(t)
	req.TTL = 30 * 24 * time.Hour
	cert, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.ValidBefore, uint64(caTestNow.Add(MaxCertTTL).Unix()); got != want {
		t.Fatalf("valid before %d, want capped %d", got, want)
	}
}

func TestSSHCAIssueRefuses(t *testing.T) {
	ca, signer := caTestCA(t)
	other, _ := caTestCA(t)
	userCert, err := other.Issue(caTestRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		modify func(*CertRequest)
	}{
		{"no key", func(r *CertRequest) { r.PublicKey = nil }},
		{"key is a certificate", func(r *CertRequest) { r.PublicKey = userCert }},
		{"the CA's own key", func(r *CertRequest) { r.PublicKey = signer.PublicKey() }},
		{"empty user ID", func(r *CertRequest) { r.UserID = "" }},
		{"user ID with newline", func(r *CertRequest) { r.UserID = "alice\nroot" }},
		{"user ID not UTF-8", func(r *CertRequest) { r.UserID = "al\xffice" }},
		{"huge user ID", func(r *CertRequest) { r.UserID = strings.Repeat("a", 5000) }},
		{"nil principals", func(r *CertRequest) { r.Principals = nil }},
		{"empty principal list", func(r *CertRequest) { r.Principals = []string{} }},
		{"empty principal", func(r *CertRequest) { r.Principals = []string{""} }},
		{"principal with comma", func(r *CertRequest) { r.Principals = []string{"root,admin"} }},
		{"principal with NUL", func(r *CertRequest) { r.Principals = []string{"root\x00"} }},
		{"too many principals", func(r *CertRequest) { r.Principals = make([]string, 300) }},
		{"role with comma", func(r *CertRequest) { r.Roles = []string{"a,admin"} }},
		{"empty role", func(r *CertRequest) { r.Roles = []string{""} }},
		{"web session ID with newline", func(r *CertRequest) { r.WebSessionID = "a\nb" }},
		{"zero TTL", func(r *CertRequest) { r.TTL = 0 }},
		{"negative TTL", func(r *CertRequest) { r.TTL = -time.Hour }},
		{"bad source address", func(r *CertRequest) { r.SourceAddress = "10.0.0.1,nope" }},
		{"empty source entry", func(r *CertRequest) { r.SourceAddress = "10.0.0.1," }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := caTestRequest(t)
			tc.modify(&req)
			cert, err := ca.Issue(req)
			if err == nil || cert != nil {
				t.Fatalf("issued %v", cert)
			}
			if !errors.Is(err, ErrCertRequest) {
				t.Fatalf("error %v does not wrap ErrCertRequest", err)
			}
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestSSHCARandomness(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"all zeros never yields serial 0", zeroReader{}},
		{"failing reader", failReader{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := NewSSHCA(caTestSigner(t), SSHCAOptions{Rand: tc.r})
			if err != nil {
				t.Fatal(err)
			}
			if cert, err := ca.Issue(caTestRequest(t)); err == nil {
				t.Fatalf("issued serial %d", cert.Serial)
			}
		})
	}
	t.Run("serials differ", func(t *testing.T) {
		ca, _ := caTestCA(t)
		seen := map[uint64]bool{}
		for range 20 {
			cert, err := ca.Issue(caTestRequest(t))
			if err != nil {
				t.Fatal(err)
			}
			if seen[cert.Serial] {
				t.Fatalf("serial %d repeated", cert.Serial)
			}
			seen[cert.Serial] = true
		}
	})
}

func TestNewSSHCARefuses(t *testing.T) {
	ca, _ := caTestCA(t)
	userKey := caTestSigner(t)
	req := caTestRequest(t)
	req.PublicKey = userKey.PublicKey()
	cert, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, userKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer ssh.Signer
	}{
		{"nil signer", nil},
		{"certificate as CA", certSigner},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSSHCA(tc.signer, SSHCAOptions{}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestParseSourceAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"10.0.0.1", "10.0.0.1", true},
		{"10.0.0.1/8", "10.0.0.0/8", true},
		{"::ffff:10.0.0.1", "10.0.0.1", true},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", true},
		{"fe80::1%eth0", "fe80::1", true},
		{"2001:db8::/32,10.0.0.1", "2001:db8::/32,10.0.0.1", true},
		{"", "", false},
		{",", "", false},
		{"10.0.0.1, 10.0.0.2", "", false},
		{"10.0.0.0/33", "", false},
		{"::ffff:0:0/90", "", false},
		{"host.example", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NormalizeSourceAddress(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("got %q, %v; want %q ok=%v", got, err, tc.want, tc.ok)
			}
		})
	}
}

func FuzzNormalizeSourceAddress(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "::ffff:1.2.3.4/120", "a,b", "1.2.3.4,::1", "fe80::1%x/64", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := NormalizeSourceAddress(s)
		if err != nil {
			return
		}
		// Normal form is a fixed point.
		again, err := NormalizeSourceAddress(out)
		if err != nil || again != out {
			t.Fatalf("%q → %q → %q, %v", s, out, again, err)
		}
	})
}
