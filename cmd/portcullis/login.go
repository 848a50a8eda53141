package main

// portcullis login: the SSH client side of "OIDC + TOTP, then a short-lived
// certificate".
//
// Flow: make a fresh Ed25519 key; listen on 127.0.0.1 (random port); send
// the browser to https://ACCESS/ssh/login?port=P&state=S, where the user
// signs in and confirms; the gateway redirects the browser to
// http://127.0.0.1:P/callback?code=C&state=S; exchange C and the public key
// at https://ACCESS/api/ssh/cert for a certificate; store key and
// certificate under ~/.portcullis, add them to a running ssh-agent, and
// print the ssh commands to use.
//
// Trust: the state is 256 random bits compared in constant time, so a code
// delivered to the listener by anything but the browser this login opened
// (another local page, another user's process) is refused; the listener
// accepts one code and stops. The exchange goes over verified TLS only
// (system roots, or --ca-file for a private CA). The private key never
// leaves this machine and is written 0600.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/portcullis/portcullis/gateway"
)

const loginUsage = "portcullis login --proxy https://ACCESS-HOST [--ca-file FILE] [--no-browser] [--dir DIR] [--timeout DURATION]"

// File names under the login directory (what ssh -i expects: the
// certificate next to the key, with -cert.pub).
const (
	loginKeyFile  = "id_ed25519"
	loginPubFile  = "id_ed25519.pub"
	loginCertFile = "id_ed25519-cert.pub"
	// defaultBastionPort is assumed when the gateway names no bastion
	// address.
	defaultBastionPort = "2222"
	maxLoginResponse   = 1 << 20
	maxHints           = 20
)

// loginOptions is one login, with its collaborators injectable for tests.
type loginOptions struct {
	proxy     *url.URL // https://access.example.com[:port]
	dir       string
	client    *http.Client // verifies the gateway's certificate
	open      func(url string)
	agentSock string // SSH_AUTH_SOCK; "" = no agent
	timeout   time.Duration
	out       io.Writer // progress and hints
	home      string    // for printing paths as ~/...
}

// loginResult is what a login produced.
type loginResult struct {
	resp        gateway.SSHCertResponse
	cert        *ssh.Certificate
	keyPath     string
	addedAgent  bool
	agentFailed error
}

func cmdLogin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("login", loginUsage, stderr)
	proxy := fs.String("proxy", "", "the gateway's access URL, e.g. https://access.example.com (required)")
	caFile := fs.String("ca-file", "", "PEM CA certificate to trust for --proxy (default: system roots)")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser; print the URL to open")
	dir := fs.String("dir", "", "where to keep the key and certificate (default ~/.portcullis)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the browser sign-in")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	u, err := parseProxyURL(*proxy)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *timeout <= 0 {
		return usageError(fs, stderr, "--timeout must be positive")
	}
	home, _ := os.UserHomeDir()
	if *dir == "" {
		if home == "" {
			return usageError(fs, stderr, "no home directory: give --dir")
		}
		*dir = filepath.Join(home, ".portcullis")
	}
	client, err := loginHTTPClient(*caFile)
	if err != nil {
		return fail(stderr, "login", err)
	}
	opts := loginOptions{
		proxy: u, dir: *dir, client: client, agentSock: os.Getenv("SSH_AUTH_SOCK"),
		timeout: *timeout, out: stderr, home: home, open: openBrowser,
	}
	if *noBrowser {
		opts.open = nil
	}
	res, err := sshLogin(ctx, opts)
	if err != nil {
		return fail(stderr, "login", err)
	}
	printLoginHints(stdout, opts, res)
	return exitOK
}

// parseProxyURL accepts https://host[:port] (a trailing slash is fine).
func parseProxyURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if s == "" || err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil ||
		strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("--proxy must be the gateway's https URL, such as https://access.example.com")
	}
	return &url.URL{Scheme: "https", Host: u.Host}, nil
}

// loginHTTPClient verifies TLS against the system roots, or against the
// CA in caFile. Redirects are not followed: the API never redirects.
func loginHTTPClient(caFile string) (*http.Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("no PEM certificate in %s", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, Proxy: http.ProxyFromEnvironment},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// sshLogin runs the whole login.
func sshLogin(ctx context.Context, o loginOptions) (*loginResult, error) {
	if err := prepareLoginDir(o.dir); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var st [32]byte
	if _, err := rand.Read(st[:]); err != nil {
		return nil, err
	}
	state := base64.RawURLEncoding.EncodeToString(st[:])
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	page := o.proxy.String() + "/ssh/login?port=" + strconv.Itoa(port) + "&state=" + state
	if o.open != nil {
		fmt.Fprintf(o.out, "Opening your browser to sign in. If it does not open, visit:\n\n  %s\n\n", page)
		o.open(page)
	} else {
		fmt.Fprintf(o.out, "Open this URL in a browser on this computer and sign in:\n\n  %s\n\n", page)
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	code, err := awaitCallback(wctx, ln, state)
	if err != nil {
		return nil, err
	}
	resp, err := exchangeCode(ctx, o, code, sshPub)
	if err != nil {
		return nil, err
	}
	cert, err := parseIssuedCert(resp.Certificate, sshPub)
	if err != nil {
		return nil, err
	}
	res := &loginResult{resp: resp, cert: cert, keyPath: filepath.Join(o.dir, loginKeyFile)}
	if err := writeLoginFiles(o.dir, priv, sshPub, cert); err != nil {
		return nil, err
	}
	if o.agentSock != "" {
		if err := addToAgent(o.agentSock, priv, cert); err != nil {
			res.agentFailed = err
		} else {
			res.addedAgent = true
		}
	}
	return res, nil
}

// prepareLoginDir creates dir (0700) and refuses one others may write to.
func prepareLoginDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s must be a directory only you can write to (chmod 700 %s)", dir, dir)
	}
	return nil
}

// callbackPage is what the browser shows after the redirect.
var callbackPage = template.Must(template.New("cb").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Portcullis</title></head>
<body><h1>{{.}}</h1></body></html>
`))

// awaitCallback serves the loopback listener until one request carries
// the expected state and a well-formed code, or ctx ends.
func awaitCallback(ctx context.Context, ln net.Listener, state string) (string, error) {
	got := make(chan string, 1)
	var once sync.Once
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Referrer-Policy", "no-referrer")
			q := r.URL.Query()
			code, st := q.Get("code"), q.Get("state")
			if r.Method != http.MethodGet || r.URL.Path != "/callback" ||
				subtle.ConstantTimeCompare([]byte(st), []byte(state)) != 1 || !plausibleCode(code) {
				w.WriteHeader(http.StatusBadRequest)
				_ = callbackPage.Execute(w, "This sign-in link does not belong to the portcullis login waiting here.")
				return
			}
			_ = callbackPage.Execute(w, "Signed in. You can close this tab and return to the terminal.")
			once.Do(func() { got <- code })
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	select {
	case code := <-got:
		return code, nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", errors.New("timed out waiting for the browser sign-in")
		}
		return "", ctx.Err()
	}
}

func plausibleCode(s string) bool {
	if len(s) < 16 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// exchangeCode trades the code and the public key for a certificate.
func exchangeCode(ctx context.Context, o loginOptions, code string, pub ssh.PublicKey) (gateway.SSHCertResponse, error) {
	var resp gateway.SSHCertResponse
	body, err := json.Marshal(map[string]string{"code": code, "public_key": string(ssh.MarshalAuthorizedKey(pub))})
	if err != nil {
		return resp, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.proxy.String()+"/api/ssh/cert", bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	r, err := o.client.Do(req)
	if err != nil {
		return resp, fmt.Errorf("certificate request: %w", err)
	}
	defer r.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxLoginResponse))
	if err != nil {
		return resp, fmt.Errorf("certificate request: %w", err)
	}
	if r.StatusCode != http.StatusOK {
		var e struct{ Error, Ref string }
		_ = json.Unmarshal(raw, &e)
		msg := fmt.Sprintf("the gateway refused the certificate: %d %s", r.StatusCode, http.StatusText(r.StatusCode))
		if e.Error != "" {
			msg += ": " + e.Error
		}
		if e.Ref != "" {
			msg += " (ref " + e.Ref + ")"
		}
		return resp, errors.New(msg)
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return resp, fmt.Errorf("certificate response: %w", err)
	}
	return resp, nil
}

// parseIssuedCert checks the answer is a user certificate for our key.
func parseIssuedCert(s string, pub ssh.PublicKey) (*ssh.Certificate, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("certificate response: %w", err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.UserCert || !bytes.Equal(cert.Key.Marshal(), pub.Marshal()) || len(cert.ValidPrincipals) == 0 {
		return nil, errors.New("the gateway returned a certificate that is not a user certificate for this key")
	}
	return cert, nil
}

// writeLoginFiles replaces key, public key and certificate, each
// atomically (temp file + rename); the private key is never readable by
// others, not even for a moment.
func writeLoginFiles(dir string, priv ed25519.PrivateKey, pub ssh.PublicKey, cert *ssh.Certificate) error {
	blk, err := ssh.MarshalPrivateKey(priv, "portcullis "+cert.KeyId)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{loginKeyFile, pem.EncodeToMemory(blk), 0o600},
		{loginPubFile, ssh.MarshalAuthorizedKey(pub), 0o644},
		{loginCertFile, ssh.MarshalAuthorizedKey(cert), 0o644},
	} {
		// writeFileAtomic (recording.go) creates the file 0600.
		path := filepath.Join(dir, f.name)
		if err := writeFileAtomic(path, func(w io.Writer) error { _, err := w.Write(f.data); return err }); err != nil {
			return err
		}
		if err := os.Chmod(path, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// addToAgent adds key and certificate to the agent at sock until the
// certificate expires.
func addToAgent(sock string, priv ed25519.PrivateKey, cert *ssh.Certificate) error {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	life := time.Until(time.Unix(int64(min(cert.ValidBefore, 1<<62)), 0))
	if life <= 0 {
		return errors.New("the certificate has already expired")
	}
	return agent.NewClient(conn).Add(agent.AddedKey{
		PrivateKey: priv, Certificate: cert, Comment: "portcullis " + cert.KeyId,
		LifetimeSecs: uint32(min(life/time.Second, 1<<31)),
	})
}

// printLoginHints tells the user what they got and how to connect.
func printLoginHints(w io.Writer, o loginOptions, res *loginResult) {
	r := res.resp
	fmt.Fprintf(w, "Signed in as %s. Certificate valid until %s for logins: %s.\n",
		r.UserID, r.ValidBefore.Local().Format("2006-01-02 15:04 MST"), strings.Join(r.Principals, ", "))
	key := res.keyPath
	if o.home != "" && strings.HasPrefix(key, o.home+string(filepath.Separator)) {
		key = "~" + key[len(o.home):]
	}
	fmt.Fprintf(w, "Key and certificate: %s, %s-cert.pub\n", key, key)
	switch {
	case res.addedAgent:
		fmt.Fprintln(w, "Added to your ssh-agent until the certificate expires.")
	case res.agentFailed != nil:
		fmt.Fprintf(w, "Could not add them to your ssh-agent (%v); use -i as below.\n", res.agentFailed)
	}
	host, port := o.proxy.Hostname(), defaultBastionPort
	if h, p, err := net.SplitHostPort(r.SSHAddr); err == nil {
		host, port = h, p
	}
	fmt.Fprintln(w, "\nConnect with:")
	n := 0
	for _, t := range r.Targets {
		for _, l := range t.Logins {
			if n == maxHints {
				fmt.Fprintln(w, "  ...")
				return
			}
			fmt.Fprintf(w, "  ssh -p %s -i %s %s@%s@%s\n", port, key, l, t.Name, host)
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(w, "  ssh -p %s -i %s LOGIN@TARGET@%s\n", port, key, host)
	}
	fmt.Fprintf(w, "List the targets you may reach: ssh -p %s -i %s %s@%s\n", port, key, res.cert.ValidPrincipals[0], host)
}
