package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/e2e/harness"
)

// TestACME runs the gateway in acme mode against pebble (the ACME test
// server) and checks that it serves pebble-issued certificates for its
// configured hosts, obtained on the first handshake, and refuses to ask
// for one for any other name.
//
// pebble runs with PEBBLE_VA_ALWAYS_VALID=1, so it does not connect back
// to validate the HTTP-01 challenge: that would need the test host names
// in pebble's DNS, which this machine does not provide. Everything else
// (account, order, authorization, CSR, issuance, chain) is the real
// protocol against a real ACME server.
func TestACME(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, map[string][]string{"acme": {"engineers"}})
	spec := s.spec(0, "")
	spec.HTTPPort = harness.FreePort(t)
	pebble := harness.StartPebble(t, s.ca, spec.HTTPPort)
	spec.TLS = harness.TLSACME(pebble.DirectoryURL, s.ca.CertFile, filepath.Join(t.TempDir(), "acme"), spec.HTTPPort)
	p := harness.StartPortcullis(t, spec.YAML())
	roots := pebbleRoots(t, s, pebble)

	for _, host := range []string{accessHost, appHost} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 90 * time.Second}, "tcp", p.Addr,
			&tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS to %s with pebble's root: %v\n--- gateway:\n%s\n--- pebble:\n%s", host, err, tail(p.Output(), 4000), tail(pebble.Output(), 2000))
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if !strings.Contains(leaf.Issuer.CommonName, "Pebble") || leaf.VerifyHostname(host) != nil {
			t.Errorf("%s: certificate for %v issued by %q, want pebble's for %s", host, leaf.DNSNames, leaf.Issuer.CommonName, host)
		}
	}
	// A client that trusts only pebble's root uses the gateway normally.
	c := harness.NewClientTLS(t, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if r := c.Get(p.AccessURL + "/healthz"); r.StatusCode != http.StatusOK {
		t.Errorf("healthz over the ACME certificate: %d", r.StatusCode)
	}

	// On-demand issuance only for configured names: a handshake for
	// another name fails and pebble never hears of it.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", p.Addr,
		&tls.Config{ServerName: "evil.localhost", InsecureSkipVerify: true})
	if err == nil {
		leaf := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if leaf.VerifyHostname("evil.localhost") == nil {
			t.Fatalf("the gateway obtained a certificate for an unconfigured host")
		}
		t.Errorf("handshake for an unconfigured host succeeded with a certificate for %v", leaf.DNSNames)
	}
	if strings.Contains(pebble.Output(), "evil.localhost") {
		t.Errorf("pebble was asked about evil.localhost:\n%s", tail(pebble.Output(), 2000))
	}
}

// pebbleRoots fetches the root pebble generated at start-up from its
// management API.
func pebbleRoots(t *testing.T, s *site, pb *harness.Pebble) *x509.CertPool {
	t.Helper()
	r := s.client(t).Get(pb.ManagementURL + "/roots/0")
	pool := x509.NewCertPool()
	if r.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM([]byte(r.Body)) {
		t.Fatalf("pebble root: %d %s", r.StatusCode, r.Body)
	}
	return pool
}
