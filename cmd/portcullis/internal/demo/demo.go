// Package demo runs the whole product in one process on 127.0.0.1 for a
// first look: the gateway on https://access.localhost:PORT, a sample
// dashboard behind https://grafana.localhost:PORT, the built-in
// development OIDC issuer at https://access.localhost:PORT/dev-idp with
// two users, the SSH bastion (127.0.0.1:2222) in front of a sample target
// (a private OpenSSH sshd when installed, else a built-in one), the
// embedded store, the audit trail, session recordings and the admin
// socket, all under one data directory.
//
// It is the only place that uses authz/identity/devidp: the development
// issuer has plaintext demo passwords and no protections a real IdP has,
// and `serve` cannot be configured to run it.
package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/identity"
	"github.com/portcullis/portcullis/authz/identity/devidp"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/server"
	"github.com/portcullis/portcullis/gateway"
)

// Host names. Browsers and curl resolve every *.localhost name to the
// loopback address (RFC 6761), so no /etc/hosts edit is needed.
const (
	AccessHost    = "access.localhost"
	DashboardHost = "grafana.localhost"
	dashboardApp  = "grafana"
	idpPath       = "/dev-idp"
	clientID      = "portcullis-demo"
	instance      = "demo"
	// jitRole is requestable (just-in-time access); auditorRole reads
	// the trail and others' recordings.
	jitRole     = "db-admin"
	auditorRole = "auditor"
)

// demoUser is one development IdP account.
type demoUser struct {
	name, email, fullName, group, role string
}

var demoUsers = []demoUser{
	{"alice", "alice@example.com", "Alice Admin", "admins", "admin"},
	{"bob", "bob@example.com", "Bob Engineer", "engineers", "engineer"},
}

// Options configure Run.
type Options struct {
	DataDir string // created 0700; default ./.portcullis-demo (by the caller)
	Listen  string // loopback host:port; port 0 picks one
	// SSHListen is the bastion's loopback host:port; port 0 picks one.
	SSHListen string
	Out       io.Writer
	Logger    *slog.Logger
	// OnReady, when set, is called once everything serves.
	OnReady func(Info)
}

// Info describes a running demo.
type Info struct {
	AccessURL    string // https://access.localhost:PORT
	DashboardURL string // https://grafana.localhost:PORT/
	Addr         string // the listener's actual address
	AdminSocket  string
	Passwords    map[string]string
	CertPEM      []byte // the self-signed certificate, to trust in tests
	SSHAddr      string // the bastion's address
	Target       string // the sample target's kind, for the banner
	Logins       []string
	// SSHHostKey is the bastion's host key fingerprint (SHA256:…).
	SSHHostKey string
}

// Run starts the demo and serves until ctx ends.
func Run(ctx context.Context, opts Options) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	host, err := loopback("--listen", opts.Listen)
	if err != nil {
		return err
	}
	if opts.SSHListen == "" {
		opts.SSHListen = net.JoinHostPort(host, "2222")
	}
	if _, err := loopback("--ssh-listen", opts.SSHListen); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	names := make([]string, len(demoUsers))
	for i, u := range demoUsers {
		names[i] = u.name
	}
	st, err := loadState(dataDir, names)
	if err != nil {
		return err
	}
	cert, certPEM, err := certificate(dataDir, []string{AccessHost, DashboardHost}, time.Now())
	if err != nil {
		return fmt.Errorf("demo certificate: %w", err)
	}
	sshKeys, err := loadSSHKeys(dataDir)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w (is another demo running? try --listen 127.0.0.1:0)", opts.Listen, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	access := config.ExternalURL(AccessHost, port, "")
	sshLn, err := net.Listen("tcp", opts.SSHListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w (is another demo running? try --ssh-listen 127.0.0.1:0)", opts.SSHListen, err)
	}
	defer sshLn.Close()
	logins := demoLogins()
	tgt, err := startTarget(ctx, dataDir, sshKeys.UpstreamCA.PublicKey(), logins, log)
	if err != nil {
		return fmt.Errorf("sample SSH target: %w", err)
	}
	defer tgt.stop()
	client := trustingClient(certPEM, ln.Addr().String())

	dashLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return fmt.Errorf("sample dashboard: %w", err)
	}
	dash := &dashboard{app: dashboardApp, issuer: access, jwksURL: access + "/.well-known/portcullis/jwks.json", client: client, now: time.Now}
	dashSrv := &http.Server{Handler: dash, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = dashSrv.Serve(dashLn) }()
	defer dashSrv.Close()

	idp, err := newIdP(access, st)
	if err != nil {
		return err
	}
	// The gateway needs OIDC discovery at start, and the IdP is served on
	// the gateway's own port, so the listener starts first with only the
	// IdP mounted; the gateway handler is swapped in once built.
	var gw atomic.Pointer[http.Handler]
	front := &http.Server{
		Handler:           frontHandler(idp.Handler(), &gw),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	frontErr := make(chan error, 1)
	go func() { frontErr <- front.ServeTLS(ln, "", "") }()
	defer front.Close()

	cfg, err := buildConfig(dataDir, port, "http://"+dashLn.Addr().String(), access, st)
	if err != nil {
		return err
	}
	if err := addBastion(cfg, sshKeys, tgt, sshLn.Addr().String(), logins); err != nil {
		return err
	}
	in, err := server.Open(ctx, cfg, server.Options{Logger: log, HTTPClient: client, SSHListener: sshLn})
	if err != nil {
		return err
	}
	defer in.Close()
	h := in.Gateway.Handler()
	gw.Store(&h)

	adminLn, err := server.ListenAdmin(cfg.AdminSocket)
	if err != nil {
		return err
	}
	adminErr := make(chan error, 1)
	go func() { adminErr <- server.ServeAdmin(ctx, adminLn, in.AdminHandler(), log) }()
	sshErr := make(chan error, 1)
	go func() { sshErr <- in.ServeSSH(ctx) }()

	info := Info{
		AccessURL:    access,
		DashboardURL: config.ExternalURL(DashboardHost, port, "/"),
		Addr:         ln.Addr().String(),
		AdminSocket:  filepath.Join(opts.DataDir, "admin.sock"),
		Passwords:    st.Passwords,
		CertPEM:      certPEM,
		SSHAddr:      sshLn.Addr().String(),
		Target:       tgt.Kind,
		Logins:       logins,
		SSHHostKey:   ssh.FingerprintSHA256(sshKeys.HostKey.PublicKey()),
	}
	if opts.Out != nil {
		printBanner(opts.Out, info, opts.DataDir)
	}
	if opts.OnReady != nil {
		opts.OnReady(info)
	}
	// Wait for the end (ctx) or the first server failure; then stop the
	// rest. Each server's result is received exactly once: after a
	// cancellation several can be ready at the same time.
	var runErr error
	adminDone, sshDone := false, false
	select {
	case <-ctx.Done():
	case err := <-frontErr:
		runErr = fmt.Errorf("gateway listener: %w", err)
	case err := <-adminErr:
		adminDone, runErr = true, err
	case err := <-sshErr:
		sshDone, runErr = true, err
	}
	stop()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = front.Shutdown(sctx)
	_ = dashSrv.Shutdown(sctx)
	if !adminDone {
		if err := <-adminErr; err != nil && runErr == nil {
			runErr = err
		}
	}
	// The bastion ends live sessions and finishes their recordings.
	if !sshDone {
		if err := <-sshErr; err != nil && runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// loopback checks that addr is a loopback host:port and returns the host.
func loopback(flag, addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s %q: want host:port", flag, addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%s %q: the demo listens on a loopback address only (127.0.0.1 or ::1); its development IdP is not for networks", flag, addr)
	}
	return host, nil
}

// frontHandler serves the development IdP under /dev-idp on the access
// host and everything else through the gateway (503 until it is built).
func frontHandler(idp http.Handler, gw *atomic.Pointer[http.Handler]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(r.Host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == AccessHost && (r.URL.Path == idpPath || strings.HasPrefix(r.URL.Path, idpPath+"/")) {
			idp.ServeHTTP(w, r)
			return
		}
		h := gw.Load()
		if h == nil {
			http.Error(w, "starting, try again in a moment", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	})
}

func newIdP(access string, st *state) (*devidp.IdP, error) {
	cfg := devidp.Config{
		Issuer: access + idpPath,
		Clients: []devidp.Client{{
			ID: clientID, Secret: st.ClientSecret, RedirectURIs: []string{access + config.CallbackPath},
		}},
	}
	for _, u := range demoUsers {
		cfg.Users = append(cfg.Users, devidp.User{
			Username: u.name, Password: st.Passwords[u.name], Email: u.email, Name: u.fullName, Groups: []string{u.group},
		})
	}
	idp, err := devidp.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("development IdP: %w", err)
	}
	return idp, nil
}

// buildConfig is the demo's configuration, built in code (there is no
// file): the same structures `serve` gets from its YAML file.
func buildConfig(dataDir string, port int, upstream, accessURL string, st *state) (*config.Config, error) {
	pol := authz.PolicyConfig{
		Apps: []authz.AppConfig{{Name: dashboardApp}},
		Roles: []authz.RoleConfig{
			{Name: "admin", Groups: []string{"admins"}, Admin: true, Allow: []authz.Rule{{Apps: []string{"*"}}}},
			{
				Name: "engineer", Groups: []string{"engineers"},
				Allow: []authz.Rule{{Apps: []string{dashboardApp}}},
				Deny:  []authz.Rule{{Apps: []string{dashboardApp}, PathPrefixes: []string{"/admin"}}},
			},
			// Held through a just-in-time grant: requested on /access,
			// approved by an admin. Its SSH rights come with the bastion
			// (ssh.go). Nobody holds it standing.
			{Name: jitRole, Requestable: true},
			// Reads other users' recordings and searches the trail
			// (audit_read, as a standing role in the demo).
			{Name: auditorRole, Groups: []string{"admins"}},
		},
	}
	compiled, err := authz.Compile(pol)
	if err != nil {
		return nil, fmt.Errorf("demo policy: %w", err)
	}
	acc := access.Config{
		Roles:     []access.RoleConfig{{Role: jitRole, Approvers: []string{"admin"}, Approvals: 1, MaxDuration: 8 * time.Hour}},
		AuditRead: access.AuditReadConfig{Role: auditorRole},
	}
	if err := acc.Validate(compiled); err != nil {
		return nil, fmt.Errorf("demo access settings: %w", err)
	}
	cfg := &config.Config{
		Path:        "(demo)",
		Instance:    instance,
		DataDir:     dataDir,
		AdminSocket: filepath.Join(dataDir, "admin.sock"),
		Gateway: gateway.Config{
			Listen:     "127.0.0.1:" + strconv.Itoa(port),
			AccessHost: AccessHost,
			PublicPort: port,
			TLS:        gateway.TLSConfig{Mode: gateway.ModeFiles, CertFile: filepath.Join(dataDir, certName), KeyFile: filepath.Join(dataDir, keyName)},
			Routes:     []gateway.Route{{Name: dashboardApp, Host: DashboardHost, Upstream: upstream}},
			Instance:   instance,
		},
		Identity: identity.Config{
			Issuer: accessURL + idpPath, ClientID: clientID, ClientSecret: st.ClientSecret,
			RedirectURL: accessURL + config.CallbackPath,
		},
		MFA:          mfa.Config{Issuer: "Portcullis demo", Key: st.MFAKey},
		Session:      session.Config{CookieKey: st.CookieKey},
		Store:        config.StoreConfig{Backend: config.BackendEmbedded, Path: filepath.Join(dataDir, "state.db")},
		Audit:        audit.FileConfig{Dir: filepath.Join(dataDir, "audit"), Instance: instance},
		Policy:       pol,
		Compiled:     compiled,
		Access:       acc,
		AssertionKey: st.AssertionKey,
	}
	return cfg, nil
}

// trustingClient is an HTTP client for the demo's own services: it trusts
// only the demo certificate and sends every *.localhost name to the
// demo's listener (Go's resolver does not special-case .localhost).
func trustingClient(certPEM []byte, addr string) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
		DialContext: func(ctx context.Context, network, target string) (net.Conn, error) {
			h, _, err := net.SplitHostPort(target)
			if err == nil && (h == "localhost" || strings.HasSuffix(h, ".localhost")) {
				target = addr
			}
			return dialer.DialContext(ctx, network, target)
		},
		ForceAttemptHTTP2: true,
	}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

func printBanner(w io.Writer, info Info, dataDir string) {
	pw := func(name string) string { return info.Passwords[name] }
	sshHost, sshPort, _ := net.SplitHostPort(info.SSHAddr)
	engineerLogin := info.Logins[len(info.Logins)-1]
	fmt.Fprintf(w, `
Portcullis demo is running (everything on 127.0.0.1; data in %s).

  Open    %s   the sample dashboard (you will be sent to log in)
          %s/   the access host: login, your sessions, sign out

  Users   alice / %s   group admins    -> roles admin (all apps, admin API; SSH to every target as %s), auditor
          bob   / %s   group engineers -> role engineer (grafana, but not /admin; SSH to %s as %s)
          At first login you enrol an authenticator app (TOTP); the page also shows the secret as text.
  Access  bob requests role %s (SSH as %s, port forwards; up to 8h) at %s/access; alice approves;
          access review: portcullis admin --socket %s review start --name 2026-Q4, then %s/reviews

  The certificate is self-signed: accept the browser warning once per host
  (access.localhost and grafana.localhost), or use curl -k, e.g.
          curl -k %s/healthz

  SSH     The bastion listens on %s (host key %s)
          in front of %q: %s.
          With the client: log in once in the browser, get a short-lived certificate, then ssh:
            portcullis login --proxy %s --ca-file %s
            ssh -p %s %s@%s@%s
          Without it, the same ssh command shows a link to approve the connection in the browser.
          Recordings: %s  (encrypted: portcullis play --key %s FILE,
                      portcullis recording info --key %s FILE)

  Admin   portcullis admin --socket %s sessions
          portcullis admin --socket %s watch SSH-SESSION   (or kill SSH-SESSION --reason TEXT)
          portcullis admin --socket %s users
          portcullis admin --socket %s explain --user bob --groups engineers --app grafana --path /admin --ip 127.0.0.1
          portcullis admin --socket %s locks   (5 wrong TOTP codes lock an account; admin unlock USER --reason TEXT)
  Audit   %s
          portcullis audit verify %s   (hash chain and signatures; the demo keeps its key beside the trail)

Press Ctrl-C to stop.
`, dataDir, info.DashboardURL, info.AccessURL,
		pw("alice"), strings.Join(info.Logins, " or "), pw("bob"), targetName, engineerLogin,
		jitRole, strings.Join(info.Logins, " or "), info.AccessURL, info.AdminSocket, info.AccessURL,
		info.AccessURL,
		info.SSHAddr, info.SSHHostKey, targetName, info.Target,
		info.AccessURL, filepath.Join(dataDir, certName),
		sshPort, engineerLogin, targetName, sshHost,
		filepath.Join(dataDir, "recordings")+string(filepath.Separator),
		filepath.Join(dataDir, recordingKeyName), filepath.Join(dataDir, recordingKeyName),
		info.AdminSocket, info.AdminSocket, info.AdminSocket, info.AdminSocket, info.AdminSocket, filepath.Join(dataDir, "audit")+string(filepath.Separator),
		filepath.Join(dataDir, "audit"))
}
