package risk

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// Signal is a kind of failure reported by an enforcement point. Its
// string is the stable code used in audit events and lock details.
type Signal string

// Signals counted per user and per source.
const (
	SignalOIDCFailure     Signal = "oidc-failure"     // OIDC callback rejected (state, token, claims)
	SignalTOTPFailure     Signal = "totp-failure"     // wrong TOTP code
	SignalRecoveryFailure Signal = "recovery-failure" // wrong recovery code
	SignalSSHAuthFailure  Signal = "ssh-auth-failure" // SSH certificate refused (revoked, expired, wrong principal…)
	SignalApprovalFailure Signal = "approval-failure" // keyboard-interactive approval refused or timed out
	SignalDenied          Signal = "authz-denied"     // a denied authorization decision
)

// Signals lists every Signal (config keys, validation, tests).
var Signals = []Signal{SignalOIDCFailure, SignalTOTPFailure, SignalRecoveryFailure,
	SignalSSHAuthFailure, SignalApprovalFailure, SignalDenied}

// Threshold is Count events within a sliding Window. Count 0 means the
// signal never locks by itself (it still counts against the source).
type Threshold struct {
	Count  int
	Window time.Duration
}

func (t Threshold) String() string { return fmt.Sprintf("%d in %s", t.Count, t.Window) }

// Config is the risk policy. The zero value is valid: Validate fills the
// safe defaults documented on each field.
type Config struct {
	// Disabled turns signal accounting off (no counting, no usage
	// tracking, no new-network checks). Existing locks are still enforced
	// and admins can still lock. Only for measuring the cost of accounting.
	Disabled bool

	// User thresholds per signal; a missing entry takes its default:
	// totp-failure, recovery-failure and ssh-auth-failure 5 in 15m,
	// approval-failure 10 in 15m, oidc-failure 10 in 15m,
	// authz-denied 50 in 10m.
	User map[Signal]Threshold

	// SourceIP: failures of any kind from one address (default 20 in 5m)
	// block it for SourceBlock (default 15m), doubling on every repeat
	// within a day up to SourceBlockMax (default 24h).
	SourceIP       Threshold
	SourceBlock    time.Duration
	SourceBlockMax time.Duration
	// SourceNetwork: the same for the address's /24 (IPv4) or /64 (IPv6)
	// (default 100 in 5m).
	SourceNetwork Threshold

	// LearnLogins is how many logins a user's history needs before a new
	// network is reported (default 10), and half of how many it needs
	// before an unusual hour is: without it, every user's second network
	// would be "new", and with as few hours as networks, many users'
	// late afternoons would look unusual.
	LearnLogins int
	// HourTolerance: the hours a user logs in at form one block of the
	// day (the complement of the longest stretch without logins); a
	// login hour (UTC) within that block or this many hours of it is
	// usual (default 2).
	HourTolerance int
	// NewNetworkStepUp asks for TOTP again on a login from a network not
	// in the user's history (SSH: per-connection TOTP). Default true; set
	// NoNewNetworkStepUp to turn it off.
	NoNewNetworkStepUp bool

	// Usage: a user's request rate per minute above RateFactor × their
	// own baseline (and above RateMin), or bytes per hour above
	// BytesFactor × baseline (and above BytesMin), raise an alert, and
	// lock when UsageLocks. Defaults: 10×, 600/min, 10×, 1 GiB/h.
	RateFactor  float64
	RateMin     int64
	BytesFactor float64
	BytesMin    int64
	UsageLocks  bool
	// FlushInterval is how often usage counted in memory reaches the
	// store (default 10s).
	FlushInterval time.Duration

	// Canary resources: touching one locks the user (and blocks the
	// source) at once. Routes are "host/path-prefix" ("host" alone means
	// the whole host); targets and logins are SSH target names and logins.
	CanaryRoutes  []string
	CanaryTargets []string
	CanaryLogins  []string

	// Webhooks receive alerts. AlertDedup suppresses the same alert
	// (kind, subject, reason) within this window (default 1h).
	Webhooks   []Webhook
	AlertDedup time.Duration

	// GeoIPDatabase is the path of a MaxMind DB City database ("" = no
	// impossible-travel check). The engine does not open it: the server
	// does (OpenGeoIP) and passes it as Options.Geo. A login farther than
	// MinTravelKm (default 500 km: closer than that, GeoIP city placement
	// is noise) from the user's previous located login, and faster than
	// MaxTravelKmh (default 1000 km/h: faster than an airliner, door to
	// door) is reported as impossible travel.
	GeoIPDatabase string
	MaxTravelKmh  float64
	MinTravelKm   float64
}

// Webhook is an alert sink.
type Webhook struct {
	Name string
	URL  string
	// Format is "json" (default: one Alert object) or "slack" ({"text": …}).
	Format string
	// Secret, when set, signs each body: X-Portcullis-Signature: sha256=HMAC.
	Secret []byte
}

var defaultUser = map[Signal]Threshold{
	SignalTOTPFailure:     {5, 15 * time.Minute},
	SignalRecoveryFailure: {5, 15 * time.Minute},
	SignalSSHAuthFailure:  {5, 15 * time.Minute},
	SignalApprovalFailure: {10, 15 * time.Minute},
	SignalOIDCFailure:     {10, 15 * time.Minute},
	SignalDenied:          {50, 10 * time.Minute},
}

// maxWindow bounds windows: counters live twice their window in the store.
const maxWindow = 7 * 24 * time.Hour

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	user := make(map[Signal]Threshold, len(defaultUser))
	for s, t := range defaultUser {
		user[s] = t
	}
	for s, t := range c.User {
		user[s] = t
	}
	c.User = user
	def := func(t *Threshold, d Threshold) {
		if t.Count == 0 && t.Window == 0 {
			*t = d
		}
	}
	def(&c.SourceIP, Threshold{20, 5 * time.Minute})
	def(&c.SourceNetwork, Threshold{100, 5 * time.Minute})
	setDur(&c.SourceBlock, 15*time.Minute)
	setDur(&c.SourceBlockMax, 24*time.Hour)
	setDur(&c.FlushInterval, 10*time.Second)
	setDur(&c.AlertDedup, time.Hour)
	if c.LearnLogins == 0 {
		c.LearnLogins = 10
	}
	if c.HourTolerance == 0 {
		c.HourTolerance = 2
	}
	if c.RateFactor == 0 {
		c.RateFactor = 10
	}
	if c.RateMin == 0 {
		c.RateMin = 600
	}
	if c.BytesFactor == 0 {
		c.BytesFactor = 10
	}
	if c.BytesMin == 0 {
		c.BytesMin = 1 << 30
	}
	if c.MaxTravelKmh == 0 {
		c.MaxTravelKmh = 1000
	}
	if c.MinTravelKm == 0 {
		c.MinTravelKm = 500
	}
	for i := range c.Webhooks {
		if c.Webhooks[i].Format == "" {
			c.Webhooks[i].Format = "json"
		}
	}
	return c
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Validate reports every problem with c (after defaults), each naming
// the field as the config file spells it under risk:.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	// In a stable order: the messages are shown to an operator, and a
	// config check that reorders them on every run looks like a new error.
	for _, s := range slices.Sorted(maps.Keys(c.User)) {
		t := c.User[s]
		if !knownSignal(s) {
			bad("user."+string(s), "unknown signal (known: %s)", signalList())
			continue
		}
		checkThreshold(bad, "user."+ConfigKey(s), t, true)
	}
	checkThreshold(bad, "source_ip", c.SourceIP, false)
	checkThreshold(bad, "source_network", c.SourceNetwork, false)
	if c.SourceBlock < time.Second || c.SourceBlock > c.SourceBlockMax {
		bad("source_block", "must be between 1s and source_block_max (%s)", c.SourceBlockMax)
	}
	if c.SourceBlockMax > 30*24*time.Hour {
		bad("source_block_max", "at most 720h")
	}
	if c.LearnLogins < 1 || c.LearnLogins > 10000 {
		bad("learn_logins", "must be 1..10000")
	}
	if c.HourTolerance < 0 || c.HourTolerance > 12 {
		bad("hour_tolerance", "must be 0..12")
	}
	if c.RateFactor < 1 || c.BytesFactor < 1 {
		bad("usage", "factors must be at least 1")
	}
	if c.RateMin < 1 || c.BytesMin < 1 {
		bad("usage", "minimums must be positive")
	}
	if c.FlushInterval < 100*time.Millisecond || c.FlushInterval > time.Minute {
		bad("flush_interval", "must be between 100ms and 1m")
	}
	if c.AlertDedup < 0 || c.AlertDedup > 7*24*time.Hour {
		bad("alert_dedup", "must be between 0 and 168h")
	}
	// Slower than a car or closer than a metropolitan area, every
	// commute would be "impossible"; faster than an orbit or farther
	// than half the Earth's circumference, nothing ever would.
	if !(c.MaxTravelKmh >= 100 && c.MaxTravelKmh <= 50000) {
		bad("geoip.max_speed_kmh", "must be between 100 and 50000 (km/h)")
	}
	if !(c.MinTravelKm >= 10 && c.MinTravelKm <= 10000) {
		bad("geoip.min_distance_km", "must be between 10 and 10000 (km)")
	}
	if hasControl(c.GeoIPDatabase) {
		bad("geoip.database", "must be a file path")
	}
	// Duplicates are refused: harmless for canaries, but usually a typo
	// hiding the entry that was meant.
	dup := func(seen map[string]int, field string, i int, key string) {
		if j, ok := seen[key]; ok {
			bad(fmt.Sprintf("%s[%d]", field, i), "duplicate of %s[%d]", field, j)
			return
		}
		seen[key] = i
	}
	routes := map[string]int{}
	for i, r := range c.CanaryRoutes {
		host, prefix, err := splitCanaryRoute(r)
		if err != nil {
			bad(fmt.Sprintf("canary.routes[%d]", i), "%v", err)
			continue
		}
		dup(routes, "canary.routes", i, host+prefix)
	}
	targets := map[string]int{}
	for i, n := range c.CanaryTargets {
		if !canaryName(n) {
			bad(fmt.Sprintf("canary.targets[%d]", i), "must be a target name")
			continue
		}
		dup(targets, "canary.targets", i, strings.ToLower(n))
	}
	logins := map[string]int{}
	for i, n := range c.CanaryLogins {
		if !canaryName(n) {
			bad(fmt.Sprintf("canary.logins[%d]", i), "must be a login name")
			continue
		}
		dup(logins, "canary.logins", i, n)
	}
	names, sinks := map[string]int{}, map[string]int{}
	for i, w := range c.Webhooks {
		f := fmt.Sprintf("alerts.webhooks[%d]", i)
		if err := audit.CheckWebhookURL(w.URL); err != nil {
			bad(f+".url", "%v", err)
		}
		if w.Format != "json" && w.Format != "slack" {
			bad(f+".format", "must be json or slack")
		}
		if j, ok := names[w.Name]; ok && w.Name != "" {
			bad(f+".name", "duplicate name %q (also alerts.webhooks[%d])", w.Name, j)
		} else {
			names[w.Name] = i
		}
		// One queue per URL and format: a second entry would deliver
		// every alert twice to the same receiver.
		if j, ok := sinks[sinkKey(w)]; ok {
			bad(f+".url", "same URL and format as alerts.webhooks[%d]", j)
		} else {
			sinks[sinkKey(w)] = i
		}
	}
	return errors.Join(errs...)
}

// canaryName is an SSH target or login name: not empty, no spaces, no
// user@host or path syntax, no control characters.
func canaryName(n string) bool {
	return n != "" && !strings.ContainsAny(n, "@ \t/") && !hasControl(n)
}

func checkThreshold(bad func(string, string, ...any), field string, t Threshold, zeroOK bool) {
	if t.Count < 0 || (t.Count == 0 && !zeroOK) || t.Count > 1_000_000 {
		bad(field+".count", "must be 1..1000000%s", map[bool]string{true: " (0: never locks)", false: ""}[zeroOK])
	}
	if t.Window < time.Second || t.Window > maxWindow {
		bad(field+".window", "must be between 1s and %s", maxWindow)
	}
}

func knownSignal(s Signal) bool {
	for _, k := range Signals {
		if k == s {
			return true
		}
	}
	return false
}

// ConfigKey is the config-file spelling of s (totp_failures …).
func ConfigKey(s Signal) string {
	switch s {
	case SignalDenied:
		return "denied_decisions"
	default:
		return strings.ReplaceAll(strings.TrimSuffix(string(s), "-failure"), "-", "_") + "_failures"
	}
}

// SignalForKey is the inverse of ConfigKey.
func SignalForKey(key string) (Signal, bool) {
	for _, s := range Signals {
		if ConfigKey(s) == key {
			return s, true
		}
	}
	return "", false
}

func signalList() string {
	var b strings.Builder
	for i, s := range Signals {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ConfigKey(s))
	}
	return b.String()
}

// splitCanaryRoute parses "host/prefix" into a lower-case host and a
// path prefix starting with "/".
func splitCanaryRoute(r string) (host, prefix string, err error) {
	host, prefix, _ = strings.Cut(r, "/")
	prefix = "/" + prefix
	host = strings.ToLower(host)
	// The gateway matches normalised paths (no query, no escapes, no dot
	// segments) against hosts without a port: a prefix that can never
	// match such a path would be a canary that never fires.
	if host == "" || strings.ContainsAny(host, " \t:@?#%\\[]") || strings.ContainsAny(prefix, " \t?#%\\") ||
		strings.Contains(prefix, "..") || strings.Contains(prefix, "//") || hasControl(r) {
		return "", "", fmt.Errorf("%q: want host/path-prefix", r)
	}
	return host, prefix, nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
