package risk

import (
	"net/netip"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
)

func TestCanaryRoute(t *testing.T) {
	e, err := New(Config{CanaryRoutes: []string{
		"app.example.com/backup", "app.example.com/admin/", "honeypot.example.com", "App.Example.com/.git",
	}}, &hookStore{}, Options{Audit: nopAudit{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, host, path, want string
	}{
		{"prefix itself", "app.example.com", "/backup", "app.example.com/backup"},
		{"below the prefix", "app.example.com", "/backup/db.sql", "app.example.com/backup"},
		{"below, trailing slash", "app.example.com", "/backup/", "app.example.com/backup"},
		{"not a segment boundary", "app.example.com", "/backups", ""},
		{"sibling", "app.example.com", "/backu", ""},
		{"paths are case-sensitive", "app.example.com", "/Backup", ""},
		{"hosts are not", "APP.example.COM", "/backup/x", "app.example.com/backup"},
		{"prefix with a slash", "app.example.com", "/admin/users", "app.example.com/admin/"},
		{"prefix with a slash, bare", "app.example.com", "/admin", ""},
		{"whole host", "honeypot.example.com", "/", "honeypot.example.com/"},
		{"whole host, any path", "honeypot.example.com", "/a/b?c", "honeypot.example.com/"},
		{"dot file", "app.example.com", "/.git/config", "app.example.com/.git"},
		{"other path", "app.example.com", "/dashboard", ""},
		{"other host", "grafana.example.com", "/backup", ""},
		{"subdomain", "x.honeypot.example.com", "/", ""},
		{"empty path", "app.example.com", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := e.CanaryRoute(tc.host, tc.path)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("CanaryRoute(%q, %q) = %q, %v; want %q", tc.host, tc.path, got, ok, tc.want)
			}
		})
	}
	t.Run("no allocation on the request path", func(t *testing.T) {
		if n := testing.AllocsPerRun(100, func() { e.CanaryRoute("app.example.com", "/dashboard/x") }); n != 0 {
			t.Errorf("%v allocations", n)
		}
		if n := testing.AllocsPerRun(100, func() { e.CanaryRoute("grafana.example.com", "/x") }); n != 0 {
			t.Errorf("%v allocations", n)
		}
	})
}

func TestCanaryNames(t *testing.T) {
	e, err := New(Config{CanaryTargets: []string{"Backup-DB"}, CanaryLogins: []string{"oracle"}}, &hookStore{}, Options{Audit: nopAudit{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		fn   func(string) bool
		in   string
		want bool
	}{
		{"target exact", e.CanaryTarget, "Backup-DB", true},
		{"target any case", e.CanaryTarget, "backup-db", true},
		{"target upper", e.CanaryTarget, "BACKUP-DB", true},
		{"target other", e.CanaryTarget, "backup-db2", false},
		{"target empty", e.CanaryTarget, "", false},
		{"login exact", e.CanaryLogin, "oracle", true},
		{"logins are case-sensitive", e.CanaryLogin, "Oracle", false},
		{"login other", e.CanaryLogin, "root", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.fn(tc.in); got != tc.want {
				t.Errorf("(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
	none, _ := New(Config{}, &hookStore{}, Options{Audit: nopAudit{}})
	if none.CanaryTarget("x") || none.CanaryLogin("x") {
		t.Error("canaries without configuration")
	}
	if _, ok := none.CanaryRoute("x", "/"); ok {
		t.Error("canary route without configuration")
	}
}

func TestCanaryTouch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		t.Run("user and address", func(t *testing.T) {
			ev := newEnv(t, b, Config{Webhooks: alertSink})
			ctx := ev.ctx()
			ip := mustAddr("203.0.113.9")
			v, err := ev.e.Canary(ctx, "route app.example.com/backup", "dave", ip)
			if err != nil || v.Allow || v.Reason != ReasonAccountLocked || v.Ref == "" {
				t.Fatalf("Canary = %+v, %v", v, err)
			}
			if g, _ := ev.e.Gate(ctx, "dave", mustAddr("198.51.100.1")); g.Allow || g.Ref != v.Ref {
				t.Errorf("user not locked: %+v", g)
			}
			if g, _ := ev.e.Gate(ctx, "", ip); g.Allow || g.Reason != ReasonSourceBlocked {
				t.Errorf("address not blocked: %+v", g)
			}
			if g, _ := ev.e.Gate(ctx, "", mustAddr("203.0.113.10")); !g.Allow {
				t.Errorf("the address's network is blocked too: %+v", g)
			}
			locks, blocks := ev.events(audit.TypeRiskLock), ev.events(audit.TypeRiskBlock)
			if len(locks) != 1 || locks[0].Reason != ReasonCanary || locks[0].Attrs["canary"] != "route app.example.com/backup" || locks[0].Ref != v.Ref {
				t.Errorf("risk.lock %+v", locks)
			}
			if len(blocks) != 1 || blocks[0].Reason != ReasonCanary || blocks[0].SourceIP != "203.0.113.9" || blocks[0].UserID != "dave" {
				t.Errorf("risk.block %+v", blocks)
			}
			if n := ev.revoked.count("dave"); n != 1 {
				t.Errorf("revokers called %d times", n)
			}
			if n := queued(ev.e); n != 2 {
				t.Errorf("%d alerts queued, want 2 (lock and block)", n)
			}
			again, err := ev.e.Canary(ctx, "target backup-db", "dave", ip)
			if err != nil || again.Allow || again.Ref != v.Ref {
				t.Errorf("second touch = %+v, %v", again, err)
			}
			if n := len(ev.events(audit.TypeRiskLock)); n != 1 {
				t.Errorf("%d lock events after a second touch", n)
			}
		})
		t.Run("unauthenticated", func(t *testing.T) {
			ev := newEnv(t, b, Config{})
			ip := mustAddr("::ffff:203.0.113.9")
			v, err := ev.e.Canary(ev.ctx(), "login oracle", "", ip)
			if err != nil || v.Allow || v.Reason != ReasonSourceBlocked {
				t.Fatalf("Canary = %+v, %v", v, err)
			}
			if g, _ := ev.e.Gate(ev.ctx(), "", mustAddr("203.0.113.9")); g.Allow {
				t.Error("address not blocked")
			}
		})
		t.Run("nothing to lock still denies", func(t *testing.T) {
			ev := newEnv(t, b, Config{})
			v, err := ev.e.Canary(ev.ctx(), "login oracle", "", netip.Addr{})
			if err != nil || v.Allow {
				t.Fatalf("Canary = %+v, %v", v, err)
			}
			if n := len(ev.audit.Events()); n != 0 {
				t.Errorf("%d events", n)
			}
		})
	})
}
