package demo

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// syncBuffer is an io.Writer safe for the demo goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the demo on a free loopback port until the test ends.
func start(t *testing.T, dir string) (Info, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{DataDir: dir, Listen: "127.0.0.1:0", SSHListen: "127.0.0.1:0", Out: out, OnReady: func(i Info) { ready <- i }})
	}()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(60 * time.Second):
			t.Fatal("demo did not stop within a minute")
			return nil
		}
	}
	select {
	case info := <-ready:
		t.Cleanup(func() { cancel() })
		return info, out, stop
	case err := <-done:
		cancel()
		t.Fatalf("demo did not start: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("demo did not start within a minute")
	}
	return Info{}, nil, nil
}

var (
	hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	secretRe = regexp.MustCompile(`id="totp-secret">([A-Z2-7]+)<`)
)

func form(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], htmlUnescape(m[2]))
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, v url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, v)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestDemo starts the demo, logs bob in through the development IdP and
// TOTP enrolment exactly as a browser would, reaches the sample dashboard
// with verified identity headers, is denied /admin, lists the session over
// the admin socket, and restarts with the same passwords and certificate.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	info, out, stop := start(t, dir)
	_, sshPort, _ := net.SplitHostPort(info.SSHAddr)
	for _, want := range []string{info.DashboardURL, "alice / " + info.Passwords["alice"], "bob   / " + info.Passwords["bob"], "curl -k", "admin --socket",
		"portcullis login --proxy " + info.AccessURL + " --ca-file " + filepath.Join(dir, certName),
		"ssh -p " + sshPort + " " + info.Logins[len(info.Logins)-1] + "@demo-target@127.0.0.1", info.SSHHostKey,
		"portcullis audit verify " + filepath.Join(dir, "audit"),
		"requests role db-admin", info.AccessURL + "/access", "review start --name 2026-Q4"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}

	jar, _ := cookiejar.New(nil)
	c := trustingClient(info.CertPEM, info.Addr)
	c.Jar = jar

	if resp, body := get(t, c, info.AccessURL+"/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}

	// Dashboard → access host login → development IdP's login form.
	resp, body := get(t, c, info.DashboardURL)
	if resp.StatusCode != 200 || !strings.HasSuffix(resp.Request.URL.Path, "/dev-idp/authorize") {
		t.Fatalf("expected the IdP login form, got %d at %s", resp.StatusCode, resp.Request.URL)
	}
	v := form(body)
	v.Set("username", "bob")
	v.Set("password", info.Passwords["bob"])
	resp, body = post(t, c, info.AccessURL+"/dev-idp/authorize", v)
	m := secretRe.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("expected the TOTP enrolment page, got %d at %s", resp.StatusCode, resp.Request.URL)
	}
	code, err := totp.GenerateCode(m[1], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v = form(body)
	v.Set("code", code)
	resp, body = post(t, c, info.AccessURL+"/mfa/enrol", v)
	if resp.StatusCode != 200 || !strings.Contains(body, `action="/mfa/continue"`) {
		t.Fatalf("expected the recovery codes page, got %d at %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body = post(t, c, info.AccessURL+"/mfa/continue", form(body))
	if resp.StatusCode != 200 || resp.Request.URL.Host != strings.TrimSuffix(strings.TrimPrefix(info.DashboardURL, "https://"), "/") {
		t.Fatalf("expected the dashboard, got %d at %s", resp.StatusCode, resp.Request.URL)
	}
	for _, want := range []string{"Grafana (sample dashboard)", "bob@example.com", "engineers", "present, signature verified"} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard page lacks %q", want)
		}
	}
	if resp, _ := get(t, c, strings.TrimSuffix(info.DashboardURL, "/")+"/admin"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("engineer reached /admin: %d", resp.StatusCode)
	}

	sshThroughDemo(t, dir, info)

	admin := adminclient.NewUnix(info.AdminSocket, 10*time.Second)
	sessions, err := admin.Call(context.Background(), adminclient.Sessions(""))
	if err != nil || !strings.Contains(string(sessions), `"roles":["engineer"]`) {
		t.Fatalf("admin sessions: %s %v", sessions, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("demo stopped with %v", err)
	}
	audits, _ := filepath.Glob(filepath.Join(dir, "audit", "*.jsonl"))
	if len(audits) != 1 {
		t.Fatalf("audit files %v", audits)
	}
	trail, _ := os.ReadFile(audits[0])
	for _, want := range []string{`"type":"session.start"`, `"type":"mfa.enrol.confirm"`} {
		if !bytes.Contains(trail, []byte(want)) {
			t.Errorf("audit trail lacks %s", want)
		}
	}
	if bytes.Contains(trail, []byte(info.Passwords["bob"])) || bytes.Contains(trail, []byte(m[1])) {
		t.Error("audit trail contains a password or TOTP secret")
	}
	// What the banner tells the user to run holds: the trail verifies.
	if rep, err := audit.Verify(filepath.Join(dir, "audit"), nil, audit.VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("the demo's audit trail does not verify: %v\n%s", err, rep)
	}

	// A restart keeps passwords and certificate (the browser exception
	// and the authenticator app keep working).
	info2, _, stop2 := start(t, dir)
	if info2.Passwords["bob"] != info.Passwords["bob"] || !bytes.Equal(info2.CertPEM, info.CertPEM) || info2.SSHHostKey != info.SSHHostKey {
		t.Error("restart changed passwords, certificate or the bastion's host key")
	}
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefuses(t *testing.T) {
	tests := []struct {
		name    string
		listen  string
		prepare func(dir string)
		wantErr string
	}{
		{"public address", "0.0.0.0:0", nil, "loopback address only"},
		{"host name", "example.com:8443", nil, "loopback address only"},
		{"no port", "127.0.0.1", nil, "want host:port"},
		{"damaged SSH key", "127.0.0.1:0", func(dir string) {
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, userCAName), []byte("not a key"), 0o600)
		}, "is damaged"},
		{"damaged state", "127.0.0.1:0", func(dir string) {
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, secretsName), []byte("{not json"), 0o600)
		}, "is damaged"},
		{"damaged key", "127.0.0.1:0", func(dir string) {
			os.MkdirAll(dir, 0o700)
			os.WriteFile(filepath.Join(dir, mfaKeyName), []byte("short"), 0o600)
		}, "is damaged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "demo")
			if tc.prepare != nil {
				tc.prepare(dir)
			}
			err := Run(context.Background(), Options{DataDir: dir, Listen: tc.listen})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestCertificateReuse(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	_, a, err := certificate(dir, []string{"a.localhost"}, now)
	if err != nil {
		t.Fatal(err)
	}
	_, b, _ := certificate(dir, []string{"a.localhost"}, now.Add(time.Hour))
	if !bytes.Equal(a, b) {
		t.Error("valid certificate not reused")
	}
	_, c, _ := certificate(dir, []string{"a.localhost"}, now.Add(certLifetime))
	if bytes.Equal(a, c) {
		t.Error("expiring certificate reused")
	}
	_, d, _ := certificate(dir, []string{"a.localhost", "b.localhost"}, now.Add(certLifetime))
	if bytes.Equal(c, d) {
		t.Error("certificate reused for a new host")
	}
	info, _ := os.Stat(filepath.Join(dir, keyName))
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", info.Mode())
	}
}
