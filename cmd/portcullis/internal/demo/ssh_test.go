package demo

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// sshThroughDemo checks the demo's SSH side: the bastion answers with its
// banner, and a certificate from the demo's user CA (what `portcullis
// login` gets for bob) runs a command on the sample target through it,
// leaving a recording.
func sshThroughDemo(t *testing.T, dir string, info Info) {
	t.Helper()
	if err := sshBanner(info.SSHAddr, 5*time.Second); err != nil {
		t.Fatalf("bastion %s: %v", info.SSHAddr, err)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, userCAName))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := keys.ParseSSHPrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := session.NewSSHCA(caKey, session.SSHCAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	userKey, _, err := keys.GenerateSSHKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	login := info.Logins[len(info.Logins)-1] // the engineer's login
	cert, err := ca.Issue(session.CertRequest{PublicKey: userKey.PublicKey(), UserID: "demo-test#bob", Principals: []string{login}, Roles: []string{"engineer"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewCertSigner(cert, userKey)
	c, err := ssh.Dial("tcp", info.SSHAddr, &ssh.ClientConfig{
		User: login + "@" + targetName, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if ssh.FingerprintSHA256(key) != info.SSHHostKey {
				return errors.New("bastion host key differs from the banner's")
			}
			return nil
		}, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh through the demo bastion: %v", err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput("echo demo-ok")
	if err != nil || !strings.Contains(string(out), "demo-ok") {
		t.Fatalf("exec on %s: %q %v", info.Target, out, err)
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "recordings", "*.pcrec"))
	if len(recs) == 0 {
		t.Error("no recording written")
	}
}

func TestSampleTargets(t *testing.T) {
	ca, _, err := keys.GenerateSSHKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _ := keys.GenerateSSHKey(nil, "")
	log := slog.New(slog.DiscardHandler)

	in, err := startInProcess(context.Background(), hostKey, ca.PublicKey(), []string{"root"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := sshBanner(in.Addr, 5*time.Second); err != nil {
		t.Errorf("in-process target: %v", err)
	}
	in.stop()
	if sshBanner(in.Addr, time.Second) == nil {
		t.Error("in-process target still answers after stop")
	}

	// sshd that cannot start (its host key file is missing) is reported
	// with its own words, and nothing is left running.
	dir := t.TempDir()
	_, err = startSSHD(dir, filepath.Join(dir, "missing-key"), hostKey.PublicKey(), ca.PublicKey(), []string{"root"}, log)
	if err == nil || !strings.Contains(err.Error(), "sshd exited") {
		t.Fatalf("sshd with a missing host key: %v", err)
	}

	// The real one answers and stops.
	keyPath := filepath.Join(dir, hostKeyName)
	if _, err := sshKeyFile(keyPath, "t"); err != nil {
		t.Fatal(err)
	}
	tgt, err := startSSHD(dir, keyPath, hostKey.PublicKey(), ca.PublicKey(), demoLogins(), log)
	if err != nil {
		t.Fatalf("sshd: %v", err)
	}
	if err := sshBanner(tgt.Addr, 5*time.Second); err != nil {
		t.Errorf("sshd target: %v", err)
	}
	tgt.stop()
	if sshBanner(tgt.Addr, time.Second) == nil {
		t.Error("sshd still answers after stop")
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "sshd_config"))
	for _, want := range []string{"TrustedUserCAKeys " + filepath.Join(dir, "upstream_ca.pub"), "AuthorizedPrincipalsFile none", "PasswordAuthentication no", "SetEnv SHLVL=1", "ListenAddress 127.0.0.1"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("sshd_config lacks %q", want)
		}
	}
}
