package review

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// The scripted quarter: the snapshot is taken at 2026-10-01T00:00Z, so
// the 92-day period starts 2026-07-01T00:00Z and "dormant" means nothing
// since 2026-07-03T00:00Z (90 days).
const (
	alice = "https://idp#alice"
	bob   = "https://idp#bob"
	dave  = "https://idp#dave"
	frank = "https://idp#frank"
	gina  = "https://idp#gina"
	zed   = "https://idp#zed"
	root  = "https://idp#root" // the admin running the review
)

var snapAt = ts("2026-10-01T00:00:00Z")

func quarterPolicy(t *testing.T) *authz.Policy {
	return mustPolicy(t, authz.PolicyConfig{
		Apps:    []authz.AppConfig{{Name: "grafana"}, {Name: "wiki", Public: true}},
		Targets: []authz.TargetConfig{{Name: "db-1"}, {Name: "web-1"}},
		Roles: []authz.RoleConfig{
			{Name: "oncall", Groups: []string{"oncall"}, Allow: []authz.Rule{{Targets: []string{"web-1"}, Logins: []string{"root"}}}},
			{Name: "engineer", Groups: []string{"engineers"}, Allow: []authz.Rule{
				{Apps: []string{"grafana"}}, {Targets: []string{"db-1"}, Logins: []string{"root", "deploy"}}}},
			{Name: "dba", Users: []string{dave, "Erin@Example.com", "Frank@Example.com"},
				Allow: []authz.Rule{{Targets: []string{"db-1"}, Logins: []string{"postgres"}}}},
			{Name: "admin", Groups: []string{"admins"}, Admin: true, Allow: []authz.Rule{{Apps: []string{"*"}}}},
		},
	})
}

// gwUser is a directory record as gateway/users.go writes it.
type gwUser struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email,omitempty"`
	Name      string    `json:"name,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	Roles     []string  `json:"roles,omitempty"`
	LastLogin time.Time `json:"last_login"`
	LastIP    string    `json:"last_ip,omitempty"`
}

func web(at, user, app, role string) audit.Event {
	return audit.Event{Time: ts(at), Type: audit.TypeDecision, UserID: user, App: app, Method: "GET", Path: "/",
		Decision: audit.Allow, Reason: "allowed", Role: role, SourceIP: "192.0.2.7"}
}

func ssh(at, user, target, login, role string) audit.Event {
	return audit.Event{Time: ts(at), Type: audit.TypeDecision, UserID: user, Target: target,
		Decision: audit.Allow, Reason: "allowed", Role: role,
		Attrs: map[string]string{"login": login, "cert_serial": "7"}}
}

func login(at, user, decision string) audit.Event {
	return audit.Event{Time: ts(at), Type: audit.TypeSessionStart, UserID: user, Decision: decision, SessionID: "s-" + at}
}

func quarterTrail() []audit.Event {
	deniedWiki := web("2026-09-16T10:00:00Z", alice, "wiki", "")
	deniedWiki.Decision, deniedWiki.Reason = audit.Deny, "no-matching-rule"
	deniedSSH := ssh("2026-09-27T10:00:00Z", frank, "db-1", "postgres", "")
	deniedSSH.Decision, deniedSSH.Reason = audit.Deny, "no-matching-rule"
	return []audit.Event{
		// alice: an older trail login than the directory's; a refused
		// login later that must not count; three grafana uses and two SSH
		// uses in the period, one before it; nothing as admin (the admin
		// use after the snapshot must not count).
		login("2026-09-10T08:00:00Z", alice, audit.Allow),
		web("2026-06-01T09:00:00Z", alice, "grafana", "engineer"),
		web("2026-07-02T09:00:00Z", alice, "grafana", "engineer"),
		ssh("2026-07-20T09:30:00Z", alice, "db-1", "root", "engineer"),
		ssh("2026-08-01T09:30:00Z", alice, "db-1", "root", "engineer"),
		web("2026-08-15T09:00:00Z", alice, "grafana", "engineer"),
		web("2026-09-15T10:00:00Z", alice, "grafana", "engineer"),
		deniedWiki,
		web("2026-09-17T10:00:00Z", alice, "wiki", ""), // public app: no role
		login("2026-09-30T10:00:00Z", alice, audit.Deny),
		web("2026-10-02T09:00:00Z", alice, "grafana", "admin"), // after the snapshot
		// bob: one use before the period, nothing since: dormant.
		web("2026-06-15T12:00:00Z", bob, "grafana", "engineer"),
		// dave: a trail login newer than the directory's; one SSH use.
		login("2026-09-25T07:00:00Z", dave, audit.Allow),
		ssh("2026-09-26T07:05:00Z", dave, "db-1", "postgres", "dba"),
		// frank: engineer early in the period, on-call under his grant.
		web("2026-07-10T15:00:00Z", frank, "grafana", "engineer"),
		ssh("2026-09-12T01:00:00Z", frank, "web-1", "root", "oncall"),
		ssh("2026-09-12T02:00:00Z", frank, "web-1", "root", "oncall"),
		deniedSSH,
		// gina: used dba before her current grant started.
		ssh("2026-08-01T00:00:00Z", gina, "db-1", "postgres", "dba"),
		// someone not holding anything.
		web("2026-09-01T00:00:00Z", "https://idp#mallory", "grafana", "engineer"),
		// other event types are ignored.
		{Time: ts("2026-09-20T00:00:00Z"), Type: audit.TypeRiskLock, UserID: dave, Reason: "too-many-failures"},
	}
}

type fixture struct {
	m      *Manager
	st     *fakeStore
	grants *fakeGrants
	events *audit.Memory
	clock  *clock
	dir    string
	pol    *authz.Policy
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{st: newFakeStore(), events: &audit.Memory{}, clock: &clock{t: snapAt}, dir: t.TempDir(), pol: quarterPolicy(t)}
	for _, u := range []gwUser{
		{UserID: alice, Email: "alice@example.com", Name: "Alice", Groups: []string{"engineers", "admins", "engineers"},
			Roles: []string{"admin", "engineer"}, LastLogin: ts("2026-09-20T08:00:00Z"), LastIP: "192.0.2.7"},
		{UserID: bob, Email: "bob@example.com", Groups: []string{"engineers", "unmapped"}, LastLogin: ts("2026-05-01T00:00:00Z")},
		{UserID: dave, Email: "dave@example.com", LastLogin: ts("2026-09-01T00:00:00Z")},
		{UserID: frank, Email: "frank@example.com", Groups: []string{"engineers"}, LastLogin: ts("2026-09-29T12:00:00Z")},
		{UserID: zed, Email: "zed@example.com", Groups: []string{"nobody"}, LastLogin: ts("2026-09-29T12:00:00Z")},
	} {
		b, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		f.st.users[u.UserID] = b
	}
	f.st.locks = []store.Lock{
		{Subject: "user:" + dave, Reason: "too-many-failures", CreatedAt: ts("2026-09-20T00:00:00Z")},
		{Subject: "user:" + bob, Reason: "admin", CreatedAt: ts("2026-09-01T00:00:00Z"), ExpiresAt: ts("2026-09-02T00:00:00Z")},
		{Subject: "ip:192.0.2.99", Reason: "scan"},
	}
	f.st.enrolled = []string{alice, bob, dave, zed}
	f.grants = &fakeGrants{grants: map[string]access.Grant{
		"rq-frank": {ID: "rq-frank", UserID: frank, Role: "oncall", Source: access.SourceTemporary, RequestID: "rq-frank",
			Start: ts("2026-09-10T00:00:00Z"), Expires: ts("2026-10-02T00:00:00Z"), CreatedBy: frank},
		"lg-gina": {ID: "lg-gina", UserID: gina, Role: "dba", Source: access.SourceLocal,
			Start: ts("2026-09-28T00:00:00Z"), CreatedBy: root},
		"rq-old": {ID: "rq-old", UserID: bob, Role: "oncall", Source: access.SourceTemporary,
			Start: ts("2026-09-01T00:00:00Z"), Expires: ts("2026-09-30T00:00:00Z")}, // expired
	}}
	writeTrail(t, f.dir, quarterTrail())
	m, err := New(Config{}, Deps{
		Store: f.st, Policy: func() *authz.Policy { return f.pol }, Grants: f.grants, AuditDir: f.dir,
		Audit: f.events, Now: f.clock.Now, Rand: &countingReader{},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

// countingReader is a deterministic Rand: distinct bytes on every read.
type countingReader struct {
	mu sync.Mutex
	n  byte
}

func (r *countingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

func wantQuarterItems() []Item {
	return []Item{
		{ID: "0001", Email: "Erin@Example.com", Role: "dba", Source: SourceConfig, ConfigEntry: "Erin@Example.com",
			Dormant: true, Unused: true},
		{ID: "0002", UserID: alice, Email: "alice@example.com", Role: "admin", Source: SourceIdPGroup, Group: "admins",
			LastLogin: ts("2026-09-20T08:00:00Z"), Unused: true, MFAEnrolled: true},
		{ID: "0003", UserID: alice, Email: "alice@example.com", Role: "engineer", Source: SourceIdPGroup, Group: "engineers",
			LastLogin: ts("2026-09-20T08:00:00Z"), LastUse: ts("2026-09-15T10:00:00Z"), MFAEnrolled: true,
			Uses: []Use{
				{Kind: "app", Name: "grafana", Last: ts("2026-09-15T10:00:00Z"), Count: 3},
				{Kind: "ssh", Name: "db-1", Login: "root", Last: ts("2026-08-01T09:30:00Z"), Count: 2},
			}},
		{ID: "0004", UserID: bob, Email: "bob@example.com", Role: "engineer", Source: SourceIdPGroup, Group: "engineers",
			LastLogin: ts("2026-05-01T00:00:00Z"), LastUse: ts("2026-06-15T12:00:00Z"), Dormant: true, Unused: true, MFAEnrolled: true},
		{ID: "0005", UserID: dave, Email: "dave@example.com", Role: "dba", Source: SourceConfig, ConfigEntry: dave,
			LastLogin: ts("2026-09-25T07:00:00Z"), LastUse: ts("2026-09-26T07:05:00Z"), Locked: true, MFAEnrolled: true,
			Uses: []Use{{Kind: "ssh", Name: "db-1", Login: "postgres", Last: ts("2026-09-26T07:05:00Z"), Count: 1}}},
		{ID: "0006", UserID: frank, Email: "frank@example.com", Role: "dba", Source: SourceConfig, ConfigEntry: "Frank@Example.com",
			LastLogin: ts("2026-09-29T12:00:00Z"), Unused: true},
		{ID: "0007", UserID: frank, Email: "frank@example.com", Role: "engineer", Source: SourceIdPGroup, Group: "engineers",
			LastLogin: ts("2026-09-29T12:00:00Z"), LastUse: ts("2026-07-10T15:00:00Z"),
			Uses: []Use{{Kind: "app", Name: "grafana", Last: ts("2026-07-10T15:00:00Z"), Count: 1}}},
		{ID: "0008", UserID: frank, Email: "frank@example.com", Role: "oncall", Source: SourceTemporary, GrantID: "rq-frank",
			GrantStart: ts("2026-09-10T00:00:00Z"), GrantExpires: ts("2026-10-02T00:00:00Z"),
			LastLogin: ts("2026-09-29T12:00:00Z"), LastUse: ts("2026-09-12T02:00:00Z"),
			Uses: []Use{{Kind: "ssh", Name: "web-1", Login: "root", Last: ts("2026-09-12T02:00:00Z"), Count: 2}}},
		{ID: "0009", UserID: gina, Role: "dba", Source: SourceLocal, GrantID: "lg-gina", GrantStart: ts("2026-09-28T00:00:00Z"),
			LastUse: ts("2026-08-01T00:00:00Z"), Unused: true,
			Uses: []Use{{Kind: "ssh", Name: "db-1", Login: "postgres", Last: ts("2026-08-01T00:00:00Z"), Count: 1}}},
	}
}

func diffItems(t *testing.T, got, want []Item) {
	t.Helper()
	if len(got) != len(want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("%d items, want %d:\n%s", len(got), len(want), gj)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			gj, _ := json.Marshal(got[i])
			wj, _ := json.Marshal(want[i])
			t.Errorf("item %d:\n got %s\nwant %s", i, gj, wj)
		}
	}
}

func TestStartSnapshotsTheQuarter(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c, err := f.m.Start(ctx, root, "2026-Q3")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "2026-q3" || c.Name != "2026-Q3" || !c.CreatedAt.Equal(snapAt) || c.CreatedBy != root ||
		!c.PeriodStart.Equal(ts("2026-07-01T00:00:00Z")) || !c.Due.Equal(ts("2026-10-15T00:00:00Z")) {
		t.Fatalf("header %+v", c)
	}
	diffItems(t, c.Items, wantQuarterItems())

	// What the store holds reads back the same, by name or by ID.
	for _, key := range []string{"2026-Q3", "2026-q3"} {
		got, err := f.m.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		diffItems(t, got.Items, wantQuarterItems())
	}

	starts := findEvents(f.events, TypeStart)
	if len(starts) != 1 {
		t.Fatalf("%d review.start events", len(starts))
	}
	want := map[string]string{"campaign": "2026-Q3", "campaign_id": "2026-q3", "items": "9", "users": "6",
		"dormant": "2", "unused": "5", "locked": "1", "no_mfa": "5"}
	if ev := starts[0]; ev.Actor != root || ev.UserID != "" || !reflect.DeepEqual(ev.Attrs, want) {
		t.Fatalf("review.start event %+v, want attrs %v", ev, want)
	}
}

func TestDormantAndUnusedBoundaries(t *testing.T) {
	// One user, one group role; the boundaries are exact: a login exactly
	// DormantAfter before the snapshot is not dormant; a use exactly at
	// the period start counts.
	tests := []struct {
		name             string
		lastLogin        time.Time
		trail            []audit.Event
		dormant, unused  bool
		uses             int
		wantLastUse      time.Time
		wantLastLoginSet bool
	}{
		{"never anything", time.Time{}, nil, true, true, 0, time.Time{}, false},
		{"login at the dormant bound", snapAt.Add(-DefaultDormantAfter), nil, false, true, 0, time.Time{}, true},
		{"login just before the bound", snapAt.Add(-DefaultDormantAfter - time.Second), nil, true, true, 0, time.Time{}, true},
		{"use at the period start", time.Time{}, []audit.Event{web("2026-07-01T00:00:00Z", alice, "grafana", "engineer")},
			true, false, 1, ts("2026-07-01T00:00:00Z"), false},
		{"use a second before the period", time.Time{}, []audit.Event{web("2026-06-30T23:59:59Z", alice, "grafana", "engineer")},
			true, true, 0, ts("2026-06-30T23:59:59Z"), false},
		{"use with another role only", time.Time{}, []audit.Event{web("2026-09-01T00:00:00Z", alice, "grafana", "other")},
			false, true, 0, time.Time{}, false},
		{"use at the snapshot instant", time.Time{}, []audit.Event{web("2026-10-01T00:00:00Z", alice, "grafana", "engineer")},
			false, false, 1, snapAt, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			putUser(t, st, dirUser{UserID: alice, Groups: []string{"engineers"}, LastLogin: tc.lastLogin})
			dir := t.TempDir()
			writeTrail(t, dir, tc.trail)
			pol := mustPolicy(t, authz.PolicyConfig{Apps: []authz.AppConfig{{Name: "grafana"}}, Roles: []authz.RoleConfig{
				{Name: "engineer", Groups: []string{"engineers"}, Allow: []authz.Rule{{Apps: []string{"grafana"}}}}}})
			m, err := New(Config{}, Deps{Store: st, Policy: func() *authz.Policy { return pol },
				AuditDir: dir, Audit: &audit.Memory{}, Now: func() time.Time { return snapAt }})
			if err != nil {
				t.Fatal(err)
			}
			c, err := m.Start(context.Background(), root, "b")
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Items) != 1 {
				t.Fatalf("items %+v", c.Items)
			}
			it := c.Items[0]
			if it.Dormant != tc.dormant || it.Unused != tc.unused || len(it.Uses) != tc.uses || !it.LastUse.Equal(tc.wantLastUse) ||
				it.LastLogin.IsZero() == tc.wantLastLoginSet {
				t.Fatalf("item %+v", it)
			}
		})
	}
}

// TestPolicyRoles checks the authz accessor reviews rely on: every role,
// sorted by name, as copies the caller may change.
func TestPolicyRoles(t *testing.T) {
	p := quarterPolicy(t)
	roles := p.Roles()
	var names []string
	for _, r := range roles {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"admin", "dba", "engineer", "oncall"}) {
		t.Fatalf("roles %v", names)
	}
	if roles[1].RequireMFA == nil || roles[1].MaxSessionTTL != authz.DefaultMaxSessionTTL {
		t.Fatalf("defaults not applied: %+v", roles[1])
	}
	roles[1].Users[0] = "changed"
	roles[2].Groups[0] = "changed"
	again := p.Roles()
	if again[1].Users[0] != dave || again[2].Groups[0] != "engineers" {
		t.Fatal("Roles returned aliases of the compiled policy")
	}
	if (*authz.Policy)(nil).Roles() != nil {
		t.Fatal("nil policy has roles")
	}
}
