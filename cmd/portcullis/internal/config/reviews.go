package config

import (
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
)

// ReviewsSection maps to review.Config: quarterly access reviews. Every
// key is optional; durations are in hours (days are not a unit).
type ReviewsSection struct {
	DormantAfter *Duration `yaml:"dormant_after"` // default 2160h (90 days)
	Period       *Duration `yaml:"period"`        // default 2208h (92 days)
	Due          *Duration `yaml:"due"`           // default 336h (14 days)
	Cadence      *Duration `yaml:"cadence"`       // default 2208h (92 days)
}

// Bounds of the review settings. A review looks back over the trail, so
// the period is at least a day; a campaign is due at least an hour after
// its start, and before the next one is due (otherwise campaigns would
// pile up unreviewed). Ten years bounds everything.
const (
	minReviewSpan = 24 * time.Hour
	minReviewDue  = time.Hour
	maxReviewSpan = 10 * 365 * 24 * time.Hour
)

// reviews builds review.Config. An explicit 0 would silently mean the
// default, so it is refused; negative durations are refused by the
// decoder.
func (b *builder) reviews(s ReviewsSection, retention audit.RetentionConfig) review.Config {
	get := func(key string, d *Duration, def, low time.Duration) time.Duration {
		path := "reviews." + key
		if d == nil {
			return 0
		}
		switch v := time.Duration(*d); {
		case b.d.hasPath(path):
		case v == 0:
			b.errAt(path, "must not be 0 (leave it out for the default, %s)", hours(def))
		case v < low || v > maxReviewSpan:
			b.errAt(path, "must be between %s and %s", dur(low), dur(maxReviewSpan))
		}
		return time.Duration(*d)
	}
	rc := review.Config{
		DormantAfter: get("dormant_after", s.DormantAfter, review.DefaultDormantAfter, minReviewSpan),
		Period:       get("period", s.Period, review.DefaultPeriod, minReviewSpan),
		Due:          get("due", s.Due, review.DefaultDue, minReviewDue),
		Cadence:      get("cadence", s.Cadence, review.DefaultCadence, minReviewSpan),
	}
	due, cadence := or(rc.Due, review.DefaultDue), or(rc.Cadence, review.DefaultCadence)
	if due >= cadence && !b.d.hasPath("reviews.due") && !b.d.hasPath("reviews.cadence") {
		path := "reviews.due"
		if s.Due == nil {
			path = "reviews.cadence"
		}
		b.errAt(path, "due (%s) must be shorter than cadence (%s): a campaign must be due before the next one is", dur(due), dur(cadence))
	}
	// Last-use evidence comes from the trail: a look-back longer than the
	// trail is kept finds nothing in the part already purged.
	if p, keep := or(rc.Period, review.DefaultPeriod), retention.WithDefaults().Audit; p > keep && !b.d.hasPath("reviews.period") {
		b.warnAt("reviews.period", "the period (%s) is longer than the audit trail is kept (retention.audit %s): uses before that are not seen", hours(p), hours(keep))
	}
	return rc
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
