package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/e2e/harness"
)

// Just-in-time access across instances: two `portcullis serve` sharing one
// real Redis, gw-1 with the gateway and the bastion (in front of a private
// stock sshd), gw-2 with the gateway only. A grant is a record in the
// shared store plus a per-instance cache refreshed by the store's feed,
// so what one instance decides must take effect on the other: a request
// made on gw-1 and approved on gw-2 opens the app through both, and a
// revocation on gw-2's admin socket closes it on gw-1 and ends a live
// OpenSSH session through gw-1's bastion that only the grant allowed.
//
// How long the other instance takes is logged, and only bounded by
// clusterBudget (a shared 2-core machine): the feed is the design, the
// bound only turns a lost event into a failure instead of a hang.

// clusterBudget bounds how long a change made on one instance may take
// to show on the other before the test fails.
const clusterBudget = 15 * time.Second

// clusterPolicy: engineers use app; db-admin (requestable, held by nobody
// standing: the dbas group is empty) uses db and, on gw-1 only (gw-2 has
// no bastion, so no targets), logs in as root on db-1; sre-leads approve.
const clusterPolicy = `roles:
  - name: engineer
    groups: [engineers]
    allow:
      - apps: [app]
  - name: db-admin
    groups: [dbas]
    allow:
      - apps: [db]%s
  - name: sre-lead
    groups: [leads]
    allow:
      - apps: [app]
`

const clusterAccess = `access:
  pending_ttl: 1h
  requestable:
    - role: db-admin
      approvers: [sre-lead]
      approvals: 1
      max_duration: 8h
`

// clusterSite is the running two-instance deployment.
type clusterSite struct {
	*site
	gw1, gw2 *harness.Portcullis
	dir      string
	sshAddr  string
	ssh      *harness.SSHConfig
}

func newClusterSite(t *testing.T, users map[string][]string) *clusterSite {
	t.Helper()
	cs := &clusterSite{site: newSite(t, 2, users), dir: t.TempDir()}
	cs.certFile, cs.keyFile = cs.ca.Issue(t, accessHost, appHost, dbHost)
	redis, prefix := harness.SharedRedis(t), harness.KeyPrefix(t)
	t.Cleanup(func() { archiveRedis(t, redis, prefix) }) // after both servers stopped
	st := harness.RedisStore(redis, prefix)

	keys := filepath.Join(cs.dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	userCA := harness.NewSSHKey(t, keys, "user_ca")
	upCA := harness.NewSSHKey(t, keys, "upstream_ca")
	host := harness.NewSSHKey(t, keys, "bastion_host")
	recKeyFile, _ := newRecordingKey(t, keys)
	target := harness.StartSSHD(t, harness.SSHDOptions{TrustedUserCAKeys: []ssh.PublicKey{upCA.Public()}})
	cs.sshAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))

	specs := [2]harness.Spec{cs.spec(0, st), cs.spec(1, st)}
	for i := range specs {
		specs[i].Routes = []harness.RouteSpec{
			{Name: "app", Host: appHost, Upstream: cs.up.URL},
			{Name: "db", Host: dbHost, Upstream: cs.up.URL},
		}
		// Refused requests (before the grant, after the revocation) must
		// not lock anybody.
		specs[i].Risk = sshSiteRisk
	}
	specs[0].Policy = fmt.Sprintf(clusterPolicy, "\n      - {targets: [db-1], logins: [root]}")
	specs[1].Policy = fmt.Sprintf(clusterPolicy, "")
	bastionCfg := fmt.Sprintf(`bastion:
  listen: %s
  host_key_files: [%s]
  user_ca_key_file: %s
  upstream_ca_key_file: %s
  recording_key_file: %s
  recording_dir: %s
  targets:
    - {name: db-1, addr: "%s", host_key: "%s"}
`, cs.sshAddr, host.Path, userCA.Path, upCA.Path, recKeyFile, filepath.Join(cs.dir, "recordings"),
		target.Addr, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(target.HostKey))))
	cs.gw1 = harness.StartPortcullis(t, specs[0].YAML()+bastionCfg+clusterAccess)
	cs.gw2 = harness.StartPortcullis(t, specs[1].YAML()+clusterAccess)
	harness.WaitSSH(t, cs.sshAddr, 30*time.Second)
	cs.ssh = harness.WriteSSHConfig(t, cs.dir, []string{harness.KnownHostsLine(cs.sshAddr, host.Public())}, nil,
		harness.SSHHost{Alias: "bastion", Addr: cs.sshAddr})
	return cs
}

// signIn logs login in on p's access host (TOTP enrolment) and mints an
// API token there.
func (cs *clusterSite) signIn(t *testing.T, p *harness.Portcullis, login string) *member {
	t.Helper()
	c := cs.client(t)
	l := c.LoginFlow(p.AccessURL+"/", cs.users[login], nil, nil)
	if l.Final.StatusCode != http.StatusOK || l.Final.Request.URL.Host != hostPort(accessHost, p.Port) || l.TOTP == nil {
		t.Fatalf("login of %s on %s: %d at %s\n%s\n--- server:\n%s", login, p.Instance, l.Final.StatusCode,
			l.Final.Request.URL, tail(l.Final.Body, 2000), tail(p.Output(), 3000))
	}
	m := &member{login: login, id: cs.userID(login), c: c, otp: l.TOTP}
	waitFreshStep(t, m.otp)
	tok, err := c.MintToken(p.AccessURL+"/token", m.otp)
	if err != nil {
		t.Fatalf("API token for %s on %s: %v\n--- server:\n%s", login, p.Instance, err, tail(p.Output(), 3000))
	}
	m.token, m.api = tok, c.API(p.AccessURL, tok)
	return m
}

// clusterPoll polls check every 50 ms until it holds and returns how long
// that took; it fails the test after clusterBudget.
func clusterPoll(t *testing.T, what string, check func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !check() {
		if time.Since(start) > clusterBudget {
			t.Fatalf("not within %v: %s", clusterBudget, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// TestAccessCluster: request on gw-1, approval on gw-2, the app through
// both, a live SSH session through gw-1's bastion on the grant alone,
// and a revocation on gw-2's admin socket that closes gw-1's proxy and
// ends the session.
func TestAccessCluster(t *testing.T) {
	t.Parallel()
	cs := newClusterSite(t, map[string][]string{"kim": {"engineers"}, "lee": {"leads"}})
	kim := cs.signIn(t, cs.gw1, "kim")
	lee := cs.signIn(t, cs.gw2, "lee")
	db := func(p *harness.Portcullis, path string) int { return kim.visit(p.URL(dbHost, path)).StatusCode }

	for _, p := range []*harness.Portcullis{cs.gw1, cs.gw2} {
		if code := db(p, "/before-"+p.Instance); code != http.StatusForbidden {
			t.Fatalf("db through %s before any grant: %d, want 403", p.Instance, code)
		}
	}

	// Requested on gw-1 (kim's token), seen and approved on gw-2 (lee's).
	r := kim.api.Call(http.MethodPost, "/api/access/requests", map[string]string{"role": "db-admin", "duration": "1h", "reason": "CHG-42 cluster"})
	wantStatus(t, "kim requests db-admin on gw-1", r, http.StatusCreated, "")
	var rq apiRequest
	harness.DecodeJSON(t, r, &rq)
	if rq.State != "pending" || rq.UserID != kim.id {
		t.Fatalf("submitted request %+v", rq)
	}
	r = lee.api.Call(http.MethodGet, "/api/access/requests", nil)
	wantStatus(t, "lee lists requests on gw-2", r, http.StatusOK, "")
	var lst requestsAnswer
	harness.DecodeJSON(t, r, &lst)
	if _, ok := findRequest(lst.ToApprove, rq.ID); !ok {
		t.Fatalf("gw-2's to_approve for lee lacks %s made on gw-1: %s", rq.ID, r.Body)
	}
	approveSent := time.Now()
	r = lee.api.Call(http.MethodPost, "/api/access/requests/"+url.PathEscape(rq.ID)+"/approve", map[string]string{"note": "ok from gw-2"})
	wantStatus(t, "lee approves on gw-2", r, http.StatusOK, "")
	approveAnswered := time.Since(approveSent)
	harness.DecodeJSON(t, r, &rq)
	if rq.State != "approved" || rq.GrantID == "" {
		t.Fatalf("approved request %+v", rq)
	}

	// The grant opens db through both instances. gw-2 made it; gw-1 hears
	// of it through the feed.
	var first []string
	for _, p := range []*harness.Portcullis{cs.gw2, cs.gw1} {
		n := 0
		d := clusterPoll(t, "db opens through "+p.Instance+" after the approval", func() bool {
			n++
			return db(p, "/granted-"+p.Instance) == http.StatusOK
		})
		first = append(first, fmt.Sprintf("%s %v (attempt %d)", p.Instance, d.Round(time.Millisecond), n))
	}
	t.Logf("approval on gw-2 answered in %v; db open (polled from then): %s; both open %v after the approval was sent",
		approveAnswered.Round(time.Millisecond), strings.Join(first, ", "), time.Since(approveSent).Round(time.Millisecond))

	// A live session through gw-1's bastion on the grant alone: kim's
	// standing role has no SSH access.
	key := harness.NewSSHKey(t, t.TempDir(), "id_kim")
	if _, err := kim.c.SSHCert(cs.gw1.AccessURL, key); err != nil {
		t.Fatalf("SSH certificate for kim through gw-1: %v\n--- gw-1:\n%s", err, tail(cs.gw1.Output(), 3000))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := cs.ssh.Command(ctx, cs.dir, nil, "ssh", "-i", key.Path, "root@db-1@bastion",
		"echo session-started; sleep 120; echo session-survived")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan time.Time, 1)
	go func() { cmd.Wait(); exited <- time.Now() }()
	defer cmd.Process.Kill()
	clusterPoll(t, "the SSH session through gw-1 starts", func() bool {
		select {
		case <-exited:
			t.Fatalf("ssh ended before the revocation: %q %q\n--- gw-1:\n%s", stdout.String(), stderr.String(), tail(cs.gw1.Output(), 3000))
		default:
		}
		return strings.Contains(stdout.String(), "session-started")
	})

	// Revoked on gw-2's admin socket.
	revokeSent := time.Now()
	code, body := cs.gw2.AdminAPI(t).Call(http.MethodPost, "/api/admin/grants/"+url.PathEscape(rq.GrantID)+"/revoke",
		map[string]string{"reason": "cluster test"})
	if code != http.StatusOK {
		t.Fatalf("revoke on gw-2's admin socket: %d %s", code, body)
	}
	revokedAt := time.Now()
	if c := db(cs.gw2, "/revoked-gw-2"); c != http.StatusForbidden {
		t.Errorf("db through gw-2 right after its own revocation: %d, want 403", c)
	}
	n := 0
	d := clusterPoll(t, "db closes through gw-1 after the revocation on gw-2", func() bool {
		n++
		return db(cs.gw1, "/revoked-gw-1") == http.StatusForbidden
	})
	var ended time.Time
	select {
	case ended = <-exited:
	case <-time.After(clusterBudget):
		t.Fatalf("the SSH session through gw-1 still runs %v after the revocation on gw-2; stderr %q", clusterBudget, stderr.String())
	}
	t.Logf("revocation on gw-2 answered in %v; db refused through gw-1 %v after that (attempt %d); "+
		"the SSH session through gw-1 ended %v after the revocation was sent (exit %d, stderr %q)",
		revokedAt.Sub(revokeSent).Round(time.Millisecond), d.Round(time.Millisecond), n,
		ended.Sub(revokeSent).Round(time.Millisecond), cmd.ProcessState.ExitCode(), strings.TrimSpace(stderr.String()))
	if strings.Contains(stdout.String(), "session-survived") {
		t.Errorf("the session ran to its end: %q", stdout.String())
	}

	// The trails: the revocation on gw-2, the session's end on gw-1 with
	// its cause; and the next connection is refused.
	harness.WaitAudit(t, cs.gw2.AuditDir, harness.AuditQuery{Type: "access.revoke", UserID: kim.id})
	end := harness.WaitAudit(t, cs.gw1.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionEnd, UserID: kim.id})
	if end.Reason != bastion.EndGrantRevoked {
		t.Errorf("session end %+v, want reason %s", end, bastion.EndGrantRevoked)
	}
	if res := cs.ssh.Run(t, cs.dir, nil, "", "ssh", "-i", key.Path, "root@db-1@bastion", "echo again"); res.Code == 0 || strings.Contains(res.Stdout, "again") {
		t.Errorf("kim connected again after the revocation: %+v", res)
	}
	// The end is a denied decision in gw-1's trail, with the real cause.
	harness.WaitAudit(t, cs.gw1.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, UserID: kim.id, Decision: audit.Deny,
		Reason: bastion.EndGrantRevoked, Since: revokedAt.Add(-time.Second)})
}
