package review

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// TestEmbeddedStoreScenario runs a campaign end to end on the real
// embedded store with the real just-in-time access manager: the revoke
// decision removes the grant from the store, and a manager opened later
// (a restart) reads the same signed-off campaign.
func TestEmbeddedStoreScenario(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: snapAt.Add(-48 * time.Hour)}
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := store.OpenEmbedded(path, store.EmbeddedOptions{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pol := mustPolicy(t, authz.PolicyConfig{
		Apps: []authz.AppConfig{{Name: "grafana"}},
		Roles: []authz.RoleConfig{
			{Name: "engineer", Groups: []string{"engineers"}, Allow: []authz.Rule{{Apps: []string{"grafana"}}}},
			{Name: "dba", Groups: []string{"dbas"}, Allow: []authz.Rule{{Apps: []string{"grafana"}, PathPrefixes: []string{"/db"}}}},
		},
	})
	for _, u := range []gwUser{
		{UserID: alice, Email: "alice@example.com", Groups: []string{"engineers"}, LastLogin: ts("2026-09-20T08:00:00Z")},
		{UserID: bob, Email: "bob@example.com", Groups: []string{"engineers"}, LastLogin: ts("2026-09-21T08:00:00Z")},
	} {
		b, _ := json.Marshal(u)
		if err := st.PutUser(ctx, u.UserID, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutEnrolment(ctx, alice, []byte("sealed-enrolment")); err != nil {
		t.Fatal(err)
	}
	if err := st.PutLock(ctx, store.Lock{Subject: "user:" + bob, Reason: "admin", CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	jit, err := access.New(access.Config{}, access.Deps{Store: st, Audit: &audit.Memory{}, Now: clk.Now,
		Policy: func() *authz.Policy { return pol }})
	if err != nil {
		t.Fatal(err)
	}
	g, err := jit.AddGrant(ctx, root, bob, "dba", time.Time{}, "standing dba access")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeTrail(t, dir, []audit.Event{
		web("2026-09-02T10:00:00Z", alice, "grafana", "engineer"),
		web("2026-09-03T10:00:00Z", bob, "grafana", "engineer"),
	})
	clk.Set(snapAt)
	deps := Deps{Store: st, Policy: func() *authz.Policy { return pol }, Grants: jit, AuditDir: dir,
		Audit: &audit.Memory{}, Now: clk.Now, Rand: &countingReader{}}
	m, err := New(Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Start(ctx, root, "2026-Q3")
	if err != nil {
		t.Fatal(err)
	}
	want := []Item{
		{ID: "0001", UserID: alice, Email: "alice@example.com", Role: "engineer", Source: SourceIdPGroup, Group: "engineers",
			LastLogin: ts("2026-09-20T08:00:00Z"), LastUse: ts("2026-09-02T10:00:00Z"), MFAEnrolled: true,
			Uses: []Use{{Kind: "app", Name: "grafana", Last: ts("2026-09-02T10:00:00Z"), Count: 1}}},
		{ID: "0002", UserID: bob, Email: "bob@example.com", Role: "dba", Source: SourceLocal, GrantID: g.ID,
			GrantStart: snapAt.Add(-48 * time.Hour), LastLogin: ts("2026-09-21T08:00:00Z"), Unused: true, Locked: true},
		{ID: "0003", UserID: bob, Email: "bob@example.com", Role: "engineer", Source: SourceIdPGroup, Group: "engineers",
			LastLogin: ts("2026-09-21T08:00:00Z"), LastUse: ts("2026-09-03T10:00:00Z"), Locked: true,
			Uses: []Use{{Kind: "app", Name: "grafana", Last: ts("2026-09-03T10:00:00Z"), Count: 1}}},
	}
	diffItems(t, c.Items, want)

	if _, err := m.Decide(ctx, root, c.Name, "0001", Keep, "daily user"); err != nil {
		t.Fatal(err)
	}
	if it, err := m.Decide(ctx, root, c.Name, "0002", Revoke, "unused"); err != nil || !it.Revoked {
		t.Fatalf("%+v %v", it, err)
	}
	if gs, err := jit.ListGrants(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("grants after revoke: %+v %v", gs, err)
	}
	if _, err := m.Decide(ctx, root, c.Name, "0003", Revoke, "locked"); err != nil {
		t.Fatal(err)
	}
	signed, err := m.SignOff(ctx, root, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	restarted, err := New(Config{}, deps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := restarted.Get(ctx, "2026-q3")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, signed) {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", got, signed)
	}
	if _, err := restarted.Decide(ctx, root, c.Name, "0001", Revoke, ""); err == nil {
		t.Fatal("decided after sign-off")
	}
}
