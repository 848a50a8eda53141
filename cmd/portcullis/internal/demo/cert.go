package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	certName = "tls.crt"
	keyName  = "tls.key"
	// certLifetime is short enough that a leaked demo key ages out, long
	// enough that a browser exception lasts a while.
	certLifetime = 90 * 24 * time.Hour
	// certRenewBefore regenerates a certificate that would expire soon.
	certRenewBefore = 7 * 24 * time.Hour
)

// certificate returns the demo's self-signed certificate for hosts (and
// 127.0.0.1, ::1), reusing the one in dir while it is valid for all of
// them, so the browser exception the user accepted keeps working across
// restarts. It returns the pair and the certificate's PEM.
func certificate(dir string, hosts []string, now time.Time) (tls.Certificate, []byte, error) {
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	if pair, certPEM, err := loadCert(certPath, keyPath, hosts, now); err == nil {
		return pair, certPEM, nil
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errStale) {
		return tls.Certificate{}, nil, fmt.Errorf("%s: %w (delete it to get a new one)", certPath, err)
	}
	certPEM, keyPEM, err := newCert(hosts, now)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	for _, f := range []struct {
		path string
		b    []byte
	}{{keyPath, keyPEM}, {certPath, certPEM}} {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, nil, err
		}
		if err := writeNew(f.path, f.b); err != nil {
			return tls.Certificate{}, nil, err
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	return pair, certPEM, err
}

var errStale = errors.New("certificate expires soon or lacks a host")

func loadCert(certPath, keyPath string, hosts []string, now time.Time) (tls.Certificate, []byte, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf := pair.Leaf
	if leaf == nil || now.Add(certRenewBefore).After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return tls.Certificate{}, nil, errStale
	}
	for _, h := range hosts {
		if !slices.Contains(leaf.DNSNames, h) {
			return tls.Certificate{}, nil, errStale
		}
	}
	return pair, certPEM, nil
}

func newCert(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"Portcullis demo (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              append(slices.Clone(hosts), "localhost"),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}
