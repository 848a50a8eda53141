// Package testfixture builds what `portcullis serve` needs for a test: a
// development OIDC issuer on a loopback port (plain http, which the
// identity package allows for loopback issuers), a certificate pair, secret
// files with the right modes, and a configuration file, all in a temporary
// directory. Only tests import it.
package testfixture

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/identity/devidp"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// Host names used by the fixture's configuration.
const (
	AccessHost = "access.test.example"
	AppHost    = "app.test.example"
	ClientID   = "portcullis"
)

// Fixture is a ready-to-serve configuration.
type Fixture struct {
	Dir         string
	ConfigPath  string
	AdminSocket string
	AuditDir    string
	Issuer      string
	// Bastion is set by WithBastion.
	Bastion *Bastion
	// NoAdminSSH leaves the admin role's SSH rule out of the next
	// WriteConfig (to test a policy change).
	NoAdminSSH bool
}

// New builds the fixture; everything is cleaned up with t.
func New(t testing.TB) *Fixture {
	t.Helper()
	dir := t.TempDir()
	f := &Fixture{
		Dir:         dir,
		ConfigPath:  filepath.Join(dir, "portcullis.yaml"),
		AdminSocket: filepath.Join(dir, "data", "admin.sock"),
		AuditDir:    filepath.Join(dir, "data", "audit"),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.Issuer = "http://" + ln.Addr().String()
	idp, err := devidp.New(devidp.Config{
		Issuer:  f.Issuer,
		Clients: []devidp.Client{{ID: ClientID, Secret: "client-secret", RedirectURIs: []string{"https://" + AccessHost + "/oauth2/callback"}}},
		Users:   []devidp.User{{Username: "alice", Password: "alice-password", Email: "alice@example.com", Groups: []string{"admins"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: idp.Handler()}}
	srv.Start()
	t.Cleanup(srv.Close)

	write := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	certPEM, keyPEM := Certificate(t, AccessHost, AppHost)
	write("tls.crt", certPEM)
	write("tls.key", keyPEM)
	for _, name := range []string{"cookie.key", "mfa.key"} {
		k, err := keys.GenerateSymmetric(nil)
		if err != nil {
			t.Fatal(err)
		}
		write(name, k)
	}
	_, assertion, err := keys.GenerateECPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	write("assertion.pem", assertion)
	write("oidc-secret", []byte("client-secret\n"))
	f.WriteConfig(t, "")
	return f
}

// WriteConfig (re)writes the configuration file; extraRoles is appended to
// policy.roles (YAML list items indented by four spaces).
func (f *Fixture) WriteConfig(t testing.TB, extraRoles string) {
	t.Helper()
	adminSSH := ""
	if f.Bastion != nil && !f.NoAdminSSH {
		adminSSH = `, {targets: ["*"], logins: [root]}`
	}
	cfg := fmt.Sprintf(`instance: test
data_dir: data
log: {level: warn}
gateway:
  listen: "127.0.0.1:0"
  access_host: %s
  tls: {mode: files, cert_file: tls.crt, key_file: tls.key}
  routes:
    - {name: app, host: %s, upstream: "http://127.0.0.1:9"}
identity:
  issuer: %s
  client_id: %s
  client_secret_file: oidc-secret
mfa: {key_file: mfa.key}
session: {cookie_key_file: cookie.key, assertion_key_file: assertion.pem}
policy:
  roles:
    - {name: admin, groups: [admins], admin: true, allow: [{apps: ["*"]}%s]}
%s`, AccessHost, AppHost, f.Issuer, ClientID, adminSSH, extraRoles)
	if f.Bastion != nil {
		cfg += f.Bastion.section()
	}
	if err := os.WriteFile(f.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Certificate returns a self-signed certificate and key (PEM) for hosts.
func Certificate(t testing.TB, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     hosts,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
