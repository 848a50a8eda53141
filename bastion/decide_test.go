package bastion

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
)

// TestDecisionDenied: authenticated users asking for what policy does not
// allow get a generic message with a reference, and the audit decision
// carries the real reason and the same reference.
func TestDecisionDenied(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name   string
		user   func() *user
		dest   string
		reason string
	}{
		{"login not allowed", func() *user { return e.issue("bob", []string{"readonly"}, []string{"root", "deploy"}, nil) },
			"deploy@db-1", string(authz.ReasonNoMatchingRule)},
		{"target not allowed", func() *user { return e.issue("carol", []string{"web"}, []string{"root"}, nil) },
			"root@db-1", string(authz.ReasonNoMatchingRule)},
		{"unknown target", e.alice, "root@nowhere", string(authz.ReasonUnknownTarget)},
		{"policy target the bastion cannot reach", func() *user { return e.issue("gina", []string{"dbadmin"}, []string{"root"}, nil) },
			"root@ghost", string(authz.ReasonUnknownTarget)},
		{"source IP outside the role allowlist", func() *user { return e.issue("dave", []string{"office"}, []string{"root"}, nil) },
			"root@db-1", string(authz.ReasonSourceIPNotAllowed)},
		{"per-session MFA role", func() *user { return e.issue("erin", []string{"mfa-each-time"}, []string{"root"}, nil) },
			"root@db-1", string(ReasonPerSessionMFA)},
		{"no roles", func() *user { return e.issue("zed", nil, []string{"root"}, nil) }, "root@db-1", string(authz.ReasonNoRoles)},
		{"unknown role", func() *user { return e.issue("zed", []string{"ghost-role"}, []string{"root"}, nil) },
			"root@db-1", string(authz.ReasonNoRoles)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			e.audit.Reset()
			r := e.ssh(tc.user(), tc.dest, "echo hello")
			if r.code != 1 || strings.Contains(r.stdout, "hello") {
				t.Fatalf("not denied: %+v", r)
			}
			ev := e.waitAudit(audit.TypeDecision, tc.reason)
			if ev.Decision != audit.Deny || ev.Ref == "" || ev.UserID == "" {
				t.Fatalf("audit %+v", ev)
			}
			if !strings.Contains(r.stderr, "access denied ("+ev.Ref+")") {
				t.Fatalf("user message %q lacks the reference %s", r.stderr, ev.Ref)
			}
			if strings.Contains(r.stderr, tc.reason) {
				t.Fatalf("the real reason leaked to the user: %q", r.stderr)
			}
			if len(e.audit.Find(TypeSSHSessionStart, "")) != 0 {
				t.Fatal("a session started")
			}
		})
	}
}

// TestPolicyNilDenies: no policy loaded means deny.
func TestPolicyNilDenies(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.policy.Store(nil)
	r := e.ssh(e.alice(), "root@db-1", "echo hello")
	if r.code != 1 || strings.Contains(r.stdout, "hello") {
		t.Fatalf("not denied: %+v", r)
	}
	e.waitAudit(audit.TypeDecision, string(authz.ReasonNoMatchingRule))
}

// TestListTargets: without a target the user sees what they may reach.
func TestListTargets(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name      string
		user      func() *user
		want, not []string
	}{
		{"alice", func() *user { return e.issue("alice", []string{"eng"}, []string{"root", "deploy"}, nil) },
			[]string{"db-1", "logins: root"}, []string{"web-1", "deploy"}},
		{"carol", func() *user { return e.issue("carol", []string{"web"}, []string{"root"}, nil) },
			[]string{"web-1"}, []string{"db-1"}},
		{"nobody", func() *user { return e.issue("zed", nil, []string{"root"}, nil) },
			[]string{"(none)"}, []string{"db-1", "web-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			r := e.ssh(tc.user(), tc.name)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stdout, w) {
					t.Fatalf("listing %q lacks %q", r.stdout, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(r.stdout, n) {
					t.Fatalf("listing %q shows %q", r.stdout, n)
				}
			}
		})
	}
	if len(e.audit.Find(TypeSSHList, "")) != 3 || len(e.audit.Find(TypeSSHSessionStart, "")) != 0 {
		t.Fatalf("audit %+v", e.audit.Events())
	}
}
