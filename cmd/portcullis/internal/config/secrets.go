package config

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// maxSecretSize bounds a secret or certificate file read.
const maxSecretSize = 1 << 20

// fakeSymmetric is the stand-in for 32-byte keys under FakeSecrets: not all
// zero (which the mfa package rightly refuses), obviously not random.
var fakeSymmetric = []byte("portcullis-fake-secret-32-bytes!")

// processGroup is the group whose read access to a secret file is not
// worth a warning (a variable so tests can pretend to be another group).
var processGroup = os.Getegid

// readPrivateFile reads a file that holds a secret (key, password, private
// key), refusing files other users may read. path is the YAML key path
// (for messages); name is already resolved against the config directory.
func (b *builder) readPrivateFile(path, name string) ([]byte, bool) {
	data, info, ok := b.readFile(path, name)
	if !ok {
		return nil, false
	}
	mode := info.Mode().Perm()
	if mode&0o007 != 0 {
		b.errAt(path, "secret file %s is accessible to all users (mode %04o): chmod 600 it", name, mode)
		return nil, false
	}
	// Group access is normal where a secret mount is shared with the
	// service's own group (Kubernetes fsGroup); elsewhere it is worth a
	// warning, not a refusal.
	if mode&0o070 != 0 {
		if st, ok := info.Sys().(*syscall.Stat_t); !ok || int(st.Gid) != processGroup() {
			b.warnAt(path, "secret file %s is readable by its group (mode %04o): chmod 600 it unless that group is portcullis's own", name, mode)
		}
	}
	return data, true
}

// readFile reads a regular file of bounded size, reporting problems at
// path.
func (b *builder) readFile(path, name string) ([]byte, fs.FileInfo, bool) {
	f, err := os.Open(name)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			b.errAt(path, "file %s does not exist", name)
		case errors.Is(err, fs.ErrPermission):
			b.errAt(path, "file %s is not readable by this user", name)
		default:
			b.errAt(path, "cannot open %s: %v", name, err)
		}
		return nil, nil, false
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		b.errAt(path, "cannot stat %s: %v", name, err)
		return nil, nil, false
	}
	if !info.Mode().IsRegular() {
		b.errAt(path, "%s is not a regular file", name)
		return nil, nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		b.errAt(path, "cannot read %s: %v", name, err)
		return nil, nil, false
	}
	if len(data) > maxSecretSize {
		b.errAt(path, "file %s is larger than %d bytes", name, maxSecretSize)
		return nil, nil, false
	}
	if len(data) == 0 {
		b.errAt(path, "file %s is empty", name)
		return nil, nil, false
	}
	return data, info, true
}

// secret returns the raw bytes of a secret from its file or environment
// variable. ok is false when it was reported missing or unreadable.
func (b *builder) secret(ref SecretRef) ([]byte, bool) {
	switch {
	case ref.File != "" && ref.Env != "":
		return nil, false // ambiguous: reported by the decoder
	case ref.File != "":
		return b.readPrivateFile(ref.Path+"_file", b.abs(ref.File))
	case ref.Env != "":
		v, ok := b.opts.LookupEnv(ref.Env)
		if !ok {
			b.errAt(ref.Path+"_env", "environment variable %s is not set", ref.Env)
			return nil, false
		}
		if v == "" {
			b.errAt(ref.Path+"_env", "environment variable %s is empty", ref.Env)
			return nil, false
		}
		return []byte(v), true
	}
	return nil, false // missing: reported by the decoder when required
}

// symmetricKey resolves a 32-byte key.
func (b *builder) symmetricKey(ref SecretRef) []byte {
	if !ref.IsSet() {
		return nil
	}
	if b.opts.FakeSecrets {
		return fakeSymmetric
	}
	raw, ok := b.secret(ref)
	if !ok {
		return nil
	}
	k, err := keys.ParseSymmetric(raw)
	if err != nil {
		b.errAt(ref.Path+sourceSuffix(ref), "%v", err)
		return nil
	}
	return k
}

// textSecret resolves a password or client secret. A trailing newline (as
// left by `echo secret > file`) is not part of the secret.
func (b *builder) textSecret(ref SecretRef) string {
	if !ref.IsSet() {
		return ""
	}
	if b.opts.FakeSecrets {
		return "fake-secret"
	}
	raw, ok := b.secret(ref)
	if !ok {
		return ""
	}
	s := strings.TrimRight(string(raw), "\r\n")
	if s == "" {
		b.errAt(ref.Path+sourceSuffix(ref), "secret is empty")
	}
	return s
}

// ecKey resolves the ES256 assertion signing key.
func (b *builder) ecKey(ref SecretRef) *ecdsa.PrivateKey {
	if !ref.IsSet() {
		return nil
	}
	if b.opts.FakeSecrets {
		k, _, err := keys.GenerateECPrivateKey()
		if err != nil {
			b.errAt(ref.Path, "%v", err)
		}
		return k
	}
	raw, ok := b.secret(ref)
	if !ok {
		return nil
	}
	k, err := keys.ParseECPrivateKey(raw)
	if err != nil {
		b.errAt(ref.Path+sourceSuffix(ref), "%v", err)
		return nil
	}
	return k
}

func sourceSuffix(ref SecretRef) string {
	if ref.File != "" {
		return "_file"
	}
	return "_env"
}

// keyPair checks a certificate file and its private key file (which must
// not be readable by others) and returns the absolute paths. Under
// FakeSecrets the files are not touched.
func (b *builder) keyPair(base, certFile, keyFile string) (string, string) {
	cert, key := b.abs(certFile), b.abs(keyFile)
	if b.opts.FakeSecrets || certFile == "" || keyFile == "" {
		return cert, key
	}
	certPEM, _, ok1 := b.readFile(join(base, "cert_file"), cert)
	keyPEM, ok2 := b.readPrivateFile(join(base, "key_file"), key)
	if !ok1 || !ok2 {
		return cert, key
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.errAt(join(base, "cert_file"), "certificate and key do not load: %v", err)
		return cert, key
	}
	if leaf := pair.Leaf; leaf != nil && b.opts.Now().After(leaf.NotAfter) {
		b.warnAt(join(base, "cert_file"), "certificate %s expired on %s", cert, leaf.NotAfter.UTC().Format("2006-01-02"))
	}
	return cert, key
}

// certPool reads a PEM bundle of CA certificates.
func (b *builder) certPool(path, file string) (*x509.CertPool, string) {
	name := b.abs(file)
	if file == "" || b.opts.FakeSecrets {
		return nil, name
	}
	data, _, ok := b.readFile(path, name)
	if !ok {
		return nil, name
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		b.errAt(path, "no PEM certificate found in %s", name)
		return nil, name
	}
	return pool, name
}

// checkReadable reports a missing or unreadable non-secret file.
func (b *builder) checkReadable(path, file string) string {
	name := b.abs(file)
	if file != "" && !b.opts.FakeSecrets {
		b.readFile(path, name)
	}
	return name
}
