package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// lockBehindBack sets a user lock straight in the store, without the
// engine's revocations: the user's web session stays, as it would on an
// instance the revocation has not reached yet. Every credential endpoint
// must still refuse.
func lockBehindBack(t *testing.T, st store.Store, userID string) store.Lock {
	t.Helper()
	l := store.Lock{Subject: risk.UserSubject(userID), Reason: "test-lock", Ref: "R-TEST-0001", CreatedAt: time.Now()}
	if err := st.PutLock(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSSHEndpointsRefuseLockedUser: certificate pages, the code exchange
// and approvals check the lock in the store before issuing or deciding
// anything.
func TestSSHEndpointsRefuseLockedUser(t *testing.T) {
	e := newSSHEnv(t, nil)
	b, _ := e.signedIn("alice")
	alice := e.userID("alice")
	code := e.confirm(b, "50123") // minted before the lock
	pageBefore := b.get(pathSSHLogin + "?port=50124&state=" + testState)
	csrf := scrape(t, reCSRF, pageBefore.body)
	approval, _ := e.pending("db-1")
	ap := b.get(approvePath(approval))
	apCSRF := scrape(t, reCSRF, ap.body)

	l := lockBehindBack(t, e.st, alice)
	_, key := userKey(t)
	tests := []struct {
		name string
		do   func() page
		typ  string
	}{
		{"certificate page", func() page { return b.get(pathSSHLogin + "?port=50124&state=" + testState) }, TypeSSHCertIssue},
		{"confirmation", func() page {
			return b.post(pathSSHLogin, url.Values{"csrf": {csrf}, "port": {"50124"}, "state": {testState}})
		}, TypeSSHCertIssue},
		{"approval page", func() page { return b.get(approvePath(approval)) }, TypeSSHApprovalDeny},
		{"approval decision", func() page {
			return b.post(pathSSHApprove, url.Values{"csrf": {apCSRF}, "c": {approval}, "decision": {"approve"}})
		}, TypeSSHApprovalDeny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			p := tc.do()
			lockedPage(t, p.status, p.body, lockedText, l.Ref)
			if ev := e.mustAudit(tc.typ, risk.ReasonAccountLocked, audit.Deny); ev.UserID != alice || ev.Ref != l.Ref {
				t.Fatalf("audit %+v", ev)
			}
		})
	}
	t.Run("certificate exchange", func(t *testing.T) {
		defer e.useT(t)()
		status, _, body := e.exchange(certBody(code, key))
		var eb errorBody
		_ = json.Unmarshal([]byte(body), &eb)
		if status != http.StatusForbidden || eb.Ref != l.Ref || eb.Error != lockedText+" "+l.Ref+"." {
			t.Fatalf("exchange: %d %s", status, body)
		}
	})
	// The approval was not used up by the refused decision, and nothing
	// was decided.
	if _, ok := e.outcome(approval); ok {
		t.Fatal("a locked user decided an approval")
	}
	a, err := session.NewSSHApprovals(e.st, session.SSHCAOptions{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Pending(context.Background(), approval); err != nil {
		t.Fatalf("approval spent: %v", err)
	}
}

// TestApprovalFailuresCounted: unknown and expired approval codes are
// approval failures of the signed-in user; reaching the threshold locks
// and answers with the locked page.
func TestApprovalFailuresCounted(t *testing.T) {
	e := newSSHEnv(t, nil)
	// Counted against the source only: anyone can send a signed-in user a
	// bad approval link, so the user threshold must never be reached.
	if err := e.risk.SetConfig(risk.Config{
		User:     map[risk.Signal]risk.Threshold{risk.SignalApprovalFailure: {Count: 1, Window: 15 * time.Minute}},
		SourceIP: risk.Threshold{Count: 3, Window: 5 * time.Minute},
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := e.signedIn("alice")
	alice := e.userID("alice")
	expired, _ := e.pending("db-1")
	p := b.get(approvePath(expired))
	csrf := scrape(t, reCSRF, p.body)
	// 1: an unknown code on the page.
	if p := b.get(approvePath("AAAAAAAAAAAAAAAAAAAAAA")); p.status != http.StatusNotFound {
		t.Fatalf("unknown code: %d", p.status)
	}
	// 2: a decision on an unknown code.
	if p := b.post(pathSSHApprove, url.Values{"csrf": {csrf}, "c": {"BBBBBBBBBBBBBBBBBBBBBB"}, "decision": {"deny"}}); p.status != http.StatusNotFound {
		t.Fatalf("unknown code decision: %d", p.status)
	}
	noLock(t, e.st, "user:"+alice)
	// 3: approving an expired request reaches the source threshold.
	e.clock.Advance(session.DefaultApprovalTTL + time.Second)
	p = b.post(pathSSHApprove, url.Values{"csrf": {csrf}, "c": {expired}, "decision": {"approve"}})
	noLock(t, e.st, "user:"+alice)
	ls, err := e.risk.Locks(context.Background())
	if err != nil || len(ls) != 1 || !strings.HasPrefix(ls[0].Subject, "ip:") || ls[0].Reason != risk.ReasonSourceIP {
		t.Fatalf("locks %+v %v, want one source block", ls, err)
	}
	lockedPage(t, p.status, p.body, blockText, ls[0].Ref)
	// A user's own "deny" is no failure.
	e2 := newSSHEnv(t, nil)
	if err := e2.risk.SetConfig(risk.Config{User: map[risk.Signal]risk.Threshold{risk.SignalApprovalFailure: {Count: 1, Window: 15 * time.Minute}}}); err != nil {
		t.Fatal(err)
	}
	b2, _ := e2.signedIn("bob")
	code, _ := e2.pending("")
	if p := e2.decide(b2, code, "deny"); p.status != http.StatusOK || !strings.Contains(p.body, "denied") {
		t.Fatalf("deny: %d", p.status)
	}
	if ls, _ := e2.risk.Locks(context.Background()); len(ls) != 0 {
		t.Fatalf("locks after a deny: %+v", ls)
	}
}
