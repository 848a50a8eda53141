package bastion

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
)

// liveSession is a running "cat" on the target through the bastion.
type liveSession struct {
	id     string
	s      *ssh.Session
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *syncBuffer
	done   chan error
}

// startCat starts "cat" as u and waits until it echoes.
func (e *env) startCat(u *user) *liveSession {
	e.t.Helper()
	c := e.goClient(u, "root@db-1")
	s, err := c.NewSession()
	if err != nil {
		e.t.Fatal(err)
	}
	ls := &liveSession{s: s, stderr: &syncBuffer{w: &bytes.Buffer{}}, done: make(chan error, 1)}
	if ls.stdin, err = s.StdinPipe(); err != nil {
		e.t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	ls.stdout = bufio.NewReader(out)
	s.Stderr = ls.stderr
	if err := s.Start("cat"); err != nil {
		e.t.Fatal(err)
	}
	go func() { ls.done <- s.Wait() }()
	ls.echo(e.t, "first")
	ls.id = e.lastSession().SessionID
	return ls
}

// echo sends a line and reads it back.
func (ls *liveSession) echo(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(ls.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := ls.stdout.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo %q: %q %v", line, got, err)
	}
}

// waitEnded waits for the client side to see the end.
func (ls *liveSession) waitEnded(t testing.TB) {
	t.Helper()
	select {
	case <-ls.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the session did not end")
	}
}

func (ls *liveSession) stderrText() string {
	ls.stderr.mu.Lock()
	defer ls.stderr.mu.Unlock()
	return ls.stderr.w.String()
}

// TestSessionEnds: every way the bastion ends a live session goes through
// the cancel-with-cause path: the user is told, the recording trailer and
// the session-end audit event carry the cause.
func TestSessionEnds(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		end     func(ls *liveSession, u *user)
		code    string
		message string
	}{
		{"idle timeout", func(ls *liveSession, _ *user) {
			// The output pump touches the session after writing to the
			// client, so the last echo's touch can land after the clock
			// moved: move it again (well short of the 8 h maximum
			// duration) until the watchdog sees the session idle.
			for i := 0; i < 5; i++ {
				e.clock.Advance(time.Hour + time.Minute)
				select {
				case err := <-ls.done:
					ls.done <- err
					return
				case <-time.After(time.Second):
				}
			}
		}, EndIdle, "idle timeout"},
		{"max session duration", func(*liveSession, *user) { e.clock.Advance(authz.DefaultMaxSessionTTL) }, EndMaxDuration, "maximum session duration"},
		{"admin kill", func(ls *liveSession, _ *user) {
			if err := e.b.Kill(ctx, ls.id, "admin@example", "incident 42"); err != nil {
				t.Error(err)
			}
		}, EndKilled, "terminated by an administrator"},
		{"kill from another instance", func(ls *liveSession, _ *user) {
			if err := e.st.Publish(ctx, store.Event{Kind: EventSSHSessionKill, Subject: ls.id, Reason: "remote"}); err != nil {
				t.Error(err)
			}
		}, EndKilled, "terminated by an administrator"},
		{"certificate revoked by serial", func(_ *liveSession, u *user) {
			if err := e.rev.RevokeSerial(ctx, u.cert.Serial, "stolen"); err != nil {
				t.Error(err)
			}
		}, EndCertRevoked, "certificate was revoked"},
		{"certificates revoked by key ID", func(_ *liveSession, u *user) {
			if err := e.rev.RevokeKeyID(ctx, u.cert.KeyId, "offboarded"); err != nil {
				t.Error(err)
			}
		}, EndCertRevoked, "certificate was revoked"},
		{"web sessions revoked", func(_ *liveSession, u *user) {
			if err := e.st.Publish(ctx, store.Event{Kind: store.EventUserRevoked, Subject: u.cert.KeyId}); err != nil {
				t.Error(err)
			}
		}, EndUserRevoked, "access was revoked"},
		{"issuing web session revoked", func(_ *liveSession, u *user) {
			if err := e.st.Publish(ctx, store.Event{Kind: store.EventSessionRevoked, Subject: u.cert.Extensions[session.ExtWebSession]}); err != nil {
				t.Error(err)
			}
		}, EndUserRevoked, "access was revoked"},
		{"account locked", func(_ *liveSession, u *user) {
			if _, err := e.risk.Lock(ctx, u.cert.KeyId, "incident 7", "admin@example"); err != nil {
				t.Error(err)
			}
		}, EndLocked, "This account is locked. Contact your administrator with reference "},
		{"role removed by a policy change", func(*liveSession, *user) {
			pc := testPolicy()
			pc.Roles[0].Users = []string{"someone-else"}
			pc.Roles[0].Allow = []authz.Rule{{Targets: []string{"web-1"}, Logins: []string{"root"}}}
			pol, err := authz.Compile(pc)
			if err != nil {
				t.Error(err)
				return
			}
			old := e.policy.Swap(pol)
			t.Cleanup(func() { e.policy.Store(old) })
			if err := e.st.Publish(ctx, store.Event{Kind: store.EventPolicyChanged}); err != nil {
				t.Error(err)
			}
		}, "policy-changed", "access changed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			clockBefore := e.clock.offset.Load()
			defer e.clock.offset.Store(clockBefore)
			// A fresh user per case: revocations must not leak between cases.
			u := e.issue("alice", []string{"eng"}, []string{"root"}, func(r *session.CertRequest) {
				r.UserID = "alice-" + strings.ReplaceAll(tc.name, " ", "-")
				r.WebSessionID = "web-" + r.UserID
			})
			pc := testPolicy()
			pc.Roles[0].Users = append(pc.Roles[0].Users, u.cert.KeyId)
			pol, err := authz.Compile(pc)
			if err != nil {
				t.Fatal(err)
			}
			e.policy.Store(pol)
			ls := e.startCat(u)
			if got := e.b.Registry().List(); len(got) != 1 || got[0].ID != ls.id || got[0].UserID != u.cert.KeyId {
				t.Fatalf("registry %+v", got)
			}
			tc.end(ls, u)
			ls.waitEnded(t)
			ev := e.waitSessionEnd(ls.id)
			if ev.Reason != tc.code {
				t.Fatalf("ended with %q, want %q", ev.Reason, tc.code)
			}
			if !strings.Contains(ls.stderrText(), tc.message) {
				t.Fatalf("user told %q, want %q", ls.stderrText(), tc.message)
			}
			sum := e.summary(ls.id)
			if sum.Trailer == nil || sum.Trailer.Reason != tc.code {
				t.Fatalf("trailer %+v", sum.Trailer)
			}
			if got := e.b.Registry().List(); len(got) != 0 {
				t.Fatalf("registry still lists %+v", got)
			}
		})
	}
}

// TestShutdownEndsSessions: stopping Serve ends live sessions with the
// shutdown cause and returns after they finished.
func TestShutdownEndsSessions(t *testing.T) {
	e := newEnv(t, envOptions{})
	ls := e.startCat(e.alice())
	e.shutdown()
	ls.waitEnded(t)
	if ev := e.waitSessionEnd(ls.id); ev.Reason != EndShutdown {
		t.Fatalf("reason %q", ev.Reason)
	}
}

// TestKeepaliveTimeout: a client that stops answering is dropped.
func TestKeepaliveTimeout(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *Config) {
		c.KeepaliveInterval = 50 * time.Millisecond
		c.KeepaliveMax = 2
	}})
	u := e.alice()
	signer, err := ssh.NewCertSigner(u.cert, u.signer)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The client never services global requests, so keepalives go
	// unanswered.
	_, _, _, err = ssh.NewClientConn(nc, e.addr, &ssh.ClientConfig{
		User: "root@db-1", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(e.hostKey),
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev := e.waitSessionEnd(e.waitAudit(TypeSSHSessionStart, "").SessionID); ev.Reason != EndKeepalive {
		t.Fatalf("reason %q", ev.Reason)
	}
}

// failingFile fails every write once fail is set (a full disk, a
// read-only file system).
type failingFile struct {
	*os.File
	fail *atomic.Bool
}

var errDiskFull = errors.New("no space left on device")

func (f failingFile) Write(p []byte) (int, error) {
	if f.fail.Load() {
		return 0, errDiskFull
	}
	return f.File.Write(p)
}

// TestRecordingFailure: when the recording cannot be written the session
// ends with a clear message and an alert; new sessions are refused until
// a probe write succeeds.
func TestRecordingFailure(t *testing.T) {
	var fail atomic.Bool
	e := newEnv(t, envOptions{deps: func(d *Deps) {
		d.Recording.OpenFile = func(path string) (recording.File, error) {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return nil, err
			}
			return failingFile{File: f, fail: &fail}, nil
		}
	}})
	u := e.alice()
	ls := e.startCat(u)
	fail.Store(true)
	// More output to record; the next flush fails.
	io.WriteString(ls.stdin, "second\n")
	ls.waitEnded(t)
	if ev := e.waitSessionEnd(ls.id); ev.Reason != EndRecording {
		t.Fatalf("reason %q", ev.Reason)
	}
	if !strings.Contains(ls.stderrText(), "recording could not be written") {
		t.Fatalf("user told %q", ls.stderrText())
	}
	if alerts := e.audit.Find(TypeSSHAlert, EndRecording); len(alerts) != 1 || alerts[0].SessionID != ls.id {
		t.Fatalf("alerts %+v", alerts)
	}
	// While the disk still fails, new sessions are refused.
	r := e.ssh(u, "root@db-1", "echo hello")
	if r.code != 1 || strings.Contains(r.stdout, "hello") || !strings.Contains(r.stderr, "recording is unavailable") {
		t.Fatalf("session allowed without recording: %+v", r)
	}
	if n := len(e.audit.Find(TypeSSHAlert, EndRecording)); n != 2 {
		t.Fatalf("%d alerts", n)
	}
	// Once a probe write works, sessions are accepted again.
	fail.Store(false)
	if r := e.ssh(u, "root@db-1", "echo hello"); r.code != 0 || r.stdout != "hello\n" {
		t.Fatalf("%+v", r)
	}
}
