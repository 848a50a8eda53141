package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
)

// AccessSection maps to access.Config: just-in-time access. Absent, the
// manager still runs with nothing requestable (admins can add grants, the
// audit-read role is "auditor" and a standing role suffices).
//
// audit_read.require_approval means the audit-read role must come from an
// approved request: the role must then be listed under requestable (so
// approvals is at least 1 there); a single approver is accepted but warned
// about, since the point of the setting is a committee.
type AccessSection struct {
	PendingTTL *Duration `yaml:"pending_ttl"` // default 24h
	// KeepRequests is how long closed requests stay listed (default
	// 2160h, at least 744h).
	KeepRequests *Duration              `yaml:"keep_requests"`
	Requestable  []RequestableSection   `yaml:"requestable"`
	AuditRead    AuditReadSection       `yaml:"audit_read"`
	Webhooks     []AccessWebhookSection `yaml:"webhooks"`
}

// RequestableSection maps to access.RoleConfig.
type RequestableSection struct {
	Role        string    `yaml:"role,required"`
	Approvers   []string  `yaml:"approvers,required"`
	Approvals   *int      `yaml:"approvals"`    // default 1, at most 10
	MaxDuration *Duration `yaml:"max_duration"` // default 8h, at most 720h
}

// AuditReadSection maps to access.AuditReadConfig.
type AuditReadSection struct {
	Role            string `yaml:"role"` // default auditor
	RequireApproval bool   `yaml:"require_approval"`
}

// AccessWebhookSection maps to access.WebhookConfig: approvers are told
// of new requests. The conventions are risk.alerts.webhooks': url, or
// url_file / url_env when the URL embeds a credential; secret_file /
// secret_env signs each delivery. name is optional here (it only labels
// the sink in logs).
type AccessWebhookSection struct {
	Name      string    `yaml:"name"`
	URL       string    `yaml:"url"`
	URLSecret SecretRef `yaml:"url"`
	Secret    SecretRef `yaml:"secret"`
}

// fakeAccessWebhookURL stands in for a URL read from url_file/url_env
// under FakeSecrets (one per webhook: access refuses duplicate URLs).
func fakeAccessWebhookURL(i int) string {
	return fmt.Sprintf("https://webhook.invalid/access/%d", i)
}

// access builds access.Config and validates it against the compiled
// policy (pol nil when the policy did not compile: its errors are
// reported already, so role names are then only checked for form).
func (b *builder) access(s AccessSection, pol *authz.Policy, pc authz.PolicyConfig) access.Config {
	ac := access.Config{
		AuditRead: access.AuditReadConfig{Role: s.AuditRead.Role, RequireApproval: s.AuditRead.RequireApproval},
	}
	positive := func(path string, d *Duration, def string) time.Duration {
		if d == nil {
			return 0
		}
		if *d == 0 && !b.d.hasPath(path) {
			b.errAt(path, "must not be 0 (leave it out for the default, %s)", def)
		}
		return time.Duration(*d)
	}
	ac.PendingTTL = positive("access.pending_ttl", s.PendingTTL, "24h")
	ac.KeepRequests = positive("access.keep_requests", s.KeepRequests, "2160h")
	for i, r := range s.Requestable {
		p := fmt.Sprintf("access.requestable[%d]", i)
		rc := access.RoleConfig{Role: r.Role, Approvers: r.Approvers}
		if r.Approvals != nil {
			rc.Approvals = *r.Approvals
			if rc.Approvals == 0 && !b.d.hasPath(p+".approvals") {
				// access reads 0 as the default (1): refuse it rather
				// than silently mean one approver.
				b.errAt(p+".approvals", "must be 1..%d", access.MaxApprovals)
				rc.Approvals = 1
			}
		}
		rc.MaxDuration = positive(p+".max_duration", r.MaxDuration, "8h")
		ac.Roles = append(ac.Roles, rc)
	}
	for i, w := range s.Webhooks {
		ac.Webhooks = append(ac.Webhooks, b.accessWebhook(i, w))
	}

	var roleNames []string
	for _, r := range pc.Roles {
		roleNames = append(roleNames, r.Name)
	}
	err := ac.Validate(pol)
	for _, e := range authz.Flatten(authz.Prefix("access", err)) {
		var fe *authz.FieldError
		if !errors.As(e, &fe) {
			b.errAt("access", "%v", e)
			continue
		}
		p, msg := fe.Path, fe.Msg
		if rest, ok := strings.CutPrefix(p, "access.roles["); ok {
			p = "access.requestable[" + rest
		}
		// A URL read from url_file/url_env is reported there.
		if i, rest, ok := listIndex(p, "access.webhooks"); ok && rest == ".url" && i < len(s.Webhooks) {
			if ref := s.Webhooks[i].URLSecret; ref.IsSet() {
				p += sourceSuffix(ref)
			}
		}
		if b.d.hasPath(p) {
			continue // the decoder or the builder already said what is wrong here
		}
		// access names its list "roles"; the file calls it requestable.
		msg = strings.NewReplacer("duplicate of roles[", "duplicate of requestable[",
			"(listed under roles)", "(listed under access.requestable)").Replace(msg)
		if role, ok := strings.CutPrefix(msg, "unknown role "); ok {
			if r, err := strconv.Unquote(role); err == nil {
				msg = "no role " + role + " in policy.roles"
				if sug := suggest(r, roleNames); sug != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", sug)
				}
			}
		}
		b.errAt(p, "%s", msg)
	}

	if s.AuditRead.RequireApproval && err == nil {
		for i, r := range ac.Roles {
			if r.Role == ac.WithDefaults().AuditRead.Role && max(r.Approvals, 1) == 1 {
				b.warnAt(fmt.Sprintf("access.requestable[%d].approvals", i), "audit reads need an approved request, but one approver suffices: consider approvals: 2 (a committee)")
			}
		}
	}
	return ac
}

// accessWebhook resolves one approver notification sink.
func (b *builder) accessWebhook(i int, w AccessWebhookSection) access.WebhookConfig {
	wc := access.WebhookConfig{Name: w.Name}
	wc.URL, wc.Secret = b.webhookTarget(fmt.Sprintf("access.webhooks[%d]", i), w.URL, w.URLSecret, w.Secret, fakeAccessWebhookURL(i))
	return wc
}
