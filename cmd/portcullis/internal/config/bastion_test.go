package config

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

// bastionFiles writes the key files a bastion section names into dir.
type bastionFiles struct {
	hostKey, targetKey ssh.Signer
	userCA, upstreamCA ssh.Signer
}

func writeBastionFiles(t *testing.T, dir string) bastionFiles {
	t.Helper()
	var f bastionFiles
	for _, k := range []struct {
		name string
		dst  *ssh.Signer
	}{{"host_key", &f.hostKey}, {"user_ca", &f.userCA}, {"upstream_ca", &f.upstreamCA}, {"target_key", &f.targetKey}} {
		s, pemBytes, err := keys.GenerateSSHKey(nil, k.name)
		if err != nil {
			t.Fatal(err)
		}
		*k.dst = s
		if err := os.WriteFile(filepath.Join(dir, k.name), pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	recKey, err := keys.GenerateSymmetric(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "recording.key"), recKey, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := keys.AuthorizedKey(f.targetKey.PublicKey()) + " root@db-1\n"
	if err := os.WriteFile(filepath.Join(dir, "db-1.pub"), []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

const bastionYAML = `
bastion:
  listen: "127.0.0.1:2022"
  host_key_files: [host_key]
  user_ca_key_file: user_ca
  upstream_ca_key_file: upstream_ca
  recording_key_file: recording.key
  idle_timeout: 30m
  keepalive_interval: 15s
  max_auth_tries: 2
  handshake_timeout: 10s
  record_input: true
  env_allowlist: [LANG, "LC_*"]
  targets:
    - name: db-1
      addr: 10.0.0.5:22
      labels: {env: prod, tier: db}
      host_key_file: db-1.pub
    - name: web-1
      addr: web-1.internal:22
      labels: {env: staging}
      host_ca: "%s"
`

func TestBastionBuild(t *testing.T) {
	dir := t.TempDir()
	files := writeBastionFiles(t, dir)
	data := minimalYAML + `    - name: dba
      groups: [dbas]
      allow:
        - {target_labels: {tier: db}, logins: [postgres]}
  targets:
    - name: db-1
      allowed_cidrs: [10.1.0.0/16]
` + strings.Replace(bastionYAML, "%s", keys.AuthorizedKey(files.targetKey.PublicKey()), 1)
	path := filepath.Join(dir, "portcullis.yaml")
	cfg, warns, err := Parse(path, []byte(data), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	bc := cfg.Bastion
	if bc == nil {
		t.Fatal("no bastion config")
	}
	same := func(a, b ssh.PublicKey) bool { return a != nil && b != nil && bytes.Equal(a.Marshal(), b.Marshal()) }
	checks := []struct {
		name string
		ok   bool
	}{
		{"listen", bc.Listen == "127.0.0.1:2022"},
		{"host key", len(bc.HostKeys) == 1 && same(bc.HostKeys[0].PublicKey(), files.hostKey.PublicKey())},
		{"user CA public key trusted", len(bc.UserCAKeys) == 1 && same(bc.UserCAKeys[0], files.userCA.PublicKey())},
		{"user CA signer for the gateway", cfg.SSHUserCA != nil && same(cfg.SSHUserCA.PublicKey(), files.userCA.PublicKey())},
		{"upstream CA", bc.UpstreamCA != nil && same(bc.UpstreamCA.PublicKey(), files.upstreamCA.PublicKey())},
		{"recording dir default", bc.RecordingDir == filepath.Join(cfg.DataDir, "recordings")},
		{"recording key", bc.RecordingKey != nil && bc.RecordingKey.ID() == recordingKeyID(t, filepath.Join(dir, "recording.key"))},
		{"record input", bc.RecordInput},
		{"durations", bc.IdleTimeout == 30*time.Minute && bc.KeepaliveInterval == 15*time.Second && bc.HandshakeTimeout == 10*time.Second},
		{"max auth tries", bc.MaxAuthTries == 2},
		{"env allowlist", strings.Join(bc.EnvAllowlist, ",") == "LANG,LC_*"},
		{"instance", bc.Instance == cfg.Instance},
		{"targets", len(bc.Targets) == 2 && bc.Targets[0].Addr == "10.0.0.5:22" && bc.Targets[0].Labels["tier"] == "db"},
		{"host key from file", strings.HasPrefix(bc.Targets[0].HostKey, "ssh-ed25519 ") && bc.Targets[0].HostCA == ""},
		{"host CA inline", bc.Targets[1].HostCA != "" && bc.Targets[1].HostKey == ""},
		{"approval login on by default", bc.ApprovalURL == "https://access.example.com"},
		{"gateway: public address from access host and listen port", cfg.Gateway.SSHAddr == "access.example.com:2022"},
		{"gateway: certificates not bound to the login IP by default", !cfg.Gateway.SSHCertBindSourceIP},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: %+v", c.name, bc)
		}
	}
	// Policy targets: policy.targets first (with the bastion target's
	// labels and its own allowed_cidrs), then the other bastion targets.
	pt := cfg.Compiled.Targets()
	if len(pt) != 2 || pt[0].Name != "db-1" || pt[0].Labels["tier"] != "db" || len(pt[0].AllowedCIDRs) != 1 || pt[1].Name != "web-1" || pt[1].Labels["env"] != "staging" {
		t.Fatalf("policy targets %+v", pt)
	}
	sub := authz.Subject{UserID: "u", Roles: []string{"dba"}, MFA: true, AuthTime: time.Now()}
	for _, tc := range []struct {
		target, login, ip string
		allow             bool
	}{
		{"db-1", "postgres", "10.1.2.3", true},
		{"db-1", "root", "10.1.2.3", false},
		{"db-1", "postgres", "192.0.2.1", false}, // outside the target's allowed_cidrs
		{"web-1", "postgres", "10.1.2.3", false}, // labels do not match
	} {
		d := cfg.Compiled.Evaluate(&authz.Request{Kind: authz.KindSSH, Subject: sub, Target: tc.target, Login: tc.login, SourceIP: netip.MustParseAddr(tc.ip)}, time.Now())
		if d.Allow != tc.allow {
			t.Errorf("%s@%s from %s: %+v, want allow=%v", tc.login, tc.target, tc.ip, d, tc.allow)
		}
	}
}

func TestBastionAbsent(t *testing.T) {
	cfg, _, err := Parse("x.yaml", []byte(minimalYAML), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bastion != nil || cfg.SSHUserCA != nil {
		t.Fatalf("bastion built without a section: %+v", cfg.Bastion)
	}
}

func TestBastionKeyFiles(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr string
	}{
		{"world-readable host key", func(t *testing.T, dir string) {
			os.Chmod(filepath.Join(dir, "host_key"), 0o644)
		}, "bastion.host_key_files[0]: secret file"},
		{"host key is a public key", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "host_key"), []byte("ssh-ed25519 AAAA x\n"), 0o600)
		}, "bastion.host_key_files[0]: " + tmpDir + "host_key: not an SSH private key"},
		{"missing user CA", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "user_ca"))
		}, "bastion.user_ca_key_file: file"},
		{"same key for both CAs", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "user_ca"))
			os.WriteFile(filepath.Join(dir, "upstream_ca"), b, 0o600)
		}, "bastion.upstream_ca_key_file: the upstream CA must be a different key"},
		{"target host key file holds two keys", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "db-1.pub"))
			os.WriteFile(filepath.Join(dir, "db-1.pub"), append(b, b...), 0o644)
		}, "bastion.targets[0].host_key_file: more than one key"},
		{"target host key file holds a private key", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "host_key"))
			os.WriteFile(filepath.Join(dir, "db-1.pub"), b, 0o644)
		}, "bastion.targets[0].host_key_file: not an authorized_keys line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			files := writeBastionFiles(t, d)
			tc.prepare(t, d)
			data := minimalYAML + strings.Replace(bastionYAML, "%s", keys.AuthorizedKey(files.targetKey.PublicKey()), 1)
			_, _, err := Parse(filepath.Join(d, "p.yaml"), []byte(data), testOptions(t))
			want := strings.ReplaceAll(tc.wantErr, tmpDir, d+string(filepath.Separator))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err %v\nwant %q", err, want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatal("error echoes key material")
			}
		})
	}
}

// tmpDir stands for the test's directory in expected messages.
const tmpDir = "<DIR>/"

func TestBastionFakeSecrets(t *testing.T) {
	data := minimalYAML + strings.Replace(bastionYAML, "%s", fakePublicKey(), 1)
	opts := Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }}
	cfg, _, err := Parse("/nonexistent/p.yaml", []byte(data), opts)
	if err != nil {
		t.Fatalf("FakeSecrets still reads key files: %v", err)
	}
	if cfg.Bastion == nil || len(cfg.Bastion.HostKeys) != 1 || cfg.Bastion.UpstreamCA == nil || cfg.SSHUserCA == nil || cfg.Bastion.Targets[0].HostKey == "" {
		t.Fatalf("stand-ins not filled in: %+v", cfg.Bastion)
	}
}

func TestBastionApprovalAndAddress(t *testing.T) {
	dir := t.TempDir()
	files := writeBastionFiles(t, dir)
	data := minimalYAML + strings.Replace(bastionYAML, "%s", keys.AuthorizedKey(files.targetKey.PublicKey()), 1) +
		"  approval_login: false\n  approval_timeout: 2m\n  public_addr: ssh.example.com:22\n  cert_bind_source_ip: true\n"
	cfg, _, err := Parse(filepath.Join(dir, "p.yaml"), []byte(data), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bastion.ApprovalURL != "" || cfg.Bastion.ApprovalTimeout != 2*time.Minute || cfg.Gateway.SSHAddr != "ssh.example.com:22" || !cfg.Gateway.SSHCertBindSourceIP {
		t.Fatalf("bastion %+v, gateway SSHAddr %q bind %v", cfg.Bastion, cfg.Gateway.SSHAddr, cfg.Gateway.SSHCertBindSourceIP)
	}
}

// recordingKeyID is the key ID of a key file.
func recordingKeyID(t *testing.T, path string) recording.KeyID {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := keys.ParseSymmetric(b)
	if err != nil {
		t.Fatal(err)
	}
	k, err := recording.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}
