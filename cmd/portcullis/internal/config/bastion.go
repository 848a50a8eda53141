package config

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// bastion builds the bastion's Config from its section (nil when the file
// has none) and returns the user CA signer the gateway issues
// certificates with.
func (b *builder) bastion(s *BastionSection, c *Config) (*bastion.Config, ssh.Signer) {
	if s == nil {
		return nil, nil
	}
	bc := &bastion.Config{
		Listen:              cmp.Or(s.Listen, bastion.DefaultListen),
		EnvAllowlist:        s.EnvAllowlist,
		IdleTimeout:         time.Duration(s.IdleTimeout),
		KeepaliveInterval:   time.Duration(s.KeepaliveInterval),
		KeepaliveMax:        s.KeepaliveMax,
		MaxAuthTries:        s.MaxAuthTries,
		HandshakeTimeout:    time.Duration(s.HandshakeTimeout),
		UpstreamDialTimeout: time.Duration(s.UpstreamDialTimeout),
		RecordingDir:        b.abs(s.RecordingDir),
		RecordInput:         s.RecordInput,
		Instance:            c.Instance,
	}
	if s.RecordingDir == "" {
		bc.RecordingDir = filepath.Join(c.DataDir, "recordings")
	}
	if s.ApprovalLogin == nil || *s.ApprovalLogin {
		bc.ApprovalURL = ExternalURL(c.Gateway.AccessHost, c.Gateway.PublicPort, "")
	}
	bc.ApprovalTimeout = time.Duration(s.ApprovalTimeout)
	c.Gateway.SSHCertBindSourceIP = s.CertBindSourceIP
	c.Gateway.SSHAddr = b.publicAddr(s, c.Gateway.AccessHost)
	for i, f := range s.HostKeyFiles {
		if k := b.sshKeyFile(fmt.Sprintf("bastion.host_key_files[%d]", i), f); k != nil {
			bc.HostKeys = append(bc.HostKeys, k)
		}
	}
	userCA, upstreamCA := b.sshKey(s.UserCAKey), b.sshKey(s.UpstreamCAKey)
	if userCA != nil {
		bc.UserCAKeys = []ssh.PublicKey{userCA.PublicKey()}
	}
	bc.UpstreamCA = upstreamCA
	if raw := b.symmetricKey(s.RecordingKey); raw != nil {
		k, err := recording.NewKey(raw)
		if err != nil {
			b.errAt(s.RecordingKey.Path+sourceSuffix(s.RecordingKey), "%v", err)
		}
		bc.RecordingKey = k
	}
	if userCA != nil && upstreamCA != nil && bytes.Equal(userCA.PublicKey().Marshal(), upstreamCA.PublicKey().Marshal()) {
		// Targets trust the upstream CA. Were it the user CA too, every
		// user certificate would log in to targets directly, around the
		// bastion's policy and recording.
		b.errAt(s.UpstreamCAKey.Path+sourceSuffix(s.UpstreamCAKey), "the upstream CA must be a different key from user_ca_key: targets trust it, so user certificates signed by the same key would reach them directly, bypassing the bastion")
	}
	for i, t := range s.Targets {
		bc.Targets = append(bc.Targets, b.bastionTarget(fmt.Sprintf("bastion.targets[%d]", i), t))
	}
	b.fieldErrors("bastion", bc.Validate(), func(p string) string { return bastionPath(p, s) })
	c.RecordingStorage = b.recordingStorage(s.RecordingStorage)
	return bc, userCA
}

// publicAddr is where users reach the bastion: public_addr, or the access
// host on the listen port.
func (b *builder) publicAddr(s *BastionSection, accessHost string) string {
	if s.PublicAddr != "" {
		host, port, err := net.SplitHostPort(s.PublicAddr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			b.errAt("bastion.public_addr", "must be HOST:PORT (where users ssh to)")
		}
		return s.PublicAddr
	}
	_, port, err := net.SplitHostPort(cmp.Or(s.Listen, bastion.DefaultListen))
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 || accessHost == "" {
		// listen is invalid (reported) or on a random port, or access_host
		// is missing (reported): clients fall back to their default.
		return ""
	}
	return net.JoinHostPort(accessHost, port)
}

// bastionPath maps a bastion.Config key path (from Validate) to the key
// the file uses.
func bastionPath(p string, s *BastionSection) string {
	secret := func(ref SecretRef, key string) string {
		if ref.IsSet() {
			return ref.Path + sourceSuffix(ref)
		}
		return "bastion." + key
	}
	switch {
	case p == "bastion.host_keys" || strings.HasPrefix(p, "bastion.host_keys["):
		return "bastion.host_key_files" + strings.TrimPrefix(p, "bastion.host_keys")
	case strings.HasPrefix(p, "bastion.user_ca_keys"):
		return secret(s.UserCAKey, "user_ca_key")
	case p == "bastion.upstream_ca":
		return secret(s.UpstreamCAKey, "upstream_ca_key")
	case p == "bastion.recording_key":
		return secret(s.RecordingKey, "recording_key")
	case p == "bastion.approval_url":
		// Derived from the access host, which is reported on its own.
		return ""
	}
	for i, t := range s.Targets {
		base := fmt.Sprintf("bastion.targets[%d]", i)
		switch p {
		case base + ".host_key":
			if t.HostKeyFile != "" {
				return base + ".host_key_file"
			}
		case base + ".host_ca":
			if t.HostCAFile != "" {
				return base + ".host_ca_file"
			}
		}
	}
	return p
}

// bastionTarget resolves one target's host key setting: exactly one of
// the four forms, files read here (public keys: no mode check).
func (b *builder) bastionTarget(path string, t BastionTargetSection) bastion.Target {
	bt := bastion.Target{Name: t.Name, Addr: t.Addr, Labels: t.Labels, HostKey: t.HostKey, HostCA: t.HostCA}
	given := 0
	for _, v := range []string{t.HostKey, t.HostKeyFile, t.HostCA, t.HostCAFile} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		b.errAt(path+".host_key", "give exactly one of host_key, host_key_file, host_ca and host_ca_file: the target's host key is always verified (there is no trust on first use)")
	}
	if t.HostKeyFile != "" {
		bt.HostKey = b.publicKeyFile(path+".host_key_file", t.HostKeyFile)
	}
	if t.HostCAFile != "" {
		bt.HostCA = b.publicKeyFile(path+".host_ca_file", t.HostCAFile)
	}
	return bt
}

// publicKeyFile reads a public key line from a file (a .pub file).
func (b *builder) publicKeyFile(path, file string) string {
	if b.opts.FakeSecrets {
		return fakePublicKey()
	}
	data, _, ok := b.readFile(path, b.abs(file))
	if !ok {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// sshKey resolves an SSH private key secret (a CA key).
func (b *builder) sshKey(ref SecretRef) ssh.Signer {
	if !ref.IsSet() {
		return nil
	}
	if b.opts.FakeSecrets {
		return fakeSSHKey(b, ref.Path)
	}
	raw, ok := b.secret(ref)
	if !ok {
		return nil
	}
	k, err := keys.ParseSSHPrivateKey(raw)
	if err != nil {
		b.errAt(ref.Path+sourceSuffix(ref), "%v", err)
		return nil
	}
	return k
}

// sshKeyFile reads an SSH private key file (a host key), refusing files
// other users may read.
func (b *builder) sshKeyFile(path, file string) ssh.Signer {
	if strings.TrimSpace(file) == "" {
		b.errAt(path, "must not be empty")
		return nil
	}
	if b.opts.FakeSecrets {
		return fakeSSHKey(b, path)
	}
	raw, ok := b.readPrivateFile(path, b.abs(file))
	if !ok {
		return nil
	}
	k, err := keys.ParseSSHPrivateKey(raw)
	if err != nil {
		b.errAt(path, "%s: %v", b.abs(file), err)
		return nil
	}
	return k
}

// fakeSSHKey is a fresh key standing in for one that FakeSecrets does not
// read (distinct each time, so the user/upstream CA check stays quiet).
func fakeSSHKey(b *builder, path string) ssh.Signer {
	k, _, err := keys.GenerateSSHKey(nil, "")
	if err != nil {
		b.errAt(path, "%v", err)
	}
	return k
}

// fakePublicKey is a well-formed stand-in for a public key file under
// FakeSecrets (derived from a fixed seed: it is no one's key).
var fakePublicKey = sync.OnceValue(func() string {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		panic(err)
	}
	return keys.AuthorizedKey(pub)
})
