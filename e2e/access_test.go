package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/e2e/harness"
)

// The deployment the issue-5 tests (just-in-time access, audit-read
// control, access reviews) run against: one `portcullis serve` with the
// embedded store, a gateway with two routes (app, and db: the app only
// the db-admin role may use), a bastion in front of a private stock sshd,
// an access section (db-admin requestable with one approval by an
// sre-lead, auditor with a committee of two; reading the trail needs an
// approved auditor request) and a webhook receiver for the approvers.

const dbHost = "db.localhost"

// accessPolicy: engineers use app; sshops log in as root on db-1;
// db-admin (requestable, and held by the users: entries in %s and the
// dbas group nobody is in: policy compilation refuses a role with neither
// groups nor users, even a requestable one) uses db;
// sre-leads approve; auditors hold a standing auditor role, which is not
// enough to read the trail (require_approval).
const accessPolicy = `roles:
  - name: admin
    groups: [admins]
    admin: true
    allow:
      - apps: ["*"]
  - name: engineer
    groups: [engineers]
    allow:
      - apps: [app]
  - name: sshops
    groups: [sshops]
    allow:
      - {targets: [db-1], logins: [root]}
  - name: db-admin
    groups: [dbas]
    users: [%s]
    allow:
      - apps: [db]
  - name: sre-lead
    groups: [leads]
    allow:
      - apps: [app]
  - name: auditor
    groups: [auditors]
    allow:
      - apps: [app]
`

// accessConfig is the access: and reviews: sections (%s: webhook URL and
// secret file).
const accessConfig = `access:
  pending_ttl: 1h
  requestable:
    - role: db-admin
      approvers: [sre-lead]
      approvals: 1
      max_duration: 8h
    - role: auditor
      approvers: [sre-lead]
      approvals: 2
      max_duration: 1h
  audit_read:
    role: auditor
    require_approval: true
  webhooks:
    - url: %s
      secret_file: %s
reviews:
  dormant_after: 2160h
  period: 2208h
  due: 336h
  cadence: 2208h
`

// accessSite is the running deployment.
type accessSite struct {
	*site
	p       *harness.Portcullis
	hook    *harness.AccessHook
	dir     string // HOME of the SSH clients, keys
	recDir  string
	sshAddr string
	cfg     *harness.SSHConfig
	proxy   string // CONNECT proxy to the gateway, for the CLI (HTTPS_PROXY)
}

// newAccessSite starts everything for users (login → IdP groups);
// configUsers (may be nil) names the users: entries of the db-admin role
// once the IdP (and so the issuer in every user ID) is known.
func newAccessSite(t *testing.T, users map[string][]string, configUsers func(*site) []string) *accessSite {
	t.Helper()
	as := &accessSite{site: newSite(t, 1, users), dir: t.TempDir()}
	as.certFile, as.keyFile = as.ca.Issue(t, accessHost, appHost, dbHost)
	as.hook = harness.StartAccessHook(t)
	keys := filepath.Join(as.dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	userCA := harness.NewSSHKey(t, keys, "user_ca")
	upCA := harness.NewSSHKey(t, keys, "upstream_ca")
	host := harness.NewSSHKey(t, keys, "bastion_host")
	recKeyFile, _ := newRecordingKey(t, keys)
	as.recDir = filepath.Join(as.dir, "recordings")
	target := harness.StartSSHD(t, harness.SSHDOptions{TrustedUserCAKeys: []ssh.PublicKey{upCA.Public()}})
	as.sshAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))

	spec := as.spec(0, "")
	spec.Routes = []harness.RouteSpec{
		{Name: "app", Host: appHost, Upstream: as.up.URL},
		{Name: "db", Host: dbHost, Upstream: as.up.URL},
	}
	var quoted []string
	if configUsers != nil {
		for _, u := range configUsers(as.site) {
			quoted = append(quoted, fmt.Sprintf("%q", u))
		}
	}
	spec.Policy = fmt.Sprintf(accessPolicy, strings.Join(quoted, ", "))
	// Denied decisions are part of these tests (before a grant, after a
	// revocation): they must not lock anybody.
	spec.Risk = sshSiteRisk
	cfg := spec.YAML() + fmt.Sprintf(`bastion:
  listen: %s
  host_key_files: [%s]
  user_ca_key_file: %s
  upstream_ca_key_file: %s
  recording_key_file: %s
  recording_dir: %s
  targets:
    - {name: db-1, addr: "%s", host_key: "%s"}
`, as.sshAddr, host.Path, userCA.Path, upCA.Path, recKeyFile, as.recDir,
		target.Addr, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(target.HostKey)))) +
		fmt.Sprintf(accessConfig, as.hook.URL, as.hook.SecretFile)
	as.p = harness.StartPortcullis(t, cfg)
	harness.WaitSSH(t, as.sshAddr, 30*time.Second)
	as.cfg = harness.WriteSSHConfig(t, as.dir, []string{harness.KnownHostsLine(as.sshAddr, host.Public())}, nil,
		harness.SSHHost{Alias: "bastion", Addr: as.sshAddr})
	as.proxy = startConnectProxy(t, as.p.Addr)
	return as
}

// member is a signed-in user: a client with the web session, the
// authenticator, and (once minted) an API token.
type member struct {
	login string
	id    string
	c     *harness.Client
	otp   *harness.TOTP
	token string
	api   *harness.API
}

// signIn logs login in on the access host (TOTP enrolment) and returns
// the member; the login starts on the access host's home page, so it
// uses no app.
func (as *accessSite) signIn(t *testing.T, login string) *member {
	t.Helper()
	c := as.client(t)
	l := c.LoginFlow(as.p.AccessURL+"/", as.users[login], nil, nil)
	if l.Final.StatusCode != http.StatusOK || l.Final.Request.URL.Host != hostPort(accessHost, as.p.Port) || l.TOTP == nil {
		t.Fatalf("login of %s: %d at %s\n%s\n--- server:\n%s", login, l.Final.StatusCode, l.Final.Request.URL,
			tail(l.Final.Body, 2000), tail(as.p.Output(), 3000))
	}
	return &member{login: login, id: as.userID(login), c: c, otp: l.TOTP}
}

// mintToken gets m an API token at /token (the next TOTP code).
func (as *accessSite) mintToken(t *testing.T, m *member) {
	t.Helper()
	waitFreshStep(t, m.otp)
	tok, err := m.c.MintToken(as.p.AccessURL+"/token", m.otp)
	if err != nil {
		t.Fatalf("API token for %s: %v\n--- server:\n%s", m.login, err, tail(as.p.Output(), 3000))
	}
	m.token, m.api = tok, m.c.API(as.p.AccessURL, tok)
}

// visit GETs rawURL with m's web session, following the hop to a route
// host, and returns the final answer.
func (m *member) visit(rawURL string) *harness.Response {
	return m.c.Follow(m.c.Get(rawURL), nil)
}

// cli runs the portcullis binary as a user would, reaching the access
// host through the site's CONNECT proxy.
func (as *accessSite) cli(t *testing.T, args ...string) harness.Result {
	t.Helper()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + as.dir, "HTTPS_PROXY=http://" + as.proxy}
	return harness.RunPortcullisEnv(t, env, args...)
}

// userConn are the connection flags of `portcullis request` and `audit
// search` for m.
func (as *accessSite) userConn(t *testing.T, m *member) []string {
	t.Helper()
	return []string{"--server", as.p.AccessURL, "--token-file", harness.WriteToken(t, m.token), "--ca-file", as.ca.CertFile}
}

// sshCert gets m a certificate through the gateway with the web session.
func (as *accessSite) sshCert(t *testing.T, m *member) *harness.SSHKey {
	t.Helper()
	key := harness.NewSSHKey(t, t.TempDir(), "id_"+m.login)
	if _, err := m.c.SSHCert(as.p.AccessURL, key); err != nil {
		t.Fatalf("SSH certificate for %s: %v\n--- server:\n%s", m.login, err, tail(as.p.Output(), 3000))
	}
	return key
}

// ssh runs the stock client as key to root@db-1 through the bastion.
func (as *accessSite) ssh(t *testing.T, key *harness.SSHKey, args ...string) harness.SSHResult {
	t.Helper()
	return as.cfg.Run(t, as.dir, nil, "", "ssh", append([]string{"-i", key.Path, "root@db-1@bastion"}, args...)...)
}

// admin runs `portcullis admin --socket …` and fails unless it exits 0.
func (as *accessSite) admin(t *testing.T, args ...string) harness.Result {
	t.Helper()
	return as.p.Admin(t, args...)
}

// apiRequest is the Request JSON of the user API (contract §5).
type apiRequest struct {
	ID                string `json:"id"`
	UserID            string `json:"user_id"`
	Role              string `json:"role"`
	Duration          string `json:"duration"`
	Reason            string `json:"reason"`
	State             string `json:"state"`
	ApprovalsRequired int    `json:"approvals_required"`
	Approvals         []struct {
		UserID string    `json:"user_id"`
		At     time.Time `json:"at"`
	} `json:"approvals"`
	GrantID string `json:"grant_id"`
}

// apiGrant is the Grant JSON.
type apiGrant struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Role      string `json:"role"`
	Source    string `json:"source"`
	RequestID string `json:"request_id"`
	Start     string `json:"start"`
	Expires   string `json:"expires"`
	CreatedBy string `json:"created_by"`
}

type requestsAnswer struct {
	Requests  []apiRequest `json:"requests"`
	ToApprove []apiRequest `json:"to_approve"`
}

type grantsAnswer struct {
	Grants []apiGrant `json:"grants"`
}

// findRequest returns the request with id in rs.
func findRequest(rs []apiRequest, id string) (apiRequest, bool) {
	i := slices.IndexFunc(rs, func(r apiRequest) bool { return r.ID == id })
	if i < 0 {
		return apiRequest{}, false
	}
	return rs[i], true
}

// wantStatus fails the test unless r has status want and, when reason is
// not empty, the JSON error reason.
func wantStatus(t *testing.T, what string, r *harness.Response, want int, reason string) {
	t.Helper()
	if r.StatusCode != want || (reason != "" && harness.ParseAPIError(r.Body).Reason != reason) {
		t.Fatalf("%s: got %d %s, want %d with reason %q", what, r.StatusCode, tail(r.Body, 1000), want, reason)
	}
}

// approve posts an approval of id as m.
func approve(m *member, id string) *harness.Response {
	return m.api.Call(http.MethodPost, "/api/access/requests/"+url.PathEscape(id)+"/approve", map[string]string{"note": "ok by " + m.login})
}

// myGrants lists m's active grants through the user API.
func myGrants(t *testing.T, m *member) []apiGrant {
	t.Helper()
	r := m.api.Call(http.MethodGet, "/api/access/grants", nil)
	wantStatus(t, m.login+" GET /api/access/grants", r, http.StatusOK, "")
	var g grantsAnswer
	harness.DecodeJSON(t, r, &g)
	return g.Grants
}

// jitUsers: dana asks for db-admin (and uses SSH), ivy is another SSH
// user, lee and max are sre-leads (approvers), aud is a standing auditor,
// wes uses the web form.
var jitUsers = map[string][]string{
	"dana": {"engineers", "sshops"},
	"ivy":  {"sshops"},
	"lee":  {"leads"},
	"max":  {"leads"},
	"aud":  {"auditors"},
	"wes":  {"engineers"},
}

// TestJITAccess: just-in-time access and audit-read control end to end.
// The steps share one deployment and run in order: the SSH sessions whose
// recordings are read at the end, a request from the CLI with its signed
// webhook, a refused self-approval, the grant starting on approval and
// ending by itself; the /access web form; a two-approver committee for the
// auditor role guarding the trail search; and recording reads.
func TestJITAccess(t *testing.T) {
	t.Parallel()
	as := newAccessSite(t, jitUsers, nil)
	m := map[string]*member{}
	for _, login := range []string{"dana", "ivy", "lee", "max", "aud", "wes"} {
		m[login] = as.signIn(t, login)
	}
	dana, ivy, lee, mx, aud, wes := m["dana"], m["ivy"], m["lee"], m["max"], m["aud"], m["wes"]

	// Two SSH sessions to read back at the end: dana's own, ivy's.
	recID := map[string]string{}
	for _, u := range []*member{dana, ivy} {
		since := time.Now()
		key := as.sshCert(t, u)
		if r := as.ssh(t, key, "echo rec-"+u.login); r.Code != 0 || strings.TrimSpace(r.Stdout) != "rec-"+u.login {
			t.Fatalf("ssh as %s: %+v\n--- server:\n%s", u.login, r, tail(as.p.Output(), 3000))
		}
		st := harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionStart, UserID: u.id, Since: since})
		harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionEnd, SessionID: st.SessionID})
		recID[u.login] = st.SessionID
	}

	var grantID string
	t.Run("CLIRequestApprovalExpiry", func(t *testing.T) {
		as.mintToken(t, dana)
		as.mintToken(t, lee)
		if r := dana.visit(as.p.URL(dbHost, "/before-grant")); r.StatusCode != http.StatusForbidden {
			t.Fatalf("db before any grant: %d, want 403", r.StatusCode)
		}
		conn := as.userConn(t, dana)
		res := as.cli(t, append([]string{"request"}, append(conn, "--json", "--role", "db-admin", "--for", "4s", "--reason", "INC-1234")...)...)
		if res.Code != 0 {
			t.Fatalf("portcullis request: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
		var rq apiRequest
		if err := json.Unmarshal([]byte(res.Stdout), &rq); err != nil {
			t.Fatalf("portcullis request --json: %v\n%s", err, res.Stdout)
		}
		if rq.ID == "" || rq.UserID != dana.id || rq.Role != "db-admin" || rq.State != "pending" || rq.ApprovalsRequired != 1 ||
			rq.Reason != "INC-1234" || rq.Duration != (4*time.Second).String() {
			t.Fatalf("submitted request %+v", rq)
		}
		if out := as.cli(t, append([]string{"request"}, append(conn, "show", rq.ID)...)...); out.Code != 0 ||
			!strings.Contains(out.Stdout, rq.ID) || !strings.Contains(out.Stdout, "pending") {
			t.Fatalf("portcullis request show: %+v", out)
		}
		harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: "access.request", UserID: dana.id, Decision: audit.Allow})

		// The approvers are told, with a body signed by the shared secret.
		n := as.hook.Wait(t, map[string]string{"kind": "request", "request_id": rq.ID}, 20*time.Second)
		if !as.hook.Verify(n) || n.Str("user_id") != dana.id || n.Str("role") != "db-admin" || n.Str("reason") != "INC-1234" {
			t.Fatalf("notification %s with signature %q (valid %v)", n.Body, n.Signature, as.hook.Verify(n))
		}

		// The requester cannot approve: API and CLI.
		wantStatus(t, "self-approval", approve(dana, rq.ID), http.StatusForbidden, "self-approval")
		if out := as.cli(t, append([]string{"request"}, append(conn, "approve", rq.ID)...)...); out.Code == 0 || !strings.Contains(out.Stderr, "self-approval") {
			t.Fatalf("portcullis request approve of one's own request: %+v", out)
		}
		harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: "access.approve", UserID: dana.id, Decision: audit.Deny, Reason: "self-approval"})
		if r := dana.visit(as.p.URL(dbHost, "/still-pending")); r.StatusCode != http.StatusForbidden {
			t.Fatalf("db while the request is pending: %d, want 403", r.StatusCode)
		}

		// The approver sees it and approves; the grant starts at once.
		r := lee.api.Call(http.MethodGet, "/api/access/requests", nil)
		wantStatus(t, "lee's requests", r, http.StatusOK, "")
		var mine requestsAnswer
		harness.DecodeJSON(t, r, &mine)
		if _, ok := findRequest(mine.ToApprove, rq.ID); !ok {
			t.Fatalf("lee's to_approve lacks %s: %s", rq.ID, r.Body)
		}
		r = approve(lee, rq.ID)
		wantStatus(t, "lee approves", r, http.StatusOK, "")
		var done apiRequest
		harness.DecodeJSON(t, r, &done)
		if done.State != "approved" || done.GrantID == "" || len(done.Approvals) != 1 || done.Approvals[0].UserID != lee.id {
			t.Fatalf("approved request %+v", done)
		}
		grantID = done.GrantID
		if r := dana.visit(as.p.URL(dbHost, "/granted")); r.StatusCode != http.StatusOK {
			t.Fatalf("db right after the approval: %d, want 200\n%s", r.StatusCode, tail(r.Body, 1000))
		}
		wantStatus(t, "approving a decided request", approve(lee, rq.ID), http.StatusConflict, "already-decided")
		gs := myGrants(t, dana)
		i := slices.IndexFunc(gs, func(g apiGrant) bool { return g.ID == grantID })
		if i < 0 || gs[i].Role != "db-admin" || gs[i].Source != "temporary" || gs[i].RequestID != rq.ID || gs[i].UserID != dana.id {
			t.Fatalf("dana's grants %+v, want the temporary db-admin grant %s", gs, grantID)
		}
		start, err1 := time.Parse(time.RFC3339Nano, gs[i].Start)
		exp, err2 := time.Parse(time.RFC3339Nano, gs[i].Expires)
		// The grant starts at the approval and runs exactly --for.
		if d := exp.Sub(start); err1 != nil || err2 != nil || d != 4*time.Second {
			t.Fatalf("grant runs %s .. %s (%v %v), want 4s", gs[i].Start, gs[i].Expires, err1, err2)
		}
		harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: "access.grant", UserID: dana.id})
		as.hook.Wait(t, map[string]string{"kind": "approved", "request_id": rq.ID}, 20*time.Second)
	})
	if grantID == "" {
		t.FailNow()
	}

	t.Run("WebForm", func(t *testing.T) { testAccessWebForm(t, as, wes, lee) })
	t.Run("CommitteeAuditRead", func(t *testing.T) { testCommittee(t, as, aud, lee, mx, dana) })
	t.Run("Recordings", func(t *testing.T) { testRecordingReads(t, as, dana, aud, recID) })

	// By now dana's 4-second grant has run out by itself: denied again,
	// and no longer listed. (Polled; how fast is not asserted.)
	t.Run("GrantExpires", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := dana.visit(as.p.URL(dbHost, "/after-expiry"))
			if r.StatusCode == http.StatusForbidden {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("db still answers %d for dana 30 s after her 4 s grant", r.StatusCode)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if gs := myGrants(t, dana); slices.ContainsFunc(gs, func(g apiGrant) bool { return g.ID == grantID }) {
			t.Fatalf("expired grant %s still listed: %+v", grantID, gs)
		}
	})
}

// formAt returns the form of page whose action has path p.
func formAt(t *testing.T, page *harness.Response, p string) harness.Form {
	t.Helper()
	for _, f := range harness.ParseForms(page.Request.URL, page.Body) {
		if u, err := url.Parse(f.Action); err == nil && u.Path == p {
			return f
		}
	}
	t.Fatalf("no form posting to %s on %s:\n%s", p, page.Request.URL, tail(page.Body, 3000))
	return harness.Form{}
}

// accessPage loads /access as m and checks it is the page.
func (as *accessSite) accessPage(t *testing.T, m *member) *harness.Response {
	t.Helper()
	r := m.c.Get(as.p.AccessURL + "/access")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("/access for %s: %d\n%s", m.login, r.StatusCode, tail(r.Body, 2000))
	}
	return r
}

// tableText is the text of the element id of page ("" when missing).
func tableText(page *harness.Response, id string) string {
	s, _ := harness.TextByID(page.Body, id)
	return s
}

// testAccessWebForm: wes asks for db-admin with the /access form (a
// forged post without the CSRF token is refused); lee approves with the
// button of his to-approve table; wes's page lists the grant and db opens.
func testAccessWebForm(t *testing.T, as *accessSite, wes, lee *member) {
	page := as.accessPage(t, wes)
	f := formAt(t, page, "/access/request")
	if _, ok := f.Fields["csrf"]; !ok {
		t.Fatalf("the request form has no CSRF field: %v", f.Fields)
	}
	forged := url.Values{"role": {"db-admin"}, "duration": {"1h"}, "reason": {"forged"}}
	if r := wes.c.PostForm(f.Action, forged); r.StatusCode != http.StatusForbidden {
		t.Fatalf("request form without CSRF token: %d, want 403", r.StatusCode)
	}
	f.Fields.Set("role", "db-admin")
	f.Fields.Set("duration", "1h")
	f.Fields.Set("reason", "CHG-77 schema change")
	if r := wes.c.Follow(wes.c.PostForm(f.Action, f.Fields), nil); r.StatusCode != http.StatusOK && r.StatusCode != http.StatusCreated {
		t.Fatalf("request form: %d\n%s", r.StatusCode, tail(r.Body, 2000))
	}
	page = as.accessPage(t, wes)
	if mine := tableText(page, "my-requests"); !strings.Contains(mine, "db-admin") || !strings.Contains(mine, "pending") || !strings.Contains(mine, "CHG-77") {
		t.Fatalf("wes's my-requests table after the form: %q", mine)
	}
	r := lee.api.Call(http.MethodGet, "/api/access/requests", nil)
	var lst requestsAnswer
	harness.DecodeJSON(t, r, &lst)
	i := slices.IndexFunc(lst.ToApprove, func(rq apiRequest) bool { return rq.UserID == wes.id })
	if i < 0 {
		t.Fatalf("lee's to_approve lacks wes's request: %s", r.Body)
	}
	id := lst.ToApprove[i].ID
	as.hook.Wait(t, map[string]string{"kind": "request", "request_id": id}, 20*time.Second)

	lpage := as.accessPage(t, lee)
	if !strings.Contains(tableText(lpage, "to-approve"), wes.id) && !strings.Contains(tableText(lpage, "to-approve"), id) {
		t.Fatalf("lee's to-approve table lacks wes's request %s: %q", id, tableText(lpage, "to-approve"))
	}
	af := formAt(t, lpage, "/access/requests/"+id+"/approve")
	if r := lee.c.Follow(lee.c.PostForm(af.Action, af.Fields), nil); r.StatusCode != http.StatusOK {
		t.Fatalf("approve button: %d\n%s", r.StatusCode, tail(r.Body, 2000))
	}
	harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: "access.grant", UserID: wes.id})
	if g := tableText(as.accessPage(t, wes), "my-grants"); !strings.Contains(g, "db-admin") {
		t.Fatalf("wes's my-grants table after the approval: %q", g)
	}
	if r := wes.visit(as.p.URL(dbHost, "/via-form")); r.StatusCode != http.StatusOK {
		t.Fatalf("db for wes after the approval: %d", r.StatusCode)
	}
}

// searchEvents is GET /api/audit/events as m.
func searchEvents(m *member, query string) *harness.Response {
	return m.api.Call(http.MethodGet, "/api/audit/events?"+query, nil)
}

// testCommittee: aud holds a standing auditor role, which is not enough
// to search the trail (require_approval); a request for auditor needs two
// sre-leads: after one approval the search is still refused, after the
// second it answers, and every search, refused or answered, is audited.
// dana (no auditor role) is refused with another reason and may not
// approve (not an approver).
func testCommittee(t *testing.T, as *accessSite, aud, lee, mx, dana *member) {
	as.mintToken(t, aud)
	q := "type=access.request&limit=50"
	wantStatus(t, "standing auditor searches", searchEvents(aud, q), http.StatusForbidden, "approval-required")
	wantStatus(t, "non-auditor searches", searchEvents(dana, q), http.StatusForbidden, "auditor-role-required")
	waitEvent(t, as.p, "refused search of aud", byReader("trail.search", aud, audit.Deny, "approval-required", time.Time{}))
	waitEvent(t, as.p, "refused search of dana", byReader("trail.search", dana, audit.Deny, "auditor-role-required", time.Time{}))

	r := aud.api.Call(http.MethodPost, "/api/access/requests", map[string]string{"role": "auditor", "duration": "30m", "reason": "Q4 audit"})
	wantStatus(t, "auditor request", r, http.StatusCreated, "")
	var rq apiRequest
	harness.DecodeJSON(t, r, &rq)
	if rq.State != "pending" || rq.ApprovalsRequired != 2 {
		t.Fatalf("auditor request %+v, want pending needing 2 approvals", rq)
	}
	wantStatus(t, "dana approves", approve(dana, rq.ID), http.StatusForbidden, "not-approver")
	r = approve(lee, rq.ID)
	wantStatus(t, "first approval", r, http.StatusOK, "")
	harness.DecodeJSON(t, r, &rq)
	if rq.State != "pending" || len(rq.Approvals) != 1 {
		t.Fatalf("after one of two approvals: %+v", rq)
	}
	wantStatus(t, "lee approves twice", approve(lee, rq.ID), http.StatusConflict, "duplicate-approval")
	wantStatus(t, "search after one approval", searchEvents(aud, q), http.StatusForbidden, "approval-required")

	as.mintToken(t, mx)
	r = approve(mx, rq.ID)
	wantStatus(t, "second approval", r, http.StatusOK, "")
	harness.DecodeJSON(t, r, &rq)
	if rq.State != "approved" || len(rq.Approvals) != 2 {
		t.Fatalf("after two approvals: %+v", rq)
	}
	since := time.Now()
	r = searchEvents(aud, q)
	wantStatus(t, "search after the committee approved", r, http.StatusOK, "")
	var found struct {
		Events []audit.Event `json:"events"`
		More   bool          `json:"more"`
	}
	harness.DecodeJSON(t, r, &found)
	if !slices.ContainsFunc(found.Events, func(e audit.Event) bool { return e.Type == "access.request" && e.UserID == dana.id }) {
		t.Fatalf("search for access.request lacks dana's request: %s", tail(r.Body, 3000))
	}
	for _, e := range found.Events {
		if e.Type != "access.request" {
			t.Fatalf("search for type access.request returned a %s event", e.Type)
		}
	}
	waitEvent(t, as.p, "answered search of aud", byReader("trail.search", aud, audit.Allow, "", since))
	if n := len(findEvents(t, as.p, byReader("trail.search", aud, audit.Deny, "approval-required", time.Time{}))); n != 2 {
		t.Fatalf("%d refused searches of aud audited, want 2", n)
	}
}

// testRecordingReads: dana (no auditor role) lists only her own
// recordings, reads her own and is refused ivy's; aud, now an approved
// auditor, reads ivy's. Every read is audited, the refusal too.
func testRecordingReads(t *testing.T, as *accessSite, dana, aud *member, recID map[string]string) {
	r := dana.api.Call(http.MethodGet, "/api/audit/recordings", nil)
	wantStatus(t, "dana lists recordings", r, http.StatusOK, "")
	var lst struct {
		Recordings []struct {
			ID     string `json:"id"`
			UserID string `json:"user_id"`
			Target string `json:"target"`
			Login  string `json:"login"`
		} `json:"recordings"`
	}
	harness.DecodeJSON(t, r, &lst)
	own := false
	for _, rec := range lst.Recordings {
		if rec.UserID != dana.id {
			t.Fatalf("dana's recording list shows %s's recording %s", rec.UserID, rec.ID)
		}
		own = own || (rec.ID == recID["dana"] && rec.Target == "db-1" && rec.Login == "root")
	}
	if !own {
		t.Fatalf("dana's recording list lacks her session %s: %s", recID["dana"], r.Body)
	}

	r = dana.api.Call(http.MethodGet, "/api/audit/recordings/"+recID["dana"], nil)
	wantStatus(t, "dana reads her own recording", r, http.StatusOK, "")
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-asciicast") {
		t.Fatalf("recording Content-Type %q", ct)
	}
	if cast := parseAsciicast(t, []byte(r.Body)); !strings.Contains(cast.Output, "rec-dana") {
		t.Fatalf("dana's recording output %q", cast.Output)
	}
	r = dana.api.Call(http.MethodGet, "/api/audit/recordings/"+recID["ivy"], nil)
	wantStatus(t, "dana reads ivy's recording", r, http.StatusForbidden, "")
	r = aud.api.Call(http.MethodGet, "/api/audit/recordings/"+recID["ivy"], nil)
	wantStatus(t, "approved auditor reads ivy's recording", r, http.StatusOK, "")
	if cast := parseAsciicast(t, []byte(r.Body)); !strings.Contains(cast.Output, "rec-ivy") {
		t.Fatalf("ivy's recording output %q", cast.Output)
	}
	waitEvent(t, as.p, "dana's own read", byReader("recording.read", dana, audit.Allow, "", time.Time{}))
	waitEvent(t, as.p, "dana's refused read", byReader("recording.read", dana, audit.Deny, "", time.Time{}))
	waitEvent(t, as.p, "aud's read", byReader("recording.read", aud, audit.Allow, "", time.Time{}))
}

// byReader matches an event of typ by reader m (as the event's user or
// actor) with decision and, when not empty, reason, at or after since.
func byReader(typ string, m *member, decision, reason string, since time.Time) func(audit.Event) bool {
	return func(e audit.Event) bool {
		return e.Type == typ && (e.UserID == m.id || e.Actor == m.id) && e.Decision == decision &&
			(reason == "" || e.Reason == reason) && !e.Time.Before(since)
	}
}

// findEvents returns the events of p's trail that match.
func findEvents(t *testing.T, p *harness.Portcullis, match func(audit.Event) bool) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range harness.ReadAudit(t, p.AuditDir) {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits (10 s: the trail is written in batches) for an event
// that matches and returns the first.
func waitEvent(t *testing.T, p *harness.Portcullis, what string, match func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := findEvents(t, p, match); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for %s in %s", what, p.AuditDir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
