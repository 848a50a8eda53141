package audit

import (
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/authz"
)

// Retention: how long the trail and session recordings are kept. Purge
// (purge.go) deletes what has expired: whole rolled trail files whose
// newest record is older than Audit, and recordings older than
// Recordings, after writing a signed purge record so Verify still passes.

const (
	// DefaultAuditRetention keeps the trail 400 days: a year plus a
	// quarter, so a yearly audit can always look back over a whole year.
	DefaultAuditRetention = 400 * 24 * time.Hour
	// DefaultRecordingRetention keeps session recordings 90 days.
	DefaultRecordingRetention = 90 * 24 * time.Hour
	// MinRetention is the shortest retention accepted without
	// ForceShort: evidence of an incident is often wanted weeks after it.
	MinRetention = 90 * 24 * time.Hour
)

// RetentionConfig says how long the trail and recordings are kept. Zero
// values take the defaults.
type RetentionConfig struct {
	Audit      time.Duration // default DefaultAuditRetention
	Recordings time.Duration // default DefaultRecordingRetention
	// ForceShort accepts values below MinRetention (the config key
	// force_below_90_days): an explicit decision, never a default.
	ForceShort bool
}

// WithDefaults fills the zero values.
func (c RetentionConfig) WithDefaults() RetentionConfig {
	if c.Audit == 0 {
		c.Audit = DefaultAuditRetention
	}
	if c.Recordings == 0 {
		c.Recordings = DefaultRecordingRetention
	}
	return c
}

// Validate checks c (after defaults) and returns *authz.FieldError values
// keyed "audit" and "recordings".
func (c RetentionConfig) Validate() error {
	c = c.WithDefaults()
	var errs []error
	for _, f := range []struct {
		path string
		d    time.Duration
	}{{"audit", c.Audit}, {"recordings", c.Recordings}} {
		switch {
		case f.d < 0:
			errs = append(errs, &authz.FieldError{Path: f.path, Msg: "must be positive"})
		case f.d < MinRetention && !c.ForceShort:
			errs = append(errs, &authz.FieldError{Path: f.path, Msg: fmt.Sprintf(
				"%s is below the minimum of %s; set force_below_90_days: true to keep less", fmtDays(f.d), fmtDays(MinRetention))})
		case f.d < time.Hour:
			errs = append(errs, &authz.FieldError{Path: f.path, Msg: "must be at least 1h, even when forced"})
		}
	}
	return errors.Join(errs...)
}

// fmtDays writes d in hours as the config file does, with the days.
func fmtDays(d time.Duration) string {
	h := d / time.Hour
	if d%time.Hour != 0 {
		return d.String()
	}
	if h%24 == 0 {
		return fmt.Sprintf("%dh (%d days)", h, h/24)
	}
	return fmt.Sprintf("%dh", h)
}
