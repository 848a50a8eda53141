package authz

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// basePolicy is a small valid policy the unit tests modify.
func basePolicy() PolicyConfig {
	return PolicyConfig{
		Apps:    []AppConfig{{Name: "grafana"}, {Name: "wiki"}},
		Targets: []TargetConfig{{Name: "web-1", Labels: map[string]string{"env": "prod"}}},
		Roles: []RoleConfig{{
			Name:   "engineer",
			Groups: []string{"engineers"},
			Allow: []Rule{
				{Apps: []string{"grafana"}, PathPrefixes: []string{"/"}, Methods: []string{"get", "POST"}},
				{Targets: []string{"web-1"}, Logins: []string{"deploy"}},
			},
			Deny: []Rule{{Apps: []string{"grafana"}, PathPrefixes: []string{"/admin"}}},
		}},
	}
}

func mustCompile(t testing.TB, cfg PolicyConfig) *Policy {
	t.Helper()
	p, err := Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func TestCompileZeroConfig(t *testing.T) {
	p := mustCompile(t, PolicyConfig{})
	d := p.Evaluate(httpReq("engineer", "/"), testNow)
	if d.Allow || d.Reason != ReasonUnknownApp {
		t.Fatalf("empty policy: %+v, want deny unknown-app", d)
	}
}

// TestCompileAcceptsReachableRules guards the unreachable-rule analysis
// against false positives: each of these allow rules still grants something.
func TestCompileAcceptsReachableRules(t *testing.T) {
	tests := []struct {
		name  string
		allow Rule
		deny  []Rule
	}{
		{"deny narrower path", Rule{Apps: []string{"grafana"}}, []Rule{{Apps: []string{"grafana"}, PathPrefixes: []string{"/admin"}}}},
		{"deny narrower method", Rule{Apps: []string{"grafana"}, Methods: []string{"GET", "POST"}}, []Rule{{Apps: []string{"grafana"}, Methods: []string{"POST"}}}},
		{"deny other app", Rule{Apps: []string{"grafana"}}, []Rule{{Apps: []string{"wiki"}}}},
		{"deny names apps, allow all apps", Rule{Apps: []string{"*"}}, []Rule{{Apps: []string{"grafana", "wiki"}}}},
		{"sibling prefix", Rule{Apps: []string{"grafana"}, PathPrefixes: []string{"/administrator"}}, []Rule{{Apps: []string{"grafana"}, PathPrefixes: []string{"/admin"}}}},
		{"deny methods, allow all methods", Rule{Apps: []string{"grafana"}}, []Rule{{Apps: []string{"grafana"}, Methods: []string{"GET", "POST", "PUT", "DELETE"}}}},
		{"deny one login", Rule{Targets: []string{"web-1"}, Logins: []string{"root", "deploy"}}, []Rule{{Targets: []string{"web-1"}, Logins: []string{"root"}}}},
		{"deny logins, allow any login", Rule{Targets: []string{"web-1"}, Logins: []string{"*"}}, []Rule{{Targets: []string{"web-1"}, Logins: []string{"root", "deploy"}}}},
		{"deny narrower labels", Rule{TargetLabels: map[string]string{"env": "prod"}, Logins: []string{"root"}}, []Rule{{TargetLabels: map[string]string{"env": "prod", "tier": "db"}, Logins: []string{"root"}}}},
		{"HTTP part denied, SSH part not", Rule{Apps: []string{"grafana"}, Targets: []string{"web-1"}, Logins: []string{"root"}}, []Rule{{Apps: []string{"grafana"}}}},
		{"SSH part denied, HTTP part not", Rule{Apps: []string{"grafana"}, Targets: []string{"web-1"}, Logins: []string{"root"}}, []Rule{{Targets: []string{"*"}, Logins: []string{"*"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := basePolicy()
			cfg.Roles[0].Allow = []Rule{tt.allow}
			cfg.Roles[0].Deny = tt.deny
			mustCompile(t, cfg)
		})
	}
}

// TestCompileErrorPaths checks key paths and that errors are *FieldError
// joined with errors.Join (the golden file checks the full messages).
func TestCompileErrorPaths(t *testing.T) {
	f := false
	tests := []struct {
		name   string
		mutate func(*PolicyConfig)
		path   string
		msgHas string
	}{
		{"bad role CIDR", func(c *PolicyConfig) {
			c.Roles = append(c.Roles, RoleConfig{Name: "x", Groups: []string{"g"}, AllowedCIDRs: []string{"10.0.0.0/8", "10.0.0.1/8"}})
		}, "roles[1].allowed_cidrs[1]", "host bits set"},
		{"unknown app in deny", func(c *PolicyConfig) { c.Roles[0].Deny[0].Apps = []string{"grafana", "nope"} }, "roles[0].deny[0].apps[1]", `unknown app "nope"`},
		{"unknown target", func(c *PolicyConfig) { c.Roles[0].Allow[1].Targets = []string{"db"} }, "roles[0].allow[1].targets[0]", `unknown target "db"`},
		{"empty logins", func(c *PolicyConfig) { c.Roles[0].Allow[1].Logins = nil }, "roles[0].allow[1].logins", "never means any"},
		{"negative ttl", func(c *PolicyConfig) { c.Roles[0].MaxSessionTTL = -time.Second }, "roles[0].max_session_ttl", "negative"},
		{"no members", func(c *PolicyConfig) { c.Roles[0].Groups = nil }, "roles[0]", "nobody can ever hold it"},
		{"no members, requestable but unknown app", func(c *PolicyConfig) {
			c.Roles = append(c.Roles, RoleConfig{Name: "jit", Requestable: true, Allow: []Rule{{Apps: []string{"nope"}}}})
		}, "roles[1].allow[0].apps[0]", `unknown app "nope"`},
		{"shadowed allow", func(c *PolicyConfig) { c.Roles[0].Allow[0].PathPrefixes = []string{"/admin/x"} }, "roles[0].allow[0]", "unreachable"},
		{"role CIDRs outside global", func(c *PolicyConfig) {
			c.AllowedCIDRs = []string{"10.0.0.0/8"}
			c.Roles[0].AllowedCIDRs = []string{"192.168.0.0/16"}
		}, "roles[0].allowed_cidrs", "never be reached"},
		{"app CIDRs outside global", func(c *PolicyConfig) {
			c.AllowedCIDRs = []string{"10.0.0.0/8"}
			c.Apps[1].AllowedCIDRs = []string{"2001:db8::/32"}
		}, "apps[1].allowed_cidrs", "never be reached"},
		{"duplicate app", func(c *PolicyConfig) { c.Apps = append(c.Apps, AppConfig{Name: "wiki"}) }, "apps[2].name", "first defined at apps[1]"},
		{"bad path prefix", func(c *PolicyConfig) { c.Roles[0].Deny[0].PathPrefixes = []string{"/admin;x"} }, "roles[0].deny[0].path_prefixes[0]", "not canonical"},
		{"bad method", func(c *PolicyConfig) { c.Roles[0].Allow[0].Methods = []string{"GET", "G(T"} }, "roles[0].allow[0].methods[1]", "invalid HTTP method"},
		{"require_mfa false is still validated", func(c *PolicyConfig) {
			c.Roles[0].RequireMFA = &f
			c.Roles[0].Name = ""
		}, "roles[0].name", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := basePolicy()
			tt.mutate(&cfg)
			p, err := Compile(cfg)
			if err == nil || p != nil {
				t.Fatalf("Compile succeeded, want error at %s", tt.path)
			}
			for _, e := range Flatten(err) {
				var fe *FieldError
				if errors.As(e, &fe) && fe.Path == tt.path && strings.Contains(fe.Msg, tt.msgHas) {
					return
				}
			}
			t.Fatalf("no error at %s containing %q in:\n%v", tt.path, tt.msgHas, err)
		})
	}
}

func TestCompileDoesNotAliasConfig(t *testing.T) {
	cfg := basePolicy()
	p := mustCompile(t, cfg)
	cfg.Roles[0].Deny[0].PathPrefixes[0] = "/other"
	cfg.Roles[0].Groups[0] = "everyone"
	if d := p.Evaluate(httpReq("engineer", "/admin"), testNow); d.Reason != ReasonDenyRule {
		t.Fatalf("mutating the config after Compile changed a decision: %+v", d)
	}
	if got := p.RolesFor("", "", []string{"everyone"}); len(got) != 0 {
		t.Fatalf("mutating the config after Compile changed RolesFor: %v", got)
	}
	r, _ := p.Role("engineer")
	r.Allow[0].Apps[0] = "wiki"
	if r2, _ := p.Role("engineer"); r2.Allow[0].Apps[0] != "grafana" {
		t.Fatal("Role returned an alias of the compiled config")
	}
	apps := p.Apps()
	apps[0].Name = "changed"
	if p.Apps()[0].Name != "grafana" {
		t.Fatal("Apps returned an alias")
	}
	tg := p.Targets()
	tg[0].Labels["env"] = "dev"
	if p.Targets()[0].Labels["env"] != "prod" {
		t.Fatal("Targets returned an alias")
	}
}

func TestAccessors(t *testing.T) {
	no := false
	cfg := basePolicy()
	cfg.Apps[1].Public = true
	cfg.Roles = append(cfg.Roles,
		RoleConfig{Name: "admin", Groups: []string{"admins"}, Admin: true, MaxSessionTTL: time.Hour},
		RoleConfig{Name: "guest", Users: []string{"https://idp#42", "Guest@Example.COM"}, RequireMFA: &no, MaxSessionTTL: 12 * time.Hour},
		RoleConfig{Name: "also-eng", Groups: []string{"engineers"}, RequireMFA: &no},
	)
	p := mustCompile(t, cfg)

	rolesFor := []struct {
		name          string
		user, email   string
		groups, roles []string
	}{
		{"groups sorted and deduped", "", "", []string{"engineers", "admins", "engineers"}, []string{"admin", "also-eng", "engineer"}},
		{"user id", "https://idp#42", "", nil, []string{"guest"}},
		{"email case-insensitive", "", "guest@example.com", nil, []string{"guest"}},
		{"email is not a user id", "guest@example.com", "", nil, nil},
		{"user id is not an email", "", "https://idp#42", nil, nil},
		{"unknown group", "u", "u@example.com", []string{"nobody"}, nil},
		{"group names are case-sensitive", "", "", []string{"Engineers"}, nil},
	}
	for _, tt := range rolesFor {
		t.Run("RolesFor/"+tt.name, func(t *testing.T) {
			if got := p.RolesFor(tt.user, tt.email, tt.groups); !slices.Equal(got, tt.roles) {
				t.Fatalf("RolesFor = %v, want %v", got, tt.roles)
			}
		})
	}

	checks := []struct {
		name  string
		roles []string
		admin bool
		ttl   time.Duration
		mfa   bool
	}{
		{"none", nil, false, DefaultMaxSessionTTL, true},
		{"unknown only", []string{"ghost"}, false, DefaultMaxSessionTTL, true},
		{"engineer", []string{"engineer"}, false, 8 * time.Hour, true},
		{"guest", []string{"guest"}, false, 12 * time.Hour, false},
		{"guest and admin: smallest ttl, mfa", []string{"guest", "admin"}, true, time.Hour, true},
		{"no-mfa roles only", []string{"guest", "also-eng"}, false, 8 * time.Hour, false},
	}
	for _, tt := range checks {
		t.Run("roles/"+tt.name, func(t *testing.T) {
			if got := p.IsAdmin(tt.roles); got != tt.admin {
				t.Errorf("IsAdmin = %v, want %v", got, tt.admin)
			}
			if got := p.MaxSessionTTL(tt.roles); got != tt.ttl {
				t.Errorf("MaxSessionTTL = %v, want %v", got, tt.ttl)
			}
			if got := p.RequiresMFA(tt.roles); got != tt.mfa {
				t.Errorf("RequiresMFA = %v, want %v", got, tt.mfa)
			}
		})
	}

	if a, ok := p.App("wiki"); !ok || !a.Public || a.Name != "wiki" {
		t.Errorf("App(wiki) = %+v, %v", a, ok)
	}
	if _, ok := p.App("nope"); ok {
		t.Error("App(nope) found")
	}
	r, ok := p.Role("engineer")
	if !ok || r.MaxSessionTTL != DefaultMaxSessionTTL || r.RequireMFA == nil || !*r.RequireMFA {
		t.Errorf("Role(engineer) = %+v, %v; want defaults applied", r, ok)
	}
	if _, ok := p.Role("nope"); ok {
		t.Error("Role(nope) found")
	}
	if got := len(p.Apps()); got != 2 {
		t.Errorf("Apps() has %d entries, want 2", got)
	}
	if got := p.Targets(); len(got) != 1 || got[0].Name != "web-1" {
		t.Errorf("Targets() = %+v", got)
	}
}

func TestNilPolicyAccessors(t *testing.T) {
	var p *Policy
	if p.RolesFor("u", "u@x", []string{"g"}) != nil || p.IsAdmin([]string{"admin"}) ||
		p.MaxSessionTTL(nil) != DefaultMaxSessionTTL || !p.RequiresMFA(nil) ||
		p.Apps() != nil || p.Targets() != nil {
		t.Fatal("nil policy accessor granted something")
	}
	if _, ok := p.App("a"); ok {
		t.Fatal("nil policy App found")
	}
	if _, ok := p.Role("r"); ok {
		t.Fatal("nil policy Role found")
	}
}

// A requestable role is held only through just-in-time grants: Compile
// accepts it without standing groups or users, and RolesFor never hands it
// out by itself.
func TestCompileRequestableRoleWithoutHolders(t *testing.T) {
	p, err := Compile(PolicyConfig{
		Apps:  []AppConfig{{Name: "db"}},
		Roles: []RoleConfig{{Name: "db-admin", Requestable: true, Allow: []Rule{{Apps: []string{"db"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.RolesFor("u1", "u1@example.com", []string{"db-admin", ""}); len(got) != 0 {
		t.Fatalf("RolesFor gave standing roles %v to a requestable-only role", got)
	}
	req := Request{Kind: KindHTTP, Subject: Subject{UserID: "u1", Roles: []string{"db-admin"}, MFA: true, AuthTime: time.Unix(100, 0)},
		SourceIP: netip.MustParseAddr("10.0.0.1"), App: "db", Method: "GET", Path: "/"}
	if d := p.Evaluate(&req, time.Unix(200, 0)); !d.Allow {
		t.Fatalf("granted role does not allow: %+v", d)
	}
}
