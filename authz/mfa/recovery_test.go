package mfa

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
)

var recoveryFormat = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$`)

func TestRecoveryCodesIssued(t *testing.T) {
	fx := newFixture(t)
	_, codes := fx.enrol(t, "u")
	seen := map[string]bool{}
	for _, c := range codes {
		if !recoveryFormat.MatchString(c) {
			t.Fatalf("recovery code %q has the wrong format", c)
		}
		if seen[c] {
			t.Fatalf("duplicate recovery code %q", c)
		}
		seen[c] = true
	}
	stored := fx.st.codes["u"]
	if len(stored) != len(codes) {
		t.Fatalf("%d hashes stored, want %d", len(stored), len(codes))
	}
	for h := range stored {
		if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
			t.Fatalf("stored value %q is not a hex SHA-256", h)
		}
		for _, c := range codes {
			if strings.Contains(h, strings.ReplaceAll(c, "-", "")) {
				t.Fatalf("stored hash contains the code %q", c)
			}
		}
	}
	if n, err := fx.m.RecoveryCodesLeft(context.Background(), "u"); n != DefaultRecoveryCodes || err != nil {
		t.Fatalf("RecoveryCodesLeft = %d, %v", n, err)
	}
}

func TestVerifyRecovery(t *testing.T) {
	ctx := context.Background()
	fx := newFixture(t)
	_, codes := fx.enrol(t, "u")
	variants := []struct {
		name   string
		format func(string) string
	}{
		{"as shown", func(c string) string { return c }},
		{"upper case", strings.ToUpper},
		{"no dash", func(c string) string { return strings.ReplaceAll(c, "-", "") }},
		{"spaces", func(c string) string { return " " + strings.ReplaceAll(c, "-", " ") + " " }},
		{"look-alikes", func(c string) string {
			return strings.NewReplacer("1", "l", "0", "O").Replace(c)
		}},
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			code := codes[i]
			if err := fx.m.VerifyRecovery(ctx, "u", v.format(code)); err != nil {
				t.Fatalf("VerifyRecovery(%q): %v", v.format(code), err)
			}
			if err := fx.m.VerifyRecovery(ctx, "u", code); !errors.Is(err, ErrInvalidCode) {
				t.Fatalf("second use: %v, want ErrInvalidCode", err)
			}
		})
	}
	if n, _ := fx.m.RecoveryCodesLeft(ctx, "u"); n != len(codes)-len(variants) {
		t.Fatalf("RecoveryCodesLeft = %d, want %d", n, len(codes)-len(variants))
	}
	if n, _ := fx.m.RecoveryFailures(ctx, "u"); n != int64(len(variants)) {
		t.Fatalf("RecoveryFailures = %d, want %d", n, len(variants))
	}
	if n := mustFailures(t, fx.m, "u"); n != 0 {
		t.Fatalf("recovery failures counted as TOTP failures: %d", n)
	}
}

func TestVerifyRecoveryHostile(t *testing.T) {
	fx := newFixture(t)
	_, codes := fx.enrol(t, "u")
	tests := []struct {
		name, code string
		reachStore bool // well-formed, so the store is asked
	}{
		{"empty", "", false},
		{"short", "abcde-fghj", false},
		{"long", "abcde-fghjkm", false},
		{"excluded letter u", "abcde-fghju", false},
		{"punctuation", "abcde_fghjk", false},
		{"unicode", "ａｂｃｄｅ-ｆｇｈｊｋ", false},
		{"10 KB", strings.Repeat("a", 10<<10), false},
		{"NUL", codes[0] + "\x00", false},
		{"TOTP code", "123456", false},
		{"unknown code", "zzzzz-zzzzz", true},
		{"another user's code", "", true},
	}
	// A code issued to another user does not work for u.
	_, other := fx.enrol(t, "v")
	tests[len(tests)-1].code = other[0]
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			consumes := fx.st.callCount("ConsumeRecoveryCode")
			if err := fx.m.VerifyRecovery(context.Background(), "u", tc.code); !errors.Is(err, ErrInvalidCode) {
				t.Fatalf("VerifyRecovery(%.40q): %v, want ErrInvalidCode", tc.code, err)
			}
			if reached := fx.st.callCount("ConsumeRecoveryCode") != consumes; reached != tc.reachStore {
				t.Fatalf("store consulted = %v, want %v", reached, tc.reachStore)
			}
			if n, _ := fx.m.RecoveryFailures(context.Background(), "u"); n != int64(i+1) {
				t.Fatalf("RecoveryFailures = %d, want %d", n, i+1)
			}
		})
	}
	if n, _ := fx.m.RecoveryCodesLeft(context.Background(), "u"); n != DefaultRecoveryCodes {
		t.Fatalf("hostile input consumed codes: %d left", n)
	}
}

// The hash is keyed: a manager with another key (or a store dump without
// the key) cannot match codes.
func TestRecoveryHashKeyed(t *testing.T) {
	fx := newFixture(t)
	_, codes := fx.enrol(t, "u")
	other := newManager(t, fx.st, fx.clk, []byte("another key, also 32 bytes long!"))
	norm, _ := normaliseRecovery(codes[0])
	if other.recoveryHash("u", norm) == fx.m.recoveryHash("u", norm) {
		t.Fatal("recovery hash does not depend on the key")
	}
	if fx.m.recoveryHash("u", norm) == fx.m.recoveryHash("v", norm) {
		t.Fatal("recovery hash does not depend on the user")
	}
}

func TestRecoveryCodeCount(t *testing.T) {
	_, codes := newFixtureConfig(t, Config{Key: testKey, RecoveryCodes: 3}).enrol(t, "u")
	if len(codes) != 3 {
		t.Fatalf("%d codes, want 3", len(codes))
	}
}

func FuzzNormaliseRecovery(f *testing.F) {
	for _, s := range []string{"", "abcde-fghjk", "ABCDE FGHJK", "0o1il-aaaaa", "abcde-fghju", "ａｂｃｄｅ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := normaliseRecovery(s)
		if !ok {
			return
		}
		if len(got) != recoveryLen || strings.Trim(got, recoveryAlphabet) != "" {
			t.Fatalf("normaliseRecovery(%q) = %q: not %d alphabet characters", s, got, recoveryLen)
		}
		if again, ok := normaliseRecovery(got); !ok || again != got {
			t.Fatalf("not idempotent: %q → %q → %q", s, got, again)
		}
	})
}
