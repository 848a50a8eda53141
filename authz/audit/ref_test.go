package audit

import (
	"bytes"
	"errors"
	"regexp"
	"testing"
	"testing/iotest"
)

var refFormat = regexp.MustCompile(`^ref-[0-9A-HJKMNP-TV-Z]{10}$`)

func TestNewRef(t *testing.T) {
	tests := []struct {
		name string
		make func() string
		want string // "" = any well-formed reference
	}{
		{"deterministic reader", func() string { return NewRef(bytes.NewReader(make([]byte, 10))) }, "ref-0000000000"},
		{"high bytes", func() string { return NewRef(bytes.NewReader(bytes.Repeat([]byte{0xff}, 10))) }, "ref-ZZZZZZZZZZ"},
		{"nil reader", func() string { return NewRef(nil) }, ""},
		{"failing reader", func() string { return NewRef(iotest.ErrReader(errors.New("boom"))) }, ""},
		{"short reader", func() string { return NewRef(bytes.NewReader([]byte{1, 2})) }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.make()
			if !refFormat.MatchString(got) || (tc.want != "" && got != tc.want) {
				t.Fatalf("NewRef = %q, want %q (format %s)", got, tc.want, refFormat)
			}
		})
	}
}

func TestNewRefUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		r := NewRef(nil)
		if seen[r] {
			t.Fatalf("duplicate reference %s", r)
		}
		seen[r] = true
	}
}
