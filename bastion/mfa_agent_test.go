package bastion

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/portcullis/portcullis/authz/audit"
)

// fakeMFA accepts one code (the real replay guard lives in authz/mfa) for
// erin and the users listed.
type fakeMFA struct {
	code  string
	users []string
}

var errWrongCode = errors.New("invalid code")

func (f fakeMFA) Enrolled(_ context.Context, userID string) (bool, error) {
	return userID == "erin" || slices.Contains(f.users, userID), nil
}

func (f fakeMFA) Verify(ctx context.Context, userID, code string) error {
	if ok, _ := f.Enrolled(ctx, userID); ok && code == f.code {
		return nil
	}
	return errWrongCode
}

// TestPerSessionMFA: a role with per_session_mfa needs a TOTP code on top
// of the certificate, asked with keyboard-interactive.
func TestPerSessionMFA(t *testing.T) {
	e := newEnv(t, envOptions{deps: func(d *Deps) { d.MFA = fakeMFA{code: "123456"} }})
	erin := e.issue("erin", []string{"mfa-each-time"}, []string{"root"}, nil)
	signer, err := ssh.NewCertSigner(erin.cert, erin.signer)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		answer string
		ok     bool
		reason string
	}{
		{"right code", "123456", true, ReasonSessionMFAOK},
		{"wrong code", "654321", false, ReasonSessionMFAFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			e.audit.Reset()
			var prompts []string
			c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
				User: "root@db-1",
				Auth: []ssh.AuthMethod{
					ssh.PublicKeys(signer),
					ssh.KeyboardInteractive(func(_, instruction string, questions []string, _ []bool) ([]string, error) {
						prompts = append(prompts, instruction+" "+strings.Join(questions, ","))
						return []string{tc.answer}, nil
					}),
				},
				HostKeyCallback: ssh.FixedHostKey(e.hostKey),
				Timeout:         10 * time.Second,
			})
			if len(prompts) == 0 || !strings.Contains(prompts[0], "TOTP code") {
				t.Fatalf("prompts %q", prompts)
			}
			ev := e.waitAudit(TypeSSHAuth, tc.reason)
			if ev.UserID == "" && tc.ok || strings.Contains(ev.Attrs["detail"], tc.answer) {
				t.Fatalf("audit %+v", ev)
			}
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Fatal("logged in with a wrong code")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			out, err := s.Output("echo mfa-ok")
			if err != nil || string(out) != "mfa-ok\n" {
				t.Fatalf("%q %v", out, err)
			}
		})
	}
	t.Run("certificate alone", func(t *testing.T) {
		defer e.use(t)()
		r := e.ssh(erin, "root@db-1", "echo hello")
		if r.code == 0 || strings.Contains(r.stdout, "hello") {
			t.Fatalf("%+v", r)
		}
	})
}

// TestAgentForwarding: a role with agent_forward gets the client's agent
// on the target (ssh-add there lists the client's key); others are
// refused (TestRefusedRequests).
func TestAgentForwarding(t *testing.T) {
	e := newEnv(t, envOptions{})
	hank := e.issue("hank", []string{"agent"}, []string{"root"}, nil)
	c := e.goClient(hank, "root@db-1")
	keyring := agent.NewKeyring()
	_, agentKey := newSigner(t)
	if err := keyring.Add(agent.AddedKey{PrivateKey: agentKey, Comment: "forwarded-key"}); err != nil {
		t.Fatal(err)
	}
	if err := agent.ForwardToAgent(c, keyring); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.RequestAgentForwarding(s); err != nil {
		t.Fatalf("agent forwarding refused: %v", err)
	}
	var out bytes.Buffer
	s.Stdout = &out
	if err := s.Run("ssh-add -l"); err != nil {
		t.Fatalf("ssh-add: %v (%q)", err, out.String())
	}
	if !strings.Contains(out.String(), "forwarded-key") {
		t.Fatalf("ssh-add -l: %q", out.String())
	}
	if len(e.audit.Find(TypeSSHChannel, "agent-forwarding-not-permitted")) != 0 {
		t.Fatal("refused")
	}
}

// TestMaxAuthTries: after MaxAuthTries refused keys the connection ends,
// even if a valid certificate would come next. (OpenSSH offers
// certificates first, so the x/crypto client drives the order here.)
func TestMaxAuthTries(t *testing.T) {
	e := newEnv(t, envOptions{noTarget: true})
	var signers []ssh.Signer
	for range DefaultMaxAuthTries {
		s, _ := newSigner(t)
		signers = append(signers, s)
	}
	alice := e.alice()
	certSigner, err := ssh.NewCertSigner(alice.cert, alice.signer)
	if err != nil {
		t.Fatal(err)
	}
	signers = append(signers, certSigner)
	c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
		User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: ssh.FixedHostKey(e.hostKey), Timeout: 10 * time.Second,
	})
	if err == nil {
		c.Close()
		t.Fatal("authenticated after too many failures")
	}
	if n := len(e.audit.Find(TypeSSHAuth, ReasonNotCertificate)); n != DefaultMaxAuthTries {
		t.Fatalf("%d refused keys audited", n)
	}
	for _, ev := range e.audit.Events() {
		if ev.Decision == audit.Allow {
			t.Fatalf("accepted after too many failures: %+v", ev)
		}
	}
}

// TestHandshakeTimeout: a client that never finishes the handshake is
// disconnected.
func TestHandshakeTimeout(t *testing.T) {
	e := newEnv(t, envOptions{noTarget: true, config: func(c *Config) { c.HandshakeTimeout = 100 * time.Millisecond }})
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Read the banner, then stay silent: the server must hang up.
	_, err = io.Copy(io.Discard, nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the bastion kept a silent client past the handshake deadline")
	}
}
