package authz

import (
	"slices"
	"testing"
)

func TestSSHLogins(t *testing.T) {
	p := mustCompile(t, PolicyConfig{
		Targets: []TargetConfig{
			{Name: "db-1", Labels: map[string]string{"tier": "db"}},
			{Name: "web-1", Labels: map[string]string{"tier": "web"}},
		},
		Apps: []AppConfig{{Name: "grafana"}},
		Roles: []RoleConfig{
			{Name: "dba", Users: []string{"u"}, Allow: []Rule{
				{Targets: []string{"db-1"}, Logins: []string{"postgres", "root"}},
				{TargetLabels: map[string]string{"tier": "db"}, Logins: []string{"root", "backup"}},
			}},
			{Name: "web", Users: []string{"u"}, Allow: []Rule{{TargetLabels: map[string]string{"tier": "web"}, Logins: []string{"deploy"}}}},
			// Labels that select no configured target grant no login.
			{Name: "nowhere", Users: []string{"u"}, Allow: []Rule{{TargetLabels: map[string]string{"tier": "cache"}, Logins: []string{"redis"}}}},
			{Name: "any", Users: []string{"u"}, Allow: []Rule{{Targets: []string{"*"}, Logins: []string{"*", "ops"}}}},
			{Name: "http-only", Users: []string{"u"}, Allow: []Rule{{Apps: []string{"grafana"}}}},
			// A deny rule's logins are never principals.
			{Name: "denier", Users: []string{"u"}, Allow: []Rule{{Targets: []string{"web-1"}, Logins: []string{"www"}}},
				Deny: []Rule{{Targets: []string{"db-1"}, Logins: []string{"root"}}}},
		},
	})
	tests := []struct {
		name  string
		roles []string
		want  []string
	}{
		{"one role, deduplicated and sorted", []string{"dba"}, []string{"backup", "postgres", "root"}},
		{"union of roles", []string{"web", "dba"}, []string{"backup", "deploy", "postgres", "root"}},
		{"labels matching no target", []string{"nowhere"}, nil},
		{"wildcard is never a principal", []string{"any"}, []string{"ops"}},
		{"http-only role", []string{"http-only"}, nil},
		{"deny rules lend nothing", []string{"denier"}, []string{"www"}},
		{"unknown role", []string{"ghost"}, nil},
		{"no roles", nil, nil},
		{"duplicate role names", []string{"web", "web"}, []string{"deploy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.SSHLogins(tc.roles)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("SSHLogins(%q) = %q, want %q", tc.roles, got, tc.want)
			}
		})
	}
	t.Run("nil policy", func(t *testing.T) {
		var nilPolicy *Policy
		if got := nilPolicy.SSHLogins([]string{"dba"}); got != nil {
			t.Fatalf("nil policy gave %q", got)
		}
	})
	t.Run("result does not alias the policy", func(t *testing.T) {
		got := p.SSHLogins([]string{"web"})
		got[0] = "root"
		if again := p.SSHLogins([]string{"web"}); !slices.Equal(again, []string{"deploy"}) {
			t.Fatalf("policy changed through the result: %q", again)
		}
	})
}
