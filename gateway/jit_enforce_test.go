package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// appGet requests path on the route host with session token tok.
func (e *jitEnv) appGet(tok, path string) int {
	e.t.Helper()
	b := e.browser()
	b.setCookie(appHost, e.sessions.CookieName(), tok)
	return b.get(e.appURL(path)).status
}

// TestJITGrantAtProxy: an approved request opens the role's paths at
// once; a revocation closes them at once; an expiry closes them at the
// grant's end without any event (clock only).
func TestJITGrantAtProxy(t *testing.T) {
	e := newJITEnv(t, false)
	bob := e.token(jitFrank, "engineer")
	dave := e.token(jitDave, "sre-lead")
	if st := e.appGet(bob, "/dash"); st != http.StatusOK {
		t.Fatalf("base role path: %d", st)
	}
	if st := e.appGet(bob, "/db"); st != http.StatusForbidden {
		t.Fatalf("before the grant: %d, want 403", st)
	}

	id := e.submit(bob, "db-admin", "2h")
	if st := e.appGet(bob, "/db"); st != http.StatusForbidden {
		t.Fatalf("pending request opened the path: %d", st)
	}
	if st, reason, m := e.decide(dave, id, "approve"); st != http.StatusOK || m["state"] != "approved" || m["grant_id"] != id {
		t.Fatalf("approve: %d %s %v", st, reason, m)
	}
	if st := e.appGet(bob, "/db"); st != http.StatusOK {
		t.Fatalf("after approval: %d, want 200 at once", st)
	}
	// The allowed decision names the granted role (reviews attribute use).
	var role string
	for _, ev := range e.audit.Find(audit.TypeDecision, "") {
		if ev.Decision == audit.Allow && ev.Path == "/db" {
			role = ev.Role
		}
	}
	if role != "db-admin" {
		t.Errorf("allowed decision role %q, want db-admin", role)
	}

	if st, m := e.local(http.MethodPost, "/api/admin/grants/"+id+"/revoke", `{"reason":"done"}`); st != http.StatusOK {
		t.Fatalf("revoke: %d %v", st, m)
	}
	if st := e.appGet(bob, "/db"); st != http.StatusForbidden {
		t.Fatalf("after revocation: %d, want 403 at once", st)
	}

	// Shorter than the session's idle timeout.
	id2 := e.submit(bob, "db-admin", "20m")
	if st, reason, _ := e.decide(dave, id2, "approve"); st != http.StatusOK {
		t.Fatalf("approve: %d %s", st, reason)
	}
	if st := e.appGet(bob, "/db"); st != http.StatusOK {
		t.Fatalf("second grant: %d", st)
	}
	e.clock.Advance(20*time.Minute - time.Second)
	if st := e.appGet(bob, "/db"); st != http.StatusOK {
		t.Fatalf("a second before expiry: %d", st)
	}
	e.clock.Advance(time.Second)
	if st := e.appGet(bob, "/db"); st != http.StatusForbidden {
		t.Fatalf("at expiry: %d, want 403", st)
	}
	if st, m, raw := e.call(http.MethodGet, "/api/access/grants", bob, ""); st != http.StatusOK || len(m["grants"].([]any)) != 0 {
		t.Fatalf("grants after expiry: %d %s", st, raw)
	}
}

// TestJITCertificate: the certificate's principals and the target hints
// come from the effective roles, its roles extension from the base roles
// only (the bastion adds grants from its own cache).
func TestJITCertificate(t *testing.T) {
	e := newJITEnv(t, false)
	b, _ := e.signedIn("bob")
	rec, err := e.sessions.Lookup(context.Background(), b.cookie(accessHost, e.sessions.CookieName()))
	if err != nil {
		t.Fatal(err)
	}
	issue := func() (SSHCertResponse, *ssh.Certificate) {
		t.Helper()
		_, pub := userKey(t)
		st, resp, body := e.exchange(certBody(e.confirm(b, "41234"), pub))
		if st != http.StatusOK {
			t.Fatalf("exchange: %d %s", st, body)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(resp.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		return resp, k.(*ssh.Certificate)
	}
	resp, cert := issue()
	if strings.Join(cert.ValidPrincipals, ",") != "deploy" {
		t.Fatalf("principals without a grant: %v", cert.ValidPrincipals)
	}

	if _, err := e.acc.AddGrant(context.Background(), "local-admin", rec.UserID, "db-admin", e.clock.Now().Add(20*time.Minute), "INC-9"); err != nil {
		t.Fatal(err)
	}
	resp, cert = issue()
	if got := strings.Join(cert.ValidPrincipals, ","); got != "dba,deploy" {
		t.Errorf("principals with the grant: %q, want dba,deploy", got)
	}
	if got := cert.Extensions[session.ExtRoles]; got != "engineer" {
		t.Errorf("roles extension %q, want the base roles only (engineer)", got)
	}
	hints := map[string]string{}
	for _, h := range resp.Targets {
		hints[h.Name] = strings.Join(h.Logins, ",")
	}
	if hints["db-1"] != "dba" || hints["web-1"] != "deploy" {
		t.Errorf("target hints %v", hints)
	}

	// After expiry the principals are the base ones again.
	e.clock.Advance(20 * time.Minute)
	_, cert = issue()
	if got := strings.Join(cert.ValidPrincipals, ","); got != "deploy" {
		t.Errorf("principals after the grant expired: %q", got)
	}
}

// TestJITAdminByGrant: an admin role counts from a grant only when it is
// configured requestable; any other role granted never makes an admin.
func TestJITAdminByGrant(t *testing.T) {
	e := newJITEnv(t, false)
	pol := e.policy.Load()
	now := e.clock.Now()
	ctx := context.Background()
	if e.g.isAdmin(pol, jitFrank, []string{"engineer"}, now) {
		t.Fatal("engineer is admin")
	}
	if _, err := e.acc.AddGrant(ctx, "local-admin", jitFrank, "ops-admin", time.Time{}, "on call"); err != nil {
		t.Fatal(err)
	}
	if !e.g.isAdmin(pol, jitFrank, []string{"engineer"}, now) {
		t.Error("granted requestable admin role does not count")
	}
	// admin is an admin role but not requestable: a grant of it is ignored.
	if _, err := e.acc.AddGrant(ctx, "local-admin", jitGrace, "admin", time.Time{}, "x"); err != nil {
		t.Fatal(err)
	}
	if e.g.isAdmin(pol, jitGrace, nil, now) {
		t.Error("grant of a role that is not requestable made an admin")
	}
	tok := e.token(jitGrace)
	if st, m, _ := e.call(http.MethodGet, "/api/admin/users", tok, ""); st != http.StatusForbidden {
		t.Errorf("admin API with a non-requestable admin grant: %d %v", st, m)
	}
	ops := e.token(jitFrank, "engineer")
	if st, _, raw := e.call(http.MethodGet, "/api/admin/users", ops, ""); st != http.StatusOK {
		t.Errorf("admin API with a requestable admin grant: %d %s", st, raw)
	}
}

// TestLiveStreamsEndWithGrant: a grants-changed event ends the user's
// streams admitted by a grant (cause errGrantEnded), not their others nor
// other users'; a resync ends every stream admitted by a grant.
func TestLiveStreamsEndWithGrant(t *testing.T) {
	tests := []struct {
		name  string
		event store.Event
		ended []string
	}{
		{"grants changed", store.Event{Kind: store.EventGrantsChanged, Subject: "https://idp#u1"}, []string{"u1-grant"}},
		{"other user", store.Event{Kind: store.EventGrantsChanged, Subject: "https://idp#u3"}, nil},
		{"resync", store.Event{Kind: store.EventResync}, []string{"u1-grant", "u2-grant"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newCoreEnv(t)
			ctxs := map[string]context.Context{}
			for _, s := range []struct {
				name, user string
				grant      bool
			}{{"u1-grant", "u1", true}, {"u1-base", "u1", false}, {"u2-grant", "u2", true}} {
				_, rec, err := e.sess.Create(context.Background(), session.Record{UserID: "https://idp#" + s.user, Roles: []string{"engineer"}, MFA: true})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancelCause(context.Background())
				t.Cleanup(func() { cancel(nil) })
				defer e.g.streams.add(rec.UserID, rec.ID, s.grant, cancel)()
				ctxs[s.name] = ctx
			}
			e.g.applyStreamEvent(context.Background(), tc.event)
			for name, ctx := range ctxs {
				want := error(nil)
				if slices.Contains(tc.ended, name) {
					want = errGrantEnded
				}
				if got := context.Cause(ctx); got != want {
					t.Errorf("stream %s: cause %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestEffectiveRolesNoAllocation: with no grant adding a role, the hot
// path's effective roles are the session's roles themselves, without
// allocating (JIT off, and on with grants of other users only).
func TestEffectiveRolesNoAllocation(t *testing.T) {
	e := newJITEnv(t, false)
	if _, err := e.acc.AddGrant(context.Background(), "local-admin", jitGrace, "db-admin", time.Time{}, "x"); err != nil {
		t.Fatal(err)
	}
	base := []string{"engineer"}
	now := e.clock.Now()
	for _, tc := range []struct {
		name string
		off  bool
	}{{"off", true}, {"on, other user's grant", false}} {
		t.Run(tc.name, func(t *testing.T) {
			g := e.g
			if tc.off {
				g.deps.Access = nil
				defer func() { g.deps.Access = e.acc }()
			}
			var got []string
			if n := testing.AllocsPerRun(100, func() { got = g.effectiveRoles(jitFrank, base, now) }); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
			if &got[0] != &base[0] {
				t.Error("effective roles are not the base slice itself")
			}
		})
	}
	if got := e.g.effectiveRoles(jitGrace, base, now); strings.Join(got, ",") != "db-admin,engineer" {
		t.Errorf("with a grant: %v", got)
	}
}
