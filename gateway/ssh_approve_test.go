package gateway

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// pending creates an approval the way the bastion does.
func (e *sshEnv) pending(target string) (string, session.SSHApproval) {
	e.t.Helper()
	a, err := session.NewSSHApprovals(e.st, session.SSHCAOptions{Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	code, rec, err := a.Create(context.Background(), session.SSHApproval{SourceIP: "192.0.2.7", Target: target, Login: "root"}, session.DefaultApprovalTTL)
	if err != nil {
		e.t.Fatal(err)
	}
	return code, rec
}

// outcome collects the decision as the bastion does.
func (e *sshEnv) outcome(code string) (session.SSHApprovalDecision, bool) {
	e.t.Helper()
	a, _ := session.NewSSHApprovals(e.st, session.SSHCAOptions{Now: e.clock.Now})
	d, ok, err := a.Outcome(context.Background(), code)
	if err != nil {
		e.t.Fatal(err)
	}
	return d, ok
}

func approvePath(code string) string { return pathSSHApprove + "?c=" + url.QueryEscape(code) }

// decide loads the approval page and presses a button.
func (e *sshEnv) decide(b *browser, code, decision string) page {
	e.t.Helper()
	p := b.get(approvePath(code))
	if p.status != http.StatusOK {
		e.t.Fatalf("approval page: %d\n%s", p.status, p.body)
	}
	return b.post(pathSSHApprove, url.Values{"csrf": {scrape(e.t, reCSRF, p.body)}, "c": {code}, "decision": {decision}})
}

// TestSSHApproveFlow: a user signs in on the way, sees exactly the pending
// connection, and approves it; the bastion collects the approver's
// identity once.
func TestSSHApproveFlow(t *testing.T) {
	e := newSSHEnv(t, nil)
	code, rec := e.pending("db-1")
	b := e.browser()
	p := b.get(approvePath(code))
	if p.status != http.StatusSeeOther || p.location() != pathLogin+"?rd="+url.QueryEscape(approvePath(code)) {
		t.Fatalf("unauthenticated: %d %q", p.status, p.location())
	}
	_, done := b.loginNew("alice", approvePath(code))
	if done.location() != approvePath(code) {
		t.Fatalf("login returned to %q", done.location())
	}
	sess, err := e.sessions.Lookup(t.Context(), b.cookie(accessHost, e.sessions.CookieName()))
	if err != nil {
		t.Fatal(err)
	}
	p = b.get(approvePath(code))
	for _, want := range []string{
		`id="ssh-login"><code>root</code>`, `id="ssh-target"><code>db-1</code>`, `id="ssh-source"><code>192.0.2.7</code>`,
		`id="ssh-code"><code>` + rec.Display + `</code>`, `id="approve"`, `id="deny"`, `id="ssh-time">`,
	} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("approval page lacks %s:\n%s", want, p.body)
		}
	}
	p = b.post(pathSSHApprove, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "c": {code}, "decision": {"approve"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, "approved") {
		t.Fatalf("approve: %d\n%s", p.status, p.body)
	}
	ev := e.mustAudit(TypeSSHApprovalApprove, "approved", audit.Allow)
	if ev.UserID != sess.UserID || ev.Target != "db-1" || ev.Attrs["login"] != "root" || ev.Attrs["ssh_source_ip"] != "192.0.2.7" ||
		ev.Attrs["approval"] != session.ApprovalRef(code) || strings.Contains(ev.Attrs["approval"], code) {
		t.Fatalf("approve audit %+v", ev)
	}
	d, ok := e.outcome(code)
	if !ok || !d.Approved || d.UserID != sess.UserID || !slices.Equal(d.Roles, sess.Roles) || d.WebSessionID != sess.ID || !d.Same(rec) {
		t.Fatalf("decision %+v ok=%v", d, ok)
	}
	// Used: the page and a second decision fail generically.
	if p := b.get(approvePath(code)); p.status != http.StatusNotFound || strings.Contains(p.body, `id="approve"`) {
		t.Fatalf("used code page: %d", p.status)
	}
	e.mustAudit(TypeSSHApprovalDeny, reasonApprovalInvalid, audit.Deny)
}

func TestSSHApproveDeny(t *testing.T) {
	e := newSSHEnv(t, nil)
	code, rec := e.pending("")
	b, _ := e.signedIn("bob")
	if p := b.get(approvePath(code)); !strings.Contains(p.body, "(list of targets)") {
		t.Fatalf("listing request page:\n%s", p.body)
	}
	p := e.decide(b, code, "deny")
	if p.status != http.StatusOK || !strings.Contains(p.body, "denied") {
		t.Fatalf("deny: %d\n%s", p.status, p.body)
	}
	e.mustAudit(TypeSSHApprovalDeny, "denied-by-user", audit.Deny)
	if d, ok := e.outcome(code); !ok || d.Approved || !d.Same(rec) {
		t.Fatalf("decision %+v ok=%v", d, ok)
	}
}

// TestSSHApproveHostile: unknown, malformed, expired and reused codes,
// missing or foreign CSRF, no session, half-finished login, bad
// decisions. None of them decides anything.
func TestSSHApproveHostile(t *testing.T) {
	e := newSSHEnv(t, nil)
	b, sid := e.signedIn("alice")
	t.Run("malformed codes, even signed out", func(t *testing.T) {
		defer e.useT(t)()
		for _, c := range []string{"", "x", strings.Repeat("A", 23), "../../etc", "%00", strings.Repeat("A", 5000)} {
			if p := e.browser().get(pathSSHApprove + "?c=" + url.QueryEscape(c)); p.status != http.StatusNotFound {
				t.Errorf("code %q: %d", c, p.status)
			}
		}
	})
	t.Run("unknown code", func(t *testing.T) {
		defer e.useT(t)()
		if p := b.get(approvePath("AAAAAAAAAAAAAAAAAAAAAA")); p.status != http.StatusNotFound {
			t.Fatalf("%d", p.status)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		defer e.useT(t)()
		code, _ := e.pending("db-1")
		p := b.get(approvePath(code))
		csrf := scrape(t, reCSRF, p.body)
		e.clock.Advance(session.DefaultApprovalTTL + time.Second)
		if p := b.get(approvePath(code)); p.status != http.StatusNotFound {
			t.Fatalf("page: %d", p.status)
		}
		p = b.post(pathSSHApprove, url.Values{"csrf": {csrf}, "c": {code}, "decision": {"approve"}})
		if p.status != http.StatusNotFound || strings.Contains(p.body, "is approved") {
			t.Fatalf("approve: %d\n%s", p.status, p.body)
		}
		if _, ok := e.outcome(code); ok {
			t.Fatal("expired code decided")
		}
	})
	t.Run("reused code", func(t *testing.T) {
		defer e.useT(t)()
		code, _ := e.pending("db-1")
		p := b.get(approvePath(code))
		form := url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "c": {code}, "decision": {"approve"}}
		if p := b.post(pathSSHApprove, form); p.status != http.StatusOK {
			t.Fatalf("first: %d", p.status)
		}
		form.Set("decision", "deny")
		if p := b.post(pathSSHApprove, form); p.status != http.StatusNotFound {
			t.Fatalf("second: %d", p.status)
		}
		if d, ok := e.outcome(code); !ok || !d.Approved {
			t.Fatalf("the first decision was changed: %+v", d)
		}
	})

	// Refusals that must leave the pending approval untouched.
	code, _ := e.pending("db-1")
	csrf := scrape(t, reCSRF, b.get(approvePath(code)).body)
	other, _ := e.signedIn("bob")
	e.runPosts(t, pathSSHApprove, TypeSSHApprovalDeny, []postCase{
		{"no CSRF token", b, url.Values{"c": {code}, "decision": {"approve"}}, nil, http.StatusForbidden, "csrf-invalid"},
		{"another session's token", other, url.Values{"csrf": {csrf}, "c": {code}, "decision": {"approve"}}, nil, http.StatusForbidden, "csrf-invalid"},
		{"foreign origin", b, url.Values{"csrf": {csrf}, "c": {code}, "decision": {"approve"}},
			[]string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden, "csrf-invalid"},
		{"not signed in", e.browser(), url.Values{"csrf": {csrf}, "c": {code}, "decision": {"approve"}}, nil, http.StatusForbidden, "csrf-invalid"},
		{"bad decision", b, url.Values{"csrf": {csrf}, "c": {code}, "decision": {"maybe"}}, nil, http.StatusBadRequest, "bad-form"},
		{"no decision", b, url.Values{"csrf": {csrf}, "c": {code}}, nil, http.StatusBadRequest, "bad-form"},
	})
	t.Run("half-finished login", func(t *testing.T) {
		defer e.useT(t)()
		e.halfLoginRedirected("bob", approvePath(code))
	})
	t.Run("session revoked", func(t *testing.T) {
		defer e.useT(t)()
		e.revoke(sid)
		p := b.post(pathSSHApprove, url.Values{"csrf": {csrf}, "c": {code}, "decision": {"approve"}})
		if p.status != http.StatusUnauthorized {
			t.Fatalf("revoked session: %d", p.status)
		}
		if p := b.get(approvePath(code)); p.status != http.StatusSeeOther {
			t.Fatalf("revoked session page: %d", p.status)
		}
	})
	if _, ok := e.outcome(code); ok {
		t.Fatal("a refused request decided the approval")
	}
	// Still pending: a proper approval works.
	if p := e.decide(other, code, "approve"); p.status != http.StatusOK {
		t.Fatalf("approval after refusals: %d", p.status)
	}
}
