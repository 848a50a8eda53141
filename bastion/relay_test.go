package bastion

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/bastion/recording"
)

// goClient connects with x/crypto as u to dest ("login@target").
func (e *env) goClient(u *user, dest string) *ssh.Client {
	e.t.Helper()
	signer, err := ssh.NewCertSigner(u.cert, u.signer)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
		User:            dest,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(e.hostKey),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func TestExec(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.alice()
	for _, tc := range []struct {
		name           string
		cmd            string
		stdin          string
		stdout, stderr string
		code           int
	}{
		{"echo", "echo hello", "", "hello\n", "", 0},
		{"exit status", "echo out; echo err >&2; exit 3", "", "out\n", "err\n", 3},
		{"stdin to the target", "tr a-z A-Z", "shout\n", "SHOUT\n", "", 0},
		{"killed by a signal", "kill -TERM $$", "", "", "", 255},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			host, _, _ := net.SplitHostPort(e.addr)
			r := e.run(tc.stdin, "ssh", []*user{alice}, "root@db-1@"+host, tc.cmd)
			if r.code != tc.code || r.stdout != tc.stdout || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("got %+v", r)
			}
			s := e.lastSession()
			e.waitSessionEnd(s.SessionID)
			sum := e.summary(s.SessionID)
			if sum.Truncated || sum.Trailer == nil || sum.Meta.UserID != "alice" || sum.Meta.Target != "db-1" {
				t.Fatalf("recording %+v", sum)
			}
			var exec, status bool
			for _, ev := range sum.Events {
				exec = exec || (ev.Type == recording.EventExec && ev.Command == tc.cmd)
				status = status || ev.Type == recording.EventExitStatus || ev.Type == recording.EventExitSignal
			}
			if !exec || !status {
				t.Fatalf("recording events %+v", sum.Events)
			}
			if got := sum.Bytes[recording.StreamStdout]; got != int64(len(tc.stdout)) {
				t.Fatalf("recorded %d stdout bytes, want %d", got, len(tc.stdout))
			}
			if sum.Bytes[recording.StreamStdin] != 0 {
				t.Fatal("input recorded although RecordInput is off")
			}
		})
	}
}

// TestShellPTY runs an interactive shell with a pseudo-terminal.
func TestShellPTY(t *testing.T) {
	e := newEnv(t, envOptions{})
	host, _, _ := net.SplitHostPort(e.addr)
	r := e.run("echo marker-$((6*7))\nexit 0\n", "ssh", []*user{e.alice()}, "-tt", "root@db-1@"+host)
	if r.code != 0 || !strings.Contains(r.stdout, "marker-42") {
		t.Fatalf("%+v", r)
	}
	s := e.lastSession()
	e.waitSessionEnd(s.SessionID)
	sum := e.summary(s.SessionID)
	var pty, shell bool
	for _, ev := range sum.Events {
		// Not a real terminal: the client sends size 0x0.
		pty = pty || (ev.Type == recording.EventPTY && ev.Term == "xterm")
		shell = shell || ev.Type == recording.EventShell
	}
	if !pty || !shell || sum.Bytes[recording.StreamResize] == 0 {
		t.Fatalf("recording %+v", sum)
	}
	if !strings.Contains(e.recordedOutput(s.SessionID), "marker-42") {
		t.Fatal("the shell output is not in the recording")
	}
}

// recordedOutput concatenates a recording's stdout and stderr.
func (e *env) recordedOutput(sessionID string) string {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.recDir, sessionID+recording.FileExt))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	rd, err := recording.NewReader(f, testRecordingKey)
	if err != nil {
		e.t.Fatal(err)
	}
	var out bytes.Buffer
	for {
		fr, err := rd.Next()
		if err != nil {
			if err != io.EOF {
				e.t.Fatal(err)
			}
			return out.String()
		}
		if fr.Stream == recording.StreamStdout || fr.Stream == recording.StreamStderr {
			out.Write(fr.Data)
		}
	}
}

// TestPTYNotPermitted: a certificate without permit-pty gets no terminal.
func TestPTYNotPermitted(t *testing.T) {
	e := newEnv(t, envOptions{})
	u := e.issue("alice", []string{"eng"}, []string{"root"}, func(r *session.CertRequest) { r.PermitPTY = false })
	host, _, _ := net.SplitHostPort(e.addr)
	r := e.run("", "ssh", []*user{u}, "-tt", "root@db-1@"+host, "tty")
	if strings.Contains(r.stdout, "/dev/pts") {
		t.Fatalf("got a terminal: %+v", r)
	}
	e.waitAudit(TypeSSHChannel, "pty-not-permitted")
}

// TestEnvAllowlist: only allowlisted variables reach the target, and no
// value is recorded.
func TestEnvAllowlist(t *testing.T) {
	e := newEnv(t, envOptions{})
	host, _, _ := net.SplitHostPort(e.addr)
	r := e.run("", "ssh", []*user{e.alice()}, "-o", "SendEnv=LANG PORTCULLIS_SECRET", "root@db-1@"+host,
		`echo "$LANG/${PORTCULLIS_SECRET:-unset}"`)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "C.UTF-8/unset" {
		t.Fatalf("%+v", r)
	}
	s := e.lastSession()
	e.waitSessionEnd(s.SessionID)
	raw, err := os.ReadFile(filepath.Join(e.recDir, s.SessionID+recording.FileExt))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("s3cr3t")) {
		t.Fatal("an environment value reached the recording")
	}
	var allowed, refused bool
	for _, ev := range e.summary(s.SessionID).Events {
		if ev.Type == recording.EventEnv && ev.Allowed != nil {
			allowed = allowed || (ev.Name == "LANG" && *ev.Allowed)
			refused = refused || (ev.Name == "PORTCULLIS_SECRET" && !*ev.Allowed)
		}
	}
	if !allowed || !refused {
		t.Fatal("env events missing from the recording")
	}
}

// TestUpstreamHostKey: a target whose host key is not the configured one
// is refused with a clear message; a host certificate from the configured
// host CA is accepted, one from another CA is not.
func TestUpstreamHostKey(t *testing.T) {
	hostCA, _ := newSigner(t)
	otherCA, _ := newSigner(t)
	wrongKey, _ := newSigner(t)
	upCA, _ := newSigner(t)
	certified := startSSHDWithHostCert(t, upCA.PublicKey(), hostCA)
	foreign := startSSHDWithHostCert(t, upCA.PublicKey(), otherCA)
	e := newEnv(t, envOptions{
		config: func(c *Config) {
			c.UpstreamCA = upCA
			c.Targets = []Target{
				{Name: "db-1", Addr: certified.addr, HostKey: string(ssh.MarshalAuthorizedKey(wrongKey.PublicKey()))},
				{Name: "web-1", Addr: certified.addr, HostCA: string(ssh.MarshalAuthorizedKey(hostCA.PublicKey()))},
				{Name: "ghost", Addr: foreign.addr, HostCA: string(ssh.MarshalAuthorizedKey(hostCA.PublicKey()))},
			}
		},
		noTarget: true,
	})
	gina := e.issue("gina", []string{"dbadmin", "web"}, []string{"root"}, nil)
	for _, tc := range []struct {
		name, dest string
		ok         bool
	}{
		{"changed key", "root@db-1", false},
		{"host certificate from the configured CA", "root@web-1", true},
		{"host certificate from another CA", "root@ghost", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			e.audit.Reset()
			r := e.ssh(gina, tc.dest, "echo hello")
			if tc.ok {
				if r.code != 0 || r.stdout != "hello\n" {
					t.Fatalf("%+v", r)
				}
				return
			}
			if r.code != 255 || strings.Contains(r.stdout, "hello") {
				t.Fatalf("connected: %+v", r)
			}
			ev := e.waitAudit(TypeSSHUpstream, ReasonHostKeyMismatch)
			if !strings.Contains(r.stderr, "host key of target") || !strings.Contains(r.stderr, ev.Ref) {
				t.Fatalf("unclear message %q", r.stderr)
			}
		})
	}
}

// startSSHDWithHostCert starts an sshd presenting a host certificate for
// 127.0.0.1 signed by hostCA.
func startSSHDWithHostCert(t *testing.T, upstreamCA ssh.PublicKey, hostCA ssh.Signer) *sshd {
	t.Helper()
	dir := t.TempDir()
	key, priv := newSigner(t)
	cert := &ssh.Certificate{
		Key: key.PublicKey(), CertType: ssh.HostCert, KeyId: "target", ValidPrincipals: []string{"127.0.0.1"},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, hostCA); err != nil {
		t.Fatal(err)
	}
	keyPath := writePrivateKey(t, filepath.Join(dir, "host_cert_ed25519"), priv, "")
	writeFile(t, keyPath+"-cert.pub", ssh.MarshalAuthorizedKey(cert))
	return startSSHD(t, upstreamCA, "HostKey "+keyPath, "HostCertificate "+keyPath+"-cert.pub")
}

// TestForwardingPolicy uses OpenSSH's -W (a direct-tcpip channel with the
// client's stdio) against a local echo server.
func TestForwardingPolicy(t *testing.T) {
	e := newEnv(t, envOptions{})
	echo := startEcho(t)
	_, echoPort, _ := net.SplitHostPort(echo)
	e.resolver.set("db.fwd.test", "127.0.0.1")
	e.resolver.set("meta.fwd.test", "169.254.169.254")
	e.resolver.set("mixed.fwd.test", "169.254.10.10", "127.0.0.1")
	e.resolver.set("v6meta.fwd.test", "fd00:ec2::254")
	alice, bob := e.alice(), e.issue("bob", []string{"readonly"}, []string{"root"}, nil)
	noFwdCert := e.issue("alice", []string{"eng"}, []string{"root"}, func(r *session.CertRequest) { r.PermitPortForwarding = false })
	for _, tc := range []struct {
		name   string
		u      *user
		dest   string
		reason string // "" = allowed
	}{
		{"allowed IP", alice, "127.0.0.1:" + echoPort, ""},
		{"allowed name resolved by the bastion", alice, "db.fwd.test:" + echoPort, ""},
		{"name with a denied and an allowed address", alice, "mixed.fwd.test:" + echoPort, ""},
		{"metadata address", alice, "169.254.169.254:80", ReasonForwardDeniedAddr},
		{"name resolving to metadata", alice, "meta.fwd.test:80", ReasonForwardDeniedAddr},
		{"IPv6 metadata", alice, "[fd00:ec2::254]:80", ReasonForwardDeniedAddr},
		{"name resolving to IPv6 metadata", alice, "v6meta.fwd.test:80", ReasonForwardDeniedAddr},
		{"NAT64 metadata", alice, "[64:ff9b::a9fe:a9fe]:80", ReasonForwardDeniedAddr},
		{"link-local", alice, "169.254.1.1:80", ReasonForwardDeniedAddr},
		{"not in the role's patterns", alice, "10.1.2.3:22", ReasonForwardNotAllowed},
		{"unresolvable", alice, "nx.fwd.test:22", ReasonForwardResolve},
		{"role without port forwards", bob, "127.0.0.1:" + echoPort, ReasonForwardNotPermitted},
		{"certificate without permit-port-forwarding", noFwdCert, "127.0.0.1:" + echoPort, ReasonForwardNotPermitted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			e.audit.Reset()
			host, _, _ := net.SplitHostPort(e.addr)
			r := e.run("ping\n", "ssh", []*user{tc.u}, "-W", tc.dest, "root@db-1@"+host)
			if tc.reason == "" {
				if r.code != 0 || r.stdout != "ping\n" {
					t.Fatalf("%+v", r)
				}
				s := e.lastSession()
				e.waitSessionEnd(s.SessionID)
				var open, closed bool
				for _, ev := range e.summary(s.SessionID).Events {
					open = open || (ev.Type == recording.EventForwardOpen && ev.Dest == tc.dest && strings.HasPrefix(ev.Resolved, "127.0.0.1:"))
					closed = closed || (ev.Type == recording.EventForwardClose && ev.BytesIn == 5 && ev.BytesOut == 5)
				}
				if !open || !closed {
					t.Fatalf("forward not recorded: %+v", e.summary(s.SessionID).Events)
				}
				return
			}
			if r.code != 255 || strings.Contains(r.stdout, "ping") {
				t.Fatalf("not refused: %+v", r)
			}
			ev := e.waitAudit(TypeSSHChannel, tc.reason)
			if ev.Decision != audit.Deny || ev.Attrs["kind"] != "direct-tcpip" {
				t.Fatalf("audit %+v", ev)
			}
		})
	}
}

// startEcho runs a TCP echo server on 127.0.0.1.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRefusedRequests: remote forwarding, agent forwarding, X11, other
// subsystems and unknown channel types are refused and audited.
func TestRefusedRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	bob := e.issue("bob", []string{"readonly"}, []string{"root"}, nil)
	c := e.goClient(bob, "root@db-1")
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Fatal("remote forwarding accepted")
	}
	e.waitAudit(TypeSSHChannel, "remote-forwarding-not-allowed")
	for _, tc := range []struct {
		name, req, reason string
		payload           []byte
	}{
		{"agent forwarding", "auth-agent-req@openssh.com", "agent-forwarding-not-permitted", nil},
		{"X11", "x11-req", "x11-forwarding-not-allowed", ssh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{false, "MIT-MAGIC-COOKIE-1", "00", 0})},
		{"other subsystem", "subsystem", "subsystem-not-allowed", ssh.Marshal(struct{ Name string }{"netconf"})},
		{"sftp without file transfer", "subsystem", "file-transfer-not-permitted", ssh.Marshal(struct{ Name string }{"sftp"})},
		{"sftp-server as a command", "exec", "sftp-server-exec-not-allowed", ssh.Marshal(struct{ Cmd string }{"/usr/lib/openssh/sftp-server"})},
		{"legacy scp without file transfer", "exec", "file-transfer-not-permitted", ssh.Marshal(struct{ Cmd string }{"scp -t /tmp/x"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ok, err := s.SendRequest(tc.req, true, tc.payload)
			if err != nil || ok {
				t.Fatalf("accepted: %v %v", ok, err)
			}
			e.waitAudit(TypeSSHChannel, tc.reason)
		})
	}
	t.Run("unknown channel type", func(t *testing.T) {
		defer e.use(t)()
		if _, _, err := c.OpenChannel("direct-streamlocal@openssh.com", ssh.Marshal(struct {
			Path, H string
			P       uint32
		}{"/run/x.sock", "", 0})); err == nil {
			t.Fatal("accepted")
		}
		e.waitAudit(TypeSSHChannel, "channel-type-not-allowed")
	})
}

// TestRecordInput: with RecordInput on, what the user types is recorded.
func TestRecordInput(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *Config) { c.RecordInput = true }})
	host, _, _ := net.SplitHostPort(e.addr)
	r := e.run("typed-input\n", "ssh", []*user{e.alice()}, "root@db-1@"+host, "cat >/dev/null; echo done")
	if r.code != 0 || r.stdout != "done\n" {
		t.Fatalf("%+v", r)
	}
	s := e.lastSession()
	e.waitSessionEnd(s.SessionID)
	sum := e.summary(s.SessionID)
	if !sum.Meta.RecordInput || sum.Bytes[recording.StreamStdin] != int64(len("typed-input\n")) {
		t.Fatalf("input not recorded: %+v", sum)
	}
}
