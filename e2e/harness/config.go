package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// KeyFiles are the secrets one Portcullis deployment shares between its
// instances, each in its own 0600 file (the config only ever names files).
type KeyFiles struct {
	Dir          string
	MFAKey       string // 32-byte AES key, hex
	CookieKey    string // 32-byte HMAC key, hex
	AssertionKey string // ES256 private key, PEM
	ClientSecret string // file holding the OIDC client secret
}

// NewKeyFiles writes fresh keys and clientSecret into a new directory and
// records the client secret for the final secrets scan.
func NewKeyFiles(t TB, clientSecret string) *KeyFiles {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("secrets dir: %v", err)
	}
	k := &KeyFiles{
		Dir:          dir,
		MFAKey:       filepath.Join(dir, "mfa.key"),
		CookieKey:    filepath.Join(dir, "cookie.key"),
		AssertionKey: filepath.Join(dir, "assertion.pem"),
		ClientSecret: filepath.Join(dir, "oidc-client-secret"),
	}
	writeSecret(t, k.MFAKey, []byte(RandomString(32)+"\n"))
	writeSecret(t, k.CookieKey, []byte(RandomString(32)+"\n"))
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate assertion key: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatalf("encode assertion key: %v", err)
	}
	writePEM(t, k.AssertionKey, "PRIVATE KEY", der)
	writeSecret(t, k.ClientSecret, []byte(clientSecret+"\n"))
	RecordSecret(KindClientSecret, clientSecret)
	return k
}

func writeSecret(t TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// RandomString is n random bytes in hex: passwords, client secrets.
func RandomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewDataDir names a data directory that does not exist yet: serve
// creates it 0700, as the admin socket next to it requires.
func NewDataDir(t TB) string {
	return filepath.Join(t.TempDir(), "data")
}

// RouteSpec is one gateway route.
type RouteSpec struct {
	Name, Host, Upstream string
	PathPrefix           string
	FlushImmediately     bool // flush_interval: -1ms (SSE)
}

// Spec describes one `portcullis serve` instance; YAML renders its config
// file. Instances of one deployment share Keys, Issuer, routes and policy
// and differ in Instance, DataDir and ports.
type Spec struct {
	Instance       string
	DataDir        string // see NewDataDir
	Port           int    // HTTPS port on 127.0.0.1, also the public port
	HTTPPort       int    // plain-HTTP port; 0 = none
	AccessHost     string
	Routes         []RouteSpec
	TLS            string // body of gateway.tls (see TLSFiles, TLSACME)
	TrustedProxies []string
	Issuer         string
	ClientID       string
	Keys           *KeyFiles
	Store          string // body of store:; "" = embedded in DataDir
	Policy         string // body of policy:
	// GatewayExtra are more lines under gateway: (e.g. "store_grace: 2s").
	GatewayExtra string
	// Risk is the body of risk: ("" = no section: the defaults).
	Risk string
}

// TLSFiles is gateway.tls for a certificate from files.
func TLSFiles(certFile, keyFile string) string {
	return fmt.Sprintf("mode: files\ncert_file: %s\nkey_file: %s\n", certFile, keyFile)
}

// TLSACME is gateway.tls for ACME against directoryURL, trusting caRoot
// for the ACME server's own certificate. Certificates are kept in
// storage. HTTP-01 answers on httpPort (the gateway's http_listen);
// TLS-ALPN-01 is disabled because nothing can bind :443 for it here.
func TLSACME(directoryURL, caRoot, storage string, httpPort int) string {
	return fmt.Sprintf(`mode: acme
acme:
  email: e2e@example.com
  directory_url: %s
  ca_root_file: %s
  storage_path: %s
  alt_http_port: %d
  disable_tls_alpn: true
`, directoryURL, caRoot, storage, httpPort)
}

// RedisStore is the store section for a Redis backend.
func RedisStore(addr, prefix string) string {
	return fmt.Sprintf("backend: redis\nredis:\n  addr: %s\n  key_prefix: %q\n", addr, prefix)
}

// YAML renders the configuration file.
func (s Spec) YAML() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("instance: %s\n", s.Instance)
	w("data_dir: %s\n", s.DataDir)
	w("log:\n  level: debug\n  format: json\n")
	w("gateway:\n")
	w("  listen: 127.0.0.1:%d\n", s.Port)
	if s.HTTPPort != 0 {
		w("  http_listen: 127.0.0.1:%d\n", s.HTTPPort)
	}
	w("  access_host: %s\n", s.AccessHost)
	w("  public_port: %d\n", s.Port)
	if len(s.TrustedProxies) > 0 {
		w("  trusted_proxies: [%s]\n", strings.Join(s.TrustedProxies, ", "))
	}
	w("  tls:\n%s", indent(s.TLS, 4))
	if s.GatewayExtra != "" {
		w("%s", indent(s.GatewayExtra, 2))
	}
	w("  routes:\n")
	for _, r := range s.Routes {
		w("    - name: %s\n      host: %s\n      upstream: %s\n", r.Name, r.Host, r.Upstream)
		if r.PathPrefix != "" {
			w("      path_prefix: %s\n", r.PathPrefix)
		}
		if r.FlushImmediately {
			w("      flush_interval: -1ms\n")
		}
	}
	w("identity:\n  issuer: %s\n  client_id: %s\n  client_secret_file: %s\n", s.Issuer, s.ClientID, s.Keys.ClientSecret)
	w("  scopes: [openid, email, profile, groups]\n  groups_claim: groups\n")
	w("mfa:\n  issuer: Portcullis e2e\n  key_file: %s\n", s.Keys.MFAKey)
	w("session:\n  cookie_key_file: %s\n  assertion_key_file: %s\n", s.Keys.CookieKey, s.Keys.AssertionKey)
	if s.Store != "" {
		w("store:\n%s", indent(s.Store, 2))
	}
	w("policy:\n%s", indent(s.Policy, 2))
	if s.Risk != "" {
		w("risk:\n%s", indent(s.Risk, 2))
	}
	return b.String()
}

// indent prefixes every non-empty line of s with n spaces and makes sure
// the result ends in a newline.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
