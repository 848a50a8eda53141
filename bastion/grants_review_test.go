package bastion

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
)

// TestPolicyReloadWithGrants: a policy reload decides live sessions again
// like a grant change does: only the roles a session started with may
// keep it, and it keeps their bounds. Before, Reevaluate asked about every
// role held now, so a role granted after the start kept a session the
// reload no longer allowed, with the old role's permissions and without
// the grant's expiry (the session outlived the grant).
func TestPolicyReloadWithGrants(t *testing.T) {
	fg := newFakeGrants()
	e := grantsEnv(t, fg, false)
	reset := func() func() {
		before := e.clock.offset.Load()
		orig := e.policy.Load()
		return func() { e.clock.offset.Store(before); e.policy.Store(orig) }
	}
	// engMoved is the policy with eng allowed on web-1 only.
	engMoved := func(t *testing.T) *authz.Policy {
		pc := grantsPolicy()
		pc.Roles[0].Allow = []authz.Rule{{Targets: []string{"web-1"}, Logins: []string{"root"}}}
		pol, err := authz.Compile(pc)
		if err != nil {
			t.Fatal(err)
		}
		return pol
	}

	t.Run("a role granted after the start does not keep the session", func(t *testing.T) {
		defer e.use(t)()
		defer reset()()
		ls := e.startCat(e.issue("pat", []string{"eng"}, []string{"root"}, nil))
		fg.grant("pat", "readonly", e.clock.Now().Add(10*time.Minute))
		e.policy.Store(engMoved(t))
		if n := e.b.Reevaluate(); n != 1 {
			t.Errorf("Reevaluate ended %d sessions, want 1", n)
		}
		ls.waitEnded(t)
		if end := e.waitSessionEnd(ls.id); end.Reason != "policy-changed" {
			t.Fatalf("session end %+v", end)
		}
	})

	t.Run("a grant held at the start keeps the session until it expires", func(t *testing.T) {
		defer e.use(t)()
		defer reset()()
		until := e.clock.Now().Add(10 * time.Minute)
		fg.grant("quin", "readonly", until)
		// readonly lends less than eng: keep eng's permissions equal by
		// starting with both, then the reload removes eng's.
		ls := e.startCat(e.issue("quin", []string{"eng"}, []string{"root"}, nil))
		if got := e.liveRoles(ls.id); !slices.Equal(got, []string{"eng", "readonly"}) {
			t.Fatalf("roles %v", got)
		}
		e.policy.Store(engMoved(t))
		e.b.Reevaluate()
		// eng lent file transfer and forwards that readonly does not:
		// the session cannot go on in full, so it ends.
		ls.waitEnded(t)
		if end := e.waitSessionEnd(ls.id); end.Reason != "policy-changed" {
			t.Fatalf("session end %+v", end)
		}
	})

	t.Run("survives on a grant: bounded by the grant", func(t *testing.T) {
		defer e.use(t)()
		defer reset()()
		until := e.clock.Now().Add(10 * time.Minute)
		fg.grant("ray", "readonly", until)
		ls := e.startCat(e.issue("ray", []string{"web"}, []string{"root"}, nil))
		// A reload that changes nothing for readonly: the session goes on
		// and still ends with the grant.
		pc := grantsPolicy()
		pol, err := authz.Compile(pc)
		if err != nil {
			t.Fatal(err)
		}
		e.policy.Store(pol)
		if n := e.b.Reevaluate(); n != 0 {
			t.Fatalf("Reevaluate ended %d sessions", n)
		}
		if info, _ := e.b.Registry().Get(ls.id); !info.Deadline.Equal(until) {
			t.Fatalf("deadline %v, want the grant's expiry %v", info.Deadline, until)
		}
		ls.echo(t, "still here")
		e.clock.Advance(11 * time.Minute)
		e.endedBy(t, ls, EndGrantExpired, grantExpiredMessage)
	})
}

// TestPolicyReloadDuringSetup: a policy swapped (and Reevaluate run) while
// a session was decided on the old policy but not yet registered still
// reaches it, as a grant change does (TestGrantRevokedDuringSetup).
func TestPolicyReloadDuringSetup(t *testing.T) {
	fg := newFakeGrants()
	e := grantsEnv(t, fg, false)
	fg.grant("sam", "eng", time.Time{})
	pc := grantsPolicy()
	pc.Roles[0].Allow = []authz.Rule{{Targets: []string{"web-1"}, Logins: []string{"root"}}}
	moved, err := authz.Compile(pc)
	if err != nil {
		t.Fatal(err)
	}
	var fired atomic.Bool
	fg.afterUntil = func(userID, role string) {
		// The setup's decision (after the login was recorded): the
		// reload swaps the policy and decides the registered sessions
		// again before this one is registered.
		if userID != "sam" || e.spy.count(riskCall{"record", "", "sam", "127.0.0.1"}) == 0 || !fired.CompareAndSwap(false, true) {
			return
		}
		e.policy.Store(moved)
		e.b.Reevaluate()
	}
	c := e.goClient(e.issue("sam", nil, []string{"root"}, nil), "root@db-1")
	s, err := c.NewSession()
	if err == nil {
		out, _ := s.CombinedOutput("echo hello")
		if strings.Contains(string(out), "hello") {
			t.Fatalf("the session ran on a policy replaced before it was registered: %q", out)
		}
	}
	evs := e.audit.Find(TypeSSHSessionStart, "")
	if len(evs) != 1 {
		t.Fatalf("session starts %+v", evs)
	}
	if end := e.waitSessionEnd(evs[0].SessionID); end.Reason != "policy-changed" {
		t.Fatalf("end %+v", end)
	}
}
