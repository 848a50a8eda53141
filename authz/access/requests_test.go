package access

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

func TestSubmitValidation(t *testing.T) {
	tests := []struct {
		name   string
		who    Person
		role   string
		d      time.Duration
		reason string
		want   error
	}{
		{"ok", alice, "db-admin", time.Hour, "INC-42 disk full", nil},
		{"at max duration", alice, "db-admin", 4 * time.Hour, "r", nil},
		{"unicode reason", alice, "db-admin", time.Hour, "Störung – INC-42 修理", nil},
		{"over max duration", alice, "db-admin", 4*time.Hour + time.Nanosecond, "r", ErrInvalid},
		{"zero duration", alice, "db-admin", 0, "r", ErrInvalid},
		{"negative duration", alice, "db-admin", -time.Hour, "r", ErrInvalid},
		{"unknown role", alice, "god", time.Hour, "r", ErrNotRequestable},
		{"policy role not requestable", alice, "sre-lead", time.Hour, "r", ErrNotRequestable},
		{"empty role", alice, "", time.Hour, "r", ErrNotRequestable},
		{"role with NUL", alice, "db-admin\x00", time.Hour, "r", ErrNotRequestable},
		{"huge role", alice, strings.Repeat("a", 1<<16), time.Hour, "r", ErrNotRequestable},
		{"empty reason", alice, "db-admin", time.Hour, "", ErrInvalid},
		{"blank reason", alice, "db-admin", time.Hour, "   ", ErrInvalid},
		{"reason at limit", alice, "db-admin", time.Hour, strings.Repeat("x", MaxReasonLen), nil},
		{"reason too long", alice, "db-admin", time.Hour, strings.Repeat("x", MaxReasonLen+1), ErrInvalid},
		{"reason newline", alice, "db-admin", time.Hour, "fix\nforged log line", ErrInvalid},
		{"reason tab", alice, "db-admin", time.Hour, "a\tb", ErrInvalid},
		{"reason ANSI escape", alice, "db-admin", time.Hour, "\x1b[31mred", ErrInvalid},
		{"reason bidi override", alice, "db-admin", time.Hour, "ok \u202egnp.exe", ErrInvalid},
		{"reason zero width", alice, "db-admin", time.Hour, "a\u200bb", ErrInvalid},
		{"reason invalid UTF-8", alice, "db-admin", time.Hour, "a\xffb", ErrInvalid},
		{"reason DEL", alice, "db-admin", time.Hour, "a\x7fb", ErrInvalid},
		{"empty user", Person{}, "db-admin", time.Hour, "r", ErrInvalid},
		{"user with control", Person{UserID: "a\nb"}, "db-admin", time.Hour, "r", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, testConfig())
			r, err := m.Submit(t.Context(), tc.who, tc.role, tc.d, tc.reason)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Submit = %v, want %v", err, tc.want)
			}
			if err != nil {
				if e.mem.count(KindRequest) != 0 {
					t.Fatal("refused request was stored")
				}
				return
			}
			if r.State != StatePending || r.Needed != 1 || !r.ExpiresAt.Equal(e.clk.Now().Add(time.Hour)) {
				t.Fatalf("request %+v", r)
			}
			got, err := m.GetRequest(t.Context(), r.ID)
			if err != nil || got.Reason != strings.TrimSpace(tc.reason) || got.UserID != tc.who.UserID {
				t.Fatalf("GetRequest = %+v, %v", got, err)
			}
			evs := e.audit.Find(TypeRequest, "")
			if len(evs) != 1 || evs[0].Attrs["request_id"] != r.ID || evs[0].Attrs["role"] != "db-admin" || evs[0].Attrs["approvals"] != "0/1" {
				t.Fatalf("audit %+v", evs)
			}
		})
	}
}

func TestSubmitPendingLimits(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	r := must[Request](t)(m.Submit(ctx, alice, "db-admin", time.Hour, "one"))
	if _, err := m.Submit(ctx, alice, "db-admin", time.Hour, "again"); !errors.Is(err, ErrAlreadyPending) {
		t.Fatalf("second pending request for the role: %v", err)
	}
	// Another user, or another role, is fine; after a decision, too.
	must[Request](t)(m.Submit(ctx, erin, "db-admin", time.Hour, "mine"))
	must[Request](t)(m.Submit(ctx, alice, "prod-root", time.Hour, "other role"))
	must[Request](t)(m.Cancel(ctx, alice, r.ID))
	must[Request](t)(m.Submit(ctx, alice, "db-admin", time.Hour, "after cancel"))
	if n := len(e.audit.Find(TypeRequest, codeAlreadyPending)); n != 1 {
		t.Fatalf("refusal audited %d times", n)
	}
}

func TestDecisionRules(t *testing.T) {
	type step struct {
		op   string // approve, deny, cancel
		who  Person
		want error
	}
	tests := []struct {
		name  string
		role  string
		steps []step
		state State
		setup func(e *env)
	}{
		{"one approver suffices", "db-admin", []step{{"approve", bob, nil}}, StateApproved, nil},
		{"self-approval refused", "db-admin", []step{{"approve", Person{UserID: alice.UserID, Roles: []string{"sre-lead"}}, ErrSelfApproval}}, StatePending, nil},
		{"self-denial refused", "db-admin", []step{{"deny", Person{UserID: alice.UserID, Roles: []string{"sre-lead"}}, ErrSelfApproval}}, StatePending, nil},
		{"non-approver refused", "db-admin", []step{{"approve", carol, ErrNotApprover}}, StatePending, nil},
		{"approver of another role refused", "auditor", []step{{"approve", bob, ErrNotApprover}}, StatePending, nil},
		{"no roles refused", "db-admin", []step{{"approve", Person{UserID: "x"}, ErrNotApprover}}, StatePending, nil},
		{"non-approver deny refused", "db-admin", []step{{"deny", erin, ErrNotApprover}}, StatePending, nil},
		{"2-of-N: one is not enough", "prod-root", []step{{"approve", bob, nil}}, StatePending, nil},
		{"2-of-N committee", "prod-root", []step{{"approve", bob, nil}, {"approve", carol, nil}}, StateApproved, nil},
		{"same approver twice counted once", "prod-root", []step{{"approve", bob, nil}, {"approve", bob, ErrDuplicateApproval}}, StatePending, nil},
		{"same approver other roles still once", "prod-root", []step{{"approve", dave, nil}, {"approve", Person{UserID: dave.UserID, Roles: []string{"security"}}, ErrDuplicateApproval}}, StatePending, nil},
		{"deny wins over approvals", "prod-root", []step{{"approve", bob, nil}, {"deny", carol, nil}}, StateDenied, nil},
		{"approver may deny after approving", "prod-root", []step{{"approve", bob, nil}, {"deny", bob, nil}}, StateDenied, nil},
		{"approve after deny refused", "prod-root", []step{{"deny", carol, nil}, {"approve", bob, ErrAlreadyDecided}}, StateDenied, nil},
		{"deny after approved refused", "db-admin", []step{{"approve", bob, nil}, {"deny", dave, ErrAlreadyDecided}}, StateApproved, nil},
		{"approve after approved refused", "db-admin", []step{{"approve", bob, nil}, {"approve", dave, ErrAlreadyDecided}}, StateApproved, nil},
		{"cancel by requester", "db-admin", []step{{"cancel", alice, nil}}, StateCancelled, nil},
		{"cancel by other refused", "db-admin", []step{{"cancel", bob, ErrNotRequester}}, StatePending, nil},
		{"approve after cancel refused", "db-admin", []step{{"cancel", alice, nil}, {"approve", bob, ErrAlreadyDecided}}, StateCancelled, nil},
		{"cancel after approve refused", "db-admin", []step{{"approve", bob, nil}, {"cancel", alice, ErrAlreadyDecided}}, StateApproved, nil},
		{"approve after pending expiry refused", "db-admin", []step{{"approve", bob, ErrAlreadyDecided}}, StateExpired,
			func(e *env) { e.clk.Add(time.Hour) }},
		{"approve just before expiry", "db-admin", []step{{"approve", bob, nil}}, StateApproved,
			func(e *env) { e.clk.Add(time.Hour - time.Nanosecond) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t, testConfig())
			ctx := t.Context()
			r := must[Request](t)(m.Submit(ctx, alice, tc.role, time.Hour, "need it"))
			if tc.setup != nil {
				tc.setup(e)
			}
			for i, s := range tc.steps {
				var err error
				switch s.op {
				case "approve":
					if cerr := m.CanApprove(s.who, must[Request](t)(m.GetRequest(ctx, r.ID))); !errors.Is(cerr, s.want) || (s.want == nil) != (cerr == nil) {
						t.Fatalf("step %d: CanApprove = %v, want %v", i, cerr, s.want)
					}
					_, err = m.Approve(ctx, s.who, r.ID, "ok")
				case "deny":
					_, err = m.Deny(ctx, s.who, r.ID, "no")
				case "cancel":
					_, err = m.Cancel(ctx, s.who, r.ID)
				}
				if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
					t.Fatalf("step %d %s: %v, want %v", i, s.op, err, s.want)
				}
			}
			got := must[Request](t)(m.GetRequest(ctx, r.ID))
			if got.State != tc.state {
				t.Fatalf("state %s, want %s", got.State, tc.state)
			}
			_, gerr := e.st.GetRecord(ctx, KindGrant, r.ID)
			if (tc.state == StateApproved) != (gerr == nil) {
				t.Fatalf("grant record: %v (state %s)", gerr, tc.state)
			}
			var held bool
			_, held = m.GrantedUntil(alice.UserID, tc.role, e.clk.Now())
			if held != (tc.state == StateApproved) {
				t.Fatalf("cache: held=%v for state %s", held, tc.state)
			}
			// Every refusal is audited with its code and decision deny.
			for _, s := range tc.steps {
				if s.want == nil {
					continue
				}
				found := false
				for _, ev := range e.audit.Events() {
					if ev.Decision == audit.Deny && ev.Actor == s.who.UserID && ev.Reason != "" && ev.Attrs["request_id"] == r.ID {
						found = true
					}
				}
				if !found {
					t.Fatalf("refusal %v not audited: %+v", s.want, e.audit.Events())
				}
			}
		})
	}
}

func TestCommitteeAuditAndGrant(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	r := must[Request](t)(m.Submit(ctx, alice, "prod-root", 2*time.Hour, "INC-7"))
	e.clk.Add(10 * time.Minute)
	must[Request](t)(m.Approve(ctx, bob, r.ID, "first"))
	e.clk.Add(5 * time.Minute)
	approvedAt := e.clk.Now()
	got := must[Request](t)(m.Approve(ctx, carol, r.ID, "second"))
	if got.State != StateApproved || got.GrantID != r.ID || len(got.Approvals) != 2 {
		t.Fatalf("%+v", got)
	}
	apps := e.audit.Find(TypeApprove, "")
	if len(apps) != 2 || apps[0].Attrs["approvals"] != "1/2" || apps[1].Attrs["approvals"] != "2/2" || apps[1].Actor != carol.UserID {
		t.Fatalf("approve events %+v", apps)
	}
	grants := e.audit.Find(TypeGrant, "")
	if len(grants) != 1 || grants[0].UserID != alice.UserID || grants[0].Attrs["grant_id"] != r.ID || grants[0].Attrs["duration"] != "2h0m0s" {
		t.Fatalf("grant events %+v", grants)
	}
	gs := must[[]Grant](t)(m.ListGrants(ctx))
	if len(gs) != 1 || !gs[0].Start.Equal(approvedAt) || !gs[0].Expires.Equal(approvedAt.Add(2*time.Hour)) || gs[0].Source != SourceTemporary {
		t.Fatalf("grants %+v", gs)
	}
	if ev := e.mem.published(); len(ev) != 1 || ev[0].Kind != EventGrantsChanged || ev[0].Subject != alice.UserID {
		t.Fatalf("published %+v", ev)
	}
}

func TestApproveClipsToReloadedMaxDuration(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	r := must[Request](t)(m.Submit(ctx, alice, "db-admin", 4*time.Hour, "long"))
	cfg := testConfig()
	cfg.Roles[0].MaxDuration = time.Hour
	m.SetConfig(cfg)
	got := must[Request](t)(m.Approve(ctx, bob, r.ID, ""))
	if got.Duration != time.Hour {
		t.Fatalf("duration %s", got.Duration)
	}
	// A role removed from the config can no longer be approved.
	r2 := must[Request](t)(m.Submit(ctx, alice, "prod-root", time.Hour, "x"))
	cfg.Roles = cfg.Roles[:1]
	m.SetConfig(cfg)
	if _, err := m.Approve(ctx, bob, r2.ID, ""); !errors.Is(err, ErrNotRequestable) {
		t.Fatalf("approve of a role no longer requestable: %v", err)
	}
}

func TestRequestIDsHostile(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	for _, id := range []string{"", "../x", "rq-a b", strings.Repeat("a", 65), "rq-\x00", "rq-é"} {
		if _, err := m.GetRequest(ctx, id); !errors.Is(err, ErrInvalid) {
			t.Errorf("GetRequest(%q) = %v", id, err)
		}
		if _, err := m.Approve(ctx, bob, id, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("Approve(%q) = %v", id, err)
		}
		if err := m.RevokeGrant(ctx, "admin", id, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("RevokeGrant(%q) = %v", id, err)
		}
	}
	if _, err := m.Approve(ctx, bob, "rq-doesnotexist", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown ID: %v", err)
	}
	r := must[Request](t)(m.Submit(ctx, alice, "db-admin", time.Hour, "x"))
	for _, note := range []string{"a\nb", strings.Repeat("n", MaxReasonLen+1), "\u202e"} {
		if _, err := m.Approve(ctx, bob, r.ID, note); !errors.Is(err, ErrInvalid) {
			t.Errorf("note %q: %v", note, err)
		}
		if _, err := m.Deny(ctx, bob, r.ID, note); !errors.Is(err, ErrInvalid) {
			t.Errorf("deny note %q: %v", note, err)
		}
	}
	if got := must[Request](t)(m.GetRequest(ctx, r.ID)); got.State != StatePending {
		t.Fatalf("state %s after refused notes", got.State)
	}
}

func TestListRequestsNewestFirst(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	var ids []string
	for _, who := range []Person{alice, erin, bob} {
		ids = append(ids, must[Request](t)(m.Submit(ctx, who, "prod-root", time.Hour, "x")).ID)
		e.clk.Add(time.Minute)
	}
	e.clk.Add(time.Hour - 3*time.Minute + 30*time.Second) // only the first is past its deadline
	got := must[[]Request](t)(m.ListRequests(ctx))
	if len(got) != 3 || got[0].ID != ids[2] || got[2].ID != ids[0] {
		t.Fatalf("order %+v", got)
	}
	if got[2].State != StateExpired || got[1].State != StatePending {
		t.Fatalf("states %s %s", got[2].State, got[1].State)
	}
}

func TestStoreFailurePassesThrough(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t, testConfig())
	ctx := t.Context()
	r := must[Request](t)(m.Submit(ctx, alice, "db-admin", time.Hour, "x"))
	down := errors.Join(store.ErrUnavailable, errDown)
	e.mem.setFail(down)
	if _, err := m.Submit(ctx, erin, "db-admin", time.Hour, "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Submit: %v", err)
	}
	if _, err := m.Approve(ctx, bob, r.ID, ""); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Approve: %v", err)
	}
	if _, err := m.ListGrants(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ListGrants: %v", err)
	}
	if _, err := m.DeleteUser(ctx, alice.UserID); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("DeleteUser: %v", err)
	}
}
