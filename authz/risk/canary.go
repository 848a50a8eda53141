package risk

import (
	"context"
	"net/netip"
	"strings"
)

// compiled is an immutable, validated configuration with lookup tables.
type compiled struct {
	Config
	canaryRoutes  map[string][]string // host → path prefixes ("/" = whole host)
	canaryTargets map[string]bool
	canaryLogins  map[string]bool
}

func compile(c Config) *compiled {
	out := &compiled{Config: c, canaryRoutes: map[string][]string{},
		canaryTargets: map[string]bool{}, canaryLogins: map[string]bool{}}
	for _, r := range c.CanaryRoutes {
		host, prefix, _ := splitCanaryRoute(r)
		out.canaryRoutes[host] = append(out.canaryRoutes[host], prefix)
	}
	for _, t := range c.CanaryTargets {
		out.canaryTargets[strings.ToLower(t)] = true
	}
	for _, l := range c.CanaryLogins {
		out.canaryLogins[l] = true
	}
	return out
}

// CanaryRoute reports whether host and the normalised path fall under a
// canary route: a prefix matches itself and what lies below it at a
// segment boundary ("/backup" matches "/backup" and "/backup/x", not
// "/backups"). Hosts compare case-insensitively, paths exactly. It is on
// the request path: a map lookup when host has no canary, and no
// allocation for a lower-case host.
func (e *Engine) CanaryRoute(host, path string) (string, bool) {
	c := e.cfg.Load()
	if len(c.canaryRoutes) == 0 {
		return "", false
	}
	for _, p := range c.canaryRoutes[strings.ToLower(host)] {
		if p == "/" || path == p || (strings.HasPrefix(path, p) && (strings.HasSuffix(p, "/") || path[len(p)] == '/')) {
			return strings.ToLower(host) + p, true
		}
	}
	return "", false
}

// CanaryTarget reports whether an SSH target name is a canary.
func (e *Engine) CanaryTarget(name string) bool {
	c := e.cfg.Load()
	return len(c.canaryTargets) > 0 && c.canaryTargets[strings.ToLower(name)]
}

// CanaryLogin reports whether an SSH login name is a canary.
func (e *Engine) CanaryLogin(login string) bool { return e.cfg.Load().canaryLogins[login] }

// Canary records a touch of canary resource what (e.g. "route
// grafana.example.com/backup", "target backup-db") by userID ("" when
// not authenticated) from ip: the user is locked and the source blocked
// at once. Nobody legitimate uses a canary, so there is no threshold.
func (e *Engine) Canary(ctx context.Context, what, userID string, ip netip.Addr) (Verdict, error) {
	c := e.cfg.Load()
	detail := "touched canary " + what
	attrs := func() map[string]string { return map[string]string{"canary": what} }
	if userID != "" {
		if _, err := e.lock(ctx, userID, ip, ReasonCanary, detail, "", attrs()); err != nil {
			return Verdict{}, err
		}
	}
	if ip.IsValid() {
		addr, _ := sources(ip)
		if err := e.block(ctx, c, addr, ReasonCanary, detail, userID, attrs()); err != nil {
			return Verdict{}, err
		}
	}
	v, err := e.Gate(ctx, userID, ip)
	if err == nil && v.Allow { // nothing to lock (no user, no address): still deny
		v = Verdict{Reason: ReasonSourceBlocked}
	}
	return v, err
}

// CanaryUnattributed records a touch of canary resource what that cannot
// be attributed to the person behind the session, such as a browser
// following a link or loading an image from another site (which carries
// the victim's cookie): locking on it would let anyone lock anyone out
// with a link. It audits and alerts (risk.anomaly, reason canary-touched,
// attributed=no) and the caller denies the request; nothing is locked or
// blocked.
func (e *Engine) CanaryUnattributed(ctx context.Context, what, userID string, ip netip.Addr) {
	e.anomaly(ctx, userID, ip, ReasonCanary, "touched canary "+what+" from a request another site may have caused; not locked",
		map[string]string{"canary": what, "attributed": "no"})
}
