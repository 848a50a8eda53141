package config

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/risk"
)

// fakeWebhookURL stands in for the URL of webhook i read from url_file
// or url_env under FakeSecrets (.invalid never resolves). One per
// webhook: risk refuses two sinks with the same URL.
func fakeWebhookURL(i int) string { return fmt.Sprintf("https://webhook.invalid/%d", i) }

// risk builds risk.Config from the risk section and runs its Validate,
// whose messages name keys under risk: as the file spells them.
//
// risk reads a zero value as "use the default" for most settings, so a
// 0 written in the file would silently become 15m or 10: such explicit
// zeros are refused here, with the default named.
func (b *builder) risk(s RiskSection) risk.Config {
	rc := risk.Config{
		Disabled:      s.Disabled,
		UsageLocks:    s.Usage.Lock,
		CanaryRoutes:  s.Canary.Routes,
		CanaryTargets: s.Canary.Targets,
		CanaryLogins:  s.Canary.Logins,
	}
	if s.NewNetworkStepUp != nil && !*s.NewNetworkStepUp {
		rc.NoNewNetworkStepUp = true
	}

	// Per-user thresholds: one field per signal, keyed by its config key.
	uv := reflect.ValueOf(s.User)
	for _, f := range fieldsOf(uv.Type()) {
		t, _ := uv.Field(f.index).Interface().(*ThresholdSection)
		if t == nil {
			continue
		}
		sig, ok := risk.SignalForKey(f.key)
		if !ok {
			// A schema field risk does not know: a programming error the
			// schema test catches; reported rather than dropped.
			b.errAt("risk.user."+f.key, "not a risk signal")
			continue
		}
		if rc.User == nil {
			rc.User = map[risk.Signal]risk.Threshold{}
		}
		rc.User[sig] = risk.Threshold{Count: t.Count, Window: time.Duration(t.Window)}
	}
	// Source thresholds: count and window are both required when the key
	// is given, and {0, 0} would mean the default to risk.
	source := func(key string, t *ThresholdSection) risk.Threshold {
		if t == nil {
			return risk.Threshold{}
		}
		if t.Count == 0 && !b.d.hasPath("risk."+key+".count") {
			b.errAt("risk."+key+".count", "must be at least 1 (a source threshold cannot be turned off)")
		}
		if t.Window == 0 && !b.d.hasPath("risk."+key+".window") {
			b.errAt("risk."+key+".window", "must be at least 1s")
		}
		return risk.Threshold{Count: t.Count, Window: time.Duration(t.Window)}
	}
	rc.SourceIP = source("source_ip", s.SourceIP)
	rc.SourceNetwork = source("source_network", s.SourceNetwork)

	rc.SourceBlock = b.riskDuration("risk.source_block", s.SourceBlock, "15m")
	rc.SourceBlockMax = b.riskDuration("risk.source_block_max", s.SourceBlockMax, "24h")
	rc.FlushInterval = b.riskDuration("risk.flush_interval", s.FlushInterval, "10s")
	rc.AlertDedup = b.riskDuration("risk.alerts.dedup", s.Alerts.Dedup, "1h")
	rc.LearnLogins = riskNumber(b, "risk.learn_logins", s.LearnLogins, "10")
	rc.HourTolerance = riskNumber(b, "risk.hour_tolerance", s.HourTolerance, "2")

	u := s.Usage
	rc.RateFactor = riskNumber(b, "risk.usage.rate_factor", u.RateFactor, "10")
	rc.BytesFactor = riskNumber(b, "risk.usage.bytes_factor", u.BytesFactor, "10")
	rc.RateMin = riskNumber(b, "risk.usage.rate_min", u.RateMin, "600")
	rc.BytesMin = riskNumber(b, "risk.usage.bytes_min", u.BytesMin, "1073741824")
	// risk reports these under "usage" only; name the exact key.
	for _, f := range []struct {
		key string
		bad bool
	}{
		{"rate_factor", rc.RateFactor < 0 || (rc.RateFactor > 0 && rc.RateFactor < 1)},
		{"bytes_factor", rc.BytesFactor < 0 || (rc.BytesFactor > 0 && rc.BytesFactor < 1)},
	} {
		if f.bad {
			b.errAt("risk.usage."+f.key, "must be at least 1 (a multiple of the user's own baseline)")
		}
	}
	for _, f := range []struct {
		key string
		v   int64
	}{{"rate_min", rc.RateMin}, {"bytes_min", rc.BytesMin}} {
		if f.v < 0 {
			b.errAt("risk.usage."+f.key, "must be positive")
		}
	}

	for i, w := range s.Alerts.Webhooks {
		rc.Webhooks = append(rc.Webhooks, b.webhook(i, w))
	}

	if g := s.GeoIP; g != nil {
		rc.GeoIPDatabase = b.geoipDatabase(g.Database)
		rc.MaxTravelKmh = riskNumber(b, "risk.geoip.max_speed_kmh", g.MaxSpeedKmh, "1000")
		rc.MinTravelKm = riskNumber(b, "risk.geoip.min_distance_km", g.MinDistanceKm, "500")
	}

	b.riskErrors(rc.Validate(), s)
	return rc
}

// riskDuration returns *d, refusing an explicit 0 (risk's "default").
func (b *builder) riskDuration(path string, d *Duration, def string) time.Duration {
	if d == nil {
		return 0
	}
	if *d == 0 && !b.d.hasPath(path) { // not a value the decoder refused
		b.errAt(path, "must not be 0 (leave it out for the default, %s)", def)
	}
	return time.Duration(*d)
}

// riskNumber returns *n, refusing an explicit 0 (risk's "default").
func riskNumber[T int | int64 | float64](b *builder, path string, n *T, def string) T {
	if n == nil {
		return 0
	}
	if *n == 0 && !b.d.hasPath(path) { // not a value the decoder refused
		b.errAt(path, "must not be 0 (leave it out for the default, %s)", def)
	}
	return *n
}

// geoipDatabase resolves the GeoIP database path and, unless
// FakeSecrets, opens it the way the server will: a file that is missing,
// unreadable, not a MaxMind DB or not a City database is reported here
// rather than at start-up.
func (b *builder) geoipDatabase(file string) string {
	const path = "risk.geoip.database"
	if file == "" {
		if !b.d.hasPath(path) {
			b.errAt(path, "must name a MaxMind DB City file (leave the geoip section out to turn the check off)")
		}
		return ""
	}
	name := b.abs(file)
	if b.opts.FakeSecrets {
		return name
	}
	g, err := risk.OpenGeoIP(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b.errAt(path, "file %s does not exist", name)
	case errors.Is(err, fs.ErrPermission):
		b.errAt(path, "file %s is not readable by this user", name)
	case err != nil:
		b.errAt(path, "%s", cause(err))
	default:
		g.Close()
	}
	return name
}

// webhook resolves one alert sink.
func (b *builder) webhook(i int, w WebhookSection) risk.Webhook {
	rw := risk.Webhook{Name: w.Name, Format: w.Format}
	rw.URL, rw.Secret = b.webhookTarget(fmt.Sprintf("risk.alerts.webhooks[%d]", i), w.URL, w.URLSecret, w.Secret, fakeWebhookURL(i))
	return rw
}

// webhookTarget resolves a webhook's URL, from url or, when the URL itself
// is a credential, url_file / url_env (exactly one of them), and its
// signing secret from secret_file / secret_env (nil when unset or
// empty). Under FakeSecrets a URL from a secret is fake. The receiving
// package's Validate checks the URL's form (https, or http only to
// loopback). Risk alerts and access notifications share these conventions.
func (b *builder) webhookTarget(path, url string, urlRef, secret SecretRef, fake string) (string, []byte) {
	switch {
	case url != "" && urlRef.IsSet():
		b.errAt(path+".url", "give only one of url, url_file and url_env")
	case url == "" && !urlRef.IsSet():
		b.errAt(path+".url", "missing: give url, or url_file / url_env when the URL itself is a credential")
	case urlRef.IsSet():
		if b.opts.FakeSecrets {
			url = fake
		} else {
			url = b.textSecret(urlRef)
		}
	}
	var key []byte
	if s := b.textSecret(secret); s != "" {
		key = []byte(s)
	}
	return url, key
}

// riskErrors maps risk.Config.Validate's messages ("field: message",
// field as spelled under risk:) onto the file. A message about a key the
// builder or decoder already reported is dropped.
func (b *builder) riskErrors(err error, s RiskSection) {
	for _, e := range authz.Flatten(err) {
		field, msg, ok := strings.Cut(e.Error(), ": ")
		if !ok || field == "" || strings.ContainsAny(field, " \t") {
			b.errAt("risk", "%v", e)
			continue
		}
		switch {
		case field == "alert_dedup":
			field = "alerts.dedup"
		case strings.HasPrefix(field, "alerts.webhooks[") && strings.HasSuffix(field, "].url"):
			// A URL read from url_file/url_env is reported there.
			var i int
			if _, err := fmt.Sscanf(field, "alerts.webhooks[%d].url", &i); err == nil && i >= 0 && i < len(s.Alerts.Webhooks) {
				if ref := s.Alerts.Webhooks[i].URLSecret; ref.IsSet() {
					field += sourceSuffix(ref)
				}
			}
		}
		p := "risk." + field
		if b.d.hasPath(p) {
			continue
		}
		b.errAt(p, "%s", msg)
	}
}
