package session

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCookieAttributes(t *testing.T) {
	env := newTestManager(t, newFakeStore(), newClock(), false)
	tok, err := newToken(env.m.rand)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		maxAge time.Duration
		want   int
	}{
		{"browser session", 0, 0},
		{"negative means browser session", -time.Hour, 0},
		{"whole seconds", 8 * time.Hour, 8 * 3600},
		{"sub-second rounds up to one", 300 * time.Millisecond, 1},
		{"fraction rounds down", 1500 * time.Millisecond, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := env.m.Cookie(tok, tt.maxAge)
			if c.Name != "__Host-portcullis" || c.Name != env.m.CookieName() || c.Path != "/" || c.Domain != "" ||
				!c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.MaxAge != tt.want {
				t.Fatalf("cookie = %+v", c)
			}
			if c.Valid() != nil || len(c.Value) != cookieLen || !strings.HasPrefix(c.Value, "v1."+tok+".") {
				t.Fatalf("value %q invalid: %v", c.Value, c.Valid())
			}
			line := c.String()
			for _, attr := range []string{"Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
				if !strings.Contains(line, attr) {
					t.Fatalf("Set-Cookie %q lacks %s", line, attr)
				}
			}
			if strings.Contains(line, "Domain") {
				t.Fatalf("__Host- cookie with a Domain: %q", line)
			}
		})
	}
	clr := env.m.ClearCookie()
	if clr.Name != env.m.CookieName() || clr.Value != "" || clr.MaxAge >= 0 || clr.Path != "/" || !clr.Secure || !clr.HttpOnly {
		t.Fatalf("clear cookie = %+v", clr)
	}
	if !strings.Contains(clr.String(), "Max-Age=0") {
		t.Fatalf("clear cookie does not expire: %q", clr.String())
	}
}

func TestIDFromToken(t *testing.T) {
	env := newTestManager(t, newFakeStore(), newClock(), false)
	tok, _ := newToken(env.m.rand)
	tok2, _ := newToken(env.m.rand)
	id := IDFromToken(tok)
	if len(id) != idLen || !validID(id) || id != IDFromToken(tok) || id == IDFromToken(tok2) {
		t.Fatalf("IDFromToken(%q) = %q", tok, id)
	}
	if strings.Contains(tok, id) || strings.Contains(id, tok[:8]) {
		t.Fatal("ID reveals the token")
	}
	for _, bad := range []string{"", "garbage", tok + "A", tok[:tokenLen-1] + "B", env.m.Cookie(tok, 0).Value} {
		if IDFromToken(bad) != "" || env.m.cookieValue(bad) != "" {
			t.Fatalf("malformed token %q got an ID or a cookie", bad)
		}
	}
	// The pooled hot-path derivation agrees with the exported one.
	sc := newScratch(testKey)
	if !sc.parse(env.m.Cookie(tok, 0).Value) || string(sc.id[:idLen]) != id {
		t.Fatalf("parse ID %q != IDFromToken %q", sc.id[:idLen], id)
	}
}

// hostileCookies returns named malformed variants of a valid cookie.
func hostileCookies(t *testing.T, valid string) map[string]string {
	t.Helper()
	out := map[string]string{
		"empty":                "",
		"100 KB":               strings.Repeat("A", 100<<10),
		"100 KB valid prefix":  valid + strings.Repeat("A", 100<<10),
		"wrong version":        "v2" + valid[2:],
		"upper-case version":   "V1" + valid[2:],
		"no version":           valid[3:],
		"appended byte":        valid + "A",
		"appended padding":     valid + "=",
		"leading space":        " " + valid[:len(valid)-1],
		"swapped separators":   strings.Replace(valid, ".", ",", 2),
		"segments swapped":     "v1." + valid[3+tokenLen+1:] + "." + valid[3:3+tokenLen],
		"MAC of zeros":         valid[:3+tokenLen+1] + strings.Repeat("A", macLen),
		"token of zeros":       "v1." + strings.Repeat("A", tokenLen) + valid[3+tokenLen:],
		"standard base64 plus": valid[:10] + "+" + valid[11:],
		"standard base64 /":    valid[:10] + "/" + valid[11:],
		"newline in token":     valid[:10] + "\n" + valid[11:],
		"CR in MAC":            valid[:len(valid)-2] + "\r" + valid[len(valid)-1:],
		"NUL":                  valid[:20] + "\x00" + valid[21:],
		"non-ASCII":            valid[:20] + "\xc3" + valid[21:],
		"percent-encoded":      strings.Replace(valid, ".", "%2E", 1)[:cookieLen],
	}
	for i := range len(valid) {
		out["truncated to "+strconv.Itoa(i)] = valid[:i]
		for _, mask := range []byte{0x01, 0x02, 0x04, 0x20, 0x80} {
			b := []byte(valid)
			b[i] ^= mask
			out["byte "+strconv.Itoa(i)+" ^ "+strconv.Itoa(int(mask))] = string(b)
		}
	}
	return out
}

func TestLookupRefusesHostileCookiesWithoutStore(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	valid, _ := env.login(t, "alice")
	// A fresh instance: nothing cached, so a store read would show.
	fresh := newTestManager(t, st, env.clk, true)
	for name, v := range hostileCookies(t, valid) {
		if v == valid {
			continue
		}
		t.Run(name, func(t *testing.T) {
			before := st.gets.Load()
			for _, m := range []*Manager{env.m, fresh.m} {
				if rec, err := m.Lookup(t.Context(), v); !errors.Is(err, ErrNoSession) || rec.ID != "" {
					t.Fatalf("Lookup = %+v, %v; want ErrNoSession", rec, err)
				}
			}
			if st.gets.Load() != before {
				t.Fatal("a malformed cookie caused a store read")
			}
		})
	}
	if _, err := fresh.m.Lookup(t.Context(), valid); err != nil {
		t.Fatalf("the valid cookie stopped working: %v", err)
	}
}

func TestLookupRefusesOtherKeys(t *testing.T) {
	st := newFakeStore()
	clk := newClock()
	ours := newTestManager(t, st, clk, true)
	otherKey := []byte(strings.Repeat("k", 32))
	// Another deployment sharing nothing but (in this test) the store: its
	// valid session cookie is refused here before any store read.
	theirs := newTestManager(t, st, clk, true, func(c *Config) { c.CookieKey = otherKey })
	foreign, rec := theirs.login(t, "mallory")
	before := st.gets.Load()
	if _, err := ours.m.Lookup(t.Context(), foreign); !errors.Is(err, ErrNoSession) || st.gets.Load() != before {
		t.Fatalf("foreign cookie: err=%v, store reads %d→%d", err, before, st.gets.Load())
	}
	if _, err := theirs.m.Lookup(t.Context(), foreign); err != nil || rec.ID == "" {
		t.Fatalf("their own cookie: %v", err)
	}
}

// TestLookupRefusesNonCanonicalEncodings: base64url leaves spare bits in
// the last character; a lenient decoder maps several strings to the same
// bytes (and so the same valid MAC). Only the canonical one is accepted.
func TestLookupRefusesNonCanonicalEncodings(t *testing.T) {
	st := newFakeStore()
	env := newTestManager(t, st, newClock(), true)
	valid, _ := env.login(t, "alice")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	setSpareBits := func(v string, at, bits int) string {
		c := alphabet[strings.IndexByte(alphabet, v[at])|bits]
		return v[:at] + string(c) + v[at+1:]
	}
	lenient := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tokEnd, macEnd := 3+tokenLen-1, cookieLen-1
	for name, v := range map[string]string{
		"token spare bits": setSpareBits(valid, tokEnd, 0b01),
		"MAC spare bits":   setSpareBits(valid, macEnd, 0b0101),
	} {
		t.Run(name, func(t *testing.T) {
			if v == valid || string(lenient(v[3:3+tokenLen])) != string(lenient(valid[3:3+tokenLen])) ||
				string(lenient(v[3+tokenLen+1:])) != string(lenient(valid[3+tokenLen+1:])) {
				t.Fatal("test setup: variant does not decode to the same bytes")
			}
			before := st.gets.Load()
			if _, err := env.m.Lookup(t.Context(), v); !errors.Is(err, ErrNoSession) || st.gets.Load() != before {
				t.Fatalf("non-canonical cookie: %v", err)
			}
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name string
		src  string
		n    int
		ok   bool
	}{
		{"valid 16", base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef")), 16, true},
		{"valid 32", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), 32, true},
		{"too short", "AAAA", 16, false},
		{"too long", strings.Repeat("A", 23), 16, false},
		{"padding", strings.Repeat("A", 20) + "==", 16, false},
		{"non-zero trailing bits", strings.Repeat("A", 21) + "B", 16, false},
		{"std alphabet", strings.Repeat("A", 21) + "+", 16, false},
		{"newline", strings.Repeat("A", 10) + "\n" + strings.Repeat("A", 11), 16, false},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, tt.n)
			if got := decodeStrict(dst, tt.src); got != tt.ok {
				t.Fatalf("decodeStrict = %v, want %v", got, tt.ok)
			}
			checkDecodeAgainstStdlib(t, tt.src, tt.n)
		})
	}
}

// checkDecodeAgainstStdlib asserts decodeStrict agrees with the standard
// library's strict decoder (minus its newline skipping).
func checkDecodeAgainstStdlib(t *testing.T, src string, n int) {
	t.Helper()
	dst := make([]byte, n)
	ok := decodeStrict(dst, src)
	want, err := base64.RawURLEncoding.Strict().DecodeString(src)
	stdOK := err == nil && len(want) == n && !strings.ContainsAny(src, "\r\n")
	if ok != stdOK || (ok && string(dst) != string(want)) {
		t.Fatalf("decodeStrict(%q, %d) = %v %x; stdlib %v %x", src, n, ok, dst, stdOK, want)
	}
}

func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{"", "AA", "AAAA", "AB", "A-_", strings.Repeat("A", 22), strings.Repeat("_", 43), "AAA\nA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, n := range []int{0, 1, 2, 16, 32} {
			checkDecodeAgainstStdlib(t, s, n)
		}
	})
}

// FuzzParseCookie: the parser never panics, and whatever it accepts is
// exactly the canonical cookie of its token under our key (so nothing
// but the MAC'd token can authenticate, and IDs derive from it).
func FuzzParseCookie(f *testing.F) {
	m, err := NewManager(Config{CookieKey: testKey}, newFakeStore(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	tok, _ := newToken(m.rand)
	valid := m.Cookie(tok, 0).Value
	for _, s := range []string{valid, "", "v1.", "v1..", valid[:cookieLen-1], valid + "A", strings.Repeat("v1.", 23)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		sc := newScratch(testKey)
		if !sc.parse(v) {
			return
		}
		token := v[3 : 3+tokenLen]
		if m.cookieValue(token) != v || string(sc.id[:idLen]) != IDFromToken(token) {
			t.Fatalf("accepted non-canonical cookie %q", v)
		}
	})
}
