package testfixture

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/sshtarget"
)

// TargetName is the fixture bastion's one target; it accepts login
// TargetLogin.
const (
	TargetName  = "target-1"
	TargetLogin = "root"
	// RecordingKeyFile (in the fixture's directory) encrypts recordings.
	RecordingKeyFile = "recording.key"
)

// Bastion is the fixture's SSH side: the keys its configuration names and
// an in-process target (sshtarget) trusting the upstream CA.
type Bastion struct {
	UserCA, UpstreamCA ssh.Signer
	TargetAddr         string
}

// WithBastion adds a bastion section to the configuration (listening on
// 127.0.0.1:0, recording into the data directory) with one target, and
// lets the admin role log in to it as TargetLogin. The target serves until
// the test ends.
func (f *Fixture) WithBastion(t testing.TB) *Bastion {
	t.Helper()
	b := &Bastion{}
	for _, k := range []struct {
		file string
		dst  *ssh.Signer
	}{{"ssh_host_key", nil}, {"ssh_user_ca", &b.UserCA}, {"ssh_upstream_ca", &b.UpstreamCA}} {
		s, pemBytes, err := keys.GenerateSSHKey(nil, k.file)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(f.Dir, k.file), pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		if k.dst != nil {
			*k.dst = s
		}
	}
	recKey, err := keys.GenerateSymmetric(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Dir, RecordingKeyFile), recKey, 0o600); err != nil {
		t.Fatal(err)
	}
	hostKey, _, err := keys.GenerateSSHKey(nil, "target")
	if err != nil {
		t.Fatal(err)
	}
	target, err := sshtarget.New(sshtarget.Config{HostKey: hostKey, UserCA: b.UpstreamCA.PublicKey(), Logins: []string{TargetLogin}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = target.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	b.TargetAddr = ln.Addr().String()
	if err := os.WriteFile(filepath.Join(f.Dir, "target.pub"), []byte(keys.AuthorizedKey(hostKey.PublicKey())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.Bastion = b
	f.WriteConfig(t, "")
	return b
}

func (b *Bastion) section() string {
	return fmt.Sprintf(`bastion:
  listen: "127.0.0.1:0"
  host_key_files: [ssh_host_key]
  user_ca_key_file: ssh_user_ca
  upstream_ca_key_file: ssh_upstream_ca
  recording_key_file: %s
  targets:
    - {name: %s, addr: "%s", labels: {env: test}, host_key_file: target.pub}
`, RecordingKeyFile, TargetName, b.TargetAddr)
}

// Issue gets a certificate for userID from ca, as the gateway does after
// OIDC + TOTP, with the admin role and TargetLogin as principal; it
// returns a signer presenting it.
func Issue(t testing.TB, ca *session.SSHCA, userID string) (ssh.Signer, *ssh.Certificate) {
	t.Helper()
	key, _, err := keys.GenerateSSHKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(session.CertRequest{
		PublicKey: key.PublicKey(), UserID: userID, Principals: []string{TargetLogin},
		Roles: []string{"admin"}, TTL: time.Hour, PermitPTY: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return signer, cert
}

// Dial connects to the bastion at addr as TargetLogin@TargetName.
func Dial(addr string, hostKey ssh.PublicKey, signer ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:            TargetLogin + "@" + TargetName,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		Timeout:         10 * time.Second,
	})
}

// LiveCat opens a session running cat, live until stdin closes or the
// session is ended; ended receives the session's end.
func LiveCat(t testing.TB, c *ssh.Client) (stdin io.WriteCloser, ended <-chan error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ = s.StdinPipe()
	s.Stdout, s.Stderr = io.Discard, io.Discard
	if err := s.Start("cat"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	return stdin, done
}
