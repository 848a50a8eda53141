package access

import (
	"slices"
	"testing"
	"time"
)

// cacheWith installs grants directly (unit tests of the enforcement side).
func cacheWith(m *Manager, gs ...Grant) {
	s := &snapshot{byUser: map[string][]cachedGrant{}}
	for _, g := range gs {
		s.byUser[g.UserID] = append(s.byUser[g.UserID], cachedGrant{role: g.Role, start: g.Start, exp: g.Expires, fromRequest: g.Source == SourceTemporary})
	}
	m.snap.Store(s)
}

func TestRoles(t *testing.T) {
	t0 := newClock().Now()
	active := func(role string) Grant {
		return Grant{UserID: "u", Role: role, Source: SourceTemporary, Start: t0.Add(-time.Hour), Expires: t0.Add(time.Hour)}
	}
	tests := []struct {
		name   string
		grants []Grant
		base   []string
		want   []string
		same   bool // the result is base itself
	}{
		{"no grants", nil, []string{"b", "a"}, []string{"b", "a"}, true},
		{"no grants nil base", nil, nil, nil, true},
		{"grant adds role", []Grant{active("db")}, []string{"eng"}, []string{"db", "eng"}, false},
		{"grant adds to nil base", []Grant{active("db")}, nil, []string{"db"}, false},
		{"grant of a base role", []Grant{active("eng")}, []string{"eng"}, []string{"eng"}, true},
		{"unsorted base sorted with grants", []Grant{active("m")}, []string{"z", "a", "a"}, []string{"a", "m", "z"}, false},
		{"two grants same role", []Grant{active("db"), active("db")}, []string{"eng"}, []string{"db", "eng"}, false},
		{"expired grant", []Grant{{UserID: "u", Role: "db", Start: t0.Add(-2 * time.Hour), Expires: t0}}, []string{"eng"}, []string{"eng"}, true},
		{"future grant", []Grant{{UserID: "u", Role: "db", Start: t0.Add(time.Second), Expires: t0.Add(time.Hour)}}, []string{"eng"}, []string{"eng"}, true},
		{"local until revoked", []Grant{{UserID: "u", Role: "oncall", Source: SourceLocal, Start: t0.Add(-time.Hour)}}, []string{"eng"}, []string{"eng", "oncall"}, false},
		{"other user's grant", []Grant{{UserID: "v", Role: "db", Start: t0.Add(-time.Hour)}}, []string{"eng"}, []string{"eng"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newEnv(t).manager(t, testConfig())
			cacheWith(m, tc.grants...)
			base := slices.Clone(tc.base)
			got := m.Roles("u", base, t0)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Roles = %v, want %v", got, tc.want)
			}
			if tc.same && len(base) > 0 && &got[0] != &base[0] {
				t.Fatal("expected base itself")
			}
			if !slices.Equal(base, tc.base) {
				t.Fatalf("base modified: %v", base)
			}
		})
	}
	var nilM *Manager
	if got := nilM.Roles("u", []string{"x"}, t0); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("nil manager: %v", got)
	}
	if _, ok := nilM.GrantedUntil("u", "x", t0); ok {
		t.Fatal("nil manager granted")
	}
}

func TestRolesDoesNotAllocateWithoutGrants(t *testing.T) {
	m := newEnv(t).manager(t, testConfig())
	t0 := newClock().Now()
	cacheWith(m,
		Grant{UserID: "other", Role: "db", Start: t0.Add(-time.Hour), Expires: t0.Add(time.Hour)},
		Grant{UserID: "u", Role: "db", Start: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Hour)}, // expired
	)
	base := []string{"engineer", "viewer"}
	for _, user := range []string{"nobody", "u"} {
		allocs := testing.AllocsPerRun(500, func() {
			if got := m.Roles(user, base, t0); len(got) != 2 {
				t.Fatal(got)
			}
			if _, ok := m.GrantedUntil(user, "db", t0); ok {
				t.Fatal("granted")
			}
			if v := m.CanReadAudit(user, base, t0); v.Allow {
				t.Fatal("allowed")
			}
		})
		if allocs != 0 {
			t.Fatalf("%s: %.1f allocations per call", user, allocs)
		}
	}
}

func BenchmarkRoles(b *testing.B) {
	m, err := New(Config{}, Deps{Store: newMemStore(), Audit: nopEmitter{}})
	if err != nil {
		b.Fatal(err)
	}
	t0 := newClock().Now()
	var gs []Grant
	for i := range 10000 {
		gs = append(gs, Grant{UserID: "user-" + string(rune('a'+i%26)) + time.Duration(i).String(), Role: "db", Start: t0.Add(-time.Hour), Expires: t0.Add(time.Hour)})
	}
	gs = append(gs, Grant{UserID: "granted", Role: "db", Start: t0.Add(-time.Hour), Expires: t0.Add(time.Hour)})
	cacheWith(m, gs...)
	base := []string{"engineer", "viewer"}
	b.Run("no-grants", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Roles("nobody@example", base, t0)
		}
	})
	b.Run("active-grant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Roles("granted", base, t0)
		}
	})
	b.Run("can-read-audit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.CanReadAudit("nobody@example", base, t0)
		}
	})
}

func TestCanReadAuditMatrix(t *testing.T) {
	t0 := newClock().Now()
	temp := func(role string) Grant {
		return Grant{UserID: "u", Role: role, Source: SourceTemporary, Start: t0.Add(-time.Minute), Expires: t0.Add(time.Hour)}
	}
	local := func(role string) Grant {
		return Grant{UserID: "u", Role: role, Source: SourceLocal, Start: t0.Add(-time.Minute)}
	}
	expired := Grant{UserID: "u", Role: "auditor", Source: SourceTemporary, Start: t0.Add(-2 * time.Hour), Expires: t0}
	tests := []struct {
		name    string
		require bool
		role    string // AuditRead.Role ("" = default)
		base    []string
		grants  []Grant
		want    string
	}{
		{"nothing", false, "", []string{"engineer"}, nil, ReasonAuditorRequired},
		{"base auditor", false, "", []string{"engineer", "auditor"}, nil, ReasonAllowed},
		{"local grant", false, "", nil, []Grant{local("auditor")}, ReasonAllowed},
		{"temporary grant", false, "", nil, []Grant{temp("auditor")}, ReasonAllowed},
		{"grant of another role", false, "", nil, []Grant{temp("db-admin")}, ReasonAuditorRequired},
		{"custom role base", false, "compliance", []string{"compliance"}, nil, ReasonAllowed},
		{"custom role: auditor is not enough", false, "compliance", []string{"auditor"}, nil, ReasonAuditorRequired},
		{"approval: nothing", true, "", nil, nil, ReasonAuditorRequired},
		{"approval: base auditor refused", true, "", []string{"auditor"}, nil, ReasonApprovalRequired},
		{"approval: local grant refused", true, "", nil, []Grant{local("auditor")}, ReasonApprovalRequired},
		{"approval: base and local refused", true, "", []string{"auditor"}, []Grant{local("auditor")}, ReasonApprovalRequired},
		{"approval: approved grant", true, "", nil, []Grant{temp("auditor")}, ReasonAllowed},
		{"approval: approved grant and base", true, "", []string{"auditor"}, []Grant{temp("auditor")}, ReasonAllowed},
		{"approval: expired grant", true, "", []string{"auditor"}, []Grant{expired}, ReasonApprovalRequired},
		{"approval: expired grant only", true, "", nil, []Grant{expired}, ReasonAuditorRequired},
		{"approval: approved grant of another role", true, "", nil, []Grant{temp("db-admin")}, ReasonAuditorRequired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.AuditRead = AuditReadConfig{Role: tc.role, RequireApproval: tc.require}
			if tc.role != "" && tc.require {
				cfg.Roles = append(cfg.Roles, RoleConfig{Role: tc.role, Approvers: []string{"security"}})
			}
			m := newEnv(t).manager(t, cfg)
			cacheWith(m, tc.grants...)
			v := m.CanReadAudit("u", tc.base, t0)
			if v.Reason != tc.want || v.Allow != (tc.want == ReasonAllowed) {
				t.Fatalf("CanReadAudit = %+v, want %s", v, tc.want)
			}
		})
	}
	var nilM *Manager
	if v := nilM.CanReadAudit("u", []string{"auditor"}, t0); !v.Allow {
		t.Fatalf("nil manager, base auditor: %+v", v)
	}
	if v := nilM.CanReadAudit("u", []string{"engineer"}, t0); v.Allow || v.Reason != ReasonAuditorRequired {
		t.Fatalf("nil manager, no auditor: %+v", v)
	}
}

// TestCanReadAuditEndToEnd: with RequireApproval, the auditor role works
// only after a 2-person committee approved a request for it.
func TestCanReadAuditEndToEnd(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.AuditRead.RequireApproval = true
	m := e.manager(t, cfg)
	ctx := t.Context()
	u := Person{UserID: "u", Roles: []string{"auditor"}}
	if v := m.CanReadAudit(u.UserID, u.Roles, e.clk.Now()); v.Reason != ReasonApprovalRequired {
		t.Fatalf("%+v", v)
	}
	r := must[Request](t)(m.Submit(ctx, u, "auditor", time.Hour, "quarterly audit"))
	must[Request](t)(m.Approve(ctx, carol, r.ID, ""))
	if v := m.CanReadAudit(u.UserID, u.Roles, e.clk.Now()); v.Allow {
		t.Fatal("one approval of two was enough")
	}
	must[Request](t)(m.Approve(ctx, dave, r.ID, ""))
	if v := m.CanReadAudit(u.UserID, u.Roles, e.clk.Now()); !v.Allow {
		t.Fatalf("after the committee: %+v", v)
	}
	e.clk.Add(time.Hour)
	if v := m.CanReadAudit(u.UserID, u.Roles, e.clk.Now()); v.Allow {
		t.Fatal("allowed after the grant expired")
	}
}
