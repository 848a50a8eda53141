package bastion

import (
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
)

func validConfig(t *testing.T) Config {
	host, _ := newSigner(t)
	ca, _ := newSigner(t)
	up, _ := newSigner(t)
	tk, _ := newSigner(t)
	return Config{
		HostKeys:     []ssh.Signer{host},
		UserCAKeys:   []ssh.PublicKey{ca.PublicKey()},
		UpstreamCA:   up,
		Targets:      []Target{{Name: "db-1", Addr: "10.0.0.5:22", HostKey: string(ssh.MarshalAuthorizedKey(tk.PublicKey()))}},
		RecordingDir: "/var/lib/portcullis/recordings",
		RecordingKey: testRecordingKey,
	}
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig(t).Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	certKey, _ := newSigner(t)
	certCA, _ := newSigner(t)
	cert := &ssh.Certificate{Key: certKey.PublicKey(), CertType: ssh.UserCert, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, certCA); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		paths []string
	}{
		{"bad listen", func(c *Config) { c.Listen = "nope" }, []string{"listen"}},
		{"bad listen port", func(c *Config) { c.Listen = ":99999" }, []string{"listen"}},
		{"no host keys", func(c *Config) { c.HostKeys = nil }, []string{"host_keys"}},
		{"nil host key", func(c *Config) { c.HostKeys = []ssh.Signer{nil} }, []string{"host_keys[0]"}},
		{"no user CA", func(c *Config) { c.UserCAKeys = nil }, []string{"user_ca_keys"}},
		{"user CA is a certificate", func(c *Config) { c.UserCAKeys = []ssh.PublicKey{cert} }, []string{"user_ca_keys[0]"}},
		{"no upstream CA", func(c *Config) { c.UpstreamCA = nil }, []string{"upstream_ca"}},
		{"target without a name", func(c *Config) { c.Targets[0].Name = "" }, []string{"targets[0].name"}},
		{"target name with @", func(c *Config) { c.Targets[0].Name = "a@b" }, []string{"targets[0].name"}},
		{"duplicate target", func(c *Config) { c.Targets = append(c.Targets, c.Targets[0]) }, []string{"targets[1].name"}},
		{"bad address", func(c *Config) { c.Targets[0].Addr = "10.0.0.5" }, []string{"targets[0].addr"}},
		{"port 0", func(c *Config) { c.Targets[0].Addr = "10.0.0.5:0" }, []string{"targets[0].addr"}},
		{"no host key or CA", func(c *Config) { c.Targets[0].HostKey = "" }, []string{"targets[0]"}},
		{"both host key and CA", func(c *Config) { c.Targets[0].HostCA = c.Targets[0].HostKey }, []string{"targets[0]"}},
		{"garbage host key", func(c *Config) { c.Targets[0].HostKey = "ssh-ed25519 AAAA" }, []string{"targets[0].host_key"}},
		{"two host keys", func(c *Config) { c.Targets[0].HostKey += c.Targets[0].HostKey }, []string{"targets[0].host_key"}},
		{"host key is a certificate", func(c *Config) { c.Targets[0].HostKey = string(ssh.MarshalAuthorizedKey(cert)) }, []string{"targets[0].host_key"}},
		{"bad env pattern", func(c *Config) { c.EnvAllowlist = []string{"LD PRELOAD", "*"} }, []string{"env_allowlist[0]", "env_allowlist[1]"}},
		{"negative durations", func(c *Config) { c.IdleTimeout, c.HandshakeTimeout = -1, -time.Second },
			[]string{"handshake_timeout", "idle_timeout"}},
		{"negative counts", func(c *Config) { c.MaxAuthTries, c.KeepaliveMax = -1, -1 }, []string{"keepalive_max", "max_auth_tries"}},
		{"no recording dir", func(c *Config) { c.RecordingDir = "" }, []string{"recording_dir"}},
		{"no recording key", func(c *Config) { c.RecordingKey = nil }, []string{"recording_key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mod(&c)
			var paths []string
			for _, err := range authz.Flatten(c.Validate()) {
				var fe *authz.FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("not a FieldError: %v", err)
				}
				paths = append(paths, fe.Path)
			}
			slices.Sort(paths)
			if strings.Join(paths, ",") != strings.Join(tc.paths, ",") {
				t.Fatalf("paths %v, want %v", paths, tc.paths)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	cfg := validConfig(t)
	rk := testRiskEngine(t)
	ok := Deps{Policy: nil, Audit: &audit.Memory{}, Revocations: failingRevocations{}, Risk: rk, AuditHealth: &audit.Memory{}}
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{"invalid config", Config{}, ok},
		{"no policy", cfg, ok},
		{"no audit", cfg, Deps{Policy: testPolicySource(t), Revocations: failingRevocations{}, Risk: rk}},
		{"no revocations", cfg, Deps{Policy: testPolicySource(t), Audit: &audit.Memory{}, Risk: rk}},
		{"no risk engine", cfg, Deps{Policy: testPolicySource(t), Audit: &audit.Memory{}, Revocations: failingRevocations{}}},
		// Never a silent "the trail is always fine".
		{"no audit health", cfg, Deps{Policy: testPolicySource(t), Audit: &audit.Memory{}, Revocations: failingRevocations{}, Risk: rk}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, tc.deps); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func testPolicySource(t *testing.T) PolicySource {
	p, err := authz.Compile(testPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var src atomicPolicy
	src.p = p
	return &src
}

type atomicPolicy struct{ p *authz.Policy }

func (a *atomicPolicy) Load() *authz.Policy { return a.p }

func TestEnvAllowed(t *testing.T) {
	patterns := DefaultEnvAllowlist
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"LANG", true},
		{"LC_ALL", true},
		{"LC_", true},
		{"TERM", true},
		{"TERMINFO", false},
		{"LD_PRELOAD", false},
		{"PATH", false},
		{"BASH_ENV", false},
		{"LC*", false},
		{"", false},
		{"LANG\x00", false},
		{"1LANG", false},
	} {
		if got := envAllowed(patterns, tc.name); got != tc.ok {
			t.Errorf("%q: %v", tc.name, got)
		}
	}
}
