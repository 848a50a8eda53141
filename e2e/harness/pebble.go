package harness

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Pebble is a running pebble, Let's Encrypt's ACME test server.
type Pebble struct {
	DirectoryURL  string // https://127.0.0.1:port/dir
	ManagementURL string // https://127.0.0.1:port (roots, intermediates)
	proc          *proc
}

// StartPebble runs pebble (installed by e2e/setup.sh into $GOPATH/bin) on
// free ports of 127.0.0.1, serving its ACME API with a certificate from
// ca (pebble's repository ships its own test CA, which we cannot fetch).
//
// PEBBLE_VA_ALWAYS_VALID=1: pebble marks every challenge valid without
// connecting to the gateway. Real HTTP-01 or TLS-ALPN-01 validation would
// need the test host names to resolve to 127.0.0.1 in pebble's DNS
// resolver, which this machine does not offer; the ACME protocol itself
// (account, order, authorization, finalize with a CSR, download) is real.
func StartPebble(t TB, ca *CA, challengeHTTPPort int) *Pebble {
	t.Helper()
	bin := pebblePath(t)
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, "127.0.0.1", "localhost")
	port, mgmt := FreePort(t), FreePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(port),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmt),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       challengeHTTPPort,
		"tlsPort":                        FreePort(t),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "e2e", "validityPeriod": 7776000},
		},
	}}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	file := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatalf("pebble config: %v", err)
	}
	cmd := exec.Command(bin, "-config", file)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_ALWAYS_VALID=1", // see above
		"PEBBLE_VA_NOSLEEP=1",      // no random validation delays
		"PEBBLE_WFE_NONCEREJECT=0", // no deliberately rejected nonces
	)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := startPolled(t, "pebble", cmd, 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return &Pebble{
		DirectoryURL:  "https://" + addr + "/dir",
		ManagementURL: "https://127.0.0.1:" + strconv.Itoa(mgmt),
		proc:          p,
	}
}

// Output is what pebble logged.
func (p *Pebble) Output() string { return p.proc.Output() }

func pebblePath(t TB) string {
	t.Helper()
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			t.Fatalf("go env GOPATH: %v", err)
		}
		gopath = strings.TrimSpace(string(out))
	}
	bin := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "pebble")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("pebble not installed at %s: run e2e/setup.sh (make test does)", bin)
	}
	return bin
}
