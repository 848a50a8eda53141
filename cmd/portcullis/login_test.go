package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/gateway"
)

// The login tests run the real client command against a real gateway
// (TLS with its self-signed certificate, embedded store, session manager,
// SSH CA) in this process. The browser is an HTTP client holding a session
// cookie made by the session manager, as the OIDC + TOTP login makes it
// (that part is the gateway's own tests' business).

const loginTestUser = "https://idp.test#alice"

type loginGateway struct {
	origin   string // https://localhost:PORT
	caFile   string
	sessions *session.Manager
	ca       *session.SSHCA
	audit    *audit.Memory
}

func newLoginGateway(t *testing.T) *loginGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	st, err := store.OpenEmbedded(filepath.Join(dir, "state.db"), store.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	lg := &loginGateway{audit: &audit.Memory{}, caFile: filepath.Join(dir, "tls", "selfsigned.crt")}
	if lg.sessions, err = session.NewManager(session.Config{CookieKey: key}, st, session.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := lg.sessions.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	caSigner, _ := ssh.NewSignerFromKey(caKey)
	if lg.ca, err = session.NewSSHCA(caSigner, session.SSHCAOptions{}); err != nil {
		t.Fatal(err)
	}
	pol, err := authz.Compile(authz.PolicyConfig{
		Targets: []authz.TargetConfig{{Name: "db-1"}, {Name: "web-1"}},
		Roles: []authz.RoleConfig{
			{Name: "ops", Users: []string{loginTestUser}, Allow: []authz.Rule{{Targets: []string{"db-1"}, Logins: []string{"root", "postgres"}}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var pp atomic.Pointer[authz.Policy]
	pp.Store(pol)
	// The gateway requires a risk engine; its defaults never lock in these tests.
	eng, err := risk.New(risk.Config{}, st, risk.Options{Audit: lg.audit, Revokers: []risk.Revoker{lg.sessions}})
	if err != nil {
		t.Fatal(err)
	}
	signing, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	lg.origin = "https://localhost:" + strconv.Itoa(port)
	g, err := gateway.New(gateway.Config{
		Listen: ln.Addr().String(), AccessHost: "localhost", PublicPort: port, SSHAddr: "bastion.test:2222",
		TLS: gateway.TLSConfig{Mode: "self-signed", SelfSignedDir: filepath.Join(dir, "tls")},
	}, gateway.Deps{Policy: &pp, Sessions: lg.sessions, Store: st, Audit: lg.audit, AuditHealth: lg.audit, SigningKey: signing, SSHCA: lg.ca, Risk: eng})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.ServeListeners(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
		g.Close()
		st.Close()
	})
	return lg
}

// browser is a signed-in browser trusting the gateway's certificate.
func (lg *loginGateway) browser(t *testing.T) *http.Client {
	t.Helper()
	tok, _, err := lg.sessions.Create(context.Background(), session.Record{
		UserID: loginTestUser, Roles: []string{"ops"}, MFA: true, AuthTime: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(lg.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(lg.origin)
	jar.SetCookies(u, []*http.Cookie{lg.sessions.Cookie(tok, 0)})
	return &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

var reLoginCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// confirm plays the user in the browser: open the page the client
// printed, press "Issue certificate", follow the redirect to the client.
func (lg *loginGateway) confirm(c *http.Client, page string) error {
	resp, err := c.Get(page)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := reLoginCSRF.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		return fmt.Errorf("confirmation page: %d\n%s", resp.StatusCode, body)
	}
	u, _ := url.Parse(page)
	form := url.Values{"csrf": {string(m[1])}, "port": {u.Query().Get("port")}, "state": {u.Query().Get("state")}}
	req, _ := http.NewRequest(http.MethodPost, lg.origin+"/ssh/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", lg.origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = c.Do(req) // follows the 302 to the client's listener
	if err != nil {
		return err
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "You can close this tab") {
		return fmt.Errorf("callback page: %d %s", resp.StatusCode, body)
	}
	return nil
}

// urlWatch is the command's stderr: it hands over the first sign-in URL
// printed.
type urlWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	urls chan string
	sent bool
}

var reSignInURL = regexp.MustCompile(`https://\S+/ssh/login\?port=\d+&state=[A-Za-z0-9_-]+`)

func newURLWatch() *urlWatch { return &urlWatch{urls: make(chan string, 1)} }

func (w *urlWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := reSignInURL.Find(w.buf.Bytes()); m != nil && !w.sent {
		w.sent = true
		w.urls <- string(m)
	}
	return len(p), nil
}

func (w *urlWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runLogin runs `portcullis login` with args; browse acts on the URL it
// prints. It returns the exit code and both outputs.
func runLogin(t *testing.T, args []string, browse func(page string)) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout bytes.Buffer
	stderr := newURLWatch()
	codec := make(chan int, 1)
	go func() { codec <- runContext(ctx, append([]string{"login", "--no-browser"}, args...), &stdout, stderr) }()
	select {
	case page := <-stderr.urls:
		if browse != nil {
			browse(page)
		}
	case code := <-codec:
		return code, stdout.String(), stderr.String()
	}
	code := <-codec
	return code, stdout.String(), stderr.String()
}

// startAgent serves an in-memory ssh-agent on a Unix socket.
func startAgent(t *testing.T) (string, agent.Agent) {
	t.Helper()
	keyring := agent.NewKeyring()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
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
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	return sock, keyring
}

func TestLoginEndToEnd(t *testing.T) {
	lg := newLoginGateway(t)
	sock, keyring := startAgent(t)
	t.Setenv("SSH_AUTH_SOCK", sock)
	dir := filepath.Join(t.TempDir(), "portcullis")
	b := lg.browser(t)
	code, stdout, stderr := runLogin(t, []string{"--proxy", lg.origin, "--ca-file", lg.caFile, "--dir", dir}, func(page string) {
		u, _ := url.Parse(page)
		// Something else on this machine hits the listener first with a
		// code of its own: refused, and the login keeps waiting.
		bad := "http://127.0.0.1:" + u.Query().Get("port") + "/callback?code=" + strings.Repeat("A", 43) + "&state=wrong-state-0123456789"
		if resp, err := http.Get(bad); err != nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("foreign callback: %v %v", resp, err)
		}
		if err := lg.confirm(b, page); err != nil {
			t.Error(err)
		}
	})
	if code != exitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	// Files: key 0600, certificate for that key from the gateway's CA.
	keyPEM, err := os.ReadFile(filepath.Join(dir, "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "id_ed25519")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode().Perm())
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certLine, _ := os.ReadFile(filepath.Join(dir, "id_ed25519-cert.pub"))
	pk, _, _, _, err := ssh.ParseAuthorizedKey(certLine)
	if err != nil {
		t.Fatal(err)
	}
	cert := pk.(*ssh.Certificate)
	if !bytes.Equal(cert.Key.Marshal(), signer.PublicKey().Marshal()) || !bytes.Equal(cert.SignatureKey.Marshal(), lg.ca.PublicKey().Marshal()) ||
		cert.KeyId != loginTestUser || strings.Join(cert.ValidPrincipals, ",") != "postgres,root" {
		t.Fatalf("certificate %+v", cert)
	}
	checker := ssh.CertChecker{IsUserAuthority: func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), lg.ca.PublicKey().Marshal()) }}
	if err := checker.CheckCert("root", cert); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	pubLine, _ := os.ReadFile(filepath.Join(dir, "id_ed25519.pub"))
	if pub, _, _, _, err := ssh.ParseAuthorizedKey(pubLine); err != nil || !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		t.Fatalf("public key file: %v", err)
	}
	// The agent holds the certificate.
	keys, err := keyring.List()
	if err != nil || len(keys) != 1 || keys[0].Format != ssh.CertAlgoED25519v01 || !strings.Contains(keys[0].Comment, loginTestUser) {
		t.Fatalf("agent keys %v %v", keys, err)
	}
	for _, want := range []string{
		"Signed in as " + loginTestUser, "logins: postgres, root", "Added to your ssh-agent",
		"ssh -p 2222 -i " + filepath.Join(dir, "id_ed25519") + " root@db-1@bastion.test",
		"ssh -p 2222 -i " + filepath.Join(dir, "id_ed25519") + " postgres@db-1@bastion.test",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if strings.Contains(stdout, "web-1") {
		t.Errorf("hint for a target the policy does not allow:\n%s", stdout)
	}
	if evs := lg.audit.Find(gateway.TypeSSHCertIssue, "issued"); len(evs) != 1 {
		t.Fatalf("issue audit events: %+v", lg.audit.Events())
	}
}

// TestLoginRefusals: what the client does when the gateway, TLS, the
// user or the arguments fail it. Nothing is written in those cases.
func TestLoginRefusals(t *testing.T) {
	lg := newLoginGateway(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	// deliver sends a code straight to the client's listener with the
	// right state, bypassing the gateway.
	deliver := func(code string) func(string) {
		return func(page string) {
			u, _ := url.Parse(page)
			q := u.Query()
			resp, err := http.Get("http://127.0.0.1:" + q.Get("port") + "/callback?code=" + code + "&state=" + q.Get("state"))
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("callback: %v %v", resp, err)
			}
		}
	}
	tests := []struct {
		name   string
		args   func(dir string) []string
		browse func(page string)
		code   int
		stderr string
	}{
		{"unknown code", func(dir string) []string {
			return []string{"--proxy", lg.origin, "--ca-file", lg.caFile, "--dir", dir}
		}, deliver(strings.Repeat("A", 43)), exitFail, "refused the certificate: 403"},
		{"untrusted gateway certificate", func(dir string) []string {
			return []string{"--proxy", lg.origin, "--dir", dir}
		}, func(page string) {
			if err := lg.confirm(lg.browser(t), page); err != nil {
				t.Error(err)
			}
		}, exitFail, "signed by unknown authority"},
		{"no browser sign-in", func(dir string) []string {
			return []string{"--proxy", lg.origin, "--ca-file", lg.caFile, "--dir", dir, "--timeout", "300ms"}
		}, nil, exitFail, "timed out"},
		{"plain http proxy", func(dir string) []string { return []string{"--proxy", "http://localhost", "--dir", dir} }, nil, exitUsage, "--proxy must be"},
		{"proxy with a path", func(dir string) []string { return []string{"--proxy", lg.origin + "/x", "--dir", dir} }, nil, exitUsage, "--proxy must be"},
		{"no proxy", func(dir string) []string { return []string{"--dir", dir} }, nil, exitUsage, "--proxy must be"},
		{"extra argument", func(dir string) []string { return []string{"--proxy", lg.origin, "--dir", dir, "alice"} }, nil, exitUsage, "unexpected argument"},
		{"missing CA file", func(dir string) []string {
			return []string{"--proxy", lg.origin, "--ca-file", filepath.Join(dir, "nope.pem"), "--dir", dir}
		}, nil, exitFail, "read CA file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "p")
			code, stdout, stderr := runLogin(t, tc.args(dir), tc.browse)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q; stdout %q", code, tc.code, stderr, stdout)
			}
			if _, err := os.Stat(filepath.Join(dir, "id_ed25519-cert.pub")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("certificate written after a refusal: %v", err)
			}
		})
	}
	t.Run("directory writable by others", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runLogin(t, []string{"--proxy", lg.origin, "--ca-file", lg.caFile, "--dir", dir}, nil)
		if code != exitFail || !strings.Contains(stderr, "only you can write") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
}

func TestParseProxyURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"https://access.example.com", "https://access.example.com"},
		{"https://access.example.com/", "https://access.example.com"},
		{"https://access.example.com:8443", "https://access.example.com:8443"},
		{"http://access.example.com", ""},
		{"https://", ""},
		{"access.example.com", ""},
		{"https://u:p@access.example.com", ""},
		{"https://access.example.com/login", ""},
		{"https://access.example.com/?rd=x", ""},
		{"https://access.example.com/#x", ""},
		{"", ""},
	} {
		u, err := parseProxyURL(tc.in)
		got := ""
		if err == nil {
			got = u.String()
		}
		if got != tc.want {
			t.Errorf("parseProxyURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
