package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/sshtarget"
)

// The demo's SSH side: the bastion's keys, kept in the data directory so
// restarts keep the host key users accepted and the CA their
// certificates came from, and one sample target.
const (
	targetName     = "demo-target"
	sshdPath       = "/usr/sbin/sshd"
	hostKeyName    = "ssh_host_ed25519_key"
	userCAName     = "ssh_user_ca"
	upstreamCAName = "ssh_upstream_ca"
	// recordingKeyName encrypts the demo's recordings: portcullis play
	// --key <data dir>/recording.key FILE.
	recordingKeyName = "recording.key"
	targetDirName    = "target"
	sshdStartupWait  = 10 * time.Second
)

// addBastion adds the bastion to the demo's configuration: the sample
// target, and SSH rules for both roles — admin: every target as any of
// the target's logins, with file transfer and port forwarding to
// localhost; engineer: targets labelled env=demo as the last login (the
// user running the demo, or root when that is root).
func addBastion(cfg *config.Config, k *sshKeys, tgt *target, listen string, logins []string) error {
	access := config.ExternalURL(AccessHost, cfg.Gateway.PublicPort, "")
	cfg.Bastion = &bastion.Config{
		Listen:     listen,
		HostKeys:   []ssh.Signer{k.HostKey},
		UserCAKeys: []ssh.PublicKey{k.UserCA.PublicKey()},
		UpstreamCA: k.UpstreamCA,
		Targets: []bastion.Target{{
			Name: targetName, Addr: tgt.Addr, Labels: map[string]string{"env": "demo"}, HostKey: keys.AuthorizedKey(tgt.HostKey),
		}},
		RecordingDir: filepath.Join(cfg.DataDir, "recordings"),
		RecordingKey: k.RecordingKey,
		Instance:     cfg.Instance,
		ApprovalURL:  access,
	}
	cfg.SSHUserCA = k.UserCA
	cfg.Gateway.SSHAddr = listen
	cfg.Policy.Targets = []authz.TargetConfig{{Name: targetName, Labels: map[string]string{"env": "demo"}}}
	for i := range cfg.Policy.Roles {
		r := &cfg.Policy.Roles[i]
		switch r.Name {
		case "admin":
			r.Allow = append(r.Allow, authz.Rule{Targets: []string{"*"}, Logins: logins})
			r.FileTransfer, r.PortForwards = true, []string{"localhost:*"}
		case "engineer":
			r.Allow = append(r.Allow, authz.Rule{TargetLabels: map[string]string{"env": "demo"}, Logins: logins[len(logins)-1:]})
			r.FileTransfer = true
		case jitRole:
			r.Allow = append(r.Allow, authz.Rule{TargetLabels: map[string]string{"env": "demo"}, Logins: logins})
			r.FileTransfer, r.PortForwards = true, []string{"localhost:*"}
		}
	}
	compiled, err := authz.Compile(cfg.Policy)
	if err != nil {
		return fmt.Errorf("demo policy: %w", err)
	}
	cfg.Compiled = compiled
	return nil
}

// sshKeys are the bastion's keys.
type sshKeys struct {
	HostKey, UserCA, UpstreamCA ssh.Signer
	RecordingKey                *recording.Key
}

// loadSSHKeys reads the bastion's keys from dir, generating (0600) any
// that is missing.
func loadSSHKeys(dir string) (*sshKeys, error) {
	k := &sshKeys{}
	for _, f := range []struct {
		name string
		dst  *ssh.Signer
	}{{hostKeyName, &k.HostKey}, {userCAName, &k.UserCA}, {upstreamCAName, &k.UpstreamCA}} {
		signer, err := sshKeyFile(filepath.Join(dir, f.name), "portcullis-demo-"+f.name)
		if err != nil {
			return nil, err
		}
		*f.dst = signer
	}
	err := readOrCreate(filepath.Join(dir, recordingKeyName), func() ([]byte, error) {
		return keys.GenerateSymmetric(nil)
	}, func(b []byte) error {
		raw, err := keys.ParseSymmetric(b)
		if err == nil {
			k.RecordingKey, err = recording.NewKey(raw)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// sshKeyFile reads (or first creates) an OpenSSH private key file.
func sshKeyFile(path, comment string) (ssh.Signer, error) {
	var s ssh.Signer
	err := readOrCreate(path, func() ([]byte, error) {
		_, pemBytes, err := keys.GenerateSSHKey(nil, comment)
		return pemBytes, err
	}, func(b []byte) error {
		var err error
		s, err = keys.ParseSSHPrivateKey(b)
		return err
	})
	return s, err
}

// demoLogins are the logins the sample target accepts: root and the user
// running the demo.
func demoLogins() []string {
	logins := []string{"root"}
	if u, err := user.Current(); err == nil && u.Username != "" && u.Username != "root" && !strings.ContainsAny(u.Username, "@ \t\\") {
		logins = append(logins, u.Username)
	}
	return logins
}

// target is the running sample SSH target.
type target struct {
	Addr    string
	HostKey ssh.PublicKey
	Kind    string // what it is, for the banner
	stop    func()
}

// startTarget starts a private OpenSSH sshd on a loopback port trusting
// the upstream CA when sshd is installed and starts, else an in-process
// target. Its host key is kept in dir/target.
func startTarget(ctx context.Context, dir string, upstreamCA ssh.PublicKey, logins []string, log *slog.Logger) (*target, error) {
	tdir := filepath.Join(dir, targetDirName)
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(tdir, hostKeyName)
	hostKey, err := sshKeyFile(keyPath, "portcullis-demo-target")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(sshdPath); err == nil {
		t, err := startSSHD(tdir, keyPath, hostKey.PublicKey(), upstreamCA, logins, log)
		if err == nil {
			return t, nil
		}
		log.Warn("OpenSSH sshd did not start; using the in-process demo target instead", "err", err)
	}
	return startInProcess(ctx, hostKey, upstreamCA, logins, log)
}

// startSSHD runs sshd -D with its own configuration in dir.
func startSSHD(dir, keyPath string, hostKey, upstreamCA ssh.PublicKey, logins []string, log *slog.Logger) (*target, error) {
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Geteuid() == 0 {
		return nil, fmt.Errorf("privilege separation directory: %w", err)
	}
	caPath := filepath.Join(dir, "upstream_ca.pub")
	if err := os.WriteFile(caPath, []byte(keys.AuthorizedKey(upstreamCA)+"\n"), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := strings.Join([]string{
		"# Written by portcullis demo: the sample target behind the bastion.",
		"Port " + port,
		"ListenAddress 127.0.0.1",
		"HostKey " + keyPath,
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"TrustedUserCAKeys " + caPath, // the bastion's upstream CA: principal = login
		"AuthorizedPrincipalsFile none",
		"AuthorizedKeysFile none",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"AllowUsers " + strings.Join(logins, " "),
		"AllowTcpForwarding yes",
		"X11Forwarding no",
		"PrintMotd no",
		"AcceptEnv LANG LC_* TERM",
		"SetEnv SHLVL=1",
		"Subsystem sftp internal-sftp",
		"LogLevel ERROR",
	}, "\n") + "\n"
	confPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	// stderr is read only after the process has exited (Wait has then
	// finished copying into it).
	var stderr bytes.Buffer
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", confPath)
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	endWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	if err := waitBanner(addr, exited); err != nil {
		stop()
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	log.Debug("demo target: OpenSSH sshd", "addr", addr, "config", confPath)
	return &target{Addr: addr, HostKey: hostKey, Kind: "OpenSSH sshd (config " + confPath + ")", stop: stop}, nil
}

// startInProcess serves the built-in target (exec only, no terminal).
func startInProcess(ctx context.Context, hostKey ssh.Signer, upstreamCA ssh.PublicKey, logins []string, log *slog.Logger) (*target, error) {
	srv, err := sshtarget.New(sshtarget.Config{
		HostKey: hostKey, UserCA: upstreamCA, Logins: logins, Logger: log,
		Banner: "This is Portcullis's built-in demo target: it runs commands (ssh ... 'uname -a') but has no interactive shell.\r\n" +
			"Install OpenSSH's server (/usr/sbin/sshd) and restart the demo for a real one.\r\n",
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			log.Error("demo target stopped", "err", err)
		}
	}()
	stop := func() { cancel(); <-done }
	return &target{Addr: ln.Addr().String(), HostKey: hostKey.PublicKey(), Kind: "built-in target (exec only; install openssh-server for a shell)", stop: stop}, nil
}

// waitBanner waits until addr answers with an SSH banner, the process
// exits, or sshdStartupWait passes.
func waitBanner(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(sshdStartupWait)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("sshd exited")
		default:
		}
		if sshBanner(addr, time.Second) == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("sshd did not answer")
}

// sshBanner checks that addr speaks SSH.
func sshBanner(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "SSH-" {
		return errors.New("not an SSH server")
	}
	return nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}
