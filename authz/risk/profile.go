package risk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// profile is a user's login history, one JSON record in the store,
// updated read-modify-write by Record. Usage baselines live in a record of
// their own (baseline, in usage.go): the usage flusher rewrites those
// every minute a user is active, and sharing one record would let a flush
// overwrite a login recorded at the same moment, which would then look
// new again.
type profile struct {
	Logins   int                  `json:"logins"`
	Networks map[string]time.Time `json:"networks,omitempty"` // /24 or /64 → last seen
	Hours    [24]int              `json:"hours"`              // logins per UTC hour
	// Geo is the latest successful login that could be placed (with a
	// Locator configured). A later login from an address that cannot be
	// placed (a private network) leaves it as is: the user was there then.
	Geo *geoFix `json:"geo,omitempty"`

	// corrupt: the stored record did not decode; this is a fresh one.
	corrupt bool
}

const (
	maxNetworks = 64
	profileTTL  = 400 * 24 * time.Hour
)

func profileKey(userID string) string { return "risk-profile:" + userID }

func (e *Engine) loadProfile(ctx context.Context, userID string) (profile, error) {
	var p profile
	b, err := e.st.GetEphemeral(ctx, profileKey(userID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return p, nil
	case err != nil:
		return p, unavailable(err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		// A corrupt profile is rebuilt from the next logins (Record
		// overwrites it); meanwhile Assess asks for the second factor
		// again, as for a new network, rather than treating the user as
		// still learning.
		e.log.ErrorContext(ctx, "corrupt risk profile, starting afresh", "user_id", userID, "err", err)
		return profile{corrupt: true}, nil
	}
	return p, nil
}

func (e *Engine) saveProfile(ctx context.Context, userID string, p profile) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := e.st.PutEphemeral(ctx, profileKey(userID), b, profileTTL); err != nil {
		return unavailable(err)
	}
	return nil
}

// LoginRisk is the assessment of a login.
type LoginRisk struct {
	// StepUp asks for the second factor again (SSH: a per-connection TOTP
	// prompt) because the login comes from a network new for this user,
	// or from too far away too soon after the previous one.
	StepUp bool
	// Anomalies are the reason codes found (ReasonTravel,
	// ReasonNewNetwork, ReasonOddHour).
	Anomalies []string
}

// Assess looks at a login of userID from ip (via "web" or "ssh") against
// the user's history. Anomalies are audited and alerted; they never lock
// by themselves. A store failure is an error wrapping
// store.ErrUnavailable (refuse the login), with StepUp set. It does not record the login: call Record once every
// factor has passed, so a failed attempt never makes a network "known".
func (e *Engine) Assess(ctx context.Context, userID string, ip netip.Addr, via string) (LoginRisk, error) {
	c := e.cfg.Load()
	var lr LoginRisk
	if c.Disabled || userID == "" || !ip.IsValid() {
		return lr, nil
	}
	p, err := e.loadProfile(ctx, userID)
	if err != nil {
		// The caller refuses the login (fail closed); one that looked
		// only at the assessment would still ask for the factor again.
		return LoginRisk{StepUp: true}, err
	}
	if p.corrupt {
		lr.StepUp = !c.NoNewNetworkStepUp
		return lr, nil
	}
	_, network := sources(ip)
	now := e.now().UTC()
	// Travel needs no learnt habits, only the previous located login, so
	// it is checked from the second login on.
	if e.impossibleTravel(ctx, c, p, userID, ip, network, via, now) {
		lr.Anomalies = append(lr.Anomalies, ReasonTravel)
		lr.StepUp = true
	}
	if p.Logins < c.LearnLogins {
		return lr, nil // still learning this user's habits
	}
	if _, seen := p.Networks[network.String()]; !seen {
		lr.Anomalies = append(lr.Anomalies, ReasonNewNetwork)
		lr.StepUp = !c.NoNewNetworkStepUp
		e.anomaly(ctx, userID, ip, ReasonNewNetwork, fmt.Sprintf("%s login from %s, not among the %d networks of %d logins", via, network, len(p.Networks), p.Logins), map[string]string{"network": network.String(), "via": via})
	}
	// Hours need a longer history than networks: a user has a network or
	// two but logs in across a working day, and ten logins are too few
	// to have seen all of it (the false-positive replay showed it).
	if p.Logins >= 2*c.LearnLogins && !usualHour(p.Hours, now.Hour(), c.HourTolerance) {
		lr.Anomalies = append(lr.Anomalies, ReasonOddHour)
		e.anomaly(ctx, userID, ip, ReasonOddHour, fmt.Sprintf("%s login at %02d:00 UTC, outside the hours of %d logins", via, now.Hour(), p.Logins), map[string]string{"hour": strconv.Itoa(now.Hour()), "via": via})
	}
	return lr, nil
}

// usualHour reports whether a login at hour h (UTC) fits the user's
// history of login hours. People work in one block of the day: the
// longest run of hours without any login is the user's night, and
// every hour outside it is usual, as is an hour within tol of its edges.
// Comparing with the individual hours seen instead would flag the
// afternoon of a user whose first logins happened to be mornings and
// evenings.
func usualHour(hours [24]int, h, tol int) bool {
	gapStart, gapLen := 0, 0
	for s := range 24 {
		if hours[s] != 0 || hours[(s+23)%24] == 0 {
			continue // not the first hour of a run without logins
		}
		n := 0
		for n < 24 && hours[(s+n)%24] == 0 {
			n++
		}
		if n > gapLen {
			gapStart, gapLen = s, n
		}
	}
	d := ((h-gapStart)%24 + 24) % 24 // position of h in the night
	if gapLen == 0 || d >= gapLen {
		return true // logins at every hour, or h outside the night
	}
	// Distance to the last usual hour before the night and to the first after.
	return d+1 <= tol || gapLen-d <= tol
}

// Record adds a successful login of userID from ip to their history.
func (e *Engine) Record(ctx context.Context, userID string, ip netip.Addr) error {
	if e.cfg.Load().Disabled || userID == "" || !ip.IsValid() {
		return nil
	}
	p, err := e.loadProfile(ctx, userID)
	if err != nil {
		return err
	}
	now := e.now().UTC()
	_, network := sources(ip)
	if p.Networks == nil {
		p.Networks = map[string]time.Time{}
	}
	p.Networks[network.String()] = now
	if len(p.Networks) > maxNetworks { // forget the least recently seen
		type seen struct {
			n string
			t time.Time
		}
		all := make([]seen, 0, len(p.Networks))
		for n, t := range p.Networks {
			all = append(all, seen{n, t})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].t.Before(all[j].t) })
		for _, s := range all[:len(all)-maxNetworks] {
			delete(p.Networks, s.n)
		}
	}
	if fix, ok := e.locate(ip, now); ok {
		p.Geo = &fix
	}
	p.Hours[now.Hour()]++
	p.Logins++
	return e.saveProfile(ctx, userID, p)
}

// anomaly audits and alerts a finding that does not lock by itself.
func (e *Engine) anomaly(ctx context.Context, userID string, ip netip.Addr, reason, detail string, attrs map[string]string) {
	src := ""
	if ip.IsValid() {
		src = ip.Unmap().String()
	}
	e.log.WarnContext(ctx, "login anomaly", "user_id", userID, "reason", reason, "detail", detail)
	e.opts.Audit.Emit(ctx, audit.Event{Type: audit.TypeRiskAnomaly, UserID: userID, SourceIP: src,
		Reason: reason, Attrs: attrs})
	key := reason
	if n := attrs["network"]; n != "" {
		key += ":" + n
	}
	e.alert(Alert{Kind: "anomaly", Subject: UserSubject(userID), Reason: reason, UserID: userID,
		SourceIP: src, Detail: detail, dedupKey: key})
}

// impossibleTravel reports (audits and alerts) a login from ip placed
// too far from the user's previous located login for the time between
// them. Either login without a location is not compared. Like every
// anomaly it never locks: the caller asks for the second factor again
// (whatever new_network_step_up says: travel is a stronger sign than a
// new network).
func (e *Engine) impossibleTravel(ctx context.Context, c *compiled, p profile, userID string, ip netip.Addr, network netip.Prefix, via string, now time.Time) bool {
	if p.Geo == nil {
		return false
	}
	to, ok := e.locate(ip, now)
	if !ok {
		return false
	}
	km, kmh, impossible := travel(*p.Geo, to, c.MinTravelKm, c.MaxTravelKmh)
	if !impossible {
		return false
	}
	elapsed := now.Sub(p.Geo.At).Round(time.Second)
	e.anomaly(ctx, userID, ip, ReasonTravel,
		fmt.Sprintf("%s login from %s, %.0f km from the previous login at %s %s earlier (%.0f km/h, limit %.0f km/h)",
			via, to, km, p.Geo, elapsed, kmh, c.MaxTravelKmh),
		map[string]string{
			"from": p.Geo.String(), "to": to.String(),
			"distance_km": strconv.FormatFloat(km, 'f', 0, 64),
			"speed_kmh":   strconv.FormatFloat(kmh, 'f', 0, 64),
			"elapsed":     elapsed.String(),
			"network":     network.String(), "via": via,
		})
	return true
}
