package sshtarget

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	s, _, err := keys.GenerateSSHKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certSigner returns a signer for key carrying a user certificate from ca.
func certSigner(t *testing.T, ca, key ssh.Signer, principals []string, validFor time.Duration, opts map[string]string) ssh.Signer {
	t.Helper()
	now := time.Now()
	cert := &ssh.Certificate{
		Key: key.PublicKey(), CertType: ssh.UserCert, KeyId: "test", ValidPrincipals: principals,
		ValidAfter: uint64(now.Add(-time.Minute).Unix()), ValidBefore: uint64(now.Add(validFor).Unix()),
		Permissions: ssh.Permissions{CriticalOptions: opts},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func start(t *testing.T, ca ssh.PublicKey) (string, ssh.PublicKey) {
	t.Helper()
	host := signer(t)
	srv, err := New(Config{HostKey: host, UserCA: ca, Logins: []string{"root", "demo"}, Banner: "hello from the demo target\r\n"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return ln.Addr().String(), host.PublicKey()
}

func dial(addr, user string, hostKey ssh.PublicKey, auth ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(auth)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: 10 * time.Second,
	})
}

func TestExecAndShell(t *testing.T) {
	ca := signer(t)
	addr, hostKey := start(t, ca.PublicKey())
	c, err := dial(addr, "root", hostKey, certSigner(t, ca, signer(t), []string{"root"}, time.Hour, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	s, _ := c.NewSession()
	s.Stdin = strings.NewReader("piped input")
	out, err := s.CombinedOutput("cat; echo; echo err >&2; exit 3")
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Fatalf("exit: %v", err)
	}
	if got := string(out); !strings.Contains(got, "piped input") || !strings.Contains(got, "err") {
		t.Fatalf("output %q", got)
	}

	// A shell (with a terminal, as ssh asks for one) gets the banner.
	s, _ = c.NewSession()
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	s.Stdout = &b
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	if !strings.Contains(b.String(), "hello from the demo target") {
		t.Fatalf("banner %q", b.String())
	}
	// Subsystems and other channel types are refused.
	s, _ = c.NewSession()
	if err := s.RequestSubsystem("sftp"); err == nil {
		t.Error("sftp subsystem accepted")
	}
	if _, err := c.Dial("tcp", "127.0.0.1:22"); err == nil {
		t.Error("port forward accepted")
	}
}

func TestAuthRefusals(t *testing.T) {
	ca, otherCA := signer(t), signer(t)
	addr, hostKey := start(t, ca.PublicKey())
	tests := []struct {
		name string
		user string
		auth ssh.Signer
	}{
		{"plain key", "root", signer(t)},
		{"other CA", "root", certSigner(t, otherCA, signer(t), []string{"root"}, time.Hour, nil)},
		{"principal is another login", "root", certSigner(t, ca, signer(t), []string{"demo"}, time.Hour, nil)},
		{"login not served", "admin", certSigner(t, ca, signer(t), []string{"admin"}, time.Hour, nil)},
		{"empty principals", "root", certSigner(t, ca, signer(t), nil, time.Hour, nil)},
		{"expired", "root", certSigner(t, ca, signer(t), []string{"root"}, -30*time.Second, nil)},
		{"unknown critical option", "root", certSigner(t, ca, signer(t), []string{"root"}, time.Hour, map[string]string{"force-command": "id"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(addr, tc.user, hostKey, tc.auth)
			if err == nil {
				c.Close()
				t.Fatal("authenticated")
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("err %v", err)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	k := signer(t)
	for _, cfg := range []Config{
		{UserCA: k.PublicKey(), Logins: []string{"root"}},
		{HostKey: k, Logins: []string{"root"}},
		{HostKey: k, UserCA: k.PublicKey()},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}
