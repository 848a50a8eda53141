package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/access"
)

// TestAccessParsed checks what valid_access.yaml turns into, and that the
// result validates against the compiled policy as the server will use it.
func TestAccessParsed(t *testing.T) {
	cfg, warns, err := Load("testdata/valid_access.yaml", testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("unexpected warnings: %v", warns)
	}
	a := cfg.Access
	if err := a.Validate(cfg.Compiled); err != nil {
		t.Fatalf("built access.Config does not validate against the policy: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"pending ttl", a.PendingTTL, 12 * time.Hour},
		{"keep requests", a.KeepRequests, 4320 * time.Hour},
		{"roles", len(a.Roles), 2},
		{"db-admin", a.Roles[0], access.RoleConfig{Role: "db-admin", Approvers: []string{"sre-lead"}, MaxDuration: 4 * time.Hour}},
		{"auditor committee", a.Roles[1], access.RoleConfig{Role: "auditor", Approvers: []string{"sre-lead", "security"}, Approvals: 2, MaxDuration: 720 * time.Hour}},
		{"audit read", a.AuditRead, access.AuditReadConfig{Role: "auditor", RequireApproval: true}},
		{"webhooks", len(a.Webhooks), 3},
		{"webhook secret from env", string(a.Webhooks[0].Secret), "webhook-hmac-key"},
		{"webhook unnamed", a.Webhooks[0].Name, ""},
		{"webhook url from env, newline trimmed", a.Webhooks[1].URL, "https://hooks.slack.example/services/T0/B0/do-not-echo"},
		{"webhook unsigned", a.Webhooks[1].Secret == nil, true},
		{"loopback http", a.Webhooks[2].URL, "http://127.0.0.1:9000/access"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("got %#v, want %#v", c.got, c.want)
			}
		})
	}
}

// TestAccessDefaults: without an access section the zero access.Config
// (nothing requestable, default auditor role) is built, and it validates.
func TestAccessDefaults(t *testing.T) {
	cfg, _, err := Parse("x.yaml", []byte(minimalYAML), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Access, access.Config{}) {
		t.Errorf("access without a section = %+v, want the zero Config", cfg.Access)
	}
	if err := cfg.Access.Validate(cfg.Compiled); err != nil {
		t.Error(err)
	}
}

// accessYAML is minimalYAML with the roles an access section names.
const accessYAML = `gateway:
  access_host: access.example.com
  tls: {mode: acme}
  routes:
    - {name: app, host: app.example.com, upstream: "http://127.0.0.1:1"}
identity:
  issuer: https://login.example.com
  client_id: portcullis
  client_secret_env: OIDC_SECRET
mfa: {key_env: MFA_KEY}
session: {cookie_key_env: COOKIE_KEY, assertion_key_env: ASSERTION_KEY}
policy:
  roles:
    - {name: lead, groups: [leads], allow: [{apps: [app]}]}
    - {name: db-admin, groups: [dba], allow: [{apps: [app]}]}
    - {name: auditor, groups: [auditors], allow: [{apps: [app]}]}
`

// accessLine is the line of "access:" after accessYAML.
var accessLine = strings.Count(accessYAML, "\n") + 1

// TestAccessHostile feeds single access settings and checks each is
// refused (or accepted) at its key, with its line.
func TestAccessHostile(t *testing.T) {
	tests := []struct {
		name    string
		section string
		wantErr string // "" = valid
		warn    string
	}{
		{"max_duration 720h is the limit", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead], max_duration: 720h}\n", "", ""},
		{"max_duration above 720h", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead], max_duration: 720h1s}\n", "access.requestable[0].max_duration: must be between 1m and 720h0m0s", ""},
		{"negative max_duration", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead], max_duration: -1h}\n", "access.requestable[0].max_duration: duration must not be negative", ""},
		{"approvals 0", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead], approvals: 0}\n", "access.requestable[0].approvals: must be 1..10", ""},
		{"approvals 10", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead, auditor], approvals: 10}\n", "", ""},
		{"approvals 11", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead], approvals: 11}\n", "access.requestable[0].approvals: must be 1..10", ""},
		{"approvals huge", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead], approvals: 99999999999999999999}\n", "access.requestable[0].approvals: expected an integer", ""},
		{"unknown key", "access:\n  requestable:\n    - {role: db-admin, approvers: [lead], ttl: 1h}\n", "access.requestable[0].ttl: unknown key", ""},
		{"unknown approver", "access:\n  requestable:\n    - {role: db-admin, approvers: [leads]}\n", `access.requestable[0].approvers[0]: no role "leads" in policy.roles (did you mean "lead"?)`, ""},
		{"negative pending_ttl", "access:\n  pending_ttl: -24h\n", "access.pending_ttl: duration must not be negative", ""},
		{"pending_ttl above 720h", "access:\n  pending_ttl: 721h\n", "access.pending_ttl: must be between 1m and 720h0m0s", ""},
		{"audit role unknown", "access:\n  audit_read: {role: auditors}\n", `access.audit_read.role: no role "auditors" in policy.roles (did you mean "auditor"?)`, ""},
		{"require approval, not requestable", "access:\n  audit_read: {require_approval: true}\n", `access.audit_read.require_approval: role "auditor" must be requestable`, ""},
		{"require approval, one approver warns", "access:\n  requestable:\n    - {role: auditor, approvers: [lead]}\n  audit_read: {require_approval: true}\n", "", "access.requestable[0].approvals: audit reads need an approved request, but one approver suffices"},
		{"require approval, committee", "access:\n  requestable:\n    - {role: auditor, approvers: [lead], approvals: 2}\n  audit_read: {require_approval: true}\n", "", ""},
		{"webhook http to a public host", "access:\n  webhooks:\n    - {url: \"http://hooks.example.com/x\"}\n", "access.webhooks[0].url: http is allowed only to a loopback address", ""},
		{"webhook http to loopback", "access:\n  webhooks:\n    - {url: \"http://127.0.0.1:8080/x\"}\n", "", ""},
		{"webhook inline secret", "access:\n  webhooks:\n    - {url: \"https://h.example.com/\", secret: do-not-echo}\n", "access.webhooks[0].secret: secrets must not be written in the config file", ""},
		{"webhook url_env unsafe", "access:\n  webhooks:\n    - {url_env: NOT_A_PEM}\n", "access.webhooks[0].url_env: must be an absolute https URL", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, warns, err := Parse("x.yaml", []byte(accessYAML+tc.section), testOptions(t))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if ce, ok := err.(*Error); ok {
				for _, d := range ce.Diags {
					if d.Line < accessLine {
						t.Errorf("diagnostic not in the access section: %v", d)
					}
				}
			}
			if err != nil && strings.Contains(err.Error(), "do-not-echo") {
				t.Errorf("error echoes a secret: %v", err)
			}
			var w string
			for _, d := range warns {
				w += d.String() + "\n"
			}
			if tc.warn != "" && !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want %q", w, tc.warn)
			}
			if tc.warn == "" && w != "" {
				t.Errorf("unexpected warnings %q", w)
			}
		})
	}
}

// TestAccessWebhookSecretFile: the webhook signing secret and a URL with a
// credential in it are read like every other secret file (missing, too
// open, empty are refused at their key), and FakeSecrets touches neither.
func TestAccessWebhookSecretFile(t *testing.T) {
	tests := []struct {
		name    string
		key     string // secret_file or url_file
		content string // "" = do not create
		mode    os.FileMode
		wantErr string
		want    string // the resolved secret or URL
	}{
		{name: "secret 0600", key: "secret_file", content: "hmac-key\n", mode: 0o600, want: "hmac-key"},
		{name: "secret missing", key: "secret_file", wantErr: "access.webhooks[0].secret_file: file"},
		{name: "secret world readable", key: "secret_file", content: "hmac-key", mode: 0o644, wantErr: "accessible to all users (mode 0644)"},
		{name: "secret only a newline", key: "secret_file", content: "\n", mode: 0o600, wantErr: "access.webhooks[0].secret_file: secret is empty"},
		{name: "url file", key: "url_file", content: "https://hooks.example.com/T0/do-not-echo\n", mode: 0o600, want: "https://hooks.example.com/T0/do-not-echo"},
		{name: "url file world readable", key: "url_file", content: "https://hooks.example.com/x", mode: 0o604, wantErr: "accessible to all users"},
		{name: "url file http", key: "url_file", content: "http://hooks.example.com/do-not-echo", mode: 0o600, wantErr: "access.webhooks[0].url_file: http is allowed only to a loopback address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			secret := filepath.Join(dir, "hook.secret")
			if tc.content != "" {
				if err := os.WriteFile(secret, []byte(tc.content), tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(secret, tc.mode); err != nil { // umask
					t.Fatal(err)
				}
			}
			hook := "{url: \"https://hooks.example.com/a\", secret_file: hook.secret}"
			if tc.key == "url_file" {
				hook = "{url_file: hook.secret}"
			}
			cfgPath := filepath.Join(dir, "portcullis.yaml")
			if err := os.WriteFile(cfgPath, []byte(accessYAML+"access:\n  webhooks:\n    - "+hook+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := Load(cfgPath, testOptions(t))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			case err != nil:
				if !strings.Contains(err.Error(), fmt.Sprintf("portcullis.yaml:%d:", accessLine+2)) {
					t.Errorf("error not at the webhook's line: %v", err)
				}
				if strings.Contains(err.Error(), "do-not-echo") || strings.Contains(err.Error(), "hmac-key") {
					t.Errorf("error echoes a secret: %v", err)
				}
				return
			}
			got := string(cfg.Access.Webhooks[0].Secret)
			if tc.key == "url_file" {
				got = cfg.Access.Webhooks[0].URL
			}
			if got != tc.want {
				t.Errorf("resolved %q, want %q", got, tc.want)
			}

			fake, _, err := Load(cfgPath, Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }})
			if err != nil {
				t.Fatalf("FakeSecrets: %v", err)
			}
			if w := fake.Access.Webhooks[0]; strings.Contains(w.URL, "do-not-echo") || string(w.Secret) == "hmac-key" {
				t.Errorf("FakeSecrets read the secret: %+v", w)
			}
		})
	}
}
