package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/review"
)

// TestReviewsParsed checks what valid_reviews.yaml turns into, and that a
// file without the section gets the zero review.Config (the defaults).
func TestReviewsParsed(t *testing.T) {
	cfg, _, err := Load("testdata/valid_reviews.yaml", testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	want := review.Config{DormantAfter: 1440 * time.Hour, Period: 8784 * time.Hour, Due: 720 * time.Hour, Cadence: 8784 * time.Hour}
	if cfg.Reviews != want {
		t.Errorf("reviews = %+v, want %+v", cfg.Reviews, want)
	}
	cfg, _, err = Parse("x.yaml", []byte(minimalYAML), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Reviews, review.Config{}) {
		t.Errorf("reviews without a section = %+v, want the zero Config", cfg.Reviews)
	}
}

// TestReviewsHostile feeds single reviews settings.
func TestReviewsHostile(t *testing.T) {
	tests := []struct {
		name, section, wantErr, warn string
	}{
		{"defaults spelled out", "reviews: {dormant_after: 2160h, period: 2208h, due: 336h, cadence: 2208h}\n", "", ""},
		{"negative due", "reviews: {due: -1h}\n", "reviews.due: duration must not be negative", ""},
		{"zero period", "reviews: {period: 0s}\n", "reviews.period: must not be 0", ""},
		{"period below a day", "reviews: {period: 23h}\n", "reviews.period: must be between 24h and 87600h", ""},
		{"cadence above ten years", "reviews: {cadence: 87601h}\n", "reviews.cadence: must be between 24h and 87600h", ""},
		{"due minimum", "reviews: {due: 1h}\n", "", ""},
		{"due below an hour", "reviews: {due: 59m}\n", "reviews.due: must be between 1h and 87600h", ""},
		{"due equals default cadence", "reviews: {due: 2208h}\n", "reviews.due: due (2208h) must be shorter than cadence (2208h)", ""},
		{"cadence below default due", "reviews: {cadence: 300h}\n", "reviews.cadence: due (336h) must be shorter than cadence (300h)", ""},
		{"not a mapping", "reviews: quarterly\n", "reviews: expected a mapping", ""},
		{"period beyond retention warns", "reviews: {period: 9601h}\n", "", "reviews.period: the period (9601h) is longer than the audit trail is kept"},
		{"days are not a unit", "reviews: {dormant_after: 90d}\n", "days and weeks are not units", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, warns, err := Parse("x.yaml", []byte(minimalYAML+tc.section), testOptions(t))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			var w string
			for _, d := range warns {
				w += d.String() + "\n"
			}
			if tc.warn != "" && !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want %q", w, tc.warn)
			}
			if tc.warn == "" && w != "" {
				t.Errorf("unexpected warnings %q", w)
			}
		})
	}
}
