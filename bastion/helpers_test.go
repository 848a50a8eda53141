package bastion

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion/recording"
)

// testRecordingKey encrypts the tests' recordings.
var testRecordingKey = func() *recording.Key {
	k, err := recording.NewKey([]byte("bastion-test-recording-key-32-b!"))
	if err != nil {
		panic(err)
	}
	return k
}()

// testClock is the bastion's injected clock: real time plus an offset the
// test moves forward (expiry is tested by moving the clock, never by
// sleeping).
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

func newSigner(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

func writeFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writePrivateKey writes priv in OpenSSH format (encrypted with
// passphrase when set).
func writePrivateKey(t testing.TB, path string, priv ed25519.PrivateKey, passphrase string) string {
	t.Helper()
	var blk *pem.Block
	var err error
	if passphrase == "" {
		blk, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, path, pem.EncodeToMemory(blk))
}

// sshd is a private OpenSSH server on 127.0.0.1 trusting the upstream CA.
type sshd struct {
	addr    string
	hostKey ssh.PublicKey
	dir     string
}

// startSSHD starts /usr/sbin/sshd with its own host key and config.
func startSSHD(t testing.TB, upstreamCA ssh.PublicKey, extra ...string) *sshd {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatalf("OpenSSH server not installed: %v", err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hostSigner, hostPriv := newSigner(t)
	hostKeyPath := writePrivateKey(t, filepath.Join(dir, "host_ed25519"), hostPriv, "")
	caPath := writeFile(t, filepath.Join(dir, "upstream_ca.pub"), ssh.MarshalAuthorizedKey(upstreamCA))
	port := freePort(t)
	homeDir := filepath.Join(dir, "home")
	if err := os.MkdirAll(homeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := []string{
		"Port " + port,
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKeyPath,
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin yes",
		"TrustedUserCAKeys " + caPath,
		"AuthorizedKeysFile none",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AllowTcpForwarding yes",
		"AllowAgentForwarding yes",
		"X11Forwarding no",
		"PrintMotd no",
		"PrintLastLog no",
		"AcceptEnv LANG LC_* TERM PORTCULLIS_*",
		// Root's own shell start-up files on these machines can block for a
		// minute (pyenv waits on a stale lock): give the target's sessions a
		// clean HOME so tests exercise the bastion, not ~/.bashrc. sshd still
		// starts sessions in the passwd home directory.
		"SetEnv SHLVL=1 HOME=" + homeDir,
		"Subsystem sftp internal-sftp",
		"LogLevel ERROR",
	}
	conf = append(conf, extra...)
	confPath := writeFile(t, filepath.Join(dir, "sshd_config"), []byte(strings.Join(conf, "\n")+"\n"))
	var stderr bytes.Buffer
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", confPath)
	cmd.Stderr = &syncBuffer{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", port)
	waitSSH(t, addr, func() string { return stderr.String() })
	return &sshd{addr: addr, hostKey: hostSigner.PublicKey(), dir: dir}
}

type syncBuffer struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// waitSSH waits until addr answers with an SSH banner.
func waitSSH(t testing.TB, addr string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4)
			_, err = c.Read(buf)
			c.Close()
			if err == nil && string(buf) == "SSH-" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sshd on %s did not come up: %s", addr, logs())
}

// env is a bastion with its collaborators, in front of one real sshd.
type env struct {
	t        testing.TB
	b        *Bastion
	addr     string
	clock    *testClock
	audit    *audit.Memory
	st       *store.Embedded
	ca       *session.SSHCA
	caSigner ssh.Signer
	rev      *session.CertRevocations
	upCA     ssh.Signer
	hostKey  ssh.PublicKey // the bastion's
	target   *sshd
	recDir   string
	dir      string
	policy   *atomic.Pointer[authz.Policy]
	resolver *fakeResolver
	risk     *risk.Engine
	spy      *spyRisk // the bastion's view of risk: every call, then the engine
	health   *auditHealthFake
	stop     context.CancelFunc
	done     chan error
}

// envOptions adjust the environment before the bastion starts.
type envOptions struct {
	policy   *authz.PolicyConfig
	config   func(*Config)
	deps     func(*Deps)
	noTarget bool
	// risk is the risk configuration (default: testRiskConfig).
	risk *risk.Config
}

// testRiskConfig is the risk configuration of tests that are not about
// risk: every test connects from 127.0.0.1, so the source thresholds are
// out of reach.
func testRiskConfig() risk.Config {
	return risk.Config{
		SourceIP:      risk.Threshold{Count: 100000, Window: 5 * time.Minute},
		SourceNetwork: risk.Threshold{Count: 100000, Window: 5 * time.Minute},
	}
}

// certRevoker revokes a locked user's certificates, as the server wires
// the engine.
type certRevoker struct{ r *session.CertRevocations }

func (c certRevoker) RevokeUser(ctx context.Context, userID, reason string) error {
	return c.r.RevokeKeyID(ctx, userID, reason)
}

// testRiskEngine is a risk engine over a store of its own (for tests of
// New).
func testRiskEngine(t testing.TB) *risk.Engine {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "risk.db"), store.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e, err := risk.New(testRiskConfig(), st, risk.Options{Audit: &audit.Memory{}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// spyRisk is the real engine, noting the bastion's reports.
type spyRisk struct {
	*risk.Engine
	mu         sync.Mutex
	calls      []riskCall
	usageBytes atomic.Int64
	usageCalls atomic.Int64
}

// riskCall is one report: op "fail" (what = the signal), "canary" (what =
// the resource) or "record".
type riskCall struct{ op, what, user, ip string }

func (s *spyRisk) note(op, what, user string, ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, riskCall{op, what, user, addrString(ip)})
}

// The call is noted once the engine has answered: a test that saw it can
// look at the engine's state.
func (s *spyRisk) Fail(ctx context.Context, sig risk.Signal, userID string, ip netip.Addr) (risk.Verdict, error) {
	defer s.note("fail", string(sig), userID, ip)
	return s.Engine.Fail(ctx, sig, userID, ip)
}

func (s *spyRisk) Canary(ctx context.Context, what, userID string, ip netip.Addr) (risk.Verdict, error) {
	defer s.note("canary", what, userID, ip)
	return s.Engine.Canary(ctx, what, userID, ip)
}

func (s *spyRisk) Record(ctx context.Context, userID string, ip netip.Addr) error {
	defer s.note("record", "", userID, ip)
	return s.Engine.Record(ctx, userID, ip)
}

func (s *spyRisk) Usage(userID string, requests, bytes int64) {
	s.usageCalls.Add(1)
	s.usageBytes.Add(bytes)
	s.Engine.Usage(userID, requests, bytes)
}

// reported returns the calls noted so far.
func (s *spyRisk) reported() []riskCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// count is how many noted calls equal c.
func (s *spyRisk) count(c riskCall) int {
	n := 0
	for _, got := range s.reported() {
		if got == c {
			n++
		}
	}
	return n
}

func (s *spyRisk) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
	s.usageBytes.Store(0)
	s.usageCalls.Store(0)
}

// newRisk builds a real risk engine over st on clock, revoking
// certificates in rev on a lock.
func newRisk(t testing.TB, cfg risk.Config, st risk.Store, clock func() time.Time, rev *session.CertRevocations, em audit.Emitter) *risk.Engine {
	t.Helper()
	e, err := risk.New(cfg, st, risk.Options{
		Instance: "test", Now: clock, Audit: em, Revokers: []risk.Revoker{certRevoker{rev}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testPolicy grants alice (role eng) root on db-1 with file transfer and
// port forwards to 127.0.0.1 and *.fwd.test; bob (role readonly) root on
// db-1 and nothing else; carol (role web) only targets labelled
// tier=web; gina (role dbadmin) targets labelled tier=db, including
// ghost, which the bastion has no address for; hank (role agent) root
// on db-1 with agent forwarding; erin (role mfa-each-time) root on db-1
// with a TOTP code per connection; dave (role office) root on db-1 from 10.0.0.0/8 only.
func testPolicy() authz.PolicyConfig {
	return authz.PolicyConfig{
		Targets: []authz.TargetConfig{
			{Name: "db-1", Labels: map[string]string{"tier": "db"}},
			{Name: "web-1", Labels: map[string]string{"tier": "web"}},
			{Name: "ghost", Labels: map[string]string{"tier": "db"}},
		},
		Roles: []authz.RoleConfig{
			{
				Name: "eng", Users: []string{"alice"}, FileTransfer: true,
				PortForwards: []string{"127.0.0.1:*", "*.fwd.test:*", "*:80"},
				Allow:        []authz.Rule{{Targets: []string{"db-1"}, Logins: []string{"root"}}},
			},
			{
				Name: "readonly", Users: []string{"bob"},
				Allow: []authz.Rule{{Targets: []string{"db-1"}, Logins: []string{"root"}}},
			},
			{
				Name: "web", Users: []string{"carol"},
				Allow: []authz.Rule{{TargetLabels: map[string]string{"tier": "web"}, Logins: []string{"root"}}},
			},
			{
				Name: "office", Users: []string{"dave"}, AllowedCIDRs: []string{"10.0.0.0/8"},
				Allow: []authz.Rule{{Targets: []string{"db-1"}, Logins: []string{"root"}}},
			},
			{
				Name: "dbadmin", Users: []string{"gina"},
				Allow: []authz.Rule{{TargetLabels: map[string]string{"tier": "db"}, Logins: []string{"root"}}},
			},
			{
				Name: "agent", Users: []string{"hank"}, AgentForward: true,
				Allow: []authz.Rule{{Targets: []string{"db-1"}, Logins: []string{"root"}}},
			},
			{
				Name: "mfa-each-time", Users: []string{"erin"}, PerSessionMFA: true,
				Allow: []authz.Rule{{Targets: []string{"db-1"}, Logins: []string{"root"}}},
			},
		},
	}
}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, clock: &testClock{}, audit: &audit.Memory{}, dir: t.TempDir(), resolver: &fakeResolver{}}
	e.recDir = filepath.Join(e.dir, "recordings")
	var err error
	e.st, err = store.OpenEmbedded(filepath.Join(e.dir, "state.db"), store.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.caSigner, _ = newSigner(t)
	e.ca, err = session.NewSSHCA(e.caSigner, session.SSHCAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.rev, err = session.NewCertRevocations(e.st, session.SSHCAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.upCA, _ = newSigner(t)
	hostSigner, _ := newSigner(t)
	e.hostKey = hostSigner.PublicKey()
	pc := testPolicy()
	if opts.policy != nil {
		pc = *opts.policy
	}
	pol, err := authz.Compile(pc)
	if err != nil {
		t.Fatal(err)
	}
	e.policy = &atomic.Pointer[authz.Policy]{}
	e.policy.Store(pol)
	cfg := Config{
		HostKeys:     []ssh.Signer{hostSigner},
		UserCAKeys:   []ssh.PublicKey{e.caSigner.PublicKey()},
		UpstreamCA:   e.upCA,
		RecordingDir: e.recDir,
		RecordingKey: testRecordingKey,
		Instance:     "test-1",
		IdleTimeout:  time.Hour,
	}
	if !opts.noTarget {
		e.target = startSSHD(t, e.upCA.PublicKey())
		cfg.Targets = []Target{
			{Name: "db-1", Addr: e.target.addr, Labels: map[string]string{"tier": "db"}, HostKey: string(ssh.MarshalAuthorizedKey(e.target.hostKey))},
			{Name: "web-1", Addr: e.target.addr, Labels: map[string]string{"tier": "web"}, HostKey: string(ssh.MarshalAuthorizedKey(e.target.hostKey))},
		}
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	deps := Deps{
		Policy: e.policy, Store: e.st, Audit: e.audit, Revocations: e.rev,
		Now: e.clock.Now, Resolver: e.resolver,
		Recording: recording.Options{FlushInterval: 50 * time.Millisecond},
	}
	if opts.deps != nil {
		opts.deps(&deps)
	}
	if deps.AuditHealth == nil {
		e.health = &auditHealthFake{}
		deps.AuditHealth = e.health
	}
	if deps.Risk == nil {
		// The engine shares the bastion's store (as in the server), so
		// its lock events reach the bastion's feed.
		rs, ok := deps.Store.(risk.Store)
		if !ok {
			rs = e.st
		}
		rc := testRiskConfig()
		if opts.risk != nil {
			rc = *opts.risk
		}
		e.risk = newRisk(t, rc, rs, e.clock.Now, e.rev, e.audit)
		e.spy = &spyRisk{Engine: e.risk}
		deps.Risk = e.spy
	}
	e.b, err = New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	e.b.tick = 20 * time.Millisecond
	e.b.denyLinger = 2 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	e.done = make(chan error, 1)
	go func() { e.done <- e.b.Serve(ctx, ln) }()
	t.Cleanup(e.shutdown)
	return e
}

// use makes e's helpers report to subtest t until the returned func runs.
func (e *env) use(t testing.TB) func() {
	old := e.t
	e.t = t
	return func() { e.t = old }
}

func (e *env) shutdown() {
	if e.stop == nil {
		return
	}
	e.stop()
	e.stop = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		e.t.Error("Serve did not return after shutdown")
	}
}

// user is a client identity: key pair and certificate files.
type user struct {
	signer  ssh.Signer
	priv    ed25519.PrivateKey
	cert    *ssh.Certificate
	keyPath string
}

// issue gets a certificate from the real CA.
func (e *env) issue(userID string, roles, principals []string, mod func(*session.CertRequest)) *user {
	e.t.Helper()
	signer, priv := newSigner(e.t)
	req := session.CertRequest{
		PublicKey: signer.PublicKey(), UserID: userID, Principals: principals, Roles: roles,
		TTL: time.Hour, PermitPTY: true, PermitPortForwarding: true,
	}
	if mod != nil {
		mod(&req)
	}
	cert, err := e.ca.Issue(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.saveUser(signer, priv, cert, "")
}

// signRaw signs a certificate exactly as given (for malformed ones the
// real CA refuses to make).
func (e *env) signRaw(by ssh.Signer, cert *ssh.Certificate) *user {
	e.t.Helper()
	signer, priv := newSigner(e.t)
	cert.Key = signer.PublicKey()
	if err := cert.SignCert(rand.Reader, by); err != nil {
		e.t.Fatal(err)
	}
	return e.saveUser(signer, priv, cert, "")
}

func (e *env) saveUser(signer ssh.Signer, priv ed25519.PrivateKey, cert *ssh.Certificate, passphrase string) *user {
	e.t.Helper()
	dir, err := os.MkdirTemp(e.dir, "user")
	if err != nil {
		e.t.Fatal(err)
	}
	u := &user{signer: signer, priv: priv, cert: cert, keyPath: filepath.Join(dir, "id_ed25519")}
	writePrivateKey(e.t, u.keyPath, priv, passphrase)
	writeFile(e.t, u.keyPath+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()))
	if cert != nil {
		writeFile(e.t, u.keyPath+"-cert.pub", ssh.MarshalAuthorizedKey(cert))
	}
	return u
}

// alice is allowed on db-1 as root with everything the tests use.
func (e *env) alice() *user { return e.issue("alice", []string{"eng"}, []string{"root"}, nil) }

// knownHosts writes the bastion's host key for OpenSSH.
func (e *env) knownHosts() string {
	host, port, _ := net.SplitHostPort(e.addr)
	line := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(e.hostKey))
	return writeFile(e.t, filepath.Join(e.dir, "known_hosts"), []byte(line))
}

// sshArgs are the OpenSSH client options for reaching the bastion with
// the given identities (tried in order).
func (e *env) sshArgs(users ...*user) []string {
	_, port, _ := net.SplitHostPort(e.addr)
	args := []string{
		"-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + e.knownHosts(),
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR",
		"-P", port,
	}
	for _, u := range users {
		args = append(args, "-o", "IdentityFile="+u.keyPath)
		if u.cert != nil {
			args = append(args, "-o", "CertificateFile="+u.keyPath+"-cert.pub")
		}
	}
	return args
}

// result is the outcome of one OpenSSH client run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs an OpenSSH program (ssh, scp, sftp) with the bastion options;
// ssh takes "-p" where scp/sftp take "-P".
func (e *env) run(stdin string, prog string, users []*user, args ...string) result {
	e.t.Helper()
	base := e.sshArgs(users...)
	if prog == "ssh" {
		for i, a := range base {
			if a == "-P" {
				base[i] = "-p"
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, append(base, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + e.dir, "LANG=C.UTF-8", "TERM=xterm", "PORTCULLIS_SECRET=s3cr3t"}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", prog, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ssh runs the ssh client as u for "login@target" (or just a user name).
func (e *env) ssh(u *user, dest string, args ...string) result {
	e.t.Helper()
	host, _, _ := net.SplitHostPort(e.addr)
	return e.run("", "ssh", []*user{u}, append([]string{dest + "@" + host}, args...)...)
}

// waitAudit waits until an audit event matching typ and reason exists.
func (e *env) waitAudit(typ, reason string) audit.Event {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if evs := e.audit.Find(typ, reason); len(evs) > 0 {
			return evs[len(evs)-1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("no audit event %s/%s; have %+v", typ, reason, e.audit.Events())
	return audit.Event{}
}

// waitSessionEnd waits for the session-end audit event of a session.
func (e *env) waitSessionEnd(sessionID string) audit.Event {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range e.audit.Find(TypeSSHSessionEnd, "") {
			if ev.SessionID == sessionID {
				return ev
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("session %s did not end; events %+v", sessionID, e.audit.Events())
	return audit.Event{}
}

// lastSession returns the newest session-start event.
func (e *env) lastSession() audit.Event {
	e.t.Helper()
	evs := e.audit.Find(TypeSSHSessionStart, "")
	if len(evs) == 0 {
		e.t.Fatalf("no session started; events %+v", e.audit.Events())
	}
	return evs[len(evs)-1]
}

// summary reads a session's recording.
func (e *env) summary(sessionID string) *recording.Summary {
	e.t.Helper()
	f, err := os.Open(filepath.Join(e.recDir, sessionID+recording.FileExt))
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	s, err := recording.Summarize(f, testRecordingKey)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// fakeResolver maps names for port-forward tests.
type fakeResolver struct {
	mu    sync.Mutex
	names map[string][]string
}

func (r *fakeResolver) set(name string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names == nil {
		r.names = map[string][]string{}
	}
	r.names[name] = addrs
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.Addr
	for _, a := range r.names[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}
