package gateway

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// TestJITRequestJSON: the request and grant JSON of the contract.
func TestJITRequestJSON(t *testing.T) {
	e := newJITEnv(t, false)
	bob := e.token(jitFrank, "engineer")
	st, m, raw := e.call(http.MethodPost, "/api/access/requests", bob, `{"role":"db-admin","duration":"2h","reason":"INC-1234"}`)
	if st != http.StatusCreated {
		t.Fatalf("submit: %d %s", st, raw)
	}
	for k, want := range map[string]any{
		"user_id": jitFrank, "role": "db-admin", "duration": "2h0m0s", "reason": "INC-1234", "state": "pending",
		"approvals_required": float64(1), "denial": nil, "grant_id": "",
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
	if a, ok := m["approvals"].([]any); !ok || len(a) != 0 {
		t.Errorf("approvals %v, want []", m["approvals"])
	}
	for _, k := range []string{"created_at", "expires_at"} {
		s, _ := m[k].(string)
		if ts, err := time.Parse(time.RFC3339, s); err != nil || ts.Location() != time.UTC {
			t.Errorf("%s %q is not RFC 3339 UTC", k, s)
		}
	}
	id := m["id"].(string)
	dave := e.token(jitDave, "sre-lead")
	if st, reason, _ := e.decide(dave, id, "approve"); st != http.StatusOK {
		t.Fatalf("approve: %d %s", st, reason)
	}
	st, m, raw = e.call(http.MethodGet, "/api/access/grants", bob, "")
	gs, _ := m["grants"].([]any)
	if st != http.StatusOK || len(gs) != 1 {
		t.Fatalf("grants: %d %s", st, raw)
	}
	g := gs[0].(map[string]any)
	if g["id"] != id || g["source"] != "temporary" || g["request_id"] != id || g["role"] != "db-admin" || g["created_by"] != jitDave || g["expires"] == "" {
		t.Errorf("grant JSON %v", g)
	}
	// A local grant without an end has no "expires".
	if st, m := e.local(http.MethodPost, "/api/admin/grants", `{"user_id":"`+jitGrace+`","role":"db-admin","expires":"","reason":"standing"}`); st != http.StatusCreated || m["source"] != "local" {
		t.Fatalf("add grant: %d %v", st, m)
	} else if _, ok := m["expires"]; ok {
		t.Errorf("expires present on a grant until revoked: %v", m)
	}
}

// TestJITDecisionRules: the decision rules through the user API, each
// refusal with its status and reason code, audited exactly once (by the
// access manager).
func TestJITDecisionRules(t *testing.T) {
	e := newJITEnv(t, false)
	bob := e.token(jitFrank, "engineer")
	dave := e.token(jitDave, "sre-lead")
	erin := e.token(jitErin, "sre-lead")
	grace := e.token(jitGrace)
	selfLead := e.token(jitErin, "sre-lead") // erin's own request below

	db := e.submit(bob, "db-admin", "1h")
	aud := e.submit(bob, "auditor", "1h")
	own := e.submit(selfLead, "db-admin", "1h")

	steps := []struct {
		name, tok, id, verb string
		status              int
		reason              string
		auditType           string // refusal audited by the manager
	}{
		{"self approval", selfLead, own, "approve", http.StatusForbidden, "self-approval", access.TypeApprove},
		{"not an approver", grace, db, "approve", http.StatusForbidden, "not-approver", access.TypeApprove},
		{"engineer is no approver", bob, aud, "deny", http.StatusForbidden, "self-approval", access.TypeDeny},
		{"committee first", dave, aud, "approve", http.StatusOK, "", ""},
		{"same approver twice", dave, aud, "approve", http.StatusConflict, "duplicate-approval", access.TypeApprove},
		{"committee second", erin, aud, "approve", http.StatusOK, "", ""},
		{"decided", dave, aud, "deny", http.StatusConflict, "already-decided", access.TypeDeny},
		{"cancel by another", dave, db, "cancel", http.StatusForbidden, "not-requester", access.TypeCancel},
		{"deny", dave, db, "deny", http.StatusOK, "", ""},
		{"cancel decided", bob, db, "cancel", http.StatusConflict, "already-decided", access.TypeCancel},
		{"unknown", dave, "rq-aaaaaaaaaaaaaaaaaaaaaaaaaa", "approve", http.StatusNotFound, "not-found", ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			defer e.useT(t)()
			before := 0
			if s.auditType != "" {
				before = e.countAudit(s.auditType, s.reason, audit.Deny)
			}
			st, reason, m := e.decide(s.tok, s.id, s.verb)
			if st != s.status || reason != s.reason {
				t.Fatalf("%s: %d %q, want %d %q (%v)", s.verb, st, reason, s.status, s.reason, m)
			}
			if st != http.StatusOK {
				if ref, _ := m["ref"].(string); ref == "" {
					t.Errorf("refusal without a reference: %v", m)
				}
			}
			if s.auditType != "" {
				if got := e.countAudit(s.auditType, s.reason, audit.Deny); got != before+1 {
					t.Errorf("refusal audited %d times, want once", got-before)
				}
			}
		})
	}
	// The committee: pending with one approval, approved with two.
	st, m, raw := e.call(http.MethodGet, "/api/access/requests/"+aud, bob, "")
	if st != http.StatusOK || m["state"] != "approved" || len(m["approvals"].([]any)) != 2 || m["approvals_required"] != float64(2) {
		t.Fatalf("committee request: %d %s", st, raw)
	}
	if n := e.countAudit(access.TypeApprove, "", audit.Allow); n != 2 {
		t.Errorf("%d approvals audited, want 2", n)
	}
	// Unknown IDs are refused by the gateway: audited there.
	e.mustAudit(access.TypeApprove, "not-found", audit.Deny)

	// Visibility of one request: requester, approvers, deciders.
	for _, tc := range []struct {
		name, tok string
		status    int
	}{{"requester", bob, http.StatusOK}, {"approver", erin, http.StatusOK}, {"stranger", grace, http.StatusForbidden}} {
		if st, _, raw := e.call(http.MethodGet, "/api/access/requests/"+db, tc.tok, ""); st != tc.status {
			t.Errorf("%s reads the request: %d %s", tc.name, st, raw)
		}
	}
	// Lists: mine, and what I may approve.
	own2 := e.submit(bob, "db-admin", "30m")
	st, m, raw = e.call(http.MethodGet, "/api/access/requests", dave, "")
	if st != http.StatusOK {
		t.Fatalf("list: %d %s", st, raw)
	}
	ids := func(v any) []string {
		var out []string
		for _, x := range v.([]any) {
			out = append(out, x.(map[string]any)["id"].(string))
		}
		return out
	}
	if got := ids(m["to_approve"]); strings.Join(got, ",") != strings.Join([]string{own2, own}, ",") && strings.Join(got, ",") != strings.Join([]string{own, own2}, ",") {
		t.Errorf("dave to_approve %v, want %s and %s", got, own, own2)
	}
	if got := ids(m["requests"]); len(got) != 0 {
		t.Errorf("dave's own requests %v", got)
	}
	_, m, _ = e.call(http.MethodGet, "/api/access/requests", bob, "")
	if got := ids(m["requests"]); len(got) != 3 || len(ids(m["to_approve"])) != 0 {
		t.Errorf("bob's lists %v / %v", got, m["to_approve"])
	}
	// Cancel own pending; a note on cancel is refused (it has no body).
	if st, _, raw := e.call(http.MethodPost, "/api/access/requests/"+own2+"/cancel", bob, `{"note":"x"}`); st != http.StatusBadRequest {
		t.Errorf("cancel with a note: %d %s", st, raw)
	}
	if st, _, raw := e.call(http.MethodPost, "/api/access/requests/"+own2+"/cancel", bob, ""); st != http.StatusOK || !strings.Contains(string(raw), `"state":"cancelled"`) {
		t.Errorf("cancel: %d %s", st, raw)
	}
}

// TestJITUserAPIHostile: malformed bodies, IDs and paths.
func TestJITUserAPIHostile(t *testing.T) {
	e := newJITEnv(t, false)
	bob := e.token(jitFrank, "engineer")
	long := strings.Repeat("a", 129)
	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"unknown field", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"1h","reason":"x","grant":true}`, http.StatusBadRequest},
		{"trailing data", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"1h","reason":"x"} {}`, http.StatusBadRequest},
		{"not JSON", http.MethodPost, "/api/access/requests", `role=db-admin`, http.StatusBadRequest},
		{"bad duration", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"forever","reason":"x"}`, http.StatusBadRequest},
		{"negative duration", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"-1h","reason":"x"}`, http.StatusBadRequest},
		{"too long", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"5h","reason":"x"}`, http.StatusBadRequest},
		{"long duration string", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"` + strings.Repeat("1", 40) + `ns","reason":"x"}`, http.StatusBadRequest},
		{"control chars in reason", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"1h","reason":"a\nb"}`, http.StatusBadRequest},
		{"bidi override in reason", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"1h","reason":"a\u202eb"}`, http.StatusBadRequest},
		{"reason too long", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"1h","reason":"` + strings.Repeat("x", 201) + `"}`, http.StatusBadRequest},
		{"no reason", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"1h"}`, http.StatusBadRequest},
		{"not requestable", http.MethodPost, "/api/access/requests", `{"role":"admin","duration":"1h","reason":"x"}`, http.StatusForbidden},
		{"unknown role", http.MethodPost, "/api/access/requests", `{"role":"../../x","duration":"1h","reason":"x"}`, http.StatusForbidden},
		{"ID with a dot", http.MethodGet, "/api/access/requests/a.b", "", http.StatusBadRequest},
		{"ID too long", http.MethodGet, "/api/access/requests/" + long, "", http.StatusBadRequest},
		{"escaped slash", http.MethodPost, "/api/access/requests/a%2F..%2Fb/approve", "", http.StatusBadRequest},
		{"dot dot (cleaned by the client)", http.MethodPost, "/api/access/requests/../grants/approve", "", http.StatusNotFound},
		{"escaped dot dot", http.MethodPost, "/api/access/requests/%2e%2e/grants", "", http.StatusNotFound},
		{"double slash", http.MethodPost, "/api/access/requests//approve", "", http.StatusBadRequest},
		{"unknown verb", http.MethodPost, "/api/access/requests/rq-x/grant", "", http.StatusNotFound},
		{"escaped NUL", http.MethodGet, "/api/access/requests/a%00b", "", http.StatusBadRequest},
		{"unknown endpoint", http.MethodGet, "/api/access/everything", "", http.StatusNotFound},
		{"wrong method", http.MethodDelete, "/api/access/grants", "", http.StatusMethodNotAllowed},
		{"GET on a decision", http.MethodGet, "/api/access/requests/rq-x/approve", "", http.StatusMethodNotAllowed},
		{"body too large", http.MethodPost, "/api/access/requests", `{"role":"db-admin","duration":"1h","reason":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			req, err := http.NewRequest(tc.method, e.origin+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+bob)
			req.Header.Set("Accept", "application/json")
			p := e.browser().do(req)
			if p.status != tc.status {
				t.Fatalf("%d, want %d: %s", p.status, tc.status, p.body)
			}
		})
	}
	if st, m, _ := e.call(http.MethodGet, "/api/access/requests", bob, ""); st != http.StatusOK || len(m["requests"].([]any)) != 0 {
		t.Errorf("a hostile call created a request: %v", m)
	}
}

// TestJITUserAPIAuth: only a live MFA session's bearer token, of a user
// who is not locked, opens the user API; cookies never do.
func TestJITUserAPIAuth(t *testing.T) {
	e := newJITEnv(t, false)
	good := e.token(jitFrank, "engineer")
	now := e.clock.Now()
	short, _, err := e.sessions.Create(context.Background(), session.Record{UserID: jitGrace, MFA: true, AuthTime: now, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	expired := e.sessions.Cookie(short, 0).Value
	noMFA, _, err := e.sessions.Create(context.Background(), session.Record{UserID: jitErin, Roles: []string{"sre-lead"}, AuthTime: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	noMFATok := e.sessions.Cookie(noMFA, 0).Value
	locked := e.token(jitDave, "sre-lead")
	if _, err := e.risk.Lock(context.Background(), jitDave, "test", "local-admin"); err != nil {
		t.Fatalf("lock: %v", err)
	}
	e.clock.Advance(2 * time.Minute) // past the short session's end
	forged := good[:len(good)-4] + "AAAA"
	tests := []struct {
		name, auth string
		cookie     bool
		status     int
		reason     string
	}{
		{"no token", "", false, http.StatusUnauthorized, "auth-required"},
		{"basic", "Basic " + good, false, http.StatusUnauthorized, "auth-required"},
		{"forged", "Bearer " + forged, false, http.StatusUnauthorized, "auth-required"},
		{"garbage", "Bearer ../../etc/passwd", false, http.StatusUnauthorized, "auth-required"},
		{"oversized", "Bearer " + strings.Repeat("A", 600), false, http.StatusUnauthorized, "auth-required"},
		{"expired", "Bearer " + expired, false, http.StatusUnauthorized, "auth-required"},
		{"cookie only", "", true, http.StatusUnauthorized, "auth-required"},
		{"no MFA", "Bearer " + noMFATok, false, http.StatusForbidden, "mfa-required"},
		// A lock revokes the user's sessions, tokens included.
		{"locked", "Bearer " + locked, false, http.StatusUnauthorized, "auth-required"},
		{"good", "Bearer " + good, false, http.StatusOK, ""},
	}
	for _, tc := range tests {
		for _, path := range []string{"/api/access/grants", "/api/audit/recordings"} {
			t.Run(tc.name+path, func(t *testing.T) {
				defer e.useT(t)()
				e.audit.Reset()
				req, _ := http.NewRequest(http.MethodGet, e.origin+path, nil)
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				req.Header.Set("Accept", "application/json")
				b := e.browser()
				if tc.cookie {
					b.setCookie(accessHost, e.sessions.CookieName(), good)
				}
				p := b.do(req)
				if p.status != tc.status {
					t.Fatalf("%d, want %d: %s", p.status, tc.status, p.body)
				}
				if tc.status == http.StatusOK {
					return
				}
				// Refusals are audited; reads of the trail kind under
				// their own type.
				typ := audit.TypeRequestRejected
				if strings.HasPrefix(path, "/api/audit/recordings") {
					typ = TypeRecordingRead
				}
				ev := e.mustAudit(typ, tc.reason, audit.Deny)
				if ev.Ref == "" {
					t.Error("refusal audit without reference")
				}
				for _, s := range []string{good, forged, locked, noMFATok} {
					if strings.Contains(ev.Path+ev.Reason+strings.Join(mapValues(ev.Attrs), " "), s) {
						t.Error("token in the audit event")
					}
				}
			})
		}
	}
}

// TestJITAccessDisabled: without an access manager the access API is 404
// (after authentication) and the page says so.
func TestJITAccessDisabled(t *testing.T) {
	e := newJITEnv(t, false)
	e.g.deps.Access = nil
	tok := e.token(jitFrank, "engineer")
	if st, m, _ := e.call(http.MethodGet, "/api/access/requests", tok, ""); st != http.StatusNotFound || m["reason"] != "access-disabled" {
		t.Errorf("access API: %d %v", st, m)
	}
	if st, m := e.local(http.MethodGet, "/api/admin/grants", ""); st != http.StatusNotFound {
		t.Errorf("admin grants: %d %v", st, m)
	}
	b := e.browser()
	b.setCookie(accessHost, e.sessions.CookieName(), tok)
	if p := b.get(pathAccess); p.status != http.StatusNotFound {
		t.Errorf("/access: %d", p.status)
	}
	// CanReadAudit with JIT off: base roles, default "auditor".
	aud := e.token(jitErin, "auditor")
	if st, _, raw := e.call(http.MethodGet, "/api/audit/events?limit=1", aud, ""); st != http.StatusOK {
		t.Errorf("auditor with JIT off: %d %s", st, raw)
	}
	if st, m, _ := e.call(http.MethodGet, "/api/audit/events", tok, ""); st != http.StatusForbidden || m["reason"] != "auditor-role-required" {
		t.Errorf("non-auditor with JIT off: %d %v", st, m)
	}
}

// TestJITTokenPage: any user with an MFA session mints an API token at
// /token (fresh TOTP); it opens the user API, not the admin API; the
// admin token page stays admin-only.
func TestJITTokenPage(t *testing.T) {
	e := newJITEnv(t, false)
	b := e.browser()
	secret, _ := b.loginNew("bob", "/")
	if p := b.get(pathHome); !strings.Contains(p.body, `href="/token"`) || !strings.Contains(p.body, `href="/access"`) || strings.Contains(p.body, `href="/admin/token"`) {
		t.Errorf("home links:\n%s", p.body)
	}
	if p := b.get(pathAdminToken); p.status != http.StatusForbidden {
		t.Errorf("/admin/token for a non-admin: %d", p.status)
	}
	p := b.get(pathToken)
	if p.status != http.StatusOK || !strings.Contains(p.body, `action="/token"`) {
		t.Fatalf("token page: %d\n%s", p.status, p.body)
	}
	csrf := scrape(t, reCSRF, p.body)
	if p := b.post(pathToken, url.Values{"csrf": {csrf}, "code": {"000000"}}); p.status != http.StatusUnauthorized || strings.Contains(p.body, `id="api-token"`) {
		t.Fatalf("wrong code: %d", p.status)
	}
	e.mustAudit(TypeAPITokenIssue, "mfa-invalid", audit.Deny)
	if p := b.post(pathToken, url.Values{"code": {e.code(secret)}}); p.status != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d", p.status)
	}
	p = b.post(pathToken, url.Values{"csrf": {csrf}, "code": {e.code(secret)}})
	if p.status != http.StatusOK {
		t.Fatalf("issue: %d\n%s", p.status, p.body)
	}
	tok := scrape(t, regexp.MustCompile(`id="api-token" class="wrap">([^<]+)<`), p.body)
	ev := e.mustAudit(TypeAPITokenIssue, "api-token-issued", audit.Allow)
	if strings.Contains(strings.Join(mapValues(ev.Attrs), " ")+ev.Target, tok) {
		t.Error("token in the audit trail")
	}
	rec, err := e.sessions.Lookup(context.Background(), tok)
	if err != nil || !rec.MFA || rec.ExpiresAt.Sub(e.clock.Now()) != time.Hour || strings.Join(rec.Roles, ",") != "engineer" {
		t.Fatalf("token session %+v %v", rec, err)
	}
	if st, _, raw := e.call(http.MethodGet, "/api/access/grants", tok, ""); st != http.StatusOK {
		t.Errorf("user API with the token: %d %s", st, raw)
	}
	if st, m, _ := e.call(http.MethodGet, "/api/admin/users", tok, ""); st != http.StatusForbidden {
		t.Errorf("admin API with a user token: %d %v", st, m)
	}
	// Expired after its hour.
	e.clock.Advance(time.Hour)
	if st, _, _ := e.call(http.MethodGet, "/api/access/grants", tok, ""); st != http.StatusUnauthorized {
		t.Errorf("token after an hour: %d", st)
	}
}
