package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/e2e/harness"
)

// refRE finds the reference ID shown to a refused user.
var refRE = regexp.MustCompile(`\((ref-[A-Z0-9]+)\)`)

// testSSHHostile: every refusal through the real server, each with the
// secure outcome the user sees and the audit event that explains it.
func testSSHHostile(t *testing.T, s *sshSite, alice *harness.SSHKey) {
	otherCA, err := session.NewSSHCA(newEd25519Signer(t), session.SSHCAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pastCA, err := session.NewSSHCA(s.caSigner, session.SSHCAOptions{Now: func() time.Time { return time.Now().Add(-3 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	futureCA, err := session.NewSSHCA(s.caSigner, session.SSHCAOptions{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	revoked, revokedCert := s.mintCert(t, s.userCA, nil)
	r := harness.RunPortcullis(t, "admin", "--socket", s.p.AdminSocket, "revoke-cert",
		"--serial", strconv.FormatUint(revokedCert.Serial, 10), "--reason", "laptop lost")
	if r.Code != 0 {
		t.Fatalf("admin revoke-cert: %+v", r)
	}
	s.audit(t, harness.AuditQuery{Type: audit.TypeAdmin, Reason: "ssh-cert-revoke", Decision: audit.Allow})
	// Authentication failures: OpenSSH gives up with "Permission denied"
	// and never reaches the target.
	for _, tc := range []struct {
		name   string
		key    func(t *testing.T) *harness.SSHKey
		reason string
	}{
		{"plain key", func(t *testing.T) *harness.SSHKey { return harness.NewSSHKey(t, t.TempDir(), "id_plain") }, bastion.ReasonNotCertificate},
		{"expired certificate", func(t *testing.T) *harness.SSHKey { return s.mint(t, pastCA, nil) }, bastion.ReasonExpired},
		{"untrusted CA", func(t *testing.T) *harness.SSHKey { return s.mint(t, otherCA, nil) }, bastion.ReasonUntrustedCA},
		{"not yet valid certificate", func(t *testing.T) *harness.SSHKey { return s.mint(t, futureCA, nil) }, bastion.ReasonNotYetValid},
		{"revoked certificate", func(*testing.T) *harness.SSHKey { return revoked }, bastion.ReasonRevoked},
		{"wrong principal", func(t *testing.T) *harness.SSHKey {
			return s.mint(t, s.userCA, func(r *session.CertRequest) { r.Principals = []string{"deploy"} })
		}, bastion.ReasonPrincipal},
		{"empty principals", func(t *testing.T) *harness.SSHKey { return s.emptyPrincipals(t) }, bastion.ReasonEmptyPrincipals},
	} {
		t.Run(tc.name, func(t *testing.T) {
			since := time.Now()
			r := s.ssh(t, tc.key(t), "root@db-1", "echo reached-target")
			if r.Code != 255 || strings.Contains(r.Stdout, "reached-target") || !strings.Contains(r.Stderr, "Permission denied") {
				t.Fatalf("got %+v", r)
			}
			s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHAuth, Reason: tc.reason, Decision: audit.Deny, Since: since})
			if n := len(harness.FindAudit(t, s.p.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionStart, Since: since})); n != 0 {
				t.Fatalf("%d sessions started", n)
			}
		})
	}

	t.Run("key offered but not signed, then another", func(t *testing.T) {
		// OpenSSH offers alice's certificate first; the bastion answers
		// that it would accept it; ssh cannot sign (a copy of her key
		// under a passphrase that BatchMode cannot ask for) and goes on
		// with bob's own certificate, which signs. Identity must be
		// bob's, from the key that signed (CVE-2024-45337 class): bob
		// has no SSH role, so access is denied, under his name.
		dir := t.TempDir()
		offered := filepath.Join(dir, "alice")
		for _, f := range []string{"", ".pub", "-cert.pub"} {
			b, err := os.ReadFile(alice.Path + f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(offered+f, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command("ssh-keygen", "-q", "-p", "-P", "", "-N", "not-typed-"+harness.RandomString(4), "-f", offered).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen -p: %v %s", err, out)
		}
		bob := s.mint(t, s.userCA, func(r *session.CertRequest) { r.UserID, r.Roles = s.userID("bob"), []string{"engineer"} })
		since := time.Now()
		r := s.cfg.Run(t, s.dir, nil, "", "ssh", "-v", "-i", offered, "-i", bob.Path, "root@db-1@bastion", "echo reached-target")
		m := refRE.FindStringSubmatch(r.Stderr)
		if r.Code == 0 || strings.Contains(r.Stdout, "reached-target") || m == nil ||
			!strings.Contains(r.Stderr, "Server accepts key: "+offered) {
			t.Fatalf("got %+v", r)
		}
		ev := s.audit(t, harness.AuditQuery{Type: audit.TypeDecision, Decision: audit.Deny, Ref: m[1], Since: since})
		if ev.UserID != s.userID("bob") {
			t.Fatalf("decided for %q, want bob (the key that signed): %+v", ev.UserID, ev)
		}
		if n := len(harness.FindAudit(t, s.p.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionStart, Since: since})); n != 0 {
			t.Fatalf("%d sessions started", n)
		}
	})

	t.Run("target not allowed", func(t *testing.T) {
		since := time.Now()
		r := s.ssh(t, alice, "root@web-1", "echo reached-target")
		m := refRE.FindStringSubmatch(r.Stderr)
		if r.Code == 0 || strings.Contains(r.Stdout, "reached-target") || !strings.Contains(r.Stderr, "access denied") || m == nil {
			t.Fatalf("got %+v", r)
		}
		ev := s.audit(t, harness.AuditQuery{Type: audit.TypeDecision, Decision: audit.Deny, Ref: m[1], Since: since})
		if ev.Reason != string(authz.ReasonNoMatchingRule) || ev.UserID != s.userID("alice") {
			t.Fatalf("decision event %+v", ev)
		}
	})

	t.Run("source outside the role's allowlist", func(t *testing.T) {
		since := time.Now()
		office := s.mint(t, s.userCA, func(r *session.CertRequest) { r.Roles = []string{"office"} })
		r := s.ssh(t, office, "root@db-1", "echo reached-target")
		m := refRE.FindStringSubmatch(r.Stderr)
		if r.Code == 0 || strings.Contains(r.Stdout, "reached-target") || m == nil {
			t.Fatalf("got %+v", r)
		}
		ev := s.audit(t, harness.AuditQuery{Type: audit.TypeDecision, Decision: audit.Deny, Ref: m[1], Since: since})
		if ev.Reason != string(authz.ReasonSourceIPNotAllowed) || ev.SourceIP != "127.0.0.1" {
			t.Fatalf("decision event %+v", ev)
		}
	})

	t.Run("metadata address forward", func(t *testing.T) {
		since := time.Now()
		// "*:80" is in the role's port_forwards: the address itself is
		// what is refused.
		if got := s.forwardL(t, alice, "169.254.169.254:80"); got != "" {
			t.Fatalf("forward to the metadata address answered %q", got)
		}
		ev := s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHChannel, Reason: bastion.ReasonForwardDeniedAddr, Decision: audit.Deny, Since: since})
		if ev.Attrs["dest"] != "169.254.169.254:80" {
			t.Fatalf("event %+v", ev)
		}
	})

	t.Run("unknown upstream host key", func(t *testing.T) {
		since := time.Now()
		r := s.ssh(t, alice, "root@rogue", "echo reached-target")
		m := refRE.FindStringSubmatch(r.Stderr)
		if r.Code == 0 || strings.Contains(r.Stdout, "reached-target") || !strings.Contains(r.Stderr, "host key") || m == nil {
			t.Fatalf("got %+v", r)
		}
		ev := s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHUpstream, Reason: bastion.ReasonHostKeyMismatch, Ref: m[1], Since: since})
		if ev.Attrs["addr"] != s.target.Addr {
			t.Fatalf("event %+v", ev)
		}
	})

	// Last: it breaks recording for a moment.
	t.Run("recording fails mid-session", func(t *testing.T) { testRecordingFailure(t, s, alice) })
}

// emptyPrincipals signs, with the deployment's own CA key, a certificate
// that names no login (the CA refuses to make one; an attacker holding a
// leaked signing oracle might): empty principals must never mean "any".
func (s *sshSite) emptyPrincipals(t *testing.T) *harness.SSHKey {
	t.Helper()
	k := harness.NewSSHKey(t, t.TempDir(), "id_ed25519")
	now := time.Now()
	cert := &ssh.Certificate{
		Key: k.Public(), Serial: 7, CertType: ssh.UserCert, KeyId: s.userID("alice"),
		ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, s.caSigner); err != nil {
		t.Fatal(err)
	}
	k.SaveCert(t, cert)
	return k
}

func newEd25519Signer(t *testing.T) ssh.Signer {
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

// testRecordingFailure makes a live session's recording file and the
// recording directory immutable (chattr +i: writes fail even for root,
// as on a full or failing disk). The session must end with a clear
// message and an alert; new sessions are refused while recordings cannot
// be written, and accepted again once they can.
func testRecordingFailure(t *testing.T, s *sshSite, alice *harness.SSHKey) {
	since := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := s.cfg.Command(ctx, s.dir, nil, "ssh", "-i", alice.Path, "root@db-1@bastion", "echo started; while sleep 0.1; do echo tick; done")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "started" {
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatalf("the session did not start: %s", stderr.String())
	}
	id := s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHSessionStart, Since: since}).SessionID
	immutable(t, filepath.Join(s.recDir, id+recording.FileExt))
	immutable(t, s.recDir)

	err = cmd.Wait()
	if ctx.Err() != nil || err == nil || !strings.Contains(stderr.String(), "recording could not be written") {
		t.Fatalf("the session went on or ended without saying why: %v, %q", err, stderr.String())
	}
	s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHAlert, Reason: bastion.EndRecording, SessionID: id})
	s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHSessionEnd, Reason: bastion.EndRecording, SessionID: id})

	refused := time.Now()
	r := s.ssh(t, alice, "root@db-1", "echo reached-target")
	if r.Code == 0 || strings.Contains(r.Stdout, "reached-target") || !strings.Contains(r.Stderr, "recording is unavailable") {
		t.Fatalf("a new session while recordings fail: %+v", r)
	}
	s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHAlert, Reason: bastion.EndRecording, Since: refused})

	mutable(t, s.recDir)
	if r := s.ssh(t, alice, "root@db-1", "echo recording-back"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "recording-back" {
		t.Fatalf("once recordings can be written again: %+v", r)
	}
}

// immutable sets the immutable attribute on path until the test ends.
func immutable(t *testing.T, path string) {
	t.Helper()
	t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i %s (the test needs root and a file system with attributes, like ext4): %v %s", path, err, out)
	}
}

func mutable(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", "-i", path).CombinedOutput(); err != nil {
		t.Fatalf("chattr -i %s: %v %s", path, err, out)
	}
}
