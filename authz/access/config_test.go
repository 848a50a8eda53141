package access

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
)

func TestConfigValidate(t *testing.T) {
	pol, err := authz.Compile(authz.PolicyConfig{Roles: []authz.RoleConfig{
		{Name: "db-admin", Groups: []string{"g"}}, {Name: "sre-lead", Groups: []string{"g"}},
		{Name: "security", Groups: []string{"g"}}, {Name: "auditor", Groups: []string{"g"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	polNoAuditor, err := authz.Compile(authz.PolicyConfig{Roles: []authz.RoleConfig{{Name: "db-admin", Groups: []string{"g"}}}})
	if err != nil {
		t.Fatal(err)
	}
	role := func(f func(r *RoleConfig)) Config {
		r := RoleConfig{Role: "db-admin", Approvers: []string{"sre-lead"}}
		f(&r)
		return Config{Roles: []RoleConfig{r}}
	}
	tests := []struct {
		name  string
		cfg   Config
		pol   *authz.Policy
		paths []string // FieldError paths expected (none = valid)
	}{
		{"zero value", Config{}, pol, nil},
		{"zero value without policy", Config{}, nil, nil},
		{"valid role", role(func(*RoleConfig) {}), pol, nil},
		{"max bounds", role(func(r *RoleConfig) { r.Approvals = MaxApprovals; r.MaxDuration = MaxGrantDuration }), pol, nil},
		{"unknown role", role(func(r *RoleConfig) { r.Role = "root" }), pol, []string{"roles[0].role"}},
		{"unknown role without policy is fine", role(func(r *RoleConfig) { r.Role = "root" }), nil, nil},
		{"empty role", role(func(r *RoleConfig) { r.Role = "" }), nil, []string{"roles[0].role"}},
		{"role with newline", role(func(r *RoleConfig) { r.Role = "a\nb" }), nil, []string{"roles[0].role"}},
		{"no approvers", role(func(r *RoleConfig) { r.Approvers = nil }), pol, []string{"roles[0].approvers"}},
		{"unknown approver", role(func(r *RoleConfig) { r.Approvers = []string{"sre-lead", "boss"} }), pol, []string{"roles[0].approvers[1]"}},
		{"negative approvals", role(func(r *RoleConfig) { r.Approvals = -1 }), pol, []string{"roles[0].approvals"}},
		{"too many approvals", role(func(r *RoleConfig) { r.Approvals = MaxApprovals + 1 }), pol, []string{"roles[0].approvals"}},
		{"duration over 30 days", role(func(r *RoleConfig) { r.MaxDuration = MaxGrantDuration + time.Second }), pol, []string{"roles[0].max_duration"}},
		{"negative duration", role(func(r *RoleConfig) { r.MaxDuration = -time.Hour }), pol, []string{"roles[0].max_duration"}},
		{"duplicate role", Config{Roles: []RoleConfig{
			{Role: "db-admin", Approvers: []string{"sre-lead"}}, {Role: "db-admin", Approvers: []string{"security"}},
		}}, pol, []string{"roles[1].role"}},
		{"pending ttl too long", Config{PendingTTL: 31 * 24 * time.Hour}, nil, []string{"pending_ttl"}},
		{"pending ttl negative", Config{PendingTTL: -1}, nil, []string{"pending_ttl"}},
		{"keep requests too short", Config{KeepRequests: 24 * time.Hour}, nil, []string{"keep_requests"}},
		{"unknown audit role", Config{AuditRead: AuditReadConfig{Role: "compliance"}}, pol, []string{"audit_read.role"}},
		{"default audit role need not exist", Config{AuditRead: AuditReadConfig{}}, polNoAuditor, nil},
		{"require approval of a non-requestable role", Config{AuditRead: AuditReadConfig{RequireApproval: true}}, pol, []string{"audit_read.require_approval"}},
		{"require approval ok", Config{
			Roles:     []RoleConfig{{Role: "auditor", Approvers: []string{"security"}, Approvals: 2}},
			AuditRead: AuditReadConfig{RequireApproval: true},
		}, pol, nil},
		{"webhook ok", Config{Webhooks: []WebhookConfig{{Name: "a", URL: "https://hooks.example/x"}, {Name: "b", URL: "http://127.0.0.1:9/x"}}}, nil, nil},
		{"webhook http remote", Config{Webhooks: []WebhookConfig{{URL: "http://hooks.example/x"}}}, nil, []string{"webhooks[0].url"}},
		{"webhook credentials", Config{Webhooks: []WebhookConfig{{URL: "https://u:p@hooks.example/x"}}}, nil, []string{"webhooks[0].url"}},
		{"webhook bad scheme", Config{Webhooks: []WebhookConfig{{URL: "file:///etc/passwd"}}}, nil, []string{"webhooks[0].url"}},
		{"webhook duplicate", Config{Webhooks: []WebhookConfig{{Name: "a", URL: "https://h/x"}, {Name: "a", URL: "https://h/x"}}}, nil, []string{"webhooks[1].name", "webhooks[1].url"}},
		{"webhook name control", Config{Webhooks: []WebhookConfig{{Name: "a\x1b", URL: "https://h/x"}}}, nil, []string{"webhooks[0].name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate(tc.pol)
			var paths []string
			for _, e := range authz.Flatten(err) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a FieldError: %v", e)
				}
				paths = append(paths, fe.Path)
			}
			if !slices.Equal(paths, tc.paths) {
				t.Fatalf("paths %v, want %v (%v)", paths, tc.paths, err)
			}
			_, nerr := New(tc.cfg, Deps{Store: newMemStore(), Audit: nopEmitter{}})
			if tc.pol == nil && (nerr == nil) != (tc.paths == nil) {
				t.Fatalf("New = %v", nerr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Roles: []RoleConfig{{Role: "r", Approvers: []string{"a"}}}}
	d := c.WithDefaults()
	if d.Roles[0].Approvals != 1 || d.Roles[0].MaxDuration != 8*time.Hour || d.PendingTTL != 24*time.Hour ||
		d.AuditRead.Role != "auditor" || d.KeepRequests != DefaultKeepRequests {
		t.Fatalf("%+v", d)
	}
	if c.Roles[0].Approvals != 0 {
		t.Fatal("WithDefaults modified its receiver's roles")
	}
}

func TestSetConfigRefusesInvalid(t *testing.T) {
	m := newEnv(t).manager(t, testConfig())
	m.SetConfig(Config{PendingTTL: -1})
	if len(m.Config().Roles) != 3 {
		t.Fatal("invalid config installed")
	}
	m.SetConfig(Config{})
	if len(m.Config().Roles) != 0 {
		t.Fatal("valid config not installed")
	}
	if _, err := New(Config{}, Deps{Audit: nopEmitter{}}); err == nil || !strings.Contains(err.Error(), "required") {
		t.Fatalf("New without store: %v", err)
	}
}
