package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/e2e/harness"
)

// TestSSHBastion drives `portcullis serve` with a bastion section using the
// stock OpenSSH client (ssh, scp, sftp) against a private stock sshd
// trusting the deployment's upstream CA, and checks what the user got,
// the audit trail and the recording of every session. alice's certificate
// comes from `portcullis login` with a browser sign-in (OIDC + TOTP).
func TestSSHBastion(t *testing.T) {
	s := newSSHSite(t)
	bctx := harness.Browser(t, true)
	alice := s.cliLogin(t, bctx)

	t.Run("exec", func(t *testing.T) {
		since := time.Now()
		r := s.ssh(t, alice, "root@db-1", "echo out-$((6*7)); echo err-line >&2; exit 3")
		if r.Code != 3 || strings.TrimSpace(r.Stdout) != "out-42" || !strings.Contains(r.Stderr, "err-line") {
			t.Fatalf("exec: %+v", r)
		}
		id := s.sessionSince(t, since)
		sum := s.recording(t, id)
		exec := events(sum, recording.EventExec)
		if len(exec) != 1 || !strings.Contains(exec[0].Command, "echo out-") {
			t.Fatalf("exec events %+v", exec)
		}
		st := events(sum, recording.EventExitStatus)
		if len(st) != 1 || st[0].Status == nil || *st[0].Status != 3 {
			t.Fatalf("exit-status events %+v", st)
		}
		if sum.Bytes[recording.StreamStdout] < int64(len("out-42\n")) || sum.Bytes[recording.StreamStderr] < int64(len("err-line\n")) {
			t.Fatalf("recorded bytes %v", sum.Bytes)
		}
		if cast := s.exportAsciicast(t, id); !strings.Contains(cast.Output, "out-42") || !strings.Contains(cast.Output, "err-line") {
			t.Fatalf("asciicast output %q", cast.Output)
		}
	})

	t.Run("shell with pty", func(t *testing.T) {
		since := time.Now()
		r := s.run(t, alice, "stty cols 101 rows 33; echo hello-$((6*7)); exit 0\n", "ssh", "-tt", "root@db-1@bastion")
		if r.Code != 0 || !strings.Contains(r.Stdout, "hello-42") {
			t.Fatalf("shell: %+v", r)
		}
		id := s.sessionSince(t, since)
		sum := s.recording(t, id)
		if len(events(sum, recording.EventShell)) != 1 || len(events(sum, recording.EventPTY)) != 1 {
			t.Fatalf("no shell/pty events: %+v", sum.Events)
		}
		cast := s.exportAsciicast(t, id)
		if !strings.Contains(cast.Output, "hello-42") || cast.Width == 0 || cast.Height == 0 {
			t.Fatalf("asciicast %dx%d output %q", cast.Width, cast.Height, cast.Output)
		}
	})

	t.Run("file transfer", func(t *testing.T) { testSSHFileTransfer(t, s, alice) })

	t.Run("local forward", func(t *testing.T) {
		since := time.Now()
		if got := s.forwardL(t, alice, s.echoAddr); got != "echo:ping" {
			t.Fatalf("forward to the allowed echo server answered %q", got)
		}
		id := s.sessionSince(t, since)
		closes := events(s.recording(t, id), recording.EventForwardClose)
		if len(closes) != 1 || closes[0].Dest != s.echoAddr || closes[0].BytesIn == 0 || closes[0].BytesOut == 0 {
			t.Fatalf("forward events %+v", closes)
		}
		other := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
		since = time.Now()
		if got := s.forwardL(t, alice, other); got != "" {
			t.Fatalf("forward to %s (not in port_forwards) answered %q", other, got)
		}
		ev := s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHChannel, Reason: bastion.ReasonForwardNotAllowed, Since: since})
		if ev.Attrs["dest"] != other || ev.Decision != audit.Deny || ev.UserID != s.userID("alice") {
			t.Fatalf("forward denial event %+v", ev)
		}
	})

	t.Run("remote forward denied", func(t *testing.T) {
		since := time.Now()
		r := s.ssh(t, alice, "root@db-1", "-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:"+s.echoAddr)
		if r.Code == 0 || !strings.Contains(r.Stderr, "remote port forwarding failed") {
			t.Fatalf("-R: %+v", r)
		}
		s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHChannel, Reason: "remote-forwarding-not-allowed", Decision: audit.Deny, Since: since})
	})

	t.Run("agent forwarding refused", func(t *testing.T) {
		sock := startAgent(t)
		since := time.Now()
		// IdentityAgent names the agent (the configuration's "none" would
		// unset SSH_AUTH_SOCK and with it the forwarding request).
		r := s.ssh(t, alice, "root@db-1", "-o", "IdentityAgent="+sock, "-o", "ForwardAgent=yes", `echo "agent=[$SSH_AUTH_SOCK]"`)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "agent=[]" {
			t.Fatalf("agent forwarding: %+v", r)
		}
		s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHChannel, Reason: "agent-forwarding-not-permitted", Decision: audit.Deny, Since: since})
	})

	t.Run("environment filtered", func(t *testing.T) {
		since := time.Now()
		r := s.ssh(t, alice, "root@db-1", "-o", "SendEnv=LANG PORTCULLIS_SECRET", "-o", "SetEnv=LD_PRELOAD=/tmp/evil.so",
			`echo "lang=$LANG secret=$PORTCULLIS_SECRET preload=$LD_PRELOAD"`)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "lang=C.UTF-8 secret= preload=" {
			t.Fatalf("env: %+v", r)
		}
		id := s.sessionSince(t, since)
		allowed := map[string]bool{}
		for _, e := range events(s.recording(t, id), recording.EventEnv) {
			allowed[e.Name] = e.Allowed != nil && *e.Allowed
		}
		if !allowed["LANG"] || allowed["PORTCULLIS_SECRET"] || allowed["LD_PRELOAD"] || len(allowed) != 3 {
			t.Fatalf("env events %v", allowed)
		}
		// Names are recorded, values never (they may be secrets).
		raw, err := os.ReadFile(filepath.Join(s.recDir, id+recording.FileExt))
		if err != nil || bytes.Contains(raw, []byte("s3cr3t-env")) || bytes.Contains(raw, []byte("evil.so")) {
			t.Fatalf("the recording holds an environment value (%v)", err)
		}
	})

	t.Run("keyboard-interactive approval", func(t *testing.T) { testSSHApproval(t, s, bctx) })

	t.Run("hostile", func(t *testing.T) { testSSHHostile(t, s, alice) })
}

// testSSHFileTransfer copies a random file up and down with legacy scp
// (-O: scp over exec), default scp (SFTP) and sftp, and checks the copies
// and the recorded file operations with their SHA-256.
func testSSHFileTransfer(t *testing.T, s *sshSite, alice *harness.SSHKey) {
	content := make([]byte, 200<<10+3)
	rand.Read(content)
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	dir := t.TempDir() // the target is this machine: remote paths are local files
	src := filepath.Join(dir, "payload.bin")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		prog   string
		args   func(t *testing.T, up, down string) [][]string
		event  string
		upOp   string
		downOp string
		// legacy: the scp protocol names files by their base name (the
		// directory is in the recorded exec command line).
		legacy bool
	}{
		{"scp -O", "scp", func(_ *testing.T, up, down string) [][]string {
			return [][]string{{"-O", src, "root@db-1@bastion:" + up}, {"-O", "root@db-1@bastion:" + up, down}}
		}, recording.EventSCP, recording.OpUpload, recording.OpDownload, true},
		{"scp", "scp", func(_ *testing.T, up, down string) [][]string {
			return [][]string{{src, "root@db-1@bastion:" + up}, {"root@db-1@bastion:" + up, down}}
		}, recording.EventSFTP, recording.OpWrite, recording.OpRead, false},
		{"sftp", "sftp", func(t *testing.T, up, down string) [][]string {
			batch := filepath.Join(dir, "batch")
			if err := os.WriteFile(batch, []byte("put "+src+" "+up+"\nget "+up+" "+down+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return [][]string{{"-b", batch, "root@db-1@bastion"}}
		}, recording.EventSFTP, recording.OpWrite, recording.OpRead, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.NewReplacer(" ", "", "-", "").Replace(tc.name)
			up, down := filepath.Join(dir, name+"-up.bin"), filepath.Join(dir, name+"-down.bin")
			upName, downName := up, up
			if tc.legacy {
				upName, downName = filepath.Base(src), filepath.Base(up)
			}
			var ops []string
			upSeen, downSeen := false, false
			for _, args := range tc.args(t, up, down) {
				since := time.Now()
				if r := s.run(t, alice, "", tc.prog, args...); r.Code != 0 {
					t.Fatalf("%s %v: %+v", tc.prog, args, r)
				}
				sum := s.recording(t, s.sessionSince(t, since))
				if tc.legacy {
					if ex := events(sum, recording.EventExec); len(ex) != 1 || !strings.Contains(ex[0].Command, up) {
						t.Fatalf("legacy scp exec events %+v", ex)
					}
				}
				for _, e := range events(sum, tc.event) {
					ops = append(ops, fmt.Sprintf("%s %s %d/%d %s", e.Op, e.Path, e.BytesRead, e.BytesWritten, e.SHA256))
					upSeen = upSeen || (e.Op == tc.upOp && e.Path == upName && e.SHA256 == digest)
					downSeen = downSeen || (e.Op == tc.downOp && e.Path == downName)
				}
			}
			for _, f := range []string{up, down} {
				if got, err := os.ReadFile(f); err != nil || !bytes.Equal(got, content) {
					t.Fatalf("%s differs from the original (%v)", f, err)
				}
			}
			if !upSeen || !downSeen {
				t.Fatalf("recording lacks the %s of %s with SHA-256 %s or its %s; events:\n%s", tc.upOp, up, digest, tc.downOp, strings.Join(ops, "\n"))
			}
		})
	}
}

// forwardL runs `ssh -N -L` to dest through the bastion, sends one line
// through the local port and returns the answer ("" when the forward was
// refused: ssh closes the local connection).
func (s *sshSite) forwardL(t *testing.T, key *harness.SSHKey, dest string) string {
	t.Helper()
	local := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := s.cfg.Command(ctx, s.dir, nil, "ssh", "-i", key.Path, "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", local+":"+dest, "root@db-1@bastion")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Killed, the client's TCP connection closes and the bastion ends
	// the session as closed by the client (SIGINT would make ssh wait
	// for open forwards).
	cmd.WaitDelay = 5 * time.Second
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	// The first connection that succeeds is the one used: every
	// connection to the port is a forward (a probe would be recorded).
	var c net.Conn
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if c, err = net.Dial("tcp", local); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("local forward port: %v (%s)", err, stderr.String())
		}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, "ping")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return ""
	}
	return strings.TrimSpace(line)
}

// startAgent runs an ssh-agent on a socket in a new directory.
func startAgent(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
