package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// SSHHost is one Host block of an OpenSSH client configuration.
type SSHHost struct {
	Alias string // what `ssh ALIAS` names
	Addr  string // host:port
	User  string // may contain "@" (login@target for the bastion)
	Key   *SSHKey
	// ProxyJump names another alias to jump through (`ssh -J`).
	ProxyJump string
	// Options are extra "Keyword value" lines for this host.
	Options []string
}

// SSHConfig is an ssh_config file with its own known_hosts: every
// invocation of the stock client uses `-F File`, so the user's own
// configuration, agent and known hosts never take part.
type SSHConfig struct {
	File       string
	KnownHosts string
}

// WriteSSHConfig writes an ssh_config in dir with hosts first (OpenSSH
// keeps the first value it reads for a keyword) and then common options
// for every host, strict host-key checking against knownHosts lines, and
// no agent, multiplexing or interactive prompts. ProxyJump hops read the
// same file, so options given here apply to them too (options on the
// command line would reach only the final destination).
func WriteSSHConfig(t TB, dir string, knownHosts []string, common []string, hosts ...SSHHost) *SSHConfig {
	t.Helper()
	c := &SSHConfig{File: filepath.Join(dir, "ssh_config"), KnownHosts: filepath.Join(dir, "known_hosts")}
	writeFile0600(t, c.KnownHosts, []byte(strings.Join(knownHosts, "\n")+"\n"))
	var b strings.Builder
	for _, h := range hosts {
		host, port, err := net.SplitHostPort(h.Addr)
		if err != nil {
			t.Fatalf("ssh host %s: %v", h.Alias, err)
		}
		fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n", h.Alias, host, port)
		if h.User != "" {
			fmt.Fprintf(&b, "  User %s\n", h.User)
		}
		if h.Key != nil {
			fmt.Fprintf(&b, "  IdentityFile %s\n", h.Key.Path)
			if h.Key.CertFile != "" {
				fmt.Fprintf(&b, "  CertificateFile %s\n", h.Key.CertFile)
			}
		}
		if h.ProxyJump != "" {
			fmt.Fprintf(&b, "  ProxyJump %s\n", h.ProxyJump)
		}
		for _, o := range h.Options {
			fmt.Fprintf(&b, "  %s\n", o)
		}
	}
	b.WriteString("Host *\n")
	for _, o := range common {
		fmt.Fprintf(&b, "  %s\n", o)
	}
	for _, o := range []string{
		"BatchMode yes",
		"StrictHostKeyChecking yes",
		"UserKnownHostsFile " + c.KnownHosts,
		"GlobalKnownHostsFile /dev/null",
		"UpdateHostKeys no",
		"IdentitiesOnly yes",
		"IdentityAgent none",
		"ForwardAgent no",
		"ControlMaster no",
		"ControlPath none",
		"ConnectTimeout 10",
		"LogLevel ERROR",
	} {
		fmt.Fprintf(&b, "  %s\n", o)
	}
	writeFile0600(t, c.File, []byte(b.String()))
	return c
}

// Env is a minimal environment for OpenSSH programs: HOME is dir (so no
// ~/.ssh of the machine is read), no SSH_AUTH_SOCK, plus extra.
func (c *SSHConfig) Env(dir string, extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LANG=C.UTF-8"}
	return append(env, extra...)
}

// SSHResult is the outcome of one OpenSSH program run.
type SSHResult struct {
	Stdout, Stderr string
	Code           int
}

// Command is prog (ssh, scp or sftp) with -F File and args, its
// environment from Env(home, extraEnv...).
func (c *SSHConfig) Command(ctx context.Context, home string, extraEnv []string, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, prog, append([]string{"-F", c.File}, args...)...)
	cmd.Env = c.Env(home, extraEnv...)
	return cmd
}

// Run runs prog with stdin and returns its output and exit code. It fails
// the test only when the program cannot be run or takes over 60 s.
func (c *SSHConfig) Run(t TB, home string, extraEnv []string, stdin, prog string, args ...string) SSHResult {
	t.Helper()
	ctx, cancel := ctxTimeout(60 * time.Second)
	defer cancel()
	cmd := c.Command(ctx, home, extraEnv, prog, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := SSHResult{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %v: no exit after 60 s\n%s", prog, args, errb.String())
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", prog, err)
	}
	return res
}
