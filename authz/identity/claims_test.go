package identity

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestGroupsClaimShapes(t *testing.T) {
	many := make([]string, maxGroups+5)
	for i := range many {
		many[i] = "g" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
	}
	manyJSON, _ := json.Marshal(many)
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"absent", "", nil},
		{"null", "null", nil},
		{"array", `["a","b"]`, []string{"a", "b"}},
		{"single string", `"admins"`, []string{"admins"}},
		{"empty string", `""`, nil},
		{"empty array", `[]`, nil},
		{"duplicates and empties", `["a","","a","b"]`, []string{"a", "b"}},
		{"number", `42`, nil},
		{"bool", `true`, nil},
		{"object", `{"a":true}`, nil},
		{"array with a number", `["a",1]`, nil},
		{"array with null", `["a",null]`, []string{"a"}},
		{"nested array", `[["a"]]`, nil},
		{"control characters", `["ok","bad\nX-Admin: 1","bad\u0000"]`, []string{"ok"}},
		{"bidi override", `["ok","evil\u202e"]`, []string{"ok"}},
		{"oversized name", `["` + strings.Repeat("g", maxGroupLen+1) + `","ok"]`, []string{"ok"}},
		{"too many", string(manyJSON), many[:maxGroups]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var raw json.RawMessage
			if tc.raw != "" {
				raw = json.RawMessage(tc.raw)
			}
			if got := groupsClaim(raw); !slices.Equal(got, tc.want) {
				t.Fatalf("groupsClaim(%.60s) = %q, want %q", tc.raw, got, tc.want)
			}
		})
	}
}

func TestTimeClaim(t *testing.T) {
	tests := []struct {
		raw  string
		want time.Time
	}{
		{"1700000000", time.Unix(1700000000, 0).UTC()},
		{"1700000000.5", time.Unix(1700000000, 5e8).UTC()},
		{`"1700000000"`, time.Time{}},
		{"-5", time.Time{}},
		{"1e300", time.Time{}},
		{"null", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			if got := timeClaim(json.RawMessage(tc.raw)); !got.Equal(tc.want) {
				t.Fatalf("timeClaim(%s) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}

func TestCleanText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "Ann Example", "Ann Example"},
		{"controls removed", "Ann\r\nX: y\x00", "AnnX: y"},
		{"invalid utf8 removed", "Ann\xff", "Ann"},
		{"truncated on rune boundary", strings.Repeat("é", 200), strings.Repeat("é", maxNameLen/2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := cleanText(tc.in, maxNameLen); got != tc.want {
				t.Fatalf("cleanText = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzGroupsClaim: any JSON (or garbage) yields only printable, bounded,
// distinct, non-empty names, and never panics.
func FuzzGroupsClaim(f *testing.F) {
	for _, s := range []string{`["a","b"]`, `"a"`, `{"a":1}`, `[1,"a"]`, `["\u0000"]`, `nul`, `["a","a"]`, `[` + strings.Repeat(`"x",`, 50) + `"y"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got := groupsClaim(json.RawMessage(raw))
		if len(got) > maxGroups {
			t.Fatalf("%d groups", len(got))
		}
		seen := map[string]bool{}
		for _, g := range got {
			if g == "" || len(g) > maxGroupLen || !utf8.ValidString(g) || hasControl(g) || seen[g] {
				t.Fatalf("bad group %q from %q", g, raw)
			}
			seen[g] = true
		}
	})
}

// FuzzCleanText: the output is always valid, control-free and bounded.
func FuzzCleanText(f *testing.F) {
	f.Add("Ann\r\n\xff" + strings.Repeat("é", 300))
	f.Fuzz(func(t *testing.T, s string) {
		got := cleanText(s, maxNameLen)
		if len(got) > maxNameLen || !utf8.ValidString(got) || hasControl(got) {
			t.Fatalf("cleanText(%q) = %q", s, got)
		}
	})
}
