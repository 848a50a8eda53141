package mfa

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/portcullis/portcullis/authz/store"
)

// maxCodeInput bounds what is even looked at: anything longer is not a
// code, however many spaces it holds, and is refused before any work.
const maxCodeInput = 64

// normaliseTOTP strips ASCII spaces and tabs (apps display "123 456") and
// accepts exactly six ASCII digits. Unicode digits ("١٢٣٤٥٦") are refused:
// they are not what any authenticator shows.
func normaliseTOTP(code string) (string, bool) {
	return normalise(code, digits, " \t", func(c byte) (byte, bool) { return c, c >= '0' && c <= '9' })
}

// normalise drops the separator bytes in seps, passes every other byte
// through accept (which may map it, or refuse the whole input) and wants
// exactly n bytes. It works on bytes, so multi-byte UTF-8 is refused by
// accept, and it refuses over-long input before looking at it.
func normalise(code string, n int, seps string, accept func(byte) (byte, bool)) (string, bool) {
	if len(code) > maxCodeInput {
		return "", false
	}
	out := make([]byte, 0, n)
	for i := 0; i < len(code); i++ {
		if strings.IndexByte(seps, code[i]) >= 0 {
			continue
		}
		c, ok := accept(code[i])
		if !ok || len(out) == n {
			return "", false
		}
		out = append(out, c)
	}
	if len(out) != n {
		return "", false
	}
	return string(out), true
}

var validateOpts = totp.ValidateOpts{Period: period, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// matchStep returns the time step in now-skew..now+skew whose code equals
// code. Every candidate is generated and compared in constant time, so the
// response time does not tell which step (if any) matched. The step, not
// just "valid", is what the replay guard needs.
func matchStep(secret []byte, code string, now time.Time, skew uint) (uint64, bool) {
	b32 := b32NoPad.EncodeToString(secret)
	cur := now.Unix() / period
	if now.Unix()%period < 0 {
		cur-- // floor for (theoretical) pre-1970 clocks
	}
	var step uint64
	found := 0
	for d := -int64(skew); d <= int64(skew); d++ {
		s := cur + d
		if s < 0 {
			continue
		}
		gen, err := totp.GenerateCodeCustom(b32, time.Unix(s*period, 0), validateOpts)
		if err != nil {
			return 0, false
		}
		eq := subtle.ConstantTimeCompare([]byte(gen), []byte(code))
		if eq == 1 && found == 0 {
			step, found = uint64(s), 1
		}
	}
	return step, found == 1
}

// checkCode verifies a normalised code against secret and claims its step
// for userID. It returns ErrInvalidCode (with why, for the log) for a wrong
// or replayed code, and an ErrUnavailable error when the claim cannot be
// made — never "valid" without a successful claim.
func (m *Manager) checkCode(ctx context.Context, userID string, secret []byte, code string) (why string, err error) {
	step, ok := matchStep(secret, code, m.now(), m.cfg.Skew)
	if !ok {
		return "wrong code", ErrInvalidCode
	}
	// The mark must outlive every moment at which this step is still
	// accepted: up to skew steps after it, plus the step itself, plus one
	// step of margin for clock differences between instances.
	ttl := time.Duration(2*m.cfg.Skew+2) * period * time.Second
	first, err := m.st.ClaimStep(ctx, userID, step, ttl)
	if err != nil {
		return "", unavailable("claim step", err)
	}
	if !first {
		return "replayed step", ErrInvalidCode
	}
	return "", nil
}

// Verify checks a TOTP code for userID: well-formed, valid within ±Skew
// steps, and its step never accepted before for this user (on any instance
// sharing the store). Wrong, malformed and replayed codes all return
// ErrInvalidCode and add one to the counter FailureKey(userID). Store
// failures return an error wrapping store.ErrUnavailable.
func (m *Manager) Verify(ctx context.Context, userID, code string) error {
	if err := checkUser(userID); err != nil {
		return err
	}
	norm, ok := normaliseTOTP(code)
	if !ok {
		return m.fail(ctx, FailureKey(userID), userID, "malformed code", ErrInvalidCode)
	}
	blob, err := m.st.GetEnrolment(ctx, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Not a guess at a code: the caller sends the user to enrolment.
		return ErrNotEnrolled
	case err != nil:
		return unavailable("get enrolment", err)
	}
	secret, err := m.sealer.openSecret(userID, blob)
	if err != nil {
		m.log.ErrorContext(ctx, "mfa: enrolment cannot be decrypted (wrong key or tampered record)", "user_id", userID)
		return err
	}
	why, err := m.checkCode(ctx, userID, secret, norm)
	if errors.Is(err, ErrInvalidCode) {
		return m.fail(ctx, FailureKey(userID), userID, why, err)
	}
	return err
}
