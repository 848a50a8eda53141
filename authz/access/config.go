package access

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
)

// Defaults and bounds.
const (
	DefaultApprovals    = 1
	DefaultMaxDuration  = 8 * time.Hour
	MaxGrantDuration    = 30 * 24 * time.Hour
	DefaultPendingTTL   = 24 * time.Hour
	DefaultKeepRequests = 90 * 24 * time.Hour
	DefaultAuditorRole  = "auditor"
	// MaxApprovals bounds a committee (and so the size of a request record).
	MaxApprovals = 10
	// MaxReasonLen bounds a request reason and an approver's note (bytes).
	MaxReasonLen = 200
	// MaxPendingPerUser bounds how many pending requests one user may have.
	MaxPendingPerUser = 20
	// MaxRequestsPerDay bounds how many requests (any state) one user may
	// make in 24 hours.
	MaxRequestsPerDay = 100
)

// RoleConfig makes a policy role requestable.
type RoleConfig struct {
	Role        string        // a policy role that may be requested
	Approvers   []string      // policy role names whose members may approve
	Approvals   int           // distinct approvers needed; zero value 1
	MaxDuration time.Duration // longest grant; zero value 8h; at most 30 days
}

// AuditReadConfig controls who may read others' recordings and search the
// audit trail.
type AuditReadConfig struct {
	Role            string // zero value "auditor": needed to read others' recordings and search the trail
	RequireApproval bool   // the Role must come from an approved request (a committee), not a standing role
}

// WebhookConfig is an approver notification sink. Bodies are JSON
// (Notification); with a Secret each is signed:
// X-Portcullis-Signature: sha256=<hex HMAC-SHA256 of the body>.
type WebhookConfig struct {
	Name   string
	URL    string // https, or http only to loopback (audit.CheckWebhookURL)
	Secret []byte
}

// Config is the just-in-time access configuration. The zero value is
// valid: nothing is requestable, the auditor role is "auditor" and a
// standing role suffices.
type Config struct {
	Roles      []RoleConfig
	PendingTTL time.Duration // how long a request waits for approval; zero value 24h
	AuditRead  AuditReadConfig
	Webhooks   []WebhookConfig
	// KeepRequests is how long closed requests stay listed before Run
	// deletes them (the audit trail keeps their history); zero value 90
	// days, at least 31 days (longer than any grant, so reconcile never
	// meets a deleted request whose grant is still due).
	KeepRequests time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.Roles = slices.Clone(c.Roles)
	for i := range c.Roles {
		r := &c.Roles[i]
		if r.Approvals == 0 {
			r.Approvals = DefaultApprovals
		}
		if r.MaxDuration == 0 {
			r.MaxDuration = DefaultMaxDuration
		}
	}
	if c.PendingTTL == 0 {
		c.PendingTTL = DefaultPendingTTL
	}
	if c.KeepRequests == 0 {
		c.KeepRequests = DefaultKeepRequests
	}
	if c.AuditRead.Role == "" {
		c.AuditRead.Role = DefaultAuditorRole
	}
	return c
}

// Validate reports every problem with c (after defaults) as
// *authz.FieldError values joined with errors.Join, with paths as the
// config file spells them under access:. When pol is not nil, every role
// named must exist in it.
func (c *Config) Validate(pol *authz.Policy) error {
	explicitAuditor := c.AuditRead.Role != ""
	d := c.WithDefaults()
	var errs []error
	bad := func(path, format string, a ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, a...)})
	}
	known := func(path, role string) {
		if !validName(role) {
			bad(path, "must be a role name")
			return
		}
		if pol != nil {
			if _, ok := pol.Role(role); !ok {
				bad(path, "unknown role %q", role)
			}
		}
	}
	if len(d.Roles) > 1000 {
		bad("roles", "at most 1000 entries")
	}
	seen := map[string]int{}
	for i, r := range d.Roles {
		p := fmt.Sprintf("roles[%d]", i)
		known(p+".role", r.Role)
		if j, ok := seen[r.Role]; ok {
			bad(p+".role", "duplicate of roles[%d]", j)
		} else {
			seen[r.Role] = i
		}
		if len(r.Approvers) == 0 {
			// Without approvers nobody could ever approve: a request
			// would wait and expire, which is a config mistake.
			bad(p+".approvers", "at least one approver role is required")
		}
		for k, a := range r.Approvers {
			known(fmt.Sprintf("%s.approvers[%d]", p, k), a)
		}
		if r.Approvals < 1 || r.Approvals > MaxApprovals {
			bad(p+".approvals", "must be 1..%d", MaxApprovals)
		}
		if r.MaxDuration < time.Minute || r.MaxDuration > MaxGrantDuration {
			bad(p+".max_duration", "must be between 1m and %s", MaxGrantDuration)
		}
	}
	if d.PendingTTL < time.Minute || d.PendingTTL > MaxGrantDuration {
		bad("pending_ttl", "must be between 1m and %s", MaxGrantDuration)
	}
	if d.KeepRequests < MaxGrantDuration+24*time.Hour || d.KeepRequests > 10*365*24*time.Hour {
		bad("keep_requests", "must be between %s and 10 years", MaxGrantDuration+24*time.Hour)
	}
	if explicitAuditor || d.AuditRead.RequireApproval {
		known("audit_read.role", d.AuditRead.Role)
	}
	if d.AuditRead.RequireApproval {
		if _, ok := seen[d.AuditRead.Role]; !ok {
			bad("audit_read.require_approval", "role %q must be requestable (listed under roles)", d.AuditRead.Role)
		}
	}
	names, urls := map[string]int{}, map[string]int{}
	for i, w := range d.Webhooks {
		p := fmt.Sprintf("webhooks[%d]", i)
		if err := audit.CheckWebhookURL(w.URL); err != nil {
			bad(p+".url", "%v", err)
		}
		if hasControl(w.Name) || len(w.Name) > 128 {
			bad(p+".name", "must be printable, at most 128 bytes")
		}
		if j, ok := names[w.Name]; ok && w.Name != "" {
			bad(p+".name", "duplicate name (also webhooks[%d])", j)
		} else {
			names[w.Name] = i
		}
		// One queue per URL: a second entry would notify twice.
		if j, ok := urls[w.URL]; ok {
			bad(p+".url", "same URL as webhooks[%d]", j)
		} else {
			urls[w.URL] = i
		}
	}
	return errors.Join(errs...)
}

// compiled is a validated config with indexes, swapped atomically.
type compiled struct {
	Config
	roles map[string]*RoleConfig
}

func compile(c Config) *compiled {
	c = c.WithDefaults()
	out := &compiled{Config: c, roles: make(map[string]*RoleConfig, len(c.Roles))}
	for i := range c.Roles {
		out.roles[c.Roles[i].Role] = &c.Roles[i]
	}
	return out
}
