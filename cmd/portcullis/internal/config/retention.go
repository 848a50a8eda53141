package config

import (
	"fmt"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// RetentionSection maps to audit.RetentionConfig: how long the audit
// trail and session recordings are kept before `portcullis admin purge`
// (and the daily purge inside serve) deletes them. Durations are in
// hours ("9600h" is 400 days: days are not a unit). Values below 90 days
// are refused unless force_below_90_days is true.
type RetentionSection struct {
	Audit            *Duration `yaml:"audit"`      // default 9600h (400 days)
	Recordings       *Duration `yaml:"recordings"` // default 2160h (90 days)
	ForceBelow90Days bool      `yaml:"force_below_90_days"`
}

// retention builds audit.RetentionConfig and runs its Validate. An
// explicit 0 would silently mean the default, so it is refused.
func (b *builder) retention(s RetentionSection) audit.RetentionConfig {
	rc := audit.RetentionConfig{ForceShort: s.ForceBelow90Days}
	get := func(key string, d *Duration, def time.Duration) time.Duration {
		if d == nil {
			return 0
		}
		if *d == 0 && !b.d.hasPath("retention."+key) {
			b.errAt("retention."+key, "must not be 0 (leave it out for the default, %s)", hours(def))
		}
		return time.Duration(*d)
	}
	rc.Audit = get("audit", s.Audit, audit.DefaultAuditRetention)
	rc.Recordings = get("recordings", s.Recordings, audit.DefaultRecordingRetention)
	// Validate reads 0 as the default: an explicit 0 is already reported.
	b.fieldErrors("retention", rc.Validate(), nil)
	if s.ForceBelow90Days {
		full := rc.WithDefaults()
		for _, f := range []struct {
			key string
			d   time.Duration
		}{{"audit", full.Audit}, {"recordings", full.Recordings}} {
			if f.d < audit.MinRetention && f.d >= time.Hour {
				b.warnAt("retention."+f.key, "%s is below 90 days (forced): check that your retention obligations allow it", hours(f.d))
			}
		}
	}
	return rc
}

// hours writes d as the file does ("720h"), with the days when whole.
func hours(d time.Duration) string {
	if d%time.Hour != 0 {
		return d.String()
	}
	h := int64(d / time.Hour)
	if h%24 == 0 {
		return fmt.Sprintf("%dh (%d days)", h, h/24)
	}
	return fmt.Sprintf("%dh", h)
}
