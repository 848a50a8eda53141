package authz

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrAmbiguousPath means a request path cannot be normalised to one
// unambiguous form. Enforcement points answer it with HTTP 400: a path that
// two servers could read differently must never reach a path-based rule.
var ErrAmbiguousPath = errors.New("ambiguous path")

// NormalizePath turns an escaped request path (r.URL.EscapedPath()) into the
// one decoded, canonical form that path rules are matched against.
//
// It resolves "." and ".." segments (never above the root), collapses empty
// segments ("//"), strips ";params" from each segment (so "/admin;x" and
// "/..;/admin" read the way Tomcat-style upstreams read them) and decodes
// percent escapes, treating "%2e" as a dot for dot-segment handling. A single
// trailing slash is kept. The empty path is "/".
//
// It rejects with ErrAmbiguousPath anything an upstream might decode
// differently from us: an encoded slash or backslash (%2f, %5c), a raw
// backslash, NUL and other control characters (raw or encoded), an encoded
// percent sign (%25: double encoding such as "%252e" or "%25%32%65"), an
// encoded ";" (%3b: is it a parameter or not?), invalid percent escapes,
// non-UTF-8 bytes after decoding, and paths that do not start with "/".
//
// Because '%' and ';' are consumed or rejected, the output never contains
// them, so NormalizePath(out) == out for every successful out; the output
// never contains "//", "/./" or "/../".
func NormalizePath(raw string) (string, error) {
	// Fast path: most real paths are already canonical and need no copy.
	if isCanonicalPath(raw) {
		return raw, nil
	}
	return normalizeSlow(raw)
}

// normalizeSlow is NormalizePath without the fast path (the fuzzer checks
// both agree).
func normalizeSlow(raw string) (string, error) {
	if raw == "" {
		return "/", nil
	}
	if raw[0] != '/' || !validEscapes(raw) {
		return "", ErrAmbiguousPath
	}
	out := make([]byte, 0, len(raw))
	trailing := false
	rest := raw[1:]
	for {
		seg, after, more := strings.Cut(rest, "/")
		rest = after
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		// Decode the segment in place at the end of out, then look at it.
		mark := len(out)
		out = append(out, '/')
		out = appendUnescaped(out, seg)
		dec := out[mark+1:]
		if !validSegment(dec) {
			return "", ErrAmbiguousPath
		}
		switch string(dec) {
		case "", ".":
			out = out[:mark]
			trailing = !more
		case "..":
			out = out[:mark]
			if j := lastSlash(out); j >= 0 {
				out = out[:j]
			}
			trailing = !more
		default:
			trailing = false
		}
		if !more {
			break
		}
	}
	if len(out) == 0 || trailing {
		out = append(out, '/')
	}
	return string(out), nil
}

// isCanonicalPath reports whether p is exactly what NormalizePath would
// return for it: it starts with "/", has no empty, "." or ".." segment
// (except one trailing empty segment), and contains no byte or rune that
// NormalizePath would decode, strip or reject. It does not allocate, so
// Evaluate can afford to re-check every request path.
func isCanonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	ascii := true
	segStart := 1
	for i := 1; i < len(p); i++ {
		c := p[i]
		if pathByte[c] == pathPlain {
			continue
		}
		switch pathByte[c] {
		case pathReject:
			return false
		case pathHigh:
			ascii = false
			continue
		}
		// c == '/': the segment before it must not be empty or a dot segment.
		if n := i - segStart; n == 0 || p[i-1] == '.' && (n == 1 || n == 2 && p[i-2] == '.') {
			return false
		}
		segStart = i + 1
	}
	if n := len(p) - segStart; n > 0 && p[len(p)-1] == '.' && (n == 1 || n == 2 && p[len(p)-2] == '.') {
		return false
	}
	return ascii || validRunes(p)
}

const (
	pathPlain  = iota // byte that stands for itself
	pathSlash         // segment separator
	pathReject        // '%', ';', '\\', C0 controls, DEL: never in canonical output
	pathHigh          // part of a multi-byte UTF-8 sequence: needs validRunes
)

var pathByte = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = pathReject
	}
	for _, c := range "%;\\\x7f" {
		t[c] = pathReject
	}
	t['/'] = pathSlash
	for c := 0x80; c < 0x100; c++ {
		t[c] = pathHigh
	}
	return t
}()

// validEscapes checks every '%' in raw starts a two-hex-digit escape whose
// byte is not one we refuse to decode. The check covers ";params" too: they
// are stripped, but a malformed or hostile escape anywhere marks the request
// as crafted.
func validEscapes(raw string) bool {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' || c < 0x20 || c == 0x7f {
			return false
		}
		if c != '%' {
			continue
		}
		if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
			return false
		}
		switch b := unhex(raw[i+1])<<4 | unhex(raw[i+2]); {
		case b == '/' || b == '\\' || b == '%' || b == ';' || b < 0x20 || b == 0x7f:
			return false
		}
		i += 2
	}
	return true
}

// appendUnescaped appends seg with its (already validated) escapes decoded.
func appendUnescaped(dst []byte, seg string) []byte {
	for i := 0; i < len(seg); i++ {
		if seg[i] == '%' {
			dst = append(dst, unhex(seg[i+1])<<4|unhex(seg[i+2]))
			i += 2
			continue
		}
		dst = append(dst, seg[i])
	}
	return dst
}

// validSegment rejects decoded segments that are not UTF-8 or that contain
// control characters (C0, DEL and C1), which some upstreams strip or
// truncate at.
func validSegment(seg []byte) bool {
	for len(seg) > 0 {
		r, n := utf8.DecodeRune(seg)
		if r == utf8.RuneError && n <= 1 || unicode.IsControl(r) {
			return false
		}
		seg = seg[n:]
	}
	return true
}

func validRunes(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return false
			}
		}
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func lastSlash(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '/' {
			return i
		}
	}
	return -1
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// pathHasPrefix reports whether path lies under prefix on a segment
// boundary: "/admin" covers "/admin" and "/admin/x" but not "/administrator".
// Prefixes are canonical without a trailing slash, except "/" itself.
//
// fold selects case-insensitive matching. Deny rules use it: an upstream on
// a case-insensitive file system serves "/ADMIN" as "/admin", and a deny
// must not be escaped by changing case. Allow rules match exactly, so the
// asymmetry can only ever deny more.
func pathHasPrefix(path, prefix string, fold bool) bool {
	if prefix == "/" {
		return true
	}
	if len(path) < len(prefix) {
		return false
	}
	head := path[:len(prefix)]
	if fold {
		if !strings.EqualFold(head, prefix) {
			return false
		}
	} else if head != prefix {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}
