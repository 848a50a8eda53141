package authz

import (
	"net/netip"
	"time"
)

// Reason is a stable, machine-readable code explaining a Decision. Codes are
// part of the audit format: never rename one, only add.
type Reason string

// Reason codes. Allow decisions use ReasonAllowed; every other code is a deny.
const (
	ReasonAllowed            Reason = "allowed"
	ReasonNoSubject          Reason = "no-subject"            // empty user ID
	ReasonNoRoles            Reason = "no-roles"              // subject has no known role
	ReasonMFARequired        Reason = "mfa-required"          // a role requires MFA and the subject has none
	ReasonSourceIPNotAllowed Reason = "source-ip-not-allowed" // global, role, app or target allowlist failed
	ReasonInvalidSourceIP    Reason = "invalid-source-ip"     // zero/invalid address
	ReasonUnknownApp         Reason = "unknown-app"           // app not in policy
	ReasonUnknownTarget      Reason = "unknown-target"        // SSH target not in policy
	ReasonDenyRule           Reason = "deny-rule"             // an explicit deny rule matched (deny wins)
	ReasonNoMatchingRule     Reason = "no-matching-rule"      // nothing allowed it: default deny
	ReasonSessionTooOld      Reason = "session-ttl-exceeded"  // auth older than the role's max_session_ttl
	ReasonInvalidPath        Reason = "invalid-path"          // path could not be normalised unambiguously
	ReasonInvalidRequest     Reason = "invalid-request"       // request kind/fields missing
)

// Kind says which enforcement point asks.
type Kind uint8

const (
	KindHTTP Kind = iota + 1
	KindSSH
)

// Subject is a verified identity: only what came from a verified ID token
// (or, for SSH, the key that actually signed) may populate it.
type Subject struct {
	UserID   string    // stable ID: issuer + subject
	Roles    []string  // role names, already mapped from IdP groups
	MFA      bool      // second factor verified in this session
	AuthTime time.Time // when the user last authenticated (both factors)
}

// Request is one question to the decision point.
type Request struct {
	Kind     Kind
	Subject  Subject
	SourceIP netip.Addr // IPv4-mapped IPv6 is unmapped by Evaluate

	// HTTP
	App    string // route name
	Method string
	Path   string // already normalised with NormalizePath

	// SSH (bastion issue)
	Target string // target name
	Login  string // remote login (unix user)
}

// Decision is the typed result of Evaluate.
type Decision struct {
	Allow  bool
	Reason Reason
	// Role and Rule name what decided (for audit and `admin explain`); Rule
	// is a key path like "roles[engineer].deny[0]". Empty for defaults.
	Role string
	Rule string
}

// PolicyConfig is the uncompiled policy, built by cmd from the config file.
// Zero values: no roles (everything denied), no global allowlist (any
// source), RequireMFA nil means true.
type PolicyConfig struct {
	// AllowedCIDRs is the global source allowlist; empty means any source.
	AllowedCIDRs []string
	Roles        []RoleConfig
	Apps         []AppConfig
	Targets      []TargetConfig
}

// RoleConfig is one least-privilege role.
type RoleConfig struct {
	Name string
	// Groups are IdP group names that grant this role.
	Groups []string
	// Users are stable user IDs (or emails) granted this role directly.
	Users []string
	// AllowedCIDRs further restricts sources for this role; empty = no extra limit.
	AllowedCIDRs []string
	// MaxSessionTTL bounds how long after AuthTime the role applies; 0 = 8h.
	MaxSessionTTL time.Duration
	// RequireMFA nil means true.
	RequireMFA *bool
	Allow      []Rule
	Deny       []Rule
	// Admin grants the admin API.
	Admin bool
	// Requestable marks a role held through just-in-time grants: it may
	// have no groups and no users (nobody holds it standing), which
	// Compile otherwise refuses as unreachable.
	Requestable bool
	// PerSessionMFA, FileTransfer, PortForward, AgentForward, X11 are SSH
	// permissions used by the bastion issue.
	PerSessionMFA bool
	FileTransfer  bool
	PortForwards  []string // host:port patterns for direct-tcpip
	AgentForward  bool
}

// Rule matches HTTP and/or SSH requests. Empty lists match anything of that
// dimension, but a rule must name at least one app or one SSH target/label.
type Rule struct {
	Apps         []string // route names; "*" = all apps
	PathPrefixes []string // normalised path prefixes, matched on segment boundaries
	Methods      []string // upper case; empty = all
	Logins       []string // SSH logins; empty = none (never "any") unless "*"
	Targets      []string // SSH target names; "*" = all
	TargetLabels map[string]string
}

// AppConfig is an HTTP app (route) as far as policy cares.
type AppConfig struct {
	Name         string
	AllowedCIDRs []string
	// Public apps need no login (e.g. health pages); still audited.
	Public bool
}

// TargetConfig is an SSH target as far as policy cares.
type TargetConfig struct {
	Name         string
	Labels       map[string]string
	AllowedCIDRs []string
}
