package mfa

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// wrongCode returns a well-formed code that differs from code.
func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

func TestVerifySkew(t *testing.T) {
	step := period * time.Second
	tests := []struct {
		name   string
		offset time.Duration // where the user's clock is relative to ours
		ok     bool
	}{
		{"now", 0, true},
		{"one step behind", -step, true},
		{"one step ahead", step, true},
		{"two steps behind", -2 * step, false},
		{"two steps ahead", 2 * step, false},
		{"ten steps behind", -10 * step, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			secret, _ := fx.enrol(t, "u")
			err := fx.m.Verify(context.Background(), "u", codeAt(t, secret, fx.clk.Now().Add(tc.offset)))
			wantFailures := int64(1)
			if tc.ok {
				wantFailures = 0
				if err != nil {
					t.Fatalf("Verify: %v, want success", err)
				}
			} else if !errors.Is(err, ErrInvalidCode) {
				t.Fatalf("Verify: %v, want ErrInvalidCode", err)
			}
			if n := mustFailures(t, fx.m, "u"); n != wantFailures {
				t.Fatalf("failures = %d, want %d", n, wantFailures)
			}
		})
	}
}

func TestVerifySkewTwo(t *testing.T) {
	fx := newFixtureConfig(t, Config{Key: testKey, Skew: 2})
	m, clk, st := fx.m, fx.clk, fx.st
	secret, _ := fx.enrol(t, "u")
	ctx := context.Background()
	if err := m.Verify(ctx, "u", codeAt(t, secret, clk.Now().Add(-2*period*time.Second))); err != nil {
		t.Fatalf("skew 2, two steps behind: %v", err)
	}
	if err := m.Verify(ctx, "u", codeAt(t, secret, clk.Now().Add(3*period*time.Second))); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("skew 2, three steps ahead: %v", err)
	}
	if want := 6 * period * time.Second; st.lastTTL != want {
		t.Fatalf("claim TTL %v, want %v", st.lastTTL, want)
	}
}

func TestVerifyReplay(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	secret, _ := fx.enrol(t, "u")
	code := codeAt(t, secret, fx.clk.Now())
	if err := fx.m.Verify(ctx, "u", code); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if want := 4 * period * time.Second; fx.st.lastTTL != want {
		t.Fatalf("claim TTL %v, want %v", fx.st.lastTTL, want)
	}
	if err := fx.m.Verify(ctx, "u", code); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replay: %v, want ErrInvalidCode", err)
	}
	// Still refused one step later, while the code is inside the skew.
	fx.clk.Advance(period * time.Second)
	if err := fx.m.Verify(ctx, "u", code); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("replay a step later: %v, want ErrInvalidCode", err)
	}
	if n := mustFailures(t, fx.m, "u"); n != 2 {
		t.Fatalf("failures = %d, want 2", n)
	}
	// The next step's code is fine.
	if err := fx.m.Verify(ctx, "u", codeAt(t, secret, fx.clk.Now())); err != nil {
		t.Fatalf("next step: %v", err)
	}
}

// Two instances sharing a store share the replay guard.
func TestVerifyReplayAcrossInstances(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	other := newManager(t, fx.st, fx.clk, testKey)
	secret, _ := fx.enrol(t, "u")
	code := codeAt(t, secret, fx.clk.Now())
	if err := other.Verify(ctx, "u", code); err != nil {
		t.Fatalf("instance B: %v", err)
	}
	if err := fx.m.Verify(ctx, "u", code); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("instance A replay: %v, want ErrInvalidCode", err)
	}
}

// Of many concurrent uses of one code, exactly one succeeds.
func TestVerifyConcurrentReplay(t *testing.T) {
	fx := newFixture(t)
	secret, _ := fx.enrol(t, "u")
	code := codeAt(t, secret, fx.clk.Now())
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		m := fx.m
		if i%2 == 1 {
			m = newManager(t, fx.st, fx.clk, testKey)
		}
		wg.Go(func() { errs[i] = m.Verify(context.Background(), "u", code) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrInvalidCode):
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent uses accepted, want exactly 1", ok)
	}
}

// Replay guards are per user: the same step may be used by two users.
func TestVerifyStepPerUser(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	sa, _ := fx.enrol(t, "a")
	fx.clk.Advance(-10 * period * time.Second) // enrol both at the same time
	sb, _ := fx.enrol(t, "b")
	if err := fx.m.Verify(ctx, "a", codeAt(t, sa, fx.clk.Now())); err != nil {
		t.Fatal(err)
	}
	if err := fx.m.Verify(ctx, "b", codeAt(t, sb, fx.clk.Now())); err != nil {
		t.Fatalf("same step for another user: %v", err)
	}
	// And a's code does not work for b.
	if err := fx.m.Verify(ctx, "b", codeAt(t, sa, fx.clk.Now().Add(period*time.Second))); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("a's code for b: %v", err)
	}
}

func TestVerifyHostileCodes(t *testing.T) {
	tests := []struct{ name, code string }{
		{"empty", ""},
		{"five digits", "12345"},
		{"seven digits", "1234567"},
		{"spaced wrong code", "12 34 56"},
		{"arabic-indic digits", "١٢٣٤٥٦"},
		{"fullwidth digits", "１２３４５６"},
		{"10 KB", strings.Repeat("1", 10<<10)},
		{"10 KB of spaces around a code", strings.Repeat(" ", 5<<10) + "123456" + strings.Repeat(" ", 5<<10)},
		{"letters", "12345a"},
		{"sign", "+12345"},
		{"negative", "-12345"},
		{"newline", "123456\n"},
		{"NUL", "123456\x00"},
		{"invalid utf8", "12345\xff"},
		{"non-breaking space", "123\u00a0456"},
		{"only spaces", "      "},
		{"SQL", "1' OR '1'='1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			_, _ = fx.enrol(t, "u")
			gets := fx.st.callCount("GetEnrolment")
			claims := fx.st.callCount("ClaimStep")
			err := fx.m.Verify(context.Background(), "u", tc.code)
			if !errors.Is(err, ErrInvalidCode) {
				t.Fatalf("Verify(%.40q): %v, want ErrInvalidCode", tc.code, err)
			}
			if n := mustFailures(t, fx.m, "u"); n != 1 {
				t.Fatalf("failures = %d, want 1", n)
			}
			if tc.name != "spaced wrong code" && fx.st.callCount("GetEnrolment") != gets {
				t.Fatal("malformed code reached the TOTP check")
			}
			if fx.st.callCount("ClaimStep") != claims {
				t.Fatal("invalid code claimed a step")
			}
		})
	}
}

func TestVerifyFormatting(t *testing.T) {
	tests := []struct {
		name   string
		format func(code string) string
	}{
		{"plain", func(c string) string { return c }},
		{"grouped", func(c string) string { return c[:3] + " " + c[3:] }},
		{"spaces around", func(c string) string { return "  " + c + "\t" }},
		{"every digit spaced", func(c string) string { return strings.Join(strings.Split(c, ""), " ") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			secret, _ := fx.enrol(t, "u")
			if err := fx.m.Verify(context.Background(), "u", tc.format(codeAt(t, secret, fx.clk.Now()))); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestFailureWindow(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	_, _ = fx.enrol(t, "u")
	for range 3 {
		if err := fx.m.Verify(ctx, "u", "000000x"); !errors.Is(err, ErrInvalidCode) {
			t.Fatal(err)
		}
	}
	if n := mustFailures(t, fx.m, "u"); n != 3 {
		t.Fatalf("failures = %d, want 3", n)
	}
	if n, _ := fx.st.Count(ctx, FailureKey("u")); n != 3 {
		t.Fatalf("counter %q = %d, want 3", FailureKey("u"), n)
	}
	fx.clk.Advance(FailureWindow)
	if n := mustFailures(t, fx.m, "u"); n != 0 {
		t.Fatalf("failures after the window = %d, want 0", n)
	}
}

func TestNotEnrolled(t *testing.T) {
	fx := newFixture(t)
	if err := fx.m.Verify(context.Background(), "nobody", "123456"); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("Verify: %v, want ErrNotEnrolled", err)
	}
}

func TestMatchStepBeforeEpoch(t *testing.T) {
	secret := make([]byte, secretSize)
	for _, at := range []time.Time{time.Unix(0, 0), time.Unix(-1, 0), time.Unix(-1e6, 0)} {
		if _, ok := matchStep(secret, "000000", at, MaxSkew); ok && at.Unix() < -period*MaxSkew {
			t.Fatalf("matched a step before the epoch at %v", at)
		}
	}
}

func FuzzNormaliseTOTP(f *testing.F) {
	for _, s := range []string{"", "123456", "123 456", " 1 2 3 4 5 6 ", "١٢٣٤٥٦", "1234567", "12345", "\t123456", "12345\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := normaliseTOTP(s)
		if !ok {
			return
		}
		if len(got) != digits || strings.Trim(got, "0123456789") != "" {
			t.Fatalf("normaliseTOTP(%q) = %q: not six ASCII digits", s, got)
		}
		if strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, s) != got {
			t.Fatalf("normaliseTOTP(%q) = %q: changed more than whitespace", s, got)
		}
	})
}
