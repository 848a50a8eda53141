package config

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/authz/risk"
)

// WriteRisk prints the risk policy in force once defaults are applied
// (`config check --risk`), one setting per line under its file key.
// Webhook secrets are never printed, and webhook URLs only as
// scheme://host/…: a URL's path may itself be a credential.
func WriteRisk(w io.Writer, c risk.Config) error {
	c = c.WithDefaults()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, a...)) }
	fmt.Fprintln(tw, "risk (effective, defaults applied):")
	if c.Disabled {
		line("disabled", "true (signals are not counted; existing locks are still enforced)")
	}
	for _, s := range risk.Signals {
		t := c.User[s]
		if t.Count == 0 {
			line("user."+risk.ConfigKey(s), "never locks (counted against the source only)")
			continue
		}
		line("user."+risk.ConfigKey(s), "lock the account at %d in %s", t.Count, dur(t.Window))
	}
	line("source_ip", "block the address at %d in %s", c.SourceIP.Count, dur(c.SourceIP.Window))
	line("source_network", "block the /24 or /64 at %d in %s", c.SourceNetwork.Count, dur(c.SourceNetwork.Window))
	line("source_block", "%s, doubling on repeat up to %s (source_block_max)", dur(c.SourceBlock), dur(c.SourceBlockMax))
	line("learn_logins", "%d", c.LearnLogins)
	line("hour_tolerance", "%d", c.HourTolerance)
	line("new_network_step_up", "%t", !c.NoNewNetworkStepUp)
	line("usage", "requests/min > %g× baseline and > %d; bytes/h > %g× baseline and > %d; lock: %t",
		c.RateFactor, c.RateMin, c.BytesFactor, c.BytesMin, c.UsageLocks)
	line("flush_interval", "%s", dur(c.FlushInterval))
	line("canary.routes", "%s", listOrNone(c.CanaryRoutes))
	line("canary.targets", "%s", listOrNone(c.CanaryTargets))
	line("canary.logins", "%s", listOrNone(c.CanaryLogins))
	if c.GeoIPDatabase == "" {
		line("geoip", "off (no database: impossible travel is not checked)")
	} else {
		line("geoip", "%s: impossible travel above %g km/h over more than %g km", c.GeoIPDatabase, c.MaxTravelKmh, c.MinTravelKm)
	}
	line("alerts.dedup", "%s", dur(c.AlertDedup))
	if len(c.Webhooks) == 0 {
		line("alerts.webhooks", "none (alerts go to the audit trail only)")
	}
	for _, h := range c.Webhooks {
		signed := "unsigned"
		if len(h.Secret) > 0 {
			signed = "signed"
		}
		line("alerts.webhooks", "%s: %s to %s, %s", h.Name, h.Format, redactURL(h.URL), signed)
	}
	return tw.Flush()
}

// dur prints a duration without the trailing zero units of
// time.Duration.String ("15m", not "15m0s").
func dur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// redactURL keeps the scheme and host: enough to tell sinks apart.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/…"
	}
	return out
}
