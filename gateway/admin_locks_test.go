package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/store"
)

// TestAdminLocks: list, lock and unlock through the admin API, with the
// effects (sessions gone, login refused, login possible again) and the
// audit trail.
func TestAdminLocks(t *testing.T) {
	f := newAdminFixture(t)
	e := f.e
	ctx := context.Background()
	aliceID := e.userID("alice")

	get := func() LocksResponse {
		t.Helper()
		st, _, raw := f.alice.adminCall(http.MethodGet, "/api/admin/locks", f.token, "")
		if st != http.StatusOK {
			t.Fatalf("list: %d %s", st, raw)
		}
		var out LocksResponse
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if ls := get(); ls.Locks == nil || len(ls.Locks) != 0 {
		t.Fatalf("initial locks %+v", ls)
	}
	ev := e.mustAudit(audit.TypeAdmin, "", audit.Allow)
	if ev.Attrs["action"] != "locks.list" || ev.Actor != aliceID {
		t.Fatalf("list audit %+v", ev)
	}

	// Lock bob.
	body, _ := json.Marshal(LockRequest{UserID: f.bobID, Reason: "incident 42"})
	st, _, raw := f.alice.adminCall(http.MethodPost, "/api/admin/locks/lock", f.token, string(body))
	if st != http.StatusOK {
		t.Fatalf("lock: %d %s", st, raw)
	}
	if strings.Contains(string(raw), "expires_at") {
		t.Errorf("a user lock shows an expiry: %s", raw)
	}
	var lr LockResponse
	if err := json.Unmarshal(raw, &lr); err != nil {
		t.Fatal(err)
	}
	l := lr.Lock
	if l.Subject != "user:"+f.bobID || l.Reason != risk.ReasonAdminLock || l.Ref == "" || !strings.Contains(l.Detail, "incident 42") ||
		!strings.Contains(l.Detail, aliceID) || l.CreatedAt.IsZero() {
		t.Fatalf("lock %+v", l)
	}
	if ev := e.mustAudit(audit.TypeRiskLock, risk.ReasonAdminLock, audit.Deny); ev.Actor != aliceID || ev.UserID != f.bobID || ev.Ref != l.Ref {
		t.Fatalf("risk.lock audit %+v", ev)
	}
	if ev := e.mustAudit(audit.TypeAdmin, "", audit.Allow); ev.Attrs["action"] != "lock" || ev.Target != f.bobID || ev.Actor != aliceID ||
		ev.Attrs["note"] != "incident 42" || ev.Ref != l.Ref {
		t.Fatalf("admin audit %+v", ev)
	}
	// bob's session is gone; his next login is refused with the ref.
	if p := f.bob.get(pathHome); p.status != http.StatusSeeOther {
		t.Fatalf("bob's session after the lock: %d", p.status)
	}
	p := f.bob.get(f.bob.idpLogin("/", "bob"))
	lockedPage(t, p.status, p.body, lockedText, l.Ref)
	// Locking again keeps the lock (and its ref).
	if st, _, raw := f.alice.adminCall(http.MethodPost, "/api/admin/locks/lock", f.token, string(body)); st != http.StatusOK || !strings.Contains(string(raw), l.Ref) {
		t.Fatalf("lock again: %d %s", st, raw)
	}
	// An IP block shows with its expiry.
	blockAt := e.clock.Now().Add(time.Second) // listed after the user lock (by creation)
	if err := e.st.PutLock(ctx, store.Lock{Subject: "ip:192.0.2.0/24", Reason: risk.ReasonSourceNetwork, Ref: "R-NET",
		CreatedAt: blockAt, ExpiresAt: blockAt.Add(time.Hour), Detail: "100 failures"}); err != nil {
		t.Fatal(err)
	}
	ls := get().Locks
	if len(ls) != 2 || ls[0].Subject != l.Subject || ls[1].Subject != "ip:192.0.2.0/24" || !ls[1].ExpiresAt.Equal(blockAt.Add(time.Hour)) || !ls[0].ExpiresAt.IsZero() {
		t.Fatalf("locks %+v", ls)
	}

	// Unlock both: bob by bare ID, the network by a non-canonical prefix.
	for _, u := range []struct{ subject, want string }{{f.bobID, "user:" + f.bobID}, {"ip:192.0.2.77/24", "ip:192.0.2.0/24"}} {
		body, _ := json.Marshal(UnlockRequest{Subject: u.subject, Reason: "cleared"})
		st, _, raw := f.alice.adminCall(http.MethodPost, "/api/admin/locks/unlock", f.token, string(body))
		if st != http.StatusOK {
			t.Fatalf("unlock %s: %d %s", u.subject, st, raw)
		}
		var lr LockResponse
		_ = json.Unmarshal(raw, &lr)
		if lr.Lock.Subject != u.want {
			t.Fatalf("unlocked %+v", lr.Lock)
		}
		if ev := e.mustAudit(audit.TypeAdmin, "", audit.Allow); ev.Attrs["action"] != "unlock" || ev.Target != u.want || ev.Actor != aliceID {
			t.Fatalf("admin audit %+v", ev)
		}
	}
	if ev := e.mustAudit(audit.TypeRiskUnlock, risk.ReasonAdminLock, audit.Allow); ev.Actor != aliceID || ev.UserID != f.bobID {
		t.Fatalf("risk.unlock audit %+v", ev)
	}
	if ls := get().Locks; len(ls) != 0 {
		t.Fatalf("locks after unlock %+v", ls)
	}
	// bob gets past the callback again.
	nb := e.browser()
	if p := nb.get(nb.idpLogin("/", "bob")); p.status != http.StatusSeeOther || p.location() != pathMFA {
		t.Fatalf("bob after unlock: %d %q", p.status, p.location())
	}
}

// TestAdminLocksHostile: malformed bodies, missing reasons, unknown
// subjects and callers without the right get errors with a reference,
// and change nothing.
func TestAdminLocksHostile(t *testing.T) {
	f := newAdminFixture(t)
	lock, unlock := "/api/admin/locks/lock", "/api/admin/locks/unlock"
	bobLock := func(reason string) string {
		b, _ := json.Marshal(LockRequest{UserID: f.bobID, Reason: reason})
		return string(b)
	}
	bobBearer := f.bob.cookie(accessHost, sessionCookie)
	tests := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"bad JSON", http.MethodPost, lock, f.token, `{"user_id":`, http.StatusBadRequest},
		{"not an object", http.MethodPost, lock, f.token, `["x"]`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, lock, f.token, `{"user_id":"u","reason":"r","force":true}`, http.StatusBadRequest},
		{"trailing data", http.MethodPost, lock, f.token, bobLock("r") + `{}`, http.StatusBadRequest},
		{"empty body", http.MethodPost, lock, f.token, ``, http.StatusBadRequest},
		{"missing reason", http.MethodPost, lock, f.token, bobLock(""), http.StatusBadRequest},
		{"reason with control characters", http.MethodPost, lock, f.token, bobLock("a\nb"), http.StatusBadRequest},
		{"reason too long", http.MethodPost, lock, f.token, bobLock(strings.Repeat("r", maxReasonLen+1)), http.StatusBadRequest},
		{"missing user", http.MethodPost, lock, f.token, `{"reason":"r"}`, http.StatusBadRequest},
		{"oversized body", http.MethodPost, lock, f.token, bobLock(strings.Repeat("r", maxAdminBody)), http.StatusBadRequest},
		{"unknown user", http.MethodPost, lock, f.token, `{"user_id":"https://idp.example.com#nobody","reason":"r"}`, http.StatusNotFound},
		{"unlock: not locked", http.MethodPost, unlock, f.token, `{"subject":"` + f.bobID + `","reason":"r"}`, http.StatusNotFound},
		{"unlock: unknown address", http.MethodPost, unlock, f.token, `{"subject":"ip:192.0.2.1","reason":"r"}`, http.StatusNotFound},
		{"unlock: bad address", http.MethodPost, unlock, f.token, `{"subject":"ip:192.0.2.999","reason":"r"}`, http.StatusBadRequest},
		{"unlock: empty user", http.MethodPost, unlock, f.token, `{"subject":"user:","reason":"r"}`, http.StatusBadRequest},
		{"unlock: missing reason", http.MethodPost, unlock, f.token, `{"subject":"` + f.bobID + `"}`, http.StatusBadRequest},
		{"GET on lock", http.MethodGet, lock, f.token, ``, http.StatusMethodNotAllowed},
		{"POST on list", http.MethodPost, "/api/admin/locks", f.token, ``, http.StatusMethodNotAllowed},
		{"no token", http.MethodGet, "/api/admin/locks", "", ``, http.StatusUnauthorized},
		{"non-admin lists", http.MethodGet, "/api/admin/locks", bobBearer, ``, http.StatusForbidden},
		{"non-admin locks", http.MethodPost, lock, bobBearer, bobLock("r"), http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, m, raw := f.alice.adminCall(tc.method, tc.path, tc.token, tc.body)
			if st != tc.want {
				t.Fatalf("status %d, want %d: %s", st, tc.want, raw)
			}
			if m["ref"] == nil || m["error"] == nil {
				t.Errorf("error body without ref: %s", raw)
			}
		})
	}
	if ls, err := f.e.risk.Locks(context.Background()); err != nil || len(ls) != 0 {
		t.Fatalf("locks %+v %v", ls, err)
	}
}

// TestLockedAdminRefused: an admin whose lock has not reached their token
// session yet is still refused on every admin API call (the lock is read
// from the store per request), with the locked message and reference.
func TestLockedAdminRefused(t *testing.T) {
	f := newAdminFixture(t)
	l := lockBehindBack(t, f.e.st, f.e.userID("alice"))
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/admin/locks", ""},
		{http.MethodGet, "/api/admin/users", ""},
		{http.MethodPost, "/api/admin/locks/unlock", `{"subject":"` + l.Subject + `","reason":"self-service"}`},
	} {
		st, m, raw := f.alice.adminCall(c.method, c.path, f.token, c.body)
		if st != http.StatusForbidden || m["ref"] != l.Ref || m["error"] != lockedText+" "+l.Ref+"." {
			t.Fatalf("%s %s: %d %s", c.method, c.path, st, raw)
		}
	}
	if ev := f.e.mustAudit(audit.TypeAdmin, risk.ReasonAccountLocked, audit.Deny); ev.Ref != l.Ref {
		t.Fatalf("audit %+v", ev)
	}
	// Still locked: the self-unlock was refused.
	if v, err := f.e.risk.Locked(context.Background(), f.e.userID("alice")); err != nil || v.Allow {
		t.Fatalf("unlocked: %+v %v", v, err)
	}
	// The local socket (root on the host) is not subject to user locks.
	w := httptest.NewRecorder()
	f.e.g.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/admin/locks/unlock",
		strings.NewReader(`{"subject":"`+l.Subject+`","reason":"verified by phone"}`)))
	if w.Code != http.StatusOK {
		t.Fatalf("local unlock: %d %s", w.Code, w.Body.String())
	}
	if ev := f.e.mustAudit(audit.TypeRiskUnlock, "test-lock", audit.Allow); ev.Actor != localAdminActor {
		t.Fatalf("unlock audit %+v", ev)
	}
}

func TestLockSubject(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"https://idp.example.com#u1", "user:https://idp.example.com#u1", true},
		{"user:https://idp.example.com#u1", "user:https://idp.example.com#u1", true},
		{"ip:192.0.2.7", "ip:192.0.2.7", true},
		{"ip:::ffff:192.0.2.7", "ip:192.0.2.7", true},
		{"ip:192.0.2.7/32", "ip:192.0.2.7", true},
		{"ip:192.0.2.77/24", "ip:192.0.2.0/24", true},
		{"ip:2001:db8::1/64", "ip:2001:db8::/64", true},
		{"ip:192.0.2.999", "", false},
		{"ip:", "", false},
		{"user:", "", false},
		{"", "", false},
		{"a\x00b", "", false},
	}
	for _, tc := range tests {
		got, ok := lockSubject(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("lockSubject(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// lockOnCheck is the risk engine with a lock raised by "another
// instance" at the moment the gateway re-checks Locked: the race between
// the gate and the creation of the token session.
type lockOnCheck struct {
	RiskEngine
	st     store.Store
	userID string
}

func (l *lockOnCheck) Locked(ctx context.Context, userID string) (risk.Verdict, error) {
	if userID == l.userID {
		if err := l.st.PutLock(ctx, store.Lock{Subject: "user:" + userID, Reason: "canary-touched", Ref: "ref-RACE000000"}); err != nil {
			return risk.Verdict{}, err
		}
	}
	return l.RiskEngine.Locked(ctx, userID)
}

// TestAdminTokenLockRace: a lock raised after the token page's gate but
// before its session exists (so the engine's revocation could not see
// it) still leaves no usable token: the page checks again after Create.
func TestAdminTokenLockRace(t *testing.T) {
	e := newLoginEnv(t)
	alice := e.browser()
	secret, _ := alice.loginNew("alice", "/")
	rec, err := e.sessions.Lookup(t.Context(), alice.cookie(accessHost, sessionCookie))
	if err != nil {
		t.Fatal(err)
	}
	e.g.deps.Risk = &lockOnCheck{RiskEngine: e.risk, st: e.st, userID: rec.UserID}
	p := alice.get(pathAdminToken)
	e.clock.Advance(31 * time.Second) // a fresh TOTP step
	p = alice.post(pathAdminToken, url.Values{"csrf": {scrape(t, reCSRF, p.body)}, "code": {e.code(secret)}})
	if p.status != http.StatusForbidden || strings.Contains(p.body, `id="admin-token"`) {
		t.Fatalf("token page with a lock raised meanwhile: %d\n%s", p.status, p.body)
	}
	sessions, err := e.st.ListSessions(t.Context(), rec.UserID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if s.ID != rec.ID {
			t.Fatalf("a token session survived the lock: %s", s.ID)
		}
	}
}
