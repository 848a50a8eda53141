package config

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// TestRetentionParsed checks what the retention section turns into: the
// defaults when absent, the values given, and the force flag.
func TestRetentionParsed(t *testing.T) {
	tests := []struct {
		file string
		want audit.RetentionConfig // after WithDefaults
	}{
		{"testdata/valid.yaml", audit.RetentionConfig{Audit: 400 * 24 * time.Hour, Recordings: 90 * 24 * time.Hour}},
		{"testdata/valid_retention.yaml", audit.RetentionConfig{Audit: 9600 * time.Hour, Recordings: 4320 * time.Hour}},
		{"testdata/valid_retention_forced.yaml", audit.RetentionConfig{Audit: 720 * time.Hour, Recordings: 168 * time.Hour, ForceShort: true}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			cfg, _, err := Load(tc.file, testOptions(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Retention.WithDefaults(); got != tc.want {
				t.Errorf("retention %+v, want %+v", got, tc.want)
			}
			if err := cfg.Retention.Validate(); err != nil {
				t.Errorf("built retention does not validate: %v", err)
			}
		})
	}
}
