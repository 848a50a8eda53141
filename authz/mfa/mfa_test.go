package mfa

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/store"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		paths []string // expected FieldError paths; nil = valid
	}{
		{"defaults with key", Config{Key: testKey}, nil},
		{"all set", Config{Issuer: "Example Corp", Key: testKey, Skew: 2, RecoveryCodes: 12}, nil},
		{"missing key", Config{}, []string{"key_file"}},
		{"short key", Config{Key: testKey[:31]}, []string{"key_file"}},
		{"long key", Config{Key: append(append([]byte{}, testKey...), 'x')}, []string{"key_file"}},
		{"zero key", Config{Key: make([]byte, KeySize)}, []string{"key_file"}},
		{"issuer with colon", Config{Issuer: "Evil:Corp", Key: testKey}, []string{"issuer"}},
		{"issuer with newline", Config{Issuer: "Evil\nCorp", Key: testKey}, []string{"issuer"}},
		{"issuer invalid utf8", Config{Issuer: "Evil\xffCorp", Key: testKey}, []string{"issuer"}},
		{"issuer too long", Config{Issuer: strings.Repeat("a", maxIssuerLen+1), Key: testKey}, []string{"issuer"}},
		{"skew too large", Config{Key: testKey, Skew: 3}, []string{"skew"}},
		{"negative recovery codes", Config{Key: testKey, RecoveryCodes: -1}, []string{"recovery_codes"}},
		{"too many recovery codes", Config{Key: testKey, RecoveryCodes: maxRecoveryCodes + 1}, []string{"recovery_codes"}},
		{"several errors", Config{Issuer: "a:b", Skew: 9}, []string{"issuer", "key_file", "skew"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var got []string
			for _, e := range authz.Flatten(err) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v is not a *authz.FieldError", e)
				}
				got = append(got, fe.Path)
			}
			if strings.Join(got, ",") != strings.Join(tc.paths, ",") {
				t.Fatalf("paths = %v, want %v (err %v)", got, tc.paths, err)
			}
			if _, nerr := New(tc.cfg, newFakeStore(time.Now), Options{}); (nerr == nil) != (tc.paths == nil) {
				t.Fatalf("New error = %v, want error: %v", nerr, tc.paths != nil)
			}
		})
	}
}

func TestNewNilStore(t *testing.T) {
	if _, err := New(Config{Key: testKey}, nil, Options{}); err == nil {
		t.Fatal("New with nil store succeeded")
	}
}

func TestBeginEnrolment(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	e, err := fx.m.BeginEnrolment(ctx, "issuer#alice", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := b32NoPad.DecodeString(e.Secret)
	if err != nil || len(secret)*8 < 160 {
		t.Fatalf("secret %q: %d bits, err %v; want ≥160 bits of base32", e.Secret, len(secret)*8, err)
	}
	key, err := otp.NewKeyFromURL(e.URI)
	if err != nil {
		t.Fatalf("URI %q: %v", e.URI, err)
	}
	if key.Type() != "totp" || key.Issuer() != DefaultIssuer || key.AccountName() != "alice@example.com" ||
		key.Secret() != e.Secret || key.Period() != period || key.Digits() != otp.DigitsSix || key.Algorithm() != otp.AlgorithmSHA1 {
		t.Fatalf("URI %q has unexpected parameters", e.URI)
	}
	img, err := png.Decode(bytes.NewReader(e.QRPNG))
	if err != nil {
		t.Fatalf("QR PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != qrSize || b.Dy() != qrSize {
		t.Fatalf("QR size %v, want %dx%d", b, qrSize, qrSize)
	}
	// The pending secret is stored encrypted, never in clear.
	pending := fx.st.eph[pendingKey("issuer#alice")]
	if pending.val == nil || bytes.Contains(pending.val, secret) || bytes.Contains(pending.val, []byte(e.Secret)) {
		t.Fatalf("pending record missing or holds the secret in clear: %x", pending.val)
	}
	if got := pending.exp.Sub(fx.clk.Now()); got != PendingTTL {
		t.Fatalf("pending TTL %v, want %v", got, PendingTTL)
	}
	if ok, err := fx.m.Enrolled(ctx, "issuer#alice"); ok || err != nil {
		t.Fatalf("Enrolled before confirm = %v, %v", ok, err)
	}
}

func TestBeginEnrolmentReplacesPending(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	first, err := fx.m.BeginEnrolment(ctx, "u", "u")
	if err != nil {
		t.Fatal(err)
	}
	second, err := fx.m.BeginEnrolment(ctx, "u", "u")
	if err != nil {
		t.Fatal(err)
	}
	if first.Secret == second.Secret {
		t.Fatal("second BeginEnrolment returned the same secret")
	}
	now := fx.clk.Now()
	if _, err := fx.m.ConfirmEnrolment(ctx, "u", codeAt(t, first.Secret, now)); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("confirm with replaced secret: %v, want ErrInvalidCode", err)
	}
	if _, err := fx.m.ConfirmEnrolment(ctx, "u", codeAt(t, second.Secret, now)); err != nil {
		t.Fatalf("confirm with current secret: %v", err)
	}
}

func TestEnrolmentLifecycle(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	secret, codes := fx.enrol(t, "u")
	if len(codes) != DefaultRecoveryCodes {
		t.Fatalf("%d recovery codes, want %d", len(codes), DefaultRecoveryCodes)
	}
	if ok, err := fx.m.Enrolled(ctx, "u"); !ok || err != nil {
		t.Fatalf("Enrolled = %v, %v", ok, err)
	}
	if _, ok := fx.st.eph[pendingKey("u")]; ok {
		t.Fatal("pending enrolment left behind after confirmation")
	}
	if _, err := fx.m.BeginEnrolment(ctx, "u", "u"); !errors.Is(err, ErrAlreadyEnrolled) {
		t.Fatalf("BeginEnrolment when enrolled: %v, want ErrAlreadyEnrolled", err)
	}
	if _, err := fx.m.ConfirmEnrolment(ctx, "u", codeAt(t, secret, fx.clk.Now())); !errors.Is(err, ErrNoPendingEnrolment) {
		t.Fatalf("second confirm: %v, want ErrNoPendingEnrolment", err)
	}

	if err := fx.m.Reset(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if ok, err := fx.m.Enrolled(ctx, "u"); ok || err != nil {
		t.Fatalf("Enrolled after reset = %v, %v", ok, err)
	}
	if err := fx.m.Verify(ctx, "u", codeAt(t, secret, fx.clk.Now())); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("Verify after reset: %v, want ErrNotEnrolled", err)
	}
	if err := fx.m.VerifyRecovery(ctx, "u", codes[0]); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("VerifyRecovery after reset: %v, want ErrNotEnrolled", err)
	}
	if n, err := fx.m.RecoveryCodesLeft(ctx, "u"); n != 0 || err != nil {
		t.Fatalf("RecoveryCodesLeft after reset = %d, %v", n, err)
	}
	// Re-enrolment works and yields a new secret.
	newSecret, _ := fx.enrol(t, "u")
	if newSecret == secret {
		t.Fatal("re-enrolment reused the old secret")
	}
	if err := fx.m.Reset(ctx, "never-enrolled"); err != nil {
		t.Fatalf("Reset of a user without enrolment: %v", err)
	}
}

func TestConfirmEnrolment(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// prepare returns the code to confirm with.
		prepare func(t *testing.T, fx *fixture, e Enrolment) string
		want    error
	}{
		{"valid code", func(t *testing.T, fx *fixture, e Enrolment) string {
			return codeAt(t, e.Secret, fx.clk.Now())
		}, nil},
		{"wrong code", func(t *testing.T, fx *fixture, e Enrolment) string {
			return wrongCode(codeAt(t, e.Secret, fx.clk.Now()))
		}, ErrInvalidCode},
		{"malformed code", func(*testing.T, *fixture, Enrolment) string { return "12345" }, ErrInvalidCode},
		{"expired pending", func(t *testing.T, fx *fixture, e Enrolment) string {
			fx.clk.Advance(PendingTTL)
			return codeAt(t, e.Secret, fx.clk.Now())
		}, ErrNoPendingEnrolment},
		{"code two steps old", func(t *testing.T, fx *fixture, e Enrolment) string {
			return codeAt(t, e.Secret, fx.clk.Now().Add(-2*period*time.Second))
		}, ErrInvalidCode},
		{"tampered pending record", func(t *testing.T, fx *fixture, e Enrolment) string {
			p := fx.st.eph[pendingKey("u")]
			p.val[len(p.val)-1] ^= 1
			return codeAt(t, e.Secret, fx.clk.Now())
		}, ErrCorruptRecord},
		{"already enrolled meanwhile", func(t *testing.T, fx *fixture, e Enrolment) string {
			fx.st.enrol["u"] = []byte("someone else's enrolment")
			return codeAt(t, e.Secret, fx.clk.Now())
		}, ErrAlreadyEnrolled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			e, err := fx.m.BeginEnrolment(ctx, "u", "u")
			if err != nil {
				t.Fatal(err)
			}
			code := tc.prepare(t, fx, e)
			codes, err := fx.m.ConfirmEnrolment(ctx, "u", code)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("ConfirmEnrolment: %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if codes != nil {
					t.Fatal("recovery codes returned on failure")
				}
				if tc.want != ErrAlreadyEnrolled {
					if _, ok := fx.st.enrol["u"]; ok {
						t.Fatal("enrolment stored after failed confirmation")
					}
				}
				if n := mustFailures(t, fx.m, "u"); n != 0 {
					t.Fatalf("enrolment failures counted as login failures: %d", n)
				}
			}
		})
	}
}

// The code that confirmed the enrolment cannot then be replayed to log in.
func TestConfirmCodeCannotLogIn(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	e, err := fx.m.BeginEnrolment(ctx, "u", "u")
	if err != nil {
		t.Fatal(err)
	}
	code := codeAt(t, e.Secret, fx.clk.Now())
	if _, err := fx.m.ConfirmEnrolment(ctx, "u", code); err != nil {
		t.Fatal(err)
	}
	if err := fx.m.Verify(ctx, "u", code); !errors.Is(err, ErrInvalidCode) {
		t.Fatalf("Verify with the confirmation code: %v, want ErrInvalidCode", err)
	}
}

func TestAccountLabel(t *testing.T) {
	tests := []struct{ name, account, user, want string }{
		{"email", "alice@example.com", "u", "alice@example.com"},
		{"empty falls back to user", "", "iss#alice", "iss#alice"},
		{"colon replaced", "a:b", "u", "a_b"},
		{"controls dropped", "a\x00b\nc\u0085", "u", "abc"},
		{"invalid utf8 dropped", "a\xffb", "u", "ab"},
		{"only controls", "\x01", "\x02", "user"},
		{"bounded", strings.Repeat("é", maxAccountNameLen), "u", strings.Repeat("é", maxAccountNameLen/2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := accountLabel(tc.account, tc.user); got != tc.want {
				t.Fatalf("accountLabel(%q, %q) = %q, want %q", tc.account, tc.user, got, tc.want)
			}
		})
	}
}

func TestInvalidUser(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	for _, user := range []string{"", "bad\xffutf8"} {
		calls := []struct {
			name string
			err  error
		}{
			{"Enrolled", second(fx.m.Enrolled(ctx, user))},
			{"BeginEnrolment", second(fx.m.BeginEnrolment(ctx, user, "x"))},
			{"ConfirmEnrolment", second(fx.m.ConfirmEnrolment(ctx, user, "123456"))},
			{"Verify", fx.m.Verify(ctx, user, "123456")},
			{"VerifyRecovery", fx.m.VerifyRecovery(ctx, user, "abcde-fghjk")},
			{"RecoveryCodesLeft", second(fx.m.RecoveryCodesLeft(ctx, user))},
			{"Failures", second(fx.m.Failures(ctx, user))},
			{"RecoveryFailures", second(fx.m.RecoveryFailures(ctx, user))},
			{"Reset", fx.m.Reset(ctx, user)},
		}
		for _, c := range calls {
			if !errors.Is(c.err, ErrInvalidUser) {
				t.Errorf("%s(%q): %v, want ErrInvalidUser", c.name, user, c.err)
			}
		}
	}
	if len(fx.st.calls) != 0 {
		t.Fatalf("store touched for an invalid user: %v", fx.st.calls)
	}
}

func second[T any](_ T, err error) error { return err }

// Every entry point reports a store failure as ErrUnavailable — including
// backends that forgot to wrap it — and never as a verdict on the code.
func TestStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	for _, storeErr := range []error{errBoom, store.ErrUnavailable} {
		fx := newFixture(t)
		secret, codes := fx.enrol(t, "u")
		fx.st.fail("*", storeErr)
		code := codeAt(t, secret, fx.clk.Now())
		calls := []struct {
			name string
			err  error
		}{
			{"Enrolled", second(fx.m.Enrolled(ctx, "u"))},
			{"BeginEnrolment", second(fx.m.BeginEnrolment(ctx, "v", "v"))},
			{"ConfirmEnrolment", second(fx.m.ConfirmEnrolment(ctx, "v", code))},
			{"Verify valid", fx.m.Verify(ctx, "u", code)},
			{"Verify malformed", fx.m.Verify(ctx, "u", "abc")},
			{"VerifyRecovery valid", fx.m.VerifyRecovery(ctx, "u", codes[0])},
			{"VerifyRecovery malformed", fx.m.VerifyRecovery(ctx, "u", "!")},
			{"RecoveryCodesLeft", second(fx.m.RecoveryCodesLeft(ctx, "u"))},
			{"Failures", second(fx.m.Failures(ctx, "u"))},
			{"RecoveryFailures", second(fx.m.RecoveryFailures(ctx, "u"))},
			{"Reset", fx.m.Reset(ctx, "u")},
		}
		for _, c := range calls {
			if !errors.Is(c.err, store.ErrUnavailable) || errors.Is(c.err, ErrInvalidCode) {
				t.Errorf("%s with store error %v: %v, want ErrUnavailable and not ErrInvalidCode", c.name, storeErr, c.err)
			}
		}
	}
}

// A failure in any single step of a flow fails the flow closed.
func TestStoreUnavailablePerMethod(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		method string
		run    func(fx *fixture, code, recovery string) error
	}{
		{"ClaimStep", func(fx *fixture, code, _ string) error { return fx.m.Verify(ctx, "u", code) }},
		{"Incr", func(fx *fixture, code, _ string) error { return fx.m.Verify(ctx, "u", wrongCode(code)) }},
		{"GetEnrolment", func(fx *fixture, code, _ string) error { return fx.m.Verify(ctx, "u", code) }},
		{"ConsumeRecoveryCode", func(fx *fixture, _, rec string) error { return fx.m.VerifyRecovery(ctx, "u", rec) }},
		{"PutRecoveryCodes", func(fx *fixture, _, _ string) error { return fx.m.Reset(ctx, "u") }},
		{"DeleteEnrolment", func(fx *fixture, _, _ string) error { return fx.m.Reset(ctx, "u") }},
		{"DeleteEphemeral", func(fx *fixture, _, _ string) error { return fx.m.Reset(ctx, "u") }},
		{"PutEphemeral", func(fx *fixture, _, _ string) error { return second(fx.m.BeginEnrolment(ctx, "v", "v")) }},
		{"GetEphemeral", func(fx *fixture, code, _ string) error { return second(fx.m.ConfirmEnrolment(ctx, "u", code)) }},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			fx := newFixture(t)
			secret, codes := fx.enrol(t, "u")
			fx.st.fail(tc.method, errBoom)
			err := tc.run(fx, codeAt(t, secret, fx.clk.Now()), codes[0])
			if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, ErrInvalidCode) {
				t.Fatalf("with %s failing: %v, want ErrUnavailable", tc.method, err)
			}
		})
	}
}

// Failures during confirmation: the user is not enrolled (or stays enrolled
// with nothing half-written) and gets an ErrUnavailable error.
func TestConfirmStoreFailures(t *testing.T) {
	ctx := context.Background()
	for _, method := range []string{"ClaimStep", "TakeEphemeral", "PutRecoveryCodes", "PutEnrolment", "GetEnrolment"} {
		t.Run(method, func(t *testing.T) {
			fx := newFixture(t)
			e, err := fx.m.BeginEnrolment(ctx, "u", "u")
			if err != nil {
				t.Fatal(err)
			}
			fx.st.fail(method, errBoom)
			codes, err := fx.m.ConfirmEnrolment(ctx, "u", codeAt(t, e.Secret, fx.clk.Now()))
			if !errors.Is(err, store.ErrUnavailable) || codes != nil {
				t.Fatalf("ConfirmEnrolment with %s failing: %v, %v", method, codes, err)
			}
			if _, ok := fx.st.enrol["u"]; ok {
				t.Fatal("enrolment stored although confirmation failed")
			}
		})
	}
}
