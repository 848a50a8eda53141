package bastion

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

const testAccessURL = "https://access.example.com"

// approvalEnv is a bastion with approvals on. The approvals live in their
// own store on the wall clock (like the gateway's), while the bastion's
// clock can be moved to expire a wait.
type approvalEnv struct {
	*env
	appr *session.SSHApprovals
}

func newApprovalEnv(t *testing.T, opts envOptions) *approvalEnv {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "approvals.db"), store.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	appr, err := session.NewSSHApprovals(st, session.SSHCAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfgMod, depsMod := opts.config, opts.deps
	opts.config = func(c *Config) {
		c.ApprovalURL = testAccessURL
		if cfgMod != nil {
			cfgMod(c)
		}
	}
	opts.deps = func(d *Deps) {
		d.Approvals = appr
		d.MFA = fakeMFA{code: "123456"}
		if depsMod != nil {
			depsMod(d)
		}
	}
	e := &approvalEnv{env: newEnv(t, opts), appr: appr}
	e.b.appr.poll = 20 * time.Millisecond
	return e
}

var reApprovalURL = regexp.MustCompile(regexp.QuoteMeta(testAccessURL) + `/ssh/approve\?c=([A-Za-z0-9_-]{22})\n`)

// kiClient answers the bastion's keyboard-interactive prompts like a
// person at a stock client: on the approval prompt it runs onPrompt with
// the code from the URL shown (the "browser" part) and presses Enter; on
// the TOTP prompt it types totp; on messages without prompts it runs
// onMessage and answers nothing.
type kiClient struct {
	onPrompt  func(code string)
	onMessage func(msg string)
	totp      string

	mu       sync.Mutex
	messages []string
	code     string
}

func (k *kiClient) answer(_, instruction string, questions []string, _ []bool) ([]string, error) {
	k.mu.Lock()
	k.messages = append(k.messages, instruction)
	k.mu.Unlock()
	switch {
	case len(questions) == 0:
		if k.onMessage != nil {
			k.onMessage(instruction)
		}
		return nil, nil
	case len(questions) == 1 && strings.Contains(questions[0], "TOTP"):
		return []string{k.totp}, nil
	case len(questions) == 1 && strings.Contains(questions[0], "Enter"):
		m := reApprovalURL.FindStringSubmatch(instruction)
		if m == nil {
			return nil, errors.New("no approval URL in " + instruction)
		}
		k.mu.Lock()
		k.code = m[1]
		k.mu.Unlock()
		if k.onPrompt != nil {
			k.onPrompt(m[1])
		}
		return []string{""}, nil
	}
	return nil, errors.New("unexpected prompt")
}

func (k *kiClient) said(sub string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, m := range k.messages {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// dialKI connects as user with keyboard-interactive only.
func (e *approvalEnv) dialKI(user string, k *kiClient) (*ssh.Client, error) {
	return ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.KeyboardInteractive(k.answer)},
		HostKeyCallback: ssh.FixedHostKey(e.hostKey),
		Timeout:         10 * time.Second,
	})
}

// decide records a decision as the gateway does for a signed-in user.
func (e *approvalEnv) decide(code string, d session.SSHApprovalDecision) {
	e.t.Helper()
	if _, err := e.appr.Decide(context.Background(), code, d); err != nil {
		e.t.Errorf("decide: %v", err)
	}
}

func approvedBy(user string, roles ...string) session.SSHApprovalDecision {
	return session.SSHApprovalDecision{Approved: true, UserID: user, Roles: roles, WebSessionID: "web-" + user}
}

func runOutput(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _ := s.CombinedOutput(cmd)
	return string(out)
}

// TestApproval covers the outcomes of keyboard-interactive approval
// against one bastion and target.
func TestApproval(t *testing.T) {
	e := newApprovalEnv(t, envOptions{})

	t.Run("approved", func(t *testing.T) {
		defer e.use(t)()
		e.audit.Reset()
		k := &kiClient{onPrompt: func(code string) { e.decide(code, approvedBy("alice", "eng")) }}
		c, err := e.dialKI("root@db-1", k)
		if err != nil {
			t.Fatalf("approved connection refused: %v; messages %q", err, k.messages)
		}
		defer c.Close()
		if out := runOutput(t, c, "echo approved-ok"); out != "approved-ok\n" {
			t.Fatalf("exec: %q", out)
		}
		req := e.waitAudit(TypeSSHApprovalRequest, ReasonApprovalRequested)
		if req.Decision != audit.Allow || req.Target != "db-1" || req.Attrs["login"] != "root" ||
			req.Attrs["approval"] != session.ApprovalRef(k.code) || req.UserID != "" {
			t.Fatalf("request audit %+v", req)
		}
		for _, ev := range e.audit.Events() {
			for _, v := range ev.Attrs {
				if strings.Contains(v, k.code) {
					t.Fatalf("the approval code reached the audit trail: %+v", ev)
				}
			}
		}
		auth := e.waitAudit(TypeSSHAuth, ReasonApproved)
		if auth.UserID != "alice" || auth.Decision != audit.Allow {
			t.Fatalf("auth audit %+v", auth)
		}
		start := e.lastSession()
		info, err := e.b.Registry().Get(start.SessionID)
		if err != nil || info.UserID != "alice" || info.WebSessionID != "web-alice" || info.Login != "root" || info.Target != "db-1" {
			t.Fatalf("session %+v %v", info, err)
		}
		// The display code shown matches the page's record.
		if !k.said("code ") || !k.said("then press Enter") {
			t.Fatalf("instruction %q", k.messages)
		}
	})

	t.Run("listing", func(t *testing.T) {
		defer e.use(t)()
		k := &kiClient{onPrompt: func(code string) { e.decide(code, approvedBy("alice", "eng")) }}
		c, err := e.dialKI("alice", k)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if out := runOutput(t, c, ""); !strings.Contains(out, "db-1") || !strings.Contains(out, "root") {
			t.Fatalf("listing: %q", out)
		}
	})

	t.Run("denied on the page", func(t *testing.T) {
		defer e.use(t)()
		e.audit.Reset()
		k := &kiClient{onPrompt: func(code string) {
			e.decide(code, session.SSHApprovalDecision{Approved: false, UserID: "alice"})
		}}
		if c, err := e.dialKI("root@db-1", k); err == nil {
			c.Close()
			t.Fatal("denied connection authenticated")
		}
		ev := e.waitAudit(TypeSSHAuth, ReasonApprovalDenied)
		if ev.Decision != audit.Deny || ev.UserID != "" || ev.Attrs["approver"] != "alice" || ev.Attrs["ref"] == "" {
			t.Fatalf("deny audit %+v", ev)
		}
		if !k.said("was denied (" + ev.Attrs["ref"] + ")") {
			t.Fatalf("the user was not told: %q", k.messages)
		}
	})

	t.Run("expired while waiting", func(t *testing.T) {
		defer e.use(t)()
		e.audit.Reset()
		var moved time.Duration
		k := &kiClient{onMessage: func(msg string) {
			if strings.Contains(msg, "Waiting") {
				e.clock.Advance(DefaultApprovalTimeout)
				moved += DefaultApprovalTimeout
			}
		}}
		// Later subtests reach the target, whose clock is the wall clock.
		defer func() { e.clock.Advance(-moved) }()
		if c, err := e.dialKI("root@db-1", k); err == nil {
			c.Close()
			t.Fatal("expired approval authenticated")
		}
		e.waitAudit(TypeSSHApprovalExpire, ReasonApprovalTimeout)
		if !k.said("expired") {
			t.Fatalf("the user was not told: %q", k.messages)
		}
		// The page no longer offers it, and approving now does nothing.
		if _, err := e.appr.Pending(context.Background(), k.code); !errors.Is(err, session.ErrApprovalUnknown) {
			t.Fatalf("still pending after expiry: %v", err)
		}
		if _, err := e.appr.Decide(context.Background(), k.code, approvedBy("alice", "eng")); !errors.Is(err, session.ErrApprovalUnknown) {
			t.Fatalf("decided after expiry: %v", err)
		}
	})

	t.Run("client gone while waiting", func(t *testing.T) {
		defer e.use(t)()
		e.audit.Reset()
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		k := &kiClient{onPrompt: func(string) { nc.Close() }}
		_, _, _, err = ssh.NewClientConn(nc, e.addr, &ssh.ClientConfig{
			User: "root@db-1", Auth: []ssh.AuthMethod{ssh.KeyboardInteractive(k.answer)},
			HostKeyCallback: ssh.FixedHostKey(e.hostKey),
		})
		if err == nil {
			t.Fatal("handshake succeeded on a closed connection")
		}
		e.waitAudit(TypeSSHApprovalExpire, ReasonApprovalClosed)
		if _, err := e.appr.Pending(context.Background(), k.code); !errors.Is(err, session.ErrApprovalUnknown) {
			t.Fatalf("still pending after the client left: %v", err)
		}
	})

	t.Run("policy denies the approver", func(t *testing.T) {
		defer e.use(t)()
		e.audit.Reset()
		// bob's role allows db-1 only.
		k := &kiClient{onPrompt: func(code string) { e.decide(code, approvedBy("bob", "readonly")) }}
		c, err := e.dialKI("root@web-1", k)
		if err != nil {
			t.Fatalf("authentication: %v", err)
		}
		defer c.Close()
		out := runOutput(t, c, "echo should-not-run")
		if strings.Contains(out, "should-not-run") || !strings.Contains(out, "access denied (") {
			t.Fatalf("denied connection ran: %q", out)
		}
		ev := e.waitAudit(audit.TypeDecision, "no-matching-rule")
		if ev.UserID != "bob" || ev.Decision != audit.Deny {
			t.Fatalf("decision audit %+v", ev)
		}
	})

	t.Run("per-session TOTP after the approval", func(t *testing.T) {
		defer e.use(t)()
		for _, tc := range []struct {
			name, code string
			ok         bool
		}{{"right code", "123456", true}, {"wrong code", "000000", false}} {
			t.Run(tc.name, func(t *testing.T) {
				k := &kiClient{totp: tc.code, onPrompt: func(code string) { e.decide(code, approvedBy("erin", "mfa-each-time")) }}
				c, err := e.dialKI("root@db-1", k)
				if !tc.ok {
					if err == nil {
						c.Close()
						t.Fatal("wrong TOTP code accepted")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if out := runOutput(t, c, "echo mfa-ok"); out != "mfa-ok\n" {
					t.Fatalf("exec: %q", out)
				}
			})
		}
	})

	t.Run("revoking the approver's web session ends the connection", func(t *testing.T) {
		defer e.use(t)()
		k := &kiClient{onPrompt: func(code string) { e.decide(code, approvedBy("alice", "eng")) }}
		c, err := e.dialKI("root@db-1", k)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		runOutput(t, c, "true")
		id := e.lastSession().SessionID
		if err := e.st.Publish(context.Background(), store.Event{Kind: store.EventSessionRevoked, Subject: "web-alice"}); err != nil {
			t.Fatal(err)
		}
		if ev := e.waitSessionEnd(id); ev.Reason != EndUserRevoked {
			t.Fatalf("end %+v", ev)
		}
	})
}

// TestApprovalOutlivesHandshakeTimeout: the approval step may take longer
// than the handshake deadline.
func TestApprovalOutlivesHandshakeTimeout(t *testing.T) {
	e := newApprovalEnv(t, envOptions{config: func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond }})
	k := &kiClient{onPrompt: func(code string) {
		time.Sleep(time.Second) // a person reading the page, beyond HandshakeTimeout
		e.decide(code, approvedBy("alice", "eng"))
	}}
	c, err := e.dialKI("root@db-1", k)
	if err != nil {
		t.Fatalf("the handshake deadline cut the approval off: %v", err)
	}
	defer c.Close()
	if out := runOutput(t, c, "echo late-ok"); out != "late-ok\n" {
		t.Fatalf("exec: %q", out)
	}
}

// failingApprovals is a store that cannot answer.
type failingApprovals struct{}

var errApprovalsDown = errors.Join(store.ErrUnavailable, errors.New("connection refused"))

func (failingApprovals) Create(context.Context, session.SSHApproval, time.Duration) (string, session.SSHApproval, error) {
	return "", session.SSHApproval{}, errApprovalsDown
}

func (failingApprovals) Outcome(context.Context, string) (session.SSHApprovalDecision, bool, error) {
	return session.SSHApprovalDecision{}, false, errApprovalsDown
}

func (failingApprovals) Cancel(context.Context, string) error { return errApprovalsDown }

// TestApprovalUnavailable: no approvals configured, or a store that
// cannot answer: keyboard-interactive never authenticates.
func TestApprovalUnavailable(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		e := newEnv(t, envOptions{noTarget: true})
		k := &kiClient{}
		c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
			User: "root@db-1", Auth: []ssh.AuthMethod{ssh.KeyboardInteractive(k.answer)},
			HostKeyCallback: ssh.FixedHostKey(e.hostKey), Timeout: 10 * time.Second,
		})
		if err == nil {
			c.Close()
			t.Fatal("authenticated without approvals")
		}
		if len(k.messages) != 0 || len(e.audit.Find(TypeSSHApprovalRequest, "")) != 0 {
			t.Fatalf("approval offered: %q", k.messages)
		}
	})
	t.Run("store down", func(t *testing.T) {
		e := newApprovalEnv(t, envOptions{noTarget: true, deps: func(d *Deps) { d.Approvals = failingApprovals{} }})
		k := &kiClient{}
		if c, err := e.dialKI("root@db-1", k); err == nil {
			c.Close()
			t.Fatal("authenticated with the store down")
		}
		if ev := e.waitAudit(TypeSSHApprovalRequest, ReasonApprovalUnavailable); ev.Decision != audit.Deny {
			t.Fatalf("%+v", ev)
		}
	})
	t.Run("required with an approval URL", func(t *testing.T) {
		cfg := validConfig(t)
		cfg.ApprovalURL = testAccessURL
		deps := Deps{Policy: testPolicySource(t), Audit: &audit.Memory{}, Revocations: failingRevocations{}, Risk: testRiskEngine(t), AuditHealth: &audit.Memory{}}
		if _, err := New(cfg, deps); err == nil {
			t.Fatal("New accepted an approval URL without approvals")
		}
		deps.Approvals = failingApprovals{}
		if _, err := New(cfg, deps); err != nil {
			t.Fatalf("with approvals: %v", err)
		}
	})
}

// TestApprovalConfig: approval settings are validated.
func TestApprovalConfig(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		path    string // "" = valid
	}{
		{"off", "", 0, ""},
		{"access URL", "https://access.example.com", time.Minute, ""},
		{"with port and slash", "https://access.example.com:8443/", 0, ""},
		{"plain http", "http://access.example.com", 0, "approval_url"},
		{"no host", "https://", 0, "approval_url"},
		{"with path", "https://access.example.com/x", 0, "approval_url"},
		{"with query", "https://access.example.com/?a=b", 0, "approval_url"},
		{"with userinfo", "https://u@access.example.com", 0, "approval_url"},
		{"negative timeout", "", -time.Second, "approval_timeout"},
		{"too long", "", MaxApprovalTimeout + time.Second, "approval_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig(t)
			cfg.ApprovalURL, cfg.ApprovalTimeout = tc.url, tc.timeout
			err := cfg.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("Validate = %v, want an error at %s", err, tc.path)
			}
		})
	}
}

// TestApprovalOpenSSH: a stock OpenSSH client with no key at all logs in
// through the approval. The prompt is answered by an SSH_ASKPASS program
// (Enter); the URL is read from what ssh prints, as a user would.
func TestApprovalOpenSSH(t *testing.T) {
	e := newApprovalEnv(t, envOptions{})
	dir := t.TempDir()
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" >> "+filepath.Join(dir, "prompts")+"\necho\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh",
		"-F", "/dev/null", "-p", port,
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+e.knownHosts(), "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes", "-o", "IdentityFile=/dev/null", "-o", "IdentityAgent=none",
		"-o", "PreferredAuthentications=keyboard-interactive", "-o", "LogLevel=INFO",
		"root@db-1@"+host, "echo openssh-approved")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "SSH_ASKPASS=" + askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0"}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Read what ssh prints until the URL appears, approve, keep draining.
	var shown bytes.Buffer
	found := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		sent := false
		for {
			n, err := stderr.Read(buf)
			shown.Write(buf[:n])
			if m := reApprovalURL.FindSubmatch(shown.Bytes()); m != nil && !sent {
				found <- string(m[1])
				sent = true
			}
			if err != nil {
				close(found)
				return
			}
		}
	}()
	code, ok := <-found
	if !ok {
		cmd.Wait()
		t.Fatalf("ssh showed no approval URL:\n%s", shown.String())
	}
	e.decide(code, approvedBy("alice", "eng"))
	for range found {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ssh: %v\n%s", err, shown.String())
	}
	t.Logf("ssh printed:\n%s", shown.String())
	if stdout.String() != "openssh-approved\n" {
		t.Fatalf("stdout %q\nstderr %s", stdout.String(), shown.String())
	}
	prompts, _ := os.ReadFile(filepath.Join(dir, "prompts"))
	if !strings.Contains(string(prompts), "Press Enter once approved") {
		t.Fatalf("askpass prompts %q", prompts)
	}
}
