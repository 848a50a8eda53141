package harness

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHKey is an Ed25519 key pair written to disk in OpenSSH format, as the
// stock client reads it: Path (private, 0600), Path+".pub", and after
// SaveCert Path+"-cert.pub".
type SSHKey struct {
	Signer ssh.Signer
	Priv   ed25519.PrivateKey
	Path   string
	// CertFile is Path+"-cert.pub" once a certificate was saved.
	CertFile string
}

// NewSSHKey makes a fresh key named name in dir.
func NewSSHKey(t TB, dir, name string) *SSHKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("ssh key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("ssh signer: %v", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatalf("ssh key: %v", err)
	}
	k := &SSHKey{Signer: signer, Priv: priv, Path: filepath.Join(dir, name)}
	writeFile0600(t, k.Path, pem.EncodeToMemory(blk))
	writeFile0600(t, k.Path+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()))
	return k
}

// Public is the key's public half.
func (k *SSHKey) Public() ssh.PublicKey { return k.Signer.PublicKey() }

// SaveCert writes cert next to the key, where `ssh -i KEY` finds it.
func (k *SSHKey) SaveCert(t TB, cert *ssh.Certificate) {
	t.Helper()
	k.CertFile = k.Path + "-cert.pub"
	writeFile0600(t, k.CertFile, ssh.MarshalAuthorizedKey(cert))
}

// CertSigner is the key with its saved certificate, for x/crypto clients.
func (k *SSHKey) CertSigner(t TB, cert *ssh.Certificate) ssh.Signer {
	t.Helper()
	s, err := ssh.NewCertSigner(cert, k.Signer)
	if err != nil {
		t.Fatalf("cert signer: %v", err)
	}
	return s
}

func writeFile0600(t TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// SSHDOptions configure a private sshd.
type SSHDOptions struct {
	// TrustedUserCAKeys are written to the TrustedUserCAKeys file (the
	// bastion's upstream CA for a target).
	TrustedUserCAKeys []ssh.PublicKey
	// AuthorizedKeys may log in with a plain key (any login; a ProxyJump
	// hop or direct benchmark access). Empty: AuthorizedKeysFile none.
	AuthorizedKeys []ssh.PublicKey
	// Extra sshd_config lines (they come first, so they win over the
	// defaults: sshd keeps the first value of a keyword).
	Extra []string
}

// SSHD is a private stock OpenSSH server on 127.0.0.1.
type SSHD struct {
	Addr    string // 127.0.0.1:port
	Port    int
	HostKey ssh.PublicKey
	Dir     string
	proc    *proc
}

// StartSSHD runs /usr/sbin/sshd -D -e with its own host key and config in
// a temporary directory and waits until it answers with an SSH banner.
// The defaults suit targets and benchmarks: root may log in, TCP and agent
// forwarding are on at the target (the bastion decides), sftp is
// internal-sftp, and the shell start-up is short: root's own start-up
// files on these machines take seconds to a minute (pyenv), so sessions
// get HOME = an empty directory of the server's (sshd's SetEnv comes
// after HOME in the child's environment) and SHLVL=1 (Debian's bash reads
// ~/.bashrc for ssh commands only at level 1).
func StartSSHD(t TB, opts SSHDOptions) *SSHD {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatalf("OpenSSH server not installed (run e2e/setup.sh): %v", err)
	}
	// sshd refuses to start without its privilege-separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("/run/sshd: %v", err)
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatalf("sshd home: %v", err)
	}
	host := NewSSHKey(t, dir, "host_ed25519")
	port := FreePort(t)
	authorized := "none"
	if len(opts.AuthorizedKeys) > 0 {
		authorized = filepath.Join(dir, "authorized_keys")
		writeFile0600(t, authorized, joinKeys(opts.AuthorizedKeys))
	}
	conf := append([]string(nil), opts.Extra...)
	conf = append(conf,
		"Port "+strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey "+host.Path,
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin yes",
		"AuthorizedKeysFile "+authorized,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AllowTcpForwarding yes",
		"AllowAgentForwarding yes",
		"X11Forwarding no",
		"PrintMotd no",
		"PrintLastLog no",
		"AcceptEnv LANG LC_* TERM PORTCULLIS_*",
		"SetEnv SHLVL=1 HOME="+home,
		"Subsystem sftp internal-sftp",
		"LogLevel ERROR",
	)
	if len(opts.TrustedUserCAKeys) > 0 {
		ca := filepath.Join(dir, "trusted_user_ca.pub")
		writeFile0600(t, ca, joinKeys(opts.TrustedUserCAKeys))
		conf = append(conf, "TrustedUserCAKeys "+ca)
	}
	cfg := filepath.Join(dir, "sshd_config")
	writeFile0600(t, cfg, []byte(strings.Join(conf, "\n")+"\n"))
	s := &SSHD{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, HostKey: host.Public(), Dir: dir}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	s.proc = startPolled(t, "sshd "+s.Addr, cmd, 15*time.Second, func() bool { return sshBanner(s.Addr) })
	return s
}

// Output is what sshd logged (LogLevel ERROR unless Extra raised it).
func (s *SSHD) Output() string { return s.proc.Output() }

// Stop ends the server now (idempotent).
func (s *SSHD) Stop() { s.proc.stop() }

// KnownHostsLine is the known_hosts entry for this server.
func (s *SSHD) KnownHostsLine() string { return KnownHostsLine(s.Addr, s.HostKey) }

// KnownHostsLine is a known_hosts entry for a server at addr (host:port).
func KnownHostsLine(addr string, key ssh.PublicKey) string {
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf("[%s]:%s %s", host, port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))))
}

func joinKeys(keys []ssh.PublicKey) []byte {
	var b []byte
	for _, k := range keys {
		b = append(b, ssh.MarshalAuthorizedKey(k)...)
	}
	return b
}

// sshBanner reports whether addr answers with an SSH identification.
func sshBanner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "SSH-"
}

// WaitSSH waits until addr answers with an SSH banner.
func WaitSSH(t TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !sshBanner(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("no SSH server on %s after %v", addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
