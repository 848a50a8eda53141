package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/e2e/harness"
)

// loginURLRE finds the sign-in URL `portcullis login --no-browser` prints.
var loginURLRE = regexp.MustCompile(`https://\S+/ssh/login\?\S+`)

// cliLogin obtains alice's certificate the way a user does: `portcullis
// login --no-browser` prints the URL; Chromium opens it, signs in at the
// IdP with TOTP enrolment, and confirms on the gateway's page; the CLI
// gets the one-time code on its loopback callback, exchanges it for a
// certificate and adds key and certificate to the running ssh-agent.
//
// The CLI resolves the access host with Go's resolver, which does not map
// *.localhost to loopback as Chromium does, so it reaches the gateway
// through a CONNECT proxy (HTTPS_PROXY) that forwards to 127.0.0.1. TLS
// stays end to end, verified against the site's CA.
func (s *sshSite) cliLogin(t *testing.T, bctx context.Context) *harness.SSHKey {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "portcullis")
	agentSock := startAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.BuildPortcullis(t), "login", "--proxy", s.p.AccessURL,
		"--ca-file", s.site.ca.CertFile, "--no-browser", "--dir", dir, "--timeout", "90s")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dir, "SSH_AUTH_SOCK=" + agentSock,
		"HTTPS_PROXY=http://" + startConnectProxy(t, s.p.Addr)}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	var errOut strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			errOut.WriteString(sc.Text() + "\n")
			if u := loginURLRE.FindString(sc.Text()); u != "" {
				select {
				case urls <- u:
				default:
				}
			}
		}
	}()
	var page string
	select {
	case page = <-urls:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("portcullis login printed no URL:\n%s", errOut.String())
	}

	l := harness.LoginBrowser(t, bctx, page, s.users["alice"], nil)
	if !strings.Contains(l.URL, "/ssh/login") {
		t.Fatalf("the sign-in ended at %s, not on the confirmation page", l.URL)
	}
	s.totp = l.TOTP
	cctx, ccancel := context.WithTimeout(bctx, 30*time.Second)
	defer ccancel()
	logins, err := chromedp.Run(cctx, chromedp.Text(chromedp.CSS("#ssh-logins")))
	if err != nil || strings.TrimSpace(logins) != "root" {
		t.Fatalf("confirmation page lists logins %q (%v)", logins, err)
	}
	if _, err := chromedp.RunResponse(cctx, chromedp.Click(chromedp.CSS("#confirm"))); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("portcullis login: %v\n%s%s", err, errOut.String(), stdout.String())
	}
	if !strings.Contains(stdout.String(), "root@db-1@") {
		t.Fatalf("login printed no ssh command for db-1:\n%s", stdout.String())
	}

	key := &harness.SSHKey{Path: filepath.Join(dir, "id_ed25519"), CertFile: filepath.Join(dir, "id_ed25519-cert.pub")}
	b, err := os.ReadFile(key.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
	cert, ok := pk.(*ssh.Certificate)
	if err != nil || !ok {
		t.Fatalf("certificate file: %v", err)
	}
	life := time.Until(time.Unix(int64(cert.ValidBefore), 0))
	if cert.KeyId != s.userID("alice") || !slices.Equal(cert.ValidPrincipals, []string{"root"}) ||
		cert.CertType != ssh.UserCert || life <= 0 || life > 8*time.Hour+time.Minute {
		t.Fatalf("certificate: key ID %q, principals %v, type %d, valid for %v", cert.KeyId, cert.ValidPrincipals, cert.CertType, life)
	}
	if !bytes.Equal(cert.SignatureKey.Marshal(), s.caSigner.PublicKey().Marshal()) {
		t.Fatal("certificate not signed by the deployment's user CA")
	}
	if info, err := os.Stat(key.Path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("private key file %v (%v), want mode 0600", info, err)
	}
	add := exec.Command("ssh-add", "-l")
	add.Env = []string{"SSH_AUTH_SOCK=" + agentSock}
	if out, err := add.CombinedOutput(); err != nil || !strings.Contains(string(out), "ED25519-CERT") {
		t.Fatalf("ssh-agent holds no certificate: %s (%v)", out, err)
	}
	return key
}

// startConnectProxy answers HTTP CONNECT for any host by connecting to
// addr (the gateway's listener), for the test's lifetime.
func startConnectProxy(t *testing.T, addr string) string {
	return serveTCP(t, func(c net.Conn) { proxyConnect(c, addr) })
}

func proxyConnect(c net.Conn, addr string) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	<-done
}
