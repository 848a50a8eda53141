package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the loader: it must never panic, and
// every failure must be an *Error whose diagnostics name the file.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "\x00", "\xff\xfe", "a: b: c", "[", "{a: [}", "- - - -", "? a\n: b", "a: !!binary AAAA",
		"gateway: {routes: [{name: a, host: b, upstream: c, flush_interval: 1e9999h}]}",
		"policy: {roles: [{name: x, allow: [{apps: [&a x, *a]}]}]}",
		"mfa: {key_file: /dev/zero}", "mfa: {key_file: /proc/self/environ}",
		strings.Repeat("[", 5000), strings.Repeat("a:\n ", 2000),
	} {
		f.Add([]byte(s))
	}
	opts := Options{
		FakeSecrets: true,
		LookupEnv:   func(string) (string, bool) { return "", false },
		Hostname:    func() (string, error) { return "fuzz", nil },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Parse("fuzz.yaml", data, opts)
		if err == nil {
			if cfg == nil || cfg.Compiled == nil {
				t.Fatal("success without a compiled policy")
			}
			return
		}
		ce, ok := err.(*Error)
		if !ok || len(ce.Diags) == 0 {
			t.Fatalf("error %T %v is not a non-empty *Error", err, err)
		}
		for _, d := range ce.Diags {
			if d.File != "fuzz.yaml" {
				t.Fatalf("diagnostic without file: %+v", d)
			}
		}
	})
}
