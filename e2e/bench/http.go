package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/e2e/harness"
)

// benchUserID is the logged-in user the gateway serves during the run.
const benchUserID = "https://idp.bench#bench-user"

// benchHTTP runs the HTTP comparison and fills metrics.
func benchHTTP(ctx context.Context, r *runner, dur, warm time.Duration, metrics map[string]float64) ([]row, error) {
	upAddr, stopUp, err := startUpstream()
	if err != nil {
		return nil, err
	}
	r.Cleanup(stopUp)

	ca := harness.NewCA(r)
	certFile, keyFile := ca.Issue(r, "app.localhost", "access.localhost", "127.0.0.1")

	nginxPort, _ := freePort()
	nginxAddr := fmt.Sprintf("127.0.0.1:%d", nginxPort)
	stopNginx, err := startNginx(r.TempDir(), nginxAddr, upAddr, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.Cleanup(stopNginx)

	gwAddr, cookie, err := startGateway(ctx, r, upAddr, certFile, keyFile, "")
	if err != nil {
		return nil, err
	}

	type target struct {
		name, url string
		headers   []string
	}
	targets := []target{
		{"direct", "http://" + upAddr + "/", nil},
		{"nginx", "https://" + nginxAddr + "/", []string{"Host: app.localhost"}},
		{"gateway", "https://" + gwAddr + "/", []string{"Host: app.localhost", "Cookie: " + cookie}},
	}
	var rows []row
	res := map[string]load{}
	for _, conns := range []int{1, 64} {
		for _, tg := range targets {
			if warm > 0 {
				if _, err := runWrk(ctx, tg.url, conns, warm, tg.headers...); err != nil {
					return nil, err
				}
			}
			l, err := runWrk(ctx, tg.url, conns, dur, tg.headers...)
			if err != nil {
				return nil, err
			}
			if l.Errors > 0 {
				return nil, fmt.Errorf("%s at %d connections: %d errors (non-2xx or socket) in %d requests", tg.name, conns, l.Errors, l.Requests)
			}
			rows = append(rows, row{tg.name, conns, l})
			res[fmt.Sprintf("%s_c%d", tg.name, conns)] = l
			metrics[fmt.Sprintf("http_rps_%s_c%d", tg.name, conns)] = round(l.RPS, 1)
			metrics[fmt.Sprintf("http_p99_ms_%s_c%d", tg.name, conns)] = round(ms(l.P99), 3)
		}
	}
	for _, c := range []int{1, 64} {
		gw, ng, d := res[fmt.Sprintf("gateway_c%d", c)], res[fmt.Sprintf("nginx_c%d", c)], res[fmt.Sprintf("direct_c%d", c)]
		metrics[fmt.Sprintf("http_rps_gateway_over_nginx_c%d", c)] = round(gw.RPS/ng.RPS, 3)
		metrics[fmt.Sprintf("http_p99_added_ms_c%d", c)] = round(ms(gw.P99-d.P99), 3)
		metrics[fmt.Sprintf("http_p99_added_ms_nginx_c%d", c)] = round(ms(ng.P99-d.P99), 3)
	}
	return rows, nil
}

// startUpstream serves 1 KiB responses over keep-alive HTTP/1.1.
func startUpstream() (addr string, stop func(), err error) {
	body := []byte(strings.Repeat("x", 1023) + "\n")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{"1024"}
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return l.Addr().String(), func() { srv.Close() }, nil
}

// startGateway runs `portcullis serve` with TLS from files, the embedded
// store holding one logged-in session, and the real OIDC provider (needed
// for discovery at start-up). It returns the listen address and the session
// cookie ("name=value"). extra is appended to the configuration file
// (top-level sections such as risk:).
func startGateway(ctx context.Context, r *runner, upAddr, certFile, keyFile, extra string) (addr, cookie string, err error) {
	bin, err := portcullisBinary(r)
	if err != nil {
		return "", "", err
	}
	port, _ := freePort()
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	redirect := fmt.Sprintf("https://access.localhost:%d/oauth2/callback", port)
	clientSecret := hex.EncodeToString(randBytes(24))
	idp := harness.StartIdP(r, []harness.IdPClient{{ID: "portcullis", Secret: clientSecret, RedirectURIs: []string{redirect}}}, nil)

	dir := r.TempDir()
	cookieKey := randBytes(32)
	files := map[string][]byte{
		"client-secret": []byte(clientSecret + "\n"),
		"cookie.key":    []byte(hex.EncodeToString(cookieKey) + "\n"),
		"mfa.key":       []byte(hex.EncodeToString(randBytes(32)) + "\n"),
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	files["assertion.pem"] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", "", err
		}
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", err
	}
	cfg := fmt.Sprintf(`instance: bench
data_dir: %[1]s/data
log: {level: warn}
gateway:
  listen: %[2]s
  access_host: access.localhost
  public_port: %[3]d
  tls: {mode: files, cert_file: %[4]s, key_file: %[5]s}
  routes:
    - {name: app, host: app.localhost, upstream: "http://%[6]s"}
identity:
  issuer: %[7]s
  client_id: portcullis
  client_secret_file: %[1]s/client-secret
  redirect_url: %[8]s
mfa: {key_file: %[1]s/mfa.key}
session:
  cookie_key_file: %[1]s/cookie.key
  assertion_key_file: %[1]s/assertion.pem
policy:
  roles:
    - name: bench
      users: ["%[9]s"]
      allow:
        - apps: [app]
`, dir, addr, port, certFile, keyFile, upAddr, idp.Issuer, redirect, benchUserID) + extra
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", "", err
	}

	// Log the bench user in before the server opens the store (bbolt holds
	// an exclusive lock): the session is as real as one made by the login
	// pages, minus the browser.
	st, err := store.OpenEmbedded(filepath.Join(dataDir, "state.db"), store.EmbeddedOptions{})
	if err != nil {
		return "", "", err
	}
	sm, err := session.NewManager(session.Config{CookieKey: cookieKey}, st, session.Options{})
	if err != nil {
		st.Close()
		return "", "", err
	}
	now := time.Now()
	token, _, err := sm.Create(ctx, session.Record{UserID: benchUserID, Roles: []string{"bench"}, MFA: true, AuthTime: now, ExpiresAt: now.Add(2 * time.Hour)})
	st.Close()
	if err != nil {
		return "", "", err
	}
	c := sm.Cookie(token, time.Hour)

	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", "", err
	}
	r.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	if err := waitTCP(addr, 20*time.Second); err != nil {
		return "", "", err
	}
	gatewayPIDs.Store(addr, cmd.Process.Pid)
	return addr, c.Name + "=" + c.Value, nil
}

// gatewayPIDs maps a gateway's listen address to its process ID, for
// measurements of its CPU time.
var gatewayPIDs sync.Map

// processCPU is the user+system CPU time a process has used so far
// (/proc/PID/stat; Linux clock ticks of 1/100 s).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name, which may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// portcullisBinary is bin/portcullis (make bench builds it first) or a
// fresh build.
func portcullisBinary(r *runner) (string, error) {
	bin := filepath.Join(harness.RepoRoot(), "bin", "portcullis")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	bin = filepath.Join(r.TempDir(), "portcullis")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/portcullis")
	cmd.Dir = harness.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(v float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}
