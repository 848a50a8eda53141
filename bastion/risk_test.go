package bastion

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// dialed is the outcome of one x/crypto client connection.
type dialed struct {
	c      *ssh.Client
	err    error
	banner string
}

// dial connects as user with the given methods, collecting the
// authentication banners (where the bastion puts its lock messages).
func (e *env) dial(user string, auth ...ssh.AuthMethod) dialed {
	var mu sync.Mutex
	var d dialed
	var banner strings.Builder
	d.c, d.err = ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
		User: user, Auth: auth, HostKeyCallback: ssh.FixedHostKey(e.hostKey), Timeout: 10 * time.Second,
		BannerCallback: func(msg string) error {
			mu.Lock()
			defer mu.Unlock()
			banner.WriteString(msg)
			return nil
		},
	})
	mu.Lock()
	d.banner = banner.String()
	mu.Unlock()
	if d.c != nil {
		e.t.Cleanup(func() { d.c.Close() })
	}
	return d
}

// certAuth authenticates with u's certificate.
func certAuth(t testing.TB, us ...*user) ssh.AuthMethod {
	t.Helper()
	var signers []ssh.Signer
	for _, u := range us {
		if u.cert == nil {
			signers = append(signers, u.signer)
			continue
		}
		s, err := ssh.NewCertSigner(u.cert, u.signer)
		if err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	return ssh.PublicKeys(signers...)
}

// plainKey is a client key without a certificate.
func (e *env) plainKey() *user {
	s, p := newSigner(e.t)
	return e.saveUser(s, p, nil, "")
}

// lockRef is the incident reference of subject's lock ("" when none).
func (e *env) lockRef(subject string) string {
	e.t.Helper()
	l, err := e.st.GetLock(context.Background(), subject)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	} else if err != nil {
		e.t.Fatal(err)
	}
	return l.Ref
}

// unlockAll lifts every lock and block (between cases).
func (e *env) unlockAll() {
	e.t.Helper()
	ls, err := e.risk.Locks(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range ls {
		if _, err := e.risk.Unlock(context.Background(), l.Subject, "test", "tester"); err != nil && !errors.Is(err, risk.ErrNotLocked) {
			e.t.Fatal(err)
		}
	}
}

// waitReported waits until the bastion reported c n times.
func (e *env) waitReported(c riskCall, n int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.spy.count(c) < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("reported %+v %d times, want %d; reports %+v", c, e.spy.count(c), n, e.spy.reported())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitClosed waits until the bastion closed c.
func waitClosed(t testing.TB, c *ssh.Client) {
	t.Helper()
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the connection was not closed")
	}
}

// withUsers returns the test policy with extra users in role name.
func withUsers(role string, users ...string) *authz.PolicyConfig {
	pc := testPolicy()
	for i := range pc.Roles {
		if pc.Roles[i].Name == role {
			pc.Roles[i].Users = append(pc.Roles[i].Users, users...)
		}
	}
	return &pc
}

// TestRiskBlockedSource: a blocked source is refused before any callback
// runs, with the blocked message and the block's reference, and nothing
// it tries counts against anyone.
func TestRiskBlockedSource(t *testing.T) {
	rc := testRiskConfig()
	rc.User = map[risk.Signal]risk.Threshold{risk.SignalSSHAuthFailure: {Count: 1, Window: time.Minute}}
	e := newEnv(t, envOptions{risk: &rc})
	ctx := context.Background()
	if _, err := e.st.AddLock(ctx, store.Lock{Subject: "ip:127.0.0.1", Reason: risk.ReasonSourceIP, Ref: "BLK-1",
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	revoked := e.alice()
	if err := e.rev.RevokeSerial(ctx, revoked.cert.Serial, "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		auth func() ssh.AuthMethod
	}{
		{"valid certificate", func() ssh.AuthMethod { return certAuth(t, e.alice()) }},
		{"revoked certificate", func() ssh.AuthMethod { return certAuth(t, revoked) }},
		{"plain key", func() ssh.AuthMethod { return certAuth(t, e.plainKey()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			d := e.dial("root@db-1", tc.auth())
			if d.err == nil {
				t.Fatal("a blocked source authenticated")
			}
			if want := "Access from your network is temporarily blocked. Reference BLK-1."; !strings.Contains(d.banner, want) {
				t.Fatalf("banner %q, want %q", d.banner, want)
			}
			if ev := e.waitAudit(TypeSSHAuth, ReasonSourceBlocked); ev.Ref != "BLK-1" || ev.Decision != audit.Deny {
				t.Fatalf("audit %+v", ev)
			}
		})
	}
	t.Run("OpenSSH shows the message", func(t *testing.T) {
		defer e.use(t)()
		args := e.sshArgs(e.alice())
		for i, a := range args {
			if a == "LogLevel=ERROR" {
				args[i] = "LogLevel=INFO" // banners show at INFO, OpenSSH's default
			}
			if a == "-P" {
				args[i] = "-p"
			}
		}
		host, _, _ := net.SplitHostPort(e.addr)
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ssh", append(args, "root@db-1@"+host, "echo hello")...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + e.dir}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Access from your network is temporarily blocked. Reference BLK-1.") {
			t.Fatalf("%v: %s", err, out)
		}
	})
	if got := e.spy.reported(); len(got) != 0 {
		t.Fatalf("a blocked source's attempts were reported: %+v", got)
	}
	// Lifted: the revoked certificate counts again, and locks (threshold 1).
	if err := e.st.DeleteLock(ctx, "ip:127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if d := e.dial("root@db-1", certAuth(t, e.alice())); d.err != nil {
		t.Fatalf("after the block: %v", d.err)
	}
	if e.lockRef("user:alice") != "" {
		t.Fatal("alice locked by attempts made while the source was blocked")
	}
}

// TestRiskLockedUser: a locked user's certificate (a fresh valid one, or
// one the lock revoked) is refused with the locked message and the lock's
// reference; the refusal does not count as another failure.
func TestRiskLockedUser(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	old := e.alice()
	if _, err := e.risk.Lock(ctx, "alice", "incident 12", "admin@example"); err != nil {
		t.Fatal(err)
	}
	ref := e.lockRef("user:alice")
	// The lock revoked certificates issued up to now (by key ID): one
	// issued a little later is valid but for the lock.
	now := time.Now()
	fresh := e.signRaw(e.caSigner, &ssh.Certificate{
		CertType: ssh.UserCert, KeyId: "alice", Serial: 991, ValidPrincipals: []string{"root"},
		ValidAfter:  uint64(now.Add(5*time.Second - session.CertBackdate).Unix()),
		ValidBefore: uint64(now.Add(time.Hour).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{session.ExtRoles: "eng", session.ExtPermitPTY: ""}},
	})
	if err := e.rev.Check(ctx, fresh.cert); err != nil {
		t.Fatalf("the fresh certificate is not valid: %v", err)
	}
	for _, tc := range []struct {
		name string
		u    *user
	}{
		{"valid certificate", fresh},
		{"certificate revoked by the lock", old},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			e.audit.Reset()
			e.spy.reset()
			d := e.dial("root@db-1", certAuth(t, tc.u))
			if d.err == nil {
				t.Fatal("a locked user authenticated")
			}
			if want := "This account is locked. Contact your administrator with reference " + ref + "."; !strings.Contains(d.banner, want) {
				t.Fatalf("banner %q, want %q", d.banner, want)
			}
			ev := e.waitAudit(TypeSSHAuth, ReasonAccountLocked)
			if ev.UserID != "alice" || ev.Ref != ref || ev.Decision != audit.Deny {
				t.Fatalf("audit %+v", ev)
			}
			if got := e.spy.reported(); len(got) != 0 {
				t.Fatalf("reported %+v", got)
			}
		})
	}
}

// TestRiskCertificateFailures: certificates of our CA that are refused
// count against their key ID once the client signed with them, and lock
// at the configured threshold; the locking attempt is told so.
func TestRiskCertificateFailures(t *testing.T) {
	const threshold = 4
	rc := testRiskConfig()
	rc.User = map[risk.Signal]risk.Threshold{risk.SignalSSHAuthFailure: {Count: threshold, Window: 15 * time.Minute}}
	e := newEnv(t, envOptions{risk: &rc})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cert func(userID string) *user
	}{
		{"revoked", func(id string) *user {
			u := e.issue(id, []string{"eng"}, []string{"root"}, nil)
			if err := e.rev.RevokeSerial(ctx, u.cert.Serial, "test"); err != nil {
				t.Fatal(err)
			}
			return u
		}},
		{"expired", func(id string) *user {
			return e.signRaw(e.caSigner, &ssh.Certificate{
				CertType: ssh.UserCert, KeyId: id, Serial: 5, ValidPrincipals: []string{"root"},
				ValidAfter: uint64(time.Now().Add(-2 * time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(-time.Hour).Unix()),
			})
		}},
		{"wrong principal", func(id string) *user { return e.issue(id, []string{"eng"}, []string{"deploy"}, nil) }},
		{"source address elsewhere", func(id string) *user {
			return e.issue(id, []string{"eng"}, []string{"root"}, func(r *session.CertRequest) { r.SourceAddress = "10.9.9.9/32" })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			id := "u-" + strings.ReplaceAll(tc.name, " ", "-")
			u := tc.cert(id)
			for i := 1; i <= threshold; i++ {
				d := e.dial("root@db-1", certAuth(t, u))
				if d.err == nil {
					t.Fatalf("attempt %d authenticated", i)
				}
				e.waitReported(riskCall{"fail", string(risk.SignalSSHAuthFailure), id, "127.0.0.1"}, i)
				locked := strings.Contains(d.banner, "This account is locked.")
				if locked != (i == threshold) {
					t.Fatalf("attempt %d: banner %q", i, d.banner)
				}
			}
			l, err := e.st.GetLock(ctx, "user:"+id)
			if err != nil || l.Reason != risk.LockReason(risk.SignalSSHAuthFailure) {
				t.Fatalf("lock %+v %v", l, err)
			}
			// One count per connection: never an anonymous one on top.
			if n := e.spy.count(riskCall{"fail", string(risk.SignalSSHAuthFailure), "", "127.0.0.1"}); n != 0 {
				t.Fatalf("%d anonymous failures on top", n)
			}
		})
	}
}

// TestRiskOfferedNotSigned: a refused certificate of our CA that the
// client only offers (it cannot sign: it does not hold the key) never
// counts against its key ID — a certificate is public.
func TestRiskOfferedNotSigned(t *testing.T) {
	e := newEnv(t, envOptions{noTarget: true})
	u := e.alice()
	if err := e.rev.RevokeSerial(context.Background(), u.cert.Serial, "test"); err != nil {
		t.Fatal(err)
	}
	a := e.b.newAuthConn(context.Background(), nil)
	a.src = loopback
	meta := fakeMeta{user: "root@db-1"}
	a.banner(meta)
	for range 3 {
		perms, err := a.publicKey(meta, u.cert)
		if err != nil || perms == nil || perms.Extensions[permRefused] != ReasonRevoked || verifiedCert(perms) != nil {
			t.Fatalf("perms %+v %v", perms, err)
		}
	}
	a.ended()
	want := []riskCall{{"fail", string(risk.SignalSSHAuthFailure), "", "127.0.0.1"}}
	if got := e.spy.reported(); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("reported %+v, want %+v", got, want)
	}
}

// TestRiskPlainKeys: a connection that gets nowhere counts once against
// its source, however many keys it offers (OpenSSH offers every agent
// key), and a source that keeps failing is blocked.
func TestRiskPlainKeys(t *testing.T) {
	rc := testRiskConfig()
	rc.SourceIP = risk.Threshold{Count: 3, Window: 5 * time.Minute}
	e := newEnv(t, envOptions{noTarget: true, risk: &rc})
	foreignCA, _ := newSigner(t)
	foreign := e.signRaw(foreignCA, &ssh.Certificate{
		CertType: ssh.UserCert, KeyId: "alice", ValidPrincipals: []string{"root"},
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	})
	anon := riskCall{"fail", string(risk.SignalSSHAuthFailure), "", "127.0.0.1"}
	for i := 1; i <= 3; i++ {
		d := e.dial("root@db-1", certAuth(t, e.plainKey(), e.plainKey(), foreign, e.plainKey()))
		if d.err == nil || d.banner != "" {
			t.Fatalf("connection %d: %v, banner %q", i, d.err, d.banner)
		}
		e.waitReported(anon, i)
		if n := len(e.spy.reported()); n != i {
			t.Fatalf("connection %d: %d reports: %+v", i, n, e.spy.reported())
		}
	}
	if e.lockRef("ip:127.0.0.1") == "" {
		t.Fatal("source not blocked after 3 failed connections")
	}
	d := e.dial("root@db-1", certAuth(t, e.plainKey()))
	if d.err == nil || !strings.Contains(d.banner, "Access from your network is temporarily blocked. Reference "+e.lockRef("ip:127.0.0.1")) {
		t.Fatalf("blocked source: %v, banner %q", d.err, d.banner)
	}
	if e.lockRef("user:alice") != "" {
		t.Fatal("a foreign CA's certificate counted against its claimed key ID")
	}
}

// TestRiskCanary: a canary target or login locks the user a certificate
// identifies, and blocks the source of a client nobody identified.
func TestRiskCanary(t *testing.T) {
	rc := testRiskConfig()
	rc.CanaryTargets = []string{"backup-db"}
	rc.CanaryLogins = []string{"oracle"}
	e := newEnv(t, envOptions{risk: &rc})
	for _, tc := range []struct {
		name     string
		userName string
		cert     bool // authenticate with a valid certificate of the case's user
		what     string
	}{
		{"target, unauthenticated", "root@backup-db", false, "target backup-db"},
		{"login, unauthenticated", "oracle@db-1", false, "login oracle"},
		{"target, certificate", "root@backup-db", true, "target backup-db"},
		{"login, certificate", "oracle@db-1", true, "login oracle"},
		{"target case-insensitive", "root@Backup-DB", true, "target Backup-DB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			defer e.unlockAll()
			e.spy.reset()
			id, who := "c-"+strings.NewReplacer(" ", "-", ",", "").Replace(tc.name), ""
			auth := certAuth(t, e.plainKey())
			if tc.cert {
				auth, who = certAuth(t, e.issue(id, []string{"eng"}, []string{"root", "oracle"}, nil)), id
			}
			d := e.dial(tc.userName, auth)
			if d.err == nil {
				t.Fatal("a canary name authenticated")
			}
			e.waitReported(riskCall{"canary", tc.what, who, "127.0.0.1"}, 1)
			if tc.cert {
				if ref := e.lockRef("user:" + id); ref == "" || !strings.Contains(d.banner, "This account is locked. Contact your administrator with reference "+ref) {
					t.Fatalf("lock %q, banner %q", ref, d.banner)
				}
			}
			l, err := e.st.GetLock(context.Background(), "ip:127.0.0.1")
			if err != nil || l.Reason != risk.ReasonCanary {
				t.Fatalf("source block %+v %v", l, err)
			}
			// Blocked now: even a valid certificate of someone else.
			d = e.dial("root@db-1", certAuth(t, e.alice()))
			if d.err == nil || !strings.Contains(d.banner, "Access from your network is temporarily blocked. Reference "+l.Ref) {
				t.Fatalf("after the canary: %v, banner %q", d.err, d.banner)
			}
		})
	}
	t.Run("jump to a canary target", func(t *testing.T) {
		defer e.use(t)()
		defer e.unlockAll()
		e.spy.reset()
		u := e.issue("jumper", []string{"eng"}, []string{"root"}, nil)
		// ssh -J: a listing-mode connection asked for a channel to the target.
		d := e.dial("jumper", certAuth(t, u))
		if d.err != nil {
			t.Fatal(d.err)
		}
		if _, err := d.c.Dial("tcp", "backup-db:22"); err == nil {
			t.Fatal("channel to a canary target opened")
		}
		e.waitReported(riskCall{"canary", "target backup-db", "jumper", "127.0.0.1"}, 1)
		if e.lockRef("user:jumper") == "" {
			t.Fatal("not locked")
		}
		waitClosed(t, d.c)
	})
}

// TestRiskStepUp: a login from a network new for the user asks for a
// TOTP code even when no role does; wrong codes count and lock; a user
// without TOTP is refused with a message; logins are recorded once every
// factor passed, after which the network is known.
func TestRiskStepUp(t *testing.T) {
	rc := testRiskConfig()
	rc.LearnLogins = 1
	rc.User = map[risk.Signal]risk.Threshold{risk.SignalTOTPFailure: {Count: 2, Window: 15 * time.Minute}}
	e := newEnv(t, envOptions{
		risk:   &rc,
		policy: withUsers("eng", "tina", "walt"),
		deps:   func(d *Deps) { d.MFA = fakeMFA{code: "123456", users: []string{"alice", "walt"}} },
	})
	ctx := context.Background()
	elsewhere := netip.MustParseAddr("10.20.30.40")
	for _, id := range []string{"alice", "tina", "walt"} {
		if err := e.risk.Record(ctx, id, elsewhere); err != nil {
			t.Fatal(err)
		}
	}
	totp := func(code string, prompts *[]string) ssh.AuthMethod {
		return ssh.KeyboardInteractive(func(_, instruction string, questions []string, _ []bool) ([]string, error) {
			*prompts = append(*prompts, instruction)
			return []string{code}, nil
		})
	}
	t.Run("right code, then the network is known", func(t *testing.T) {
		defer e.use(t)()
		u := e.alice()
		var prompts []string
		d := e.dial("root@db-1", certAuth(t, u), totp("123456", &prompts))
		if d.err != nil {
			t.Fatal(d.err)
		}
		if len(prompts) != 1 || !strings.Contains(prompts[0], "network new for your account") {
			t.Fatalf("prompts %q", prompts)
		}
		if out := runOutput(t, d.c, "echo stepped-up"); out != "stepped-up\n" {
			t.Fatalf("%q", out)
		}
		e.waitReported(riskCall{"record", "", "alice", "127.0.0.1"}, 1)
		prompts = nil
		if d := e.dial("root@db-1", certAuth(t, u), totp("123456", &prompts)); d.err != nil || len(prompts) != 0 {
			t.Fatalf("second login: %v, prompts %q", d.err, prompts)
		}
	})
	t.Run("wrong codes lock", func(t *testing.T) {
		defer e.use(t)()
		u := e.issue("walt", []string{"eng"}, []string{"root"}, nil)
		for i := 1; i <= 2; i++ {
			var prompts []string
			d := e.dial("root@db-1", certAuth(t, u), totp("000000", &prompts))
			if d.err == nil || len(prompts) != 1 {
				t.Fatalf("attempt %d: %v, prompts %q", i, d.err, prompts)
			}
			e.waitReported(riskCall{"fail", string(risk.SignalTOTPFailure), "walt", "127.0.0.1"}, i)
			if locked := strings.Contains(d.banner, "This account is locked."); locked != (i == 2) {
				t.Fatalf("attempt %d: banner %q", i, d.banner)
			}
		}
		if e.spy.count(riskCall{"record", "", "walt", "127.0.0.1"}) != 0 {
			t.Fatal("a failed login recorded")
		}
	})
	t.Run("no TOTP enrolled", func(t *testing.T) {
		defer e.use(t)()
		var prompts []string
		d := e.dial("root@db-1", certAuth(t, e.issue("tina", []string{"eng"}, []string{"root"}, nil)), totp("123456", &prompts))
		if d.err == nil || len(prompts) != 0 || !strings.Contains(d.banner, "no authenticator enrolled") {
			t.Fatalf("%v, prompts %q, banner %q", d.err, prompts, d.banner)
		}
		if ev := e.waitAudit(TypeSSHAuth, ReasonStepUpNoTOTP); ev.UserID != "tina" {
			t.Fatalf("audit %+v", ev)
		}
	})
}

// TestRiskApprovalFailures: failed approvals count against the source
// (never against the user who denied), and block it at the threshold;
// an approval by a locked user is refused with the locked message.
func TestRiskApprovalFailures(t *testing.T) {
	rc := testRiskConfig()
	rc.SourceIP = risk.Threshold{Count: 2, Window: 5 * time.Minute}
	e := newApprovalEnv(t, envOptions{risk: &rc})
	t.Run("denied twice blocks the source", func(t *testing.T) {
		defer e.use(t)()
		defer e.unlockAll()
		for i := 1; i <= 2; i++ {
			k := &kiClient{onPrompt: func(code string) {
				e.decide(code, session.SSHApprovalDecision{Approved: false, UserID: "alice"})
			}}
			if c, err := e.dialKI("root@db-1", k); err == nil {
				c.Close()
				t.Fatal("denied approval authenticated")
			}
			e.waitReported(riskCall{"fail", string(risk.SignalApprovalFailure), "", "127.0.0.1"}, i)
		}
		if e.lockRef("ip:127.0.0.1") == "" || e.lockRef("user:alice") != "" {
			t.Fatalf("locks %+v", e.spy.reported())
		}
		d := e.dial("root@db-1", ssh.KeyboardInteractive((&kiClient{}).answer))
		if d.err == nil || !strings.Contains(d.banner, "Access from your network is temporarily blocked.") {
			t.Fatalf("%v, banner %q", d.err, d.banner)
		}
	})
	t.Run("approved by a locked user", func(t *testing.T) {
		defer e.use(t)()
		defer e.unlockAll()
		if _, err := e.risk.Lock(context.Background(), "alice", "incident", "admin"); err != nil {
			t.Fatal(err)
		}
		k := &kiClient{onPrompt: func(code string) { e.decide(code, approvedBy("alice", "eng")) }}
		var banner string
		c, err := ssh.Dial("tcp", e.addr, &ssh.ClientConfig{
			User: "root@db-1", Auth: []ssh.AuthMethod{ssh.KeyboardInteractive(k.answer)},
			HostKeyCallback: ssh.FixedHostKey(e.hostKey), Timeout: 10 * time.Second,
			BannerCallback: func(m string) error { banner += m; return nil },
		})
		if err == nil {
			c.Close()
			t.Fatal("a locked approver's connection authenticated")
		}
		if ref := e.lockRef("user:alice"); !strings.Contains(banner, "This account is locked. Contact your administrator with reference "+ref) {
			t.Fatalf("banner %q", banner)
		}
		if ev := e.waitAudit(TypeSSHAuth, ReasonAccountLocked); ev.UserID != "alice" {
			t.Fatalf("audit %+v", ev)
		}
	})
}

// TestRiskDeniedDecisions: denied targets, port forwards and file
// transfers are reported as denied decisions and lock at the threshold.
func TestRiskDeniedDecisions(t *testing.T) {
	const threshold = 3
	rc := testRiskConfig()
	rc.User = map[risk.Signal]risk.Threshold{risk.SignalDenied: {Count: threshold, Window: 10 * time.Minute}}
	e := newEnv(t, envOptions{risk: &rc, policy: withUsers("readonly", "bea", "bud")})
	denied := func(id string) riskCall { return riskCall{"fail", string(risk.SignalDenied), id, "127.0.0.1"} }
	t.Run("target not allowed", func(t *testing.T) {
		defer e.use(t)()
		u := e.issue("bob", []string{"readonly"}, []string{"root"}, nil)
		for i := 1; i <= threshold; i++ {
			d := e.dial("root@web-1", certAuth(t, u))
			if d.err != nil {
				t.Fatal(d.err)
			}
			out := runOutput(t, d.c, "echo no")
			e.waitReported(denied("bob"), i)
			if locked := strings.Contains(out, "This account is locked."); locked != (i == threshold) || !strings.Contains(out, "portcullis: ") {
				t.Fatalf("attempt %d: %q", i, out)
			}
		}
	})
	t.Run("port forward", func(t *testing.T) {
		defer e.use(t)()
		d := e.dial("root@db-1", certAuth(t, e.issue("bea", []string{"readonly"}, []string{"root"}, nil)))
		if d.err != nil {
			t.Fatal(d.err)
		}
		for i := 1; i <= threshold; i++ {
			if _, err := d.c.Dial("tcp", "127.0.0.1:80"); err == nil {
				t.Fatal("forward allowed")
			}
			e.waitReported(denied("bea"), i)
		}
		waitClosed(t, d.c) // the denial that locked ended the connection
		if e.lockRef("user:bea") == "" {
			t.Fatal("not locked")
		}
	})
	t.Run("file transfer", func(t *testing.T) {
		defer e.use(t)()
		d := e.dial("root@db-1", certAuth(t, e.issue("bud", []string{"readonly"}, []string{"root"}, nil)))
		if d.err != nil {
			t.Fatal(d.err)
		}
		s, err := d.c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RequestSubsystem("sftp"); err == nil {
			t.Fatal("sftp allowed")
		}
		e.waitReported(denied("bud"), 1)
	})
}

// TestRiskUsage: bytes sent to the client are reported, in chunks, all of
// them by the end of the session.
func TestRiskUsage(t *testing.T) {
	e := newEnv(t, envOptions{})
	const size = 10<<20 + 12345
	d := e.dial("root@db-1", certAuth(t, e.alice()))
	if d.err != nil {
		t.Fatal(d.err)
	}
	s, err := d.c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Output(fmt.Sprintf("head -c %d /dev/zero", size))
	if err != nil || len(out) != size {
		t.Fatalf("%d bytes, %v", len(out), err)
	}
	id := e.lastSession().SessionID
	d.c.Close()
	e.waitSessionEnd(id)
	if got := e.spy.usageBytes.Load(); got != size {
		t.Fatalf("reported %d bytes, want %d", got, size)
	}
	if n := e.spy.usageCalls.Load(); n > size/usageChunk+1 {
		t.Fatalf("%d usage reports for %d bytes: not batched", n, size)
	}
}

// TestRiskLockEndsSessions: a lock raised by another instance's engine
// sharing the store ends a live session here, telling the user the
// lock's reference.
func TestRiskLockEndsSessions(t *testing.T) {
	for _, backend := range presenceBackends {
		for _, tc := range []struct {
			name  string
			raise func(t *testing.T, eng *risk.Engine, userID string)
		}{
			{"admin lock", func(t *testing.T, eng *risk.Engine, userID string) {
				if _, err := eng.Lock(context.Background(), userID, "incident 3", "admin@example"); err != nil {
					t.Fatal(err)
				}
			}},
			{"failures", func(t *testing.T, eng *risk.Engine, userID string) {
				for range 5 {
					if _, err := eng.Fail(context.Background(), risk.SignalTOTPFailure, userID, netip.MustParseAddr("192.0.2.7")); err != nil {
						t.Fatal(err)
					}
				}
			}},
		} {
			t.Run(backend.name+"/"+tc.name, func(t *testing.T) {
				stA, stB := backend.open(t)
				b := presenceEnv(t, "b", stB, envOptions{})
				revA, err := session.NewCertRevocations(stA.(session.RevocationStore), session.SSHCAOptions{})
				if err != nil {
					t.Fatal(err)
				}
				engA := newRisk(t, risk.Config{}, stA.(risk.Store), time.Now, revA, &audit.Memory{})
				ls := b.startCat(b.alice())
				start := time.Now()
				tc.raise(t, engA, "alice")
				ls.waitEnded(t)
				t.Logf("session ended %v after the lock", time.Since(start))
				l, err := stB.(risk.Store).GetLock(context.Background(), "user:alice")
				if err != nil {
					t.Fatal(err)
				}
				if want := "This account is locked. Contact your administrator with reference " + l.Ref + "."; !strings.Contains(ls.stderrText(), want) {
					t.Fatalf("user told %q, want %q", ls.stderrText(), want)
				}
				if end := b.waitSessionEnd(ls.id); end.Reason != EndLocked {
					t.Fatalf("end %+v", end)
				}
			})
		}
	}
}

// TestRiskResyncEndsLockedSessions: a lock whose `locked` event never
// reached this bastion (the feed dropped it) still ends the user's live
// session at the next resync, when events may have been missed.
func TestRiskResyncEndsLockedSessions(t *testing.T) {
	stA, stB := presenceBackends[0].open(t)
	b := presenceEnv(t, "b", stB, envOptions{})
	ls := b.startCat(b.alice())
	// The lock record only: no event, no revocation.
	if err := stA.(store.Store).PutLock(context.Background(), store.Lock{Subject: "user:alice", Reason: "admin-lock", Ref: "ref-LOST000000"}); err != nil {
		t.Fatal(err)
	}
	b.b.apply(context.Background(), store.Event{Kind: store.EventResync})
	ls.waitEnded(t)
	if want := "reference ref-LOST000000"; !strings.Contains(ls.stderrText(), want) {
		t.Fatalf("user told %q, want %q", ls.stderrText(), want)
	}
	if end := b.waitSessionEnd(ls.id); end.Reason != EndLocked {
		t.Fatalf("end %+v", end)
	}
}
