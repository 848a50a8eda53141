package authz

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// httpReq is an MFA-verified engineer's GET from 10.1.2.3, authenticated an
// hour before testNow.
func httpReq(roleName, path string) *Request {
	return &Request{
		Kind: KindHTTP,
		Subject: Subject{
			UserID: "https://idp#alice", Roles: []string{roleName}, MFA: true,
			AuthTime: testNow.Add(-time.Hour),
		},
		SourceIP: netip.MustParseAddr("10.1.2.3"),
		App:      "grafana", Method: "GET", Path: path,
	}
}

func sshReq(roleName, target, login string) *Request {
	r := httpReq(roleName, "")
	r.Kind, r.App, r.Method, r.Target, r.Login = KindSSH, "", "", target, login
	return r
}

var allReasons = []Reason{
	ReasonAllowed, ReasonNoSubject, ReasonNoRoles, ReasonMFARequired, ReasonSourceIPNotAllowed,
	ReasonInvalidSourceIP, ReasonUnknownApp, ReasonUnknownTarget, ReasonDenyRule, ReasonNoMatchingRule,
	ReasonSessionTooOld, ReasonInvalidPath, ReasonInvalidRequest,
}

// TestEvaluateReasons produces every reason code at least once and checks
// the whole Decision, not only Allow.
func TestEvaluateReasons(t *testing.T) {
	cfg := basePolicy()
	cfg.AllowedCIDRs = []string{"10.0.0.0/8"}
	p := mustCompile(t, cfg)
	tests := []struct {
		name   string
		req    func() *Request
		want   Decision
		reason Reason // for coverage bookkeeping; equals want.Reason
	}{
		{"allowed", func() *Request { return httpReq("engineer", "/d/1") },
			Decision{Allow: true, Reason: ReasonAllowed, Role: "engineer", Rule: "roles[engineer].allow[0]"}, ReasonAllowed},
		{"ssh allowed", func() *Request { return sshReq("engineer", "web-1", "deploy") },
			Decision{Allow: true, Reason: ReasonAllowed, Role: "engineer", Rule: "roles[engineer].allow[1]"}, ReasonAllowed},
		{"no subject", func() *Request { r := httpReq("engineer", "/"); r.Subject.UserID = ""; return r },
			Decision{Reason: ReasonNoSubject}, ReasonNoSubject},
		{"no roles", func() *Request { r := httpReq("engineer", "/"); r.Subject.Roles = nil; return r },
			Decision{Reason: ReasonNoRoles}, ReasonNoRoles},
		{"mfa required", func() *Request { r := httpReq("engineer", "/"); r.Subject.MFA = false; return r },
			Decision{Reason: ReasonMFARequired, Role: "engineer", Rule: "roles[engineer].require_mfa"}, ReasonMFARequired},
		{"source ip", func() *Request {
			r := httpReq("engineer", "/")
			r.SourceIP = netip.MustParseAddr("192.0.2.1")
			return r
		}, Decision{Reason: ReasonSourceIPNotAllowed, Rule: "allowed_cidrs"}, ReasonSourceIPNotAllowed},
		{"invalid source ip", func() *Request { r := httpReq("engineer", "/"); r.SourceIP = netip.Addr{}; return r },
			Decision{Reason: ReasonInvalidSourceIP}, ReasonInvalidSourceIP},
		{"unknown app", func() *Request { r := httpReq("engineer", "/"); r.App = "jenkins"; return r },
			Decision{Reason: ReasonUnknownApp}, ReasonUnknownApp},
		{"unknown target", func() *Request { return sshReq("engineer", "db-9", "deploy") },
			Decision{Reason: ReasonUnknownTarget}, ReasonUnknownTarget},
		{"deny rule", func() *Request { return httpReq("engineer", "/admin/x") },
			Decision{Reason: ReasonDenyRule, Role: "engineer", Rule: "roles[engineer].deny[0]"}, ReasonDenyRule},
		{"no matching rule", func() *Request { r := httpReq("engineer", "/"); r.Method = "DELETE"; return r },
			Decision{Reason: ReasonNoMatchingRule}, ReasonNoMatchingRule},
		{"session too old", func() *Request {
			r := httpReq("engineer", "/")
			r.Subject.AuthTime = testNow.Add(-9 * time.Hour)
			return r
		}, Decision{Reason: ReasonSessionTooOld, Role: "engineer", Rule: "roles[engineer].max_session_ttl"}, ReasonSessionTooOld},
		{"invalid path", func() *Request { return httpReq("engineer", "/public/../admin") },
			Decision{Reason: ReasonInvalidPath}, ReasonInvalidPath},
		{"invalid request kind", func() *Request { r := httpReq("engineer", "/"); r.Kind = 0; return r },
			Decision{Reason: ReasonInvalidRequest}, ReasonInvalidRequest},
		{"invalid request unknown kind", func() *Request { r := httpReq("engineer", "/"); r.Kind = 99; return r },
			Decision{Reason: ReasonInvalidRequest}, ReasonInvalidRequest},
		{"ssh without target", func() *Request { return sshReq("engineer", "", "deploy") },
			Decision{Reason: ReasonInvalidRequest}, ReasonInvalidRequest},
	}
	covered := map[Reason]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Evaluate(tt.req(), testNow); got != tt.want {
				t.Fatalf("Evaluate = %+v, want %+v", got, tt.want)
			}
		})
		covered[tt.reason] = true
	}
	for _, r := range allReasons {
		if !covered[r] {
			t.Errorf("reason %q is not exercised", r)
		}
	}
}

func TestEvaluateNilAndZero(t *testing.T) {
	p := mustCompile(t, basePolicy())
	var nilPolicy *Policy
	tests := []struct {
		name string
		p    *Policy
		req  *Request
		want Reason
	}{
		{"nil policy", nilPolicy, httpReq("engineer", "/"), ReasonNoMatchingRule},
		{"nil policy nil request", nilPolicy, nil, ReasonNoMatchingRule},
		{"zero policy", &Policy{}, httpReq("engineer", "/"), ReasonUnknownApp},
		{"zero policy ssh", &Policy{}, sshReq("engineer", "web-1", "root"), ReasonUnknownTarget},
		{"nil request", p, nil, ReasonInvalidRequest},
		{"zero request", p, &Request{}, ReasonInvalidRequest},
		{"zero subject http", p, &Request{Kind: KindHTTP, App: "grafana", Method: "GET", Path: "/", SourceIP: netip.MustParseAddr("10.0.0.1")}, ReasonNoSubject},
		{"zero subject ssh", p, &Request{Kind: KindSSH, Target: "web-1", Login: "deploy", SourceIP: netip.MustParseAddr("10.0.0.1")}, ReasonNoSubject},
		{"subject with only a user id", p, &Request{Kind: KindHTTP, Subject: Subject{UserID: "u"}, App: "grafana", Method: "GET", Path: "/", SourceIP: netip.MustParseAddr("10.0.0.1")}, ReasonNoRoles},
		{"zero auth time", p, func() *Request { r := httpReq("engineer", "/"); r.Subject.AuthTime = time.Time{}; return r }(), ReasonSessionTooOld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.p.Evaluate(tt.req, testNow)
			if d.Allow || d.Reason != tt.want {
				t.Fatalf("Evaluate = %+v, want deny %s", d, tt.want)
			}
		})
	}
}

func TestEvaluateTTLBoundary(t *testing.T) {
	cfg := basePolicy()
	cfg.Roles[0].MaxSessionTTL = 2 * time.Hour
	p := mustCompile(t, cfg)
	tests := []struct {
		name string
		age  time.Duration
		want Reason
	}{
		{"fresh", 0, ReasonAllowed},
		{"one nanosecond before", 2*time.Hour - time.Nanosecond, ReasonAllowed},
		{"exactly at ttl", 2 * time.Hour, ReasonSessionTooOld},
		{"after", 2*time.Hour + time.Nanosecond, ReasonSessionTooOld},
		{"future within skew", -MaxAuthTimeSkew, ReasonAllowed},
		{"future beyond skew", -MaxAuthTimeSkew - time.Nanosecond, ReasonSessionTooOld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httpReq("engineer", "/")
			r.Subject.AuthTime = testNow.Add(-tt.age)
			if d := p.Evaluate(r, testNow); d.Reason != tt.want {
				t.Fatalf("age %v: %+v, want %s", tt.age, d, tt.want)
			}
		})
	}
}

// TestDenyWinsAcrossRoles: a deny in any held role beats an allow in any
// other, whatever order the roles come in and even when the denying role
// itself is gated (wrong network, no MFA, too old).
func TestDenyWinsAcrossRoles(t *testing.T) {
	no := false
	cfg := basePolicy()
	cfg.Roles = append(cfg.Roles,
		RoleConfig{Name: "ops", Groups: []string{"ops"}, RequireMFA: &no, Allow: []Rule{{Apps: []string{"*"}}}},
		RoleConfig{Name: "restricted", Groups: []string{"r"}, AllowedCIDRs: []string{"192.168.0.0/16"},
			Allow: []Rule{{Apps: []string{"wiki"}}},
			Deny:  []Rule{{Apps: []string{"grafana"}, Methods: []string{"POST"}}}},
	)
	p := mustCompile(t, cfg)
	tests := []struct {
		name  string
		roles []string
		path  string
		meth  string
		mfa   bool
		want  Decision
	}{
		{"ops alone may see admin", []string{"ops"}, "/admin", "GET", true,
			Decision{Allow: true, Reason: ReasonAllowed, Role: "ops", Rule: "roles[ops].allow[0]"}},
		{"engineer deny beats ops allow", []string{"ops", "engineer"}, "/admin", "GET", true,
			Decision{Reason: ReasonDenyRule, Role: "engineer", Rule: "roles[engineer].deny[0]"}},
		{"order does not matter", []string{"engineer", "ops"}, "/admin/x", "GET", true,
			Decision{Reason: ReasonDenyRule, Role: "engineer", Rule: "roles[engineer].deny[0]"}},
		{"deny of a role gated by MFA still applies", []string{"ops", "engineer"}, "/admin", "GET", false,
			Decision{Reason: ReasonDenyRule, Role: "engineer", Rule: "roles[engineer].deny[0]"}},
		{"deny of a role gated by network still applies", []string{"ops", "restricted"}, "/x", "post", true,
			Decision{Reason: ReasonDenyRule, Role: "restricted", Rule: "roles[restricted].deny[0]"}},
		{"other methods pass through ops", []string{"ops", "restricted"}, "/x", "GET", true,
			Decision{Allow: true, Reason: ReasonAllowed, Role: "ops", Rule: "roles[ops].allow[0]"}},
		{"without MFA ops still allows where engineer would need it", []string{"engineer", "ops"}, "/d", "GET", false,
			Decision{Allow: true, Reason: ReasonAllowed, Role: "ops", Rule: "roles[ops].allow[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httpReq("", tt.path)
			r.Subject.Roles, r.Method, r.Subject.MFA = tt.roles, tt.meth, tt.mfa
			if got := p.Evaluate(r, testNow); got != tt.want {
				t.Fatalf("Evaluate = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestHostilePathsNeverReachAdmin runs each trick through NormalizePath and
// Evaluate the way the gateway does: the result is a 400 or a deny, never
// an allow of the denied /admin tree.
func TestHostilePathsNeverReachAdmin(t *testing.T) {
	p := mustCompile(t, basePolicy())
	for _, raw := range []string{
		"/admin", "/public/../admin", "/%2e%2e/admin", "/%2E%2E/admin", "//admin", "/admin;x", "/admin%2fx",
		"/%252e%252e/admin", "/a/./b/../../admin", "\\admin", "/x/..%5cadmin", "/ADMIN", "/Admin/users",
		"/foo/..;/admin", "/admin%00", "/;/admin", "/.%2e/admin", "/admin/", "/admin/.",
	} {
		t.Run(raw, func(t *testing.T) {
			path, err := NormalizePath(raw)
			if err != nil {
				return // 400 at the gateway
			}
			if d := p.Evaluate(httpReq("engineer", path), testNow); d.Allow || d.Reason != ReasonDenyRule {
				t.Fatalf("%q → %q: %+v, want deny-rule", raw, path, d)
			}
		})
	}
}

func TestEvaluateSSH(t *testing.T) {
	cfg := basePolicy()
	cfg.Targets = append(cfg.Targets,
		TargetConfig{Name: "db-1", Labels: map[string]string{"env": "prod", "tier": "db"}},
		TargetConfig{Name: "dev-1", Labels: map[string]string{"env": "dev"}})
	cfg.Roles[0].Allow = append(cfg.Roles[0].Allow,
		Rule{TargetLabels: map[string]string{"env": "prod"}, Logins: []string{"readonly"}},
		Rule{Targets: []string{"*"}, Logins: []string{"*"}, Apps: []string{"wiki"}})
	cfg.Roles[0].Deny = append(cfg.Roles[0].Deny,
		Rule{TargetLabels: map[string]string{"tier": "db"}, Logins: []string{"root"}})
	p := mustCompile(t, cfg)
	tests := []struct {
		name, target, login string
		want                Decision
	}{
		{"named target", "web-1", "deploy", Decision{Allow: true, Reason: ReasonAllowed, Role: "engineer", Rule: "roles[engineer].allow[1]"}},
		{"label selector", "db-1", "readonly", Decision{Allow: true, Reason: ReasonAllowed, Role: "engineer", Rule: "roles[engineer].allow[2]"}},
		{"wildcard target and login", "dev-1", "anyone", Decision{Allow: true, Reason: ReasonAllowed, Role: "engineer", Rule: "roles[engineer].allow[3]"}},
		{"label deny wins over wildcard", "db-1", "root", Decision{Reason: ReasonDenyRule, Role: "engineer", Rule: "roles[engineer].deny[1]"}},
		{"other login falls to the wildcard rule", "web-1", "ubuntu", Decision{Allow: true, Reason: ReasonAllowed, Role: "engineer", Rule: "roles[engineer].allow[3]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Evaluate(sshReq("engineer", tt.target, tt.login), testNow); got != tt.want {
				t.Fatalf("Evaluate = %+v, want %+v", got, tt.want)
			}
		})
	}
	// Without the wildcard rule logins match exactly (case-sensitive) ...
	cfg.Roles[0].Allow = cfg.Roles[0].Allow[:2]
	p = mustCompile(t, cfg)
	if d := p.Evaluate(sshReq("engineer", "web-1", "Deploy"), testNow); d.Reason != ReasonNoMatchingRule {
		t.Fatalf("login matched case-insensitively: %+v", d)
	}
	// ... and an SSH request never matches an HTTP-only rule.
	cfg.Roles[0].Allow = cfg.Roles[0].Allow[:1]
	p = mustCompile(t, cfg)
	if d := p.Evaluate(sshReq("engineer", "web-1", "deploy"), testNow); d.Reason != ReasonNoMatchingRule {
		t.Fatalf("HTTP-only rule matched SSH: %+v", d)
	}
}

func TestEvaluateAllowPathDoesNotAllocate(t *testing.T) {
	p := mustCompile(t, basePolicy())
	req := httpReq("engineer", "/api/dashboards/uid/abc")
	req.Subject.Roles = []string{"ghost", "engineer"}
	req.SourceIP = netip.MustParseAddr("::ffff:10.1.2.3")
	if d := p.Evaluate(req, testNow); !d.Allow {
		t.Fatalf("setup: %+v", d)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if d := p.Evaluate(req, testNow); !d.Allow {
			t.Fatal("denied")
		}
	})
	if allocs != 0 {
		t.Fatalf("Evaluate allow path: %v allocs per call, want 0", allocs)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	cfg := basePolicy()
	cfg.AllowedCIDRs = []string{"10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"}
	p := mustCompile(b, cfg)
	allow := httpReq("engineer", "/api/dashboards/uid/abc")
	deny := httpReq("engineer", "/admin/users")
	ssh := sshReq("engineer", "web-1", "deploy")
	for _, bc := range []struct {
		name string
		req  *Request
	}{{"http-allow", allow}, {"http-deny", deny}, {"ssh-allow", ssh}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Evaluate(bc.req, testNow)
			}
		})
	}
}

// TestEvaluateConcurrent: a compiled Policy is shared by every request
// goroutine; the race detector checks that Evaluate only reads.
func TestEvaluateConcurrent(t *testing.T) {
	p := mustCompile(t, basePolicy())
	paths := map[string]Reason{"/d": ReasonAllowed, "/admin": ReasonDenyRule}
	errs := make(chan error, 4)
	for i := range 4 {
		path := "/d"
		if i%2 == 1 {
			path = "/admin"
		}
		go func() {
			for range 100 {
				if d := p.Evaluate(httpReq("engineer", path), testNow); d.Reason != paths[path] {
					errs <- fmt.Errorf("%s: %+v, want %s", path, d, paths[path])
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
