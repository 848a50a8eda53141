package audit

import (
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Events are encoded by hand, not with encoding/json: Emit runs once per
// proxied request, and reflection plus map sorting through interfaces cost
// several allocations per event. The output is the same JSON object
// encoding/json would produce for Event (same keys, same order, same
// omitempty rules, map keys sorted), except that times are always UTC and
// HTML characters are not escaped. TestAppendJSONCoversEveryField fails
// when a field is added to Event without being added here.

// Redacted replaces the value of an attribute whose key looks like it names
// a secret (see SensitiveKey).
const Redacted = "[redacted]"

// Key fragments that mark an attribute as secret wherever they appear, and
// words that do so when they are a whole segment of the key ("otp_code",
// "exit_code" — name exit statuses "exit_status").
var (
	sensitiveFragments = []string{"token", "secret", "passw", "passcode", "cookie", "credential", "authoriz", "bearer", "private"}
	sensitiveSegments  = []string{"code", "otp", "totp", "pin"}
)

// SensitiveKey reports whether an attribute key looks like it names a
// secret. It is a last line of defence: producers must not put secrets in
// events at all, but if one tries, the value never reaches a sink.
func SensitiveKey(key string) bool {
	k := strings.ToLower(key)
	for _, f := range sensitiveFragments {
		if strings.Contains(k, f) {
			return true
		}
	}
	for seg := range strings.FieldsFuncSeq(k, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	}) {
		if slices.Contains(sensitiveSegments, seg) {
			return true
		}
	}
	return false
}

// Redact returns e with a private copy of Attrs in which the values of
// sensitive keys are replaced by Redacted. Sinks that keep events (Memory)
// use it, so they store exactly what the file sink would write.
func Redact(e Event) Event {
	if e.Attrs == nil {
		return e
	}
	attrs := maps.Clone(e.Attrs)
	for k := range attrs {
		if SensitiveKey(k) {
			attrs[k] = Redacted
		}
	}
	e.Attrs = attrs
	return e
}

// MarshalJSON encodes e exactly as the file sink writes it, so events
// served by the admin API match the audit file.
func (e Event) MarshalJSON() ([]byte, error) {
	return AppendJSON(make([]byte, 0, 256), &e), nil
}

// AppendJSON appends e to dst as one JSON object (RFC 8259; no trailing
// newline) and returns the extended buffer. Strings are escaped so that any
// input — control characters, U+2028/U+2029, invalid UTF-8 (each bad byte
// becomes U+FFFD) — yields valid JSON on a single line. Sensitive
// attributes are redacted. It allocates only when dst must grow (or for
// events with more than 16 attributes).
func AppendJSON(dst []byte, e *Event) []byte {
	dst = append(dst, `{"time":"`...)
	dst = appendTime(dst, e.Time)
	dst = append(dst, '"')
	dst = appendField(dst, "instance", e.Instance, true)
	dst = appendField(dst, "type", e.Type, false)
	dst = appendField(dst, "user_id", e.UserID, true)
	dst = appendField(dst, "source_ip", e.SourceIP, true)
	dst = appendField(dst, "session_id", e.SessionID, true)
	dst = appendField(dst, "app", e.App, true)
	dst = appendField(dst, "target", e.Target, true)
	dst = appendField(dst, "method", e.Method, true)
	dst = appendField(dst, "path", e.Path, true)
	dst = appendField(dst, "decision", e.Decision, true)
	dst = appendField(dst, "role", e.Role, true)
	dst = appendField(dst, "reason", e.Reason, true)
	dst = appendField(dst, "ref", e.Ref, true)
	dst = appendField(dst, "actor", e.Actor, true)
	if len(e.Attrs) > 0 {
		dst = append(dst, `,"attrs":{`...)
		keys := make([]string, 0, 16) // stays on the stack for usual events
		for k := range e.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			v := e.Attrs[k]
			if SensitiveKey(k) {
				v = Redacted
			}
			dst = appendString(dst, v)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendField appends ,"key":"value" (skipped when omitEmpty and empty).
// Keys are constants that need no escaping.
func appendField(dst []byte, key, val string, omitEmpty bool) []byte {
	if omitEmpty && val == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return appendString(dst, val)
}

// appendTime writes t in UTC as RFC 3339 with nanoseconds. Years outside
// 0000–9999 cannot be written in RFC 3339; they become the zero time
// rather than invalid output (clocks are injected and sane in practice).
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		t = time.Time{}
	}
	return t.AppendFormat(dst, time.RFC3339Nano)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Runs of safe bytes are copied
// in one append; only the bytes that need escaping are handled one by one.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but line terminators for JavaScript and for some
			// line-oriented log tooling: escape them like encoding/json.
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
