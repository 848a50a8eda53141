package authz

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		name, raw, want string // want "" means ErrAmbiguousPath
	}{
		{"root", "/", "/"},
		{"empty is root", "", "/"},
		{"plain", "/admin", "/admin"},
		{"trailing slash kept", "/admin/", "/admin/"},
		{"dotdot", "/public/../admin", "/admin"},
		{"dotdot never above root", "/../../admin", "/admin"},
		{"dotdot at end keeps slash", "/a/b/..", "/a/"},
		{"dotdot to root", "/a/..", "/"},
		{"encoded dotdot", "/%2e%2e/admin", "/admin"},
		{"encoded dotdot upper", "/x/%2E%2E/admin", "/admin"},
		{"mixed encoded dotdot", "/x/.%2e/admin", "/admin"},
		{"encoded single dot", "/a/%2e/b", "/a/b"},
		{"dot segments", "/a/./b", "/a/b"},
		{"trailing dot", "/a/.", "/a/"},
		{"double slash", "//admin", "/admin"},
		{"many slashes", "///a////b//", "/a/b/"},
		{"semicolon param", "/admin;x", "/admin"},
		{"semicolon param mid", "/admin;jsessionid=1/users", "/admin/users"},
		{"dotdot with param", "/foo/..;/admin", "/admin"},
		{"param only segment", "/;x/admin", "/admin"},
		{"escapes decoded", "/a%20b/%41", "/a b/A"},
		{"utf8 decoded", "/caf%C3%A9", "/café"},
		{"raw utf8 accepted", "/café", "/café"},
		{"encoded question mark is data", "/a%3Fb", "/a?b"},
		{"three dots is a name", "/.../admin", "/.../admin"},
		{"dot prefix is a name", "/.well-known/x", "/.well-known/x"},
		{"encoded slash", "/admin%2fx", ""},
		{"encoded slash upper", "/admin%2Fx", ""},
		{"encoded backslash", "/x/..%5cadmin", ""},
		{"raw backslash", "/x\\admin", ""},
		{"leading backslash", "\\admin", ""},
		{"double encoding dot", "/%252e", ""},
		{"double encoding slash", "/a%252fb", ""},
		{"double encoding via escaped digits", "/%25%32%65", ""},
		{"encoded percent alone", "/100%25off", ""},
		{"encoded semicolon", "/admin%3bx", ""},
		{"bad escape short", "/a%2", ""},
		{"bad escape end", "/a%", ""},
		{"bad escape non hex", "/a%zz", ""},
		{"iis unicode escape", "/%u002e%u002e/admin", ""},
		{"raw NUL", "/admin\x00.png", ""},
		{"encoded NUL", "/admin%00.png", ""},
		{"encoded newline", "/a%0aSet-Cookie", ""},
		{"raw tab", "/a\tb", ""},
		{"encoded DEL", "/a%7f", ""},
		{"encoded C1 control", "/a%C2%85", ""},
		{"bad escape in params", "/admin;%zz", ""},
		{"control in params", "/admin;%00", ""},
		{"invalid utf8", "/%ff", ""},
		{"overlong dot", "/%c0%ae%c0%ae/admin", ""},
		{"raw invalid utf8", "/\xff", ""},
		{"relative", "admin", ""},
		{"asterisk form", "*", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePath(tt.raw)
			if tt.want == "" {
				if !errors.Is(err, ErrAmbiguousPath) || got != "" {
					t.Fatalf("NormalizePath(%q) = %q, %v; want ErrAmbiguousPath", tt.raw, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizePath(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
			}
			checkNormalized(t, tt.raw, got)
		})
	}
}

// checkNormalized asserts the output invariants the fuzzer relies on.
func checkNormalized(t *testing.T, raw, out string) {
	t.Helper()
	if !strings.HasPrefix(out, "/") {
		t.Fatalf("NormalizePath(%q) = %q: does not start with /", raw, out)
	}
	for _, bad := range []string{"//", "/../", "/./", "%", ";", "\\"} {
		if strings.Contains(out, bad) {
			t.Fatalf("NormalizePath(%q) = %q: contains %q", raw, out, bad)
		}
	}
	if strings.HasSuffix(out, "/..") || strings.HasSuffix(out, "/.") {
		t.Fatalf("NormalizePath(%q) = %q: ends in a dot segment", raw, out)
	}
	if !utf8.ValidString(out) || strings.ContainsFunc(out, unicode.IsControl) {
		t.Fatalf("NormalizePath(%q) = %q: invalid UTF-8 or control character", raw, out)
	}
	again, err := NormalizePath(out)
	if err != nil || again != out {
		t.Fatalf("not idempotent: NormalizePath(%q) = %q, then %q, %v", raw, out, again, err)
	}
	if !isCanonicalPath(out) {
		t.Fatalf("NormalizePath(%q) = %q, which isCanonicalPath rejects", raw, out)
	}
}

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "", "/public/../admin", "/%2e%2e/admin", "//admin", "/admin;x", "/admin%2fx",
		"/%252e", "/a/./b", "\\admin", "/foo/..;/admin", "/a/b/..", "/caf%C3%A9", "/%c0%ae",
		"/a%", "/a%2", "/;/;/..;/x", "/.%2e/.%2E/", "/a\x00", "/\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := NormalizePath(raw)
		if err != nil {
			if !errors.Is(err, ErrAmbiguousPath) || out != "" {
				t.Fatalf("NormalizePath(%q) = %q, %v", raw, out, err)
			}
			return
		}
		checkNormalized(t, raw, out)
		// The allocation-free fast path must agree with the full algorithm.
		if slow, err := normalizeSlow(raw); err != nil || slow != out {
			t.Fatalf("fast path %q, slow path %q, %v for %q", out, slow, err, raw)
		}
	})
}

func TestIsCanonicalPath(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/a/b", true},
		{"/a/b/", true},
		{"/café", true},
		{"", false},
		{"a", false},
		{"//", false},
		{"/a//b", false},
		{"/a/./b", false},
		{"/a/..", false},
		{"/a/.", false},
		{"/a;b", false},
		{"/a%20b", false},
		{"/a\\b", false},
		{"/a\x7f", false},
		{"/a\u0085", false},
		{"/\xff", false},
		{"/\uFFFD", true}, // a real U+FFFD is valid UTF-8
	}
	for _, tt := range tests {
		if got := isCanonicalPath(tt.path); got != tt.want {
			t.Errorf("isCanonicalPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestPathHasPrefix(t *testing.T) {
	tests := []struct {
		name, path, prefix string
		fold, want         bool
	}{
		{"root matches all", "/anything", "/", false, true},
		{"exact", "/admin", "/admin", false, true},
		{"child", "/admin/x", "/admin", false, true},
		{"child trailing slash", "/admin/", "/admin", false, true},
		{"not a segment boundary", "/administrator", "/admin", false, false},
		{"shorter", "/adm", "/admin", false, false},
		{"sibling", "/public", "/admin", false, false},
		{"case differs exact", "/ADMIN/x", "/admin", false, false},
		{"case differs folded", "/ADMIN/x", "/admin", true, true},
		{"folded still needs boundary", "/ADMINISTRATOR", "/admin", true, false},
		{"nested prefix", "/a/b/c", "/a/b", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pathHasPrefix(tt.path, tt.prefix, tt.fold); got != tt.want {
				t.Fatalf("pathHasPrefix(%q, %q, %v) = %v", tt.path, tt.prefix, tt.fold, got)
			}
		})
	}
}

func TestNormalizePathFastPathDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := NormalizePath("/api/v1/dashboards/uid/abc"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("canonical path: %v allocs per call, want 0", allocs)
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"canonical", "/api/v1/dashboards/uid/abc"},
		{"hostile", "/public/..;/%2e%2e//admin/./users"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizePath(bc.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
