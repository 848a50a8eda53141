package e2e

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/e2e/harness"
)

// sshPolicy lets engineers use the app, and members of sshops log in as
// root on db-1 and rogue (whose configured host key is not the one its
// sshd presents), copy files, and forward to the test's echo server and to
// port 80 anywhere (169.254.169.254 stays denied regardless). web-1 is a
// configured target nobody may reach; office may reach db-1 from
// 10.0.0.0/8 only (the tests connect from 127.0.0.1).
const sshPolicy = `roles:
  - name: engineer
    groups: [engineers]
    allow:
      - apps: [app]
  - name: sshops
    groups: [sshops]
    file_transfer: true
    port_forwards: ["127.0.0.1:%d", "*:80"]
    allow:
      - targets: [db-1, rogue]
        logins: [root]
  - name: office
    groups: [office]
    allowed_cidrs: [10.0.0.0/8]
    allow:
      - targets: [db-1]
        logins: [root]
`

// sshSiteRisk raises the lockdown thresholds out of the way of the
// bastion tests.
const sshSiteRisk = `user:
  ssh_auth_failures: {count: 1000, window: 15m}
  approval_failures: {count: 1000, window: 15m}
  totp_failures: {count: 1000, window: 15m}
  denied_decisions: {count: 1000, window: 10m}
source_ip: {count: 10000, window: 5m}
source_network: {count: 10000, window: 5m}
`

// newRecordingKey writes a recording key file (hex, as openssl rand -hex
// 32 makes it) into dir.
func newRecordingKey(t *testing.T, dir string) (string, *recording.Key) {
	t.Helper()
	h := harness.RandomString(32)
	raw, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	k, err := recording.NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "recording.key")
	if err := os.WriteFile(p, []byte(h+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, k
}

// sshSite is a `portcullis serve` with a bastion in front of a private
// stock sshd that trusts the deployment's upstream CA.
type sshSite struct {
	*site
	p        *harness.Portcullis
	target   *harness.SSHD
	dir      string // keys, HOME of the clients, files to copy
	recDir   string
	recKey   *recording.Key // the recording key, also in file recKeyF
	recKeyF  string
	caSigner ssh.Signer     // the deployment's user CA key (its key file)
	userCA   *session.SSHCA // the same CA, for certificates minted here
	hostKey  ssh.PublicKey  // the bastion's
	addr     string         // the bastion's listener
	cfg      *harness.SSHConfig
	echoAddr string        // a TCP echo server, the allowed forward
	totp     *harness.TOTP // alice's authenticator, once she enrolled
}

// newSSHSite starts the IdP (users alice in engineers+sshops, bob in
// engineers), the target sshd, an echo server and one serve instance
// with a bastion section.
func newSSHSite(t *testing.T) *sshSite {
	t.Helper()
	s := &sshSite{site: newSite(t, 1, map[string][]string{"alice": {"engineers", "sshops"}, "bob": {"engineers"}})}
	s.dir = t.TempDir()
	s.recDir = filepath.Join(s.dir, "recordings")
	keys := filepath.Join(s.dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	userCA := harness.NewSSHKey(t, keys, "user_ca")
	upCA := harness.NewSSHKey(t, keys, "upstream_ca")
	host := harness.NewSSHKey(t, keys, "bastion_host")
	wrong := harness.NewSSHKey(t, keys, "not_the_target")
	s.recKeyF, s.recKey = newRecordingKey(t, keys)
	s.caSigner, s.hostKey = userCA.Signer, host.Public()
	var err error
	if s.userCA, err = session.NewSSHCA(userCA.Signer, session.SSHCAOptions{}); err != nil {
		t.Fatal(err)
	}
	s.target = harness.StartSSHD(t, harness.SSHDOptions{TrustedUserCAKeys: []ssh.PublicKey{upCA.Public()}})
	s.echoAddr = startEcho(t)
	_, echoPort, _ := net.SplitHostPort(s.echoAddr)

	s.addr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	spec := s.spec(0, "")
	spec.Policy = fmt.Sprintf(sshPolicy, mustAtoi(t, echoPort))
	// These tests attack the bastion's checks one by one, from 127.0.0.1
	// with alice's refused certificates: at the default thresholds the
	// risk engine would lock alice and block the address half-way through
	// (risk_test.go tests that). Here the checks themselves are tested.
	spec.Risk = sshSiteRisk
	targetKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.target.HostKey)))
	cfg := spec.YAML() + fmt.Sprintf(`bastion:
  listen: %s
  host_key_files: [%s]
  user_ca_key_file: %s
  upstream_ca_key_file: %s
  recording_key_file: %s
  recording_dir: %s
  targets:
    - {name: db-1, addr: "%s", labels: {tier: db}, host_key: "%s"}
    - {name: web-1, addr: "%s", labels: {tier: web}, host_key: "%s"}
    - {name: rogue, addr: "%s", host_key: "%s"}
`, s.addr, host.Path, userCA.Path, upCA.Path, s.recKeyF, s.recDir,
		s.target.Addr, targetKey, s.target.Addr, targetKey,
		s.target.Addr, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(wrong.Public()))))
	s.p = harness.StartPortcullis(t, cfg)
	harness.WaitSSH(t, s.addr, 30*time.Second)
	s.cfg = harness.WriteSSHConfig(t, s.dir, []string{harness.KnownHostsLine(s.addr, s.hostKey)}, nil,
		harness.SSHHost{Alias: "bastion", Addr: s.addr})
	return s
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// startEcho runs a line echo server on 127.0.0.1 for the test's lifetime.
func startEcho(t *testing.T) string {
	return serveTCP(t, func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "echo:%s\n", sc.Text())
		}
	})
}

// serveTCP accepts connections on 127.0.0.1 for the test's lifetime and
// hands each to handle (which need not close it).
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// mint issues a certificate from ca for a new key.
func (s *sshSite) mint(t *testing.T, ca *session.SSHCA, mod func(*session.CertRequest)) *harness.SSHKey {
	k, _ := s.mintCert(t, ca, mod)
	return k
}

// mintCert is mint, also returning the certificate.
func (s *sshSite) mintCert(t *testing.T, ca *session.SSHCA, mod func(*session.CertRequest)) (*harness.SSHKey, *ssh.Certificate) {
	t.Helper()
	k := harness.NewSSHKey(t, t.TempDir(), "id_ed25519")
	req := session.CertRequest{
		PublicKey: k.Public(), UserID: s.userID("alice"), Principals: []string{"root"}, Roles: []string{"sshops"},
		TTL: time.Hour, PermitPTY: true, PermitPortForwarding: true,
	}
	if mod != nil {
		mod(&req)
	}
	cert, err := ca.Issue(req)
	if err != nil {
		t.Fatalf("issue certificate: %v", err)
	}
	k.SaveCert(t, cert)
	return k, cert
}

// run runs an OpenSSH program as key against the bastion ("bastion" is
// the alias of its address in the client configuration).
func (s *sshSite) run(t *testing.T, key *harness.SSHKey, stdin, prog string, args ...string) harness.SSHResult {
	t.Helper()
	return s.cfg.Run(t, s.dir, []string{"LANG=C.UTF-8", "PORTCULLIS_SECRET=s3cr3t-env"}, stdin, prog, append([]string{"-i", key.Path}, args...)...)
}

// ssh runs `ssh -i KEY dest@bastion args…` (dest is "login@target").
func (s *sshSite) ssh(t *testing.T, key *harness.SSHKey, dest string, args ...string) harness.SSHResult {
	t.Helper()
	return s.run(t, key, "", "ssh", append([]string{dest + "@bastion"}, args...)...)
}

// audit waits for an event of the serve instance matching q.
func (s *sshSite) audit(t *testing.T, q harness.AuditQuery) audit.Event {
	t.Helper()
	return harness.WaitAudit(t, s.p.AuditDir, q)
}

// sessionSince returns the ID of the one relayed session started since
// since, once it has ended (its recording is then complete).
func (s *sshSite) sessionSince(t *testing.T, since time.Time) string {
	t.Helper()
	start := s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHSessionStart, Since: since})
	if n := len(harness.FindAudit(t, s.p.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionStart, Since: since})); n != 1 {
		t.Fatalf("%d sessions started since %v, want 1", n, since)
	}
	end := s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHSessionEnd, SessionID: start.SessionID})
	if end.UserID != s.userID("alice") {
		t.Fatalf("session end names user %q", end.UserID)
	}
	return start.SessionID
}

// recording reads a finished session's recording.
func (s *sshSite) recording(t *testing.T, id string) *recording.Summary {
	t.Helper()
	f, err := os.Open(filepath.Join(s.recDir, id+recording.FileExt))
	if err != nil {
		t.Fatalf("recording of %s: %v", id, err)
	}
	defer f.Close()
	sum, err := recording.Summarize(f, s.recKey)
	if err != nil {
		t.Fatalf("recording of %s: %v", id, err)
	}
	if sum.Truncated || sum.Trailer == nil {
		t.Fatalf("recording of %s is truncated", id)
	}
	if sum.Meta.UserID != s.userID("alice") || sum.Meta.Login != "root" || sum.Meta.Target != "db-1" || sum.Meta.SessionID != id {
		t.Fatalf("recording metadata %+v", sum.Meta)
	}
	return sum
}

// asciicast is a recording's asciicast v2 export, parsed: the header and
// the output the user saw (every "o" event in order).
type asciicast struct {
	Width, Height int
	Output        string
}

// exportAsciicast exports session id with `portcullis recording export
// --format asciicast` and parses it as a player would: a JSON header line,
// then [time, code, data] lines in time order.
func (s *sshSite) exportAsciicast(t *testing.T, id string) asciicast {
	t.Helper()
	r := harness.RunPortcullis(t, "recording", "export", "--key", s.recKeyF, "--format", "asciicast", filepath.Join(s.recDir, id+recording.FileExt))
	if r.Code != 0 {
		t.Fatalf("recording export: %+v", r)
	}
	return parseAsciicast(t, []byte(r.Stdout))
}

func parseAsciicast(t *testing.T, b []byte) asciicast {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var hdr struct {
		Version       int `json:"version"`
		Width, Height int
	}
	if err := json.Unmarshal([]byte(lines[0]), &hdr); err != nil || hdr.Version != 2 {
		t.Fatalf("asciicast header %q: %v", lines[0], err)
	}
	cast := asciicast{Width: hdr.Width, Height: hdr.Height}
	last := 0.0
	var out strings.Builder
	for i, l := range lines[1:] {
		var ev []any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || len(ev) != 3 {
			t.Fatalf("asciicast line %d %q: %v", i+2, l, err)
		}
		ts, ok1 := ev[0].(float64)
		code, ok2 := ev[1].(string)
		data, ok3 := ev[2].(string)
		if !ok1 || !ok2 || !ok3 || ts < last {
			t.Fatalf("asciicast line %d %q is not [time, code, data] in time order", i+2, l)
		}
		last = ts
		if code == "o" {
			out.WriteString(data)
		}
	}
	cast.Output = out.String()
	return cast
}

// events returns the recording's events of type typ.
func events(sum *recording.Summary, typ string) []recording.Event {
	var out []recording.Event
	for _, e := range sum.Events {
		if e.Type == typ {
			out = append(out, e.Event)
		}
	}
	return out
}
