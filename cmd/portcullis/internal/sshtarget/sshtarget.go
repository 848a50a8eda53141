// Package sshtarget is a minimal SSH server that stands in for a target
// host where OpenSSH's sshd is not installed (the demo) and in tests. Like
// a stock sshd with TrustedUserCAKeys, it accepts only user certificates
// signed by one CA (the bastion's upstream CA) whose principals include
// the login. It runs exec requests with /bin/sh -c as the user running
// the process, whatever the login, and answers a shell request with a
// banner: it has no terminal support.
//
// It listens on loopback only in the demo, and only the bastion holds the
// CA key its certificates need.
package sshtarget

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config configures a Server.
type Config struct {
	HostKey ssh.Signer
	// UserCA is the only CA whose user certificates are accepted.
	UserCA ssh.PublicKey
	// Logins are the accepted logins (certificate principals).
	Logins []string
	// Banner answers a shell request.
	Banner string
	Logger *slog.Logger
	// Now checks certificate validity; default time.Now.
	Now func() time.Time
}

// Server is the SSH target.
type Server struct {
	cfg    Config
	server *ssh.ServerConfig
	log    *slog.Logger
	conns  sync.WaitGroup
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.HostKey == nil:
		return nil, errors.New("sshtarget: a host key is required")
	case cfg.UserCA == nil:
		return nil, errors.New("sshtarget: a user CA is required")
	case len(cfg.Logins) == 0:
		return nil, errors.New("sshtarget: at least one login is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	ca := cfg.UserCA.Marshal()
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool { return bytes.Equal(auth.Marshal(), ca) },
		Clock:           cfg.Now,
	}
	s.server = &ssh.ServerConfig{
		PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			cert, ok := key.(*ssh.Certificate)
			if !ok {
				return nil, errors.New("only certificates are accepted")
			}
			if len(cert.ValidPrincipals) == 0 {
				// x/crypto's checker reads no principals as "any login".
				return nil, errors.New("certificate without principals")
			}
			if !slices.Contains(cfg.Logins, conn.User()) {
				return nil, fmt.Errorf("login %q not accepted", conn.User())
			}
			// Authenticate checks the CA, the principal (= login), the
			// validity window and the critical options.
			return checker.Authenticate(conn, key)
		},
		ServerVersion: "SSH-2.0-PortcullisDemoTarget",
	}
	s.server.AddHostKey(cfg.HostKey)
	return s, nil
}

// Serve accepts connections on ln until ctx ends, then closes ln and waits
// for open connections to finish.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.conns.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sshtarget: accept: %w", err)
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.handle(ctx, nc)
		}()
	}
}

func (s *Server) handle(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.server)
	if err != nil {
		s.log.Debug("target handshake failed", "err", err)
		return
	}
	nc.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go ssh.DiscardRequests(reqs)
	var sessions sync.WaitGroup
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.Prohibited, "only sessions are supported")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			s.session(ctx, ch, chReqs)
		}()
	}
	cancel()
	sessions.Wait()
}

// session serves one session channel: env and pty requests are
// acknowledged, exec runs a command, shell shows the banner.
func (s *Server) session(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if ssh.Unmarshal(req.Payload, &p) != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			exitStatus(ch, s.run(ctx, ch, p.Command))
			return
		case "shell":
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			io.WriteString(ch, s.cfg.Banner)
			exitStatus(ch, 0)
			return
		case "pty-req", "env", "window-change":
			req.Reply(req.Type != "env", nil)
		default:
			req.Reply(false, nil)
		}
	}
}

// run executes command with /bin/sh -c, its standard streams on ch, and
// returns its exit status. The process ends with the connection.
func (s *Server) run(ctx context.Context, ch ssh.Channel, command string) uint32 {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	home, _ := os.UserHomeDir()
	cmd.Dir = home
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "LANG=C.UTF-8"}
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 255
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ch.Stderr(), "cannot run the command: %v\n", err)
		return 127
	}
	// Copy stdin outside Wait: a client that never sends EOF must not keep
	// a finished command waiting.
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return uint32(ee.ExitCode())
	default:
		return 255
	}
}

func exitStatus(ch ssh.Channel, status uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], status)
	ch.SendRequest("exit-status", false, b[:])
}
