package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
	"github.com/portcullis/portcullis/gateway"
)

// accessRoles: viewer may only read /public of the app and has no SSH;
// ops may use the app and log in to every target as root, and is
// requestable (approved by admins).
const accessRoles = `    - {name: viewer, groups: [viewers], allow: [{apps: [app], path_prefixes: [/public]}]}
    - {name: ops, groups: [ops], allow: [{apps: [app]}, {targets: ["*"], logins: [root]}]}
`

const accessSection = "access: {requestable: [{role: ops, approvers: [admin], max_duration: 2h}]}\n"

// issueAs issues a certificate for userID with the base roles roles.
func issueAs(t *testing.T, ca *session.SSHCA, userID string, roles ...string) ssh.Signer {
	t.Helper()
	key, _, err := keys.GenerateSSHKey(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(session.CertRequest{PublicKey: key.PublicKey(), UserID: userID, Principals: []string{testfixture.TargetLogin},
		Roles: roles, TTL: time.Hour, PermitPTY: true})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// TestAccessWiring: a grant added through the instance's access manager
// reaches the bastion's decisions (a viewer cannot log in, then can with
// an ops grant; revoking it ends the live session) and the gateway's (a
// viewer's request to the app is refused, then proxied). Approvals go
// through the same manager and are audited in the instance's trail.
func TestAccessWiring(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	f.WriteConfig(t, accessRoles)
	appendConfig(t, f, accessSection)
	r := runInstance(t, f)
	ctx := context.Background()
	in := r.in
	user := "https://idp.example#vera"
	signer := issueAs(t, in.SSHCA, user, "viewer")

	// Gateway: a web session with the viewer role only.
	tok, _, err := in.Sessions.Create(ctx, session.Record{UserID: user, Roles: []string{"viewer"}, MFA: true, AuthTime: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cookie := in.Sessions.Cookie(tok, time.Hour)
	appStatus := func() int {
		req := httptest.NewRequest(http.MethodGet, "https://"+testfixture.AppHost+"/private", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		in.Gateway.Handler().ServeHTTP(rec, req)
		return rec.Code
	}

	if runs(r, signer) {
		t.Fatal("a viewer ran a command on the target without a grant")
	}
	if code := appStatus(); code != http.StatusForbidden {
		t.Fatalf("viewer's app request without a grant: %d, want 403", code)
	}

	// A request, approved by an admin: the grant.
	req, err := in.Access.Submit(ctx, accessPerson(user, "viewer"), "ops", time.Hour, "INC-7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Access.Approve(ctx, accessPerson("https://idp.example#ada", "admin"), req.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	if !runs(r, signer) {
		t.Fatal("a command on the target with an ops grant did not run")
	}
	c, err := r.dial(signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, ended := testfixture.LiveCat(t, c)
	// Allowed: proxied to the app's upstream, which does not listen.
	if code := appStatus(); code == http.StatusForbidden {
		t.Errorf("viewer's app request with a grant: %d", code)
	}

	if err := in.Access.RevokeGrant(ctx, "local-admin", req.ID, "done"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the SSH session outlived the revoked grant")
	}
	if code := appStatus(); code != http.StatusForbidden {
		t.Errorf("viewer's app request after the revocation: %d, want 403", code)
	}
	// The session's recording is served to its owner through the
	// gateway (the recordings store on the bastion's directory).
	lreq := httptest.NewRequest(http.MethodGet, "https://"+testfixture.AccessHost+"/api/audit/recordings", nil)
	lreq.Header.Set("Authorization", "Bearer "+cookie.Value)
	lrec := httptest.NewRecorder()
	in.Gateway.Handler().ServeHTTP(lrec, lreq)
	var list struct {
		Recordings []gateway.RecordingInfo `json:"recordings"`
	}
	if err := json.Unmarshal(lrec.Body.Bytes(), &list); lrec.Code != http.StatusOK || err != nil || len(list.Recordings) == 0 || list.Recordings[0].UserID != user {
		t.Fatalf("own recordings: %d %s %v", lrec.Code, lrec.Body, err)
	}
	xreq := httptest.NewRequest(http.MethodGet, "https://"+testfixture.AccessHost+"/api/audit/recordings/"+list.Recordings[0].ID, nil)
	xreq.Header.Set("Authorization", "Bearer "+cookie.Value)
	xrec := httptest.NewRecorder()
	in.Gateway.Handler().ServeHTTP(xrec, xreq)
	if xrec.Code != http.StatusOK || !strings.HasPrefix(xrec.Body.String(), `{"version":2`) {
		t.Errorf("own recording export: %d %.200s", xrec.Code, xrec.Body)
	}

	// An access review over the admin socket sees the standing roles and
	// the trail (the trail directory is wired).
	if _, err := r.admin.Call(ctx, adminclient.StartReview("2026-Q4")); err != nil {
		t.Fatalf("review start: %v", err)
	}
	body, err := r.admin.Call(ctx, adminclient.GetReview("2026-Q4"))
	if err != nil {
		t.Fatal(err)
	}
	var camp review.Campaign
	if err := json.Unmarshal(body, &camp); err != nil || camp.Name != "2026-Q4" {
		t.Fatalf("campaign: %v %s", err, body)
	}

	r.stop()
	trail := auditText(t, f)
	for _, want := range []string{`"type":"review.start"`, `"type":"access.request"`, `"type":"access.approve"`, `"type":"access.grant"`, `"type":"access.revoke"`, `"reason":"grant-revoked"`} {
		if !strings.Contains(trail, want) {
			t.Errorf("trail lacks %s", want)
		}
	}
}

// TestReloadAccess: a reload swaps the access settings (a newly
// requestable role can be requested at once) and notes it on the reload's
// audit event; requests and grants survive it.
func TestReloadAccess(t *testing.T) {
	f := testfixture.New(t)
	f.WriteConfig(t, accessRoles)
	r := runInstance(t, f)
	ctx := context.Background()
	user := accessPerson("https://idp.example#vera", "viewer")
	if _, err := r.in.Access.Submit(ctx, user, "ops", time.Hour, "before"); err == nil {
		t.Fatal("ops requestable without an access section")
	}
	g, err := r.in.Access.AddGrant(ctx, "local-admin", user.UserID, "viewer", time.Time{}, "standing")
	if err != nil {
		t.Fatal(err)
	}
	appendConfig(t, f, accessSection)
	if err := r.in.Reload(ctx, func() (*config.Config, error) { return load(t, f), nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := r.in.Access.Submit(ctx, user, "ops", time.Hour, "after"); err != nil {
		t.Fatalf("request after the reload: %v", err)
	}
	grants, err := r.in.Access.ListGrants(ctx)
	if err != nil || len(grants) != 1 || grants[0].ID != g.ID {
		t.Errorf("grants after the reload: %+v %v", grants, err)
	}
	r.stop()
	trail := auditText(t, f)
	if !strings.Contains(trail, `"access":"reloaded"`) || !strings.Contains(trail, audit.TypeConfigReload) {
		t.Errorf("reload event lacks the access outcome:\n%s", trail)
	}
}

// runs reports whether signer can run a command on the target through
// the bastion (a denied connection gets through the handshake, then only
// a message).
func runs(r *running, signer ssh.Signer) bool {
	c, err := r.dial(signer)
	if err != nil {
		return false
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return false
	}
	defer s.Close()
	out, err := s.Output("echo ran-on-target")
	return err == nil && string(out) == "ran-on-target\n"
}

func accessPerson(userID string, roles ...string) access.Person {
	return access.Person{UserID: userID, Roles: roles}
}
