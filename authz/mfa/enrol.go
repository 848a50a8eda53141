package mfa

import (
	"bytes"
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"unicode/utf8"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/portcullis/portcullis/authz/store"
)

// qrSize is the side of the enrolment QR code in pixels: large enough to
// scan from a laptop screen, small enough to inline as a data: URI.
const qrSize = 256

var b32NoPad = base32.StdEncoding.WithPadding(base32.NoPadding)

// Enrolment is what the user sees once, when enrolment starts. It holds the
// secret in clear: show it, never log or store it.
type Enrolment struct {
	Secret string // base32 (no padding), for manual entry
	URI    string // otpauth://totp/... (the QR code's content)
	QRPNG  []byte // PNG, qrSize×qrSize
}

// BeginEnrolment generates a new secret for userID and keeps it, encrypted,
// as the pending enrolment for PendingTTL. Calling it again replaces the
// pending secret (a reload of the enrolment page shows a new QR code). It
// refuses with ErrAlreadyEnrolled when userID has an enrolment: replacing a
// second factor takes an admin Reset, so a stolen first factor alone cannot
// re-enrol an attacker's authenticator.
func (m *Manager) BeginEnrolment(ctx context.Context, userID, accountName string) (Enrolment, error) {
	if err := checkUser(userID); err != nil {
		return Enrolment{}, err
	}
	enrolled, err := m.Enrolled(ctx, userID)
	if err != nil {
		return Enrolment{}, err
	}
	if enrolled {
		return Enrolment{}, ErrAlreadyEnrolled
	}

	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      m.cfg.Issuer,
		AccountName: accountLabel(accountName, userID),
		Period:      period,
		SecretSize:  secretSize,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
		Rand:        m.rand,
	})
	if err != nil {
		return Enrolment{}, fmt.Errorf("mfa: generate secret: %w", err)
	}
	secret, err := b32NoPad.DecodeString(key.Secret())
	if err != nil || len(secret) != secretSize {
		return Enrolment{}, fmt.Errorf("mfa: generated secret is malformed")
	}
	blob, err := m.sealer.seal(m.rand, userID, secret)
	if err != nil {
		return Enrolment{}, err
	}

	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return Enrolment{}, fmt.Errorf("mfa: QR code: %w", err)
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return Enrolment{}, fmt.Errorf("mfa: QR code: %w", err)
	}

	if err := m.st.PutEphemeral(ctx, pendingKey(userID), blob, PendingTTL); err != nil {
		return Enrolment{}, unavailable("put pending enrolment", err)
	}
	m.log.InfoContext(ctx, "mfa: enrolment started", "user_id", userID)
	return Enrolment{Secret: key.Secret(), URI: key.URL(), QRPNG: qr.Bytes()}, nil
}

// accountLabel is the account part of the otpauth label: the account name
// (usually the e-mail address) or the user ID, without the characters that
// break the "issuer:account" label or an app's display, and bounded.
func accountLabel(accountName, userID string) string {
	name := strings.TrimSpace(strings.ToValidUTF8(accountName, ""))
	if name == "" {
		name = strings.ToValidUTF8(userID, "")
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r == ':':
			return '_'
		case isControl(r):
			return -1
		}
		return r
	}, name)
	for len(name) > maxAccountNameLen {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		name = "user"
	}
	return name
}

// ConfirmEnrolment checks code against the pending secret, then makes it
// the user's enrolment and returns freshly generated recovery codes — the
// only time they exist in clear. The code's time step is claimed, so the
// same code cannot then be used to log in.
func (m *Manager) ConfirmEnrolment(ctx context.Context, userID, code string) ([]string, error) {
	if err := checkUser(userID); err != nil {
		return nil, err
	}
	norm, ok := normaliseTOTP(code)
	if !ok {
		return nil, ErrInvalidCode
	}
	blob, err := m.st.GetEphemeral(ctx, pendingKey(userID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNoPendingEnrolment
	case err != nil:
		return nil, unavailable("get pending enrolment", err)
	}
	secret, err := m.sealer.openSecret(userID, blob)
	if err != nil {
		m.log.ErrorContext(ctx, "mfa: pending enrolment cannot be decrypted", "user_id", userID)
		return nil, err
	}
	// Enrolment failures are not counted: the secret is minutes old and
	// known only to whoever started the enrolment, so there is nothing to
	// guess, and counting would lock out users fumbling with a new app.
	if _, err := m.checkCode(ctx, userID, secret, norm); err != nil {
		return nil, err
	}

	enrolled, err := m.Enrolled(ctx, userID)
	if err != nil {
		return nil, err
	}
	if enrolled {
		return nil, ErrAlreadyEnrolled
	}
	// Take makes confirmation single-use across instances: of two
	// concurrent confirmations only one gets the pending record, so only one
	// set of recovery codes is ever handed out.
	taken, err := m.st.TakeEphemeral(ctx, pendingKey(userID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNoPendingEnrolment
	case err != nil:
		return nil, unavailable("take pending enrolment", err)
	}
	if !bytes.Equal(taken, blob) {
		// BeginEnrolment replaced the secret while we checked the code: the
		// verified secret is no longer the one on the user's screen. Put
		// the newer one back and let the user confirm that.
		if err := m.st.PutEphemeral(ctx, pendingKey(userID), taken, PendingTTL); err != nil {
			return nil, unavailable("restore pending enrolment", err)
		}
		return nil, ErrNoPendingEnrolment
	}

	codes, hashes, err := m.newRecoveryCodes(userID)
	if err != nil {
		return nil, err
	}
	sealed, err := m.sealer.seal(m.rand, userID, secret)
	if err != nil {
		return nil, err
	}
	// Recovery codes first, enrolment last: the enrolment is the commit
	// point. If it fails the user is still not enrolled and starts over,
	// and a new confirmation replaces the orphaned codes.
	if err := m.st.PutRecoveryCodes(ctx, userID, hashes); err != nil {
		return nil, unavailable("put recovery codes", err)
	}
	if err := m.st.PutEnrolment(ctx, userID, sealed); err != nil {
		return nil, unavailable("put enrolment", err)
	}
	m.log.InfoContext(ctx, "mfa: enrolment confirmed", "user_id", userID, "recovery_codes", len(codes))
	return codes, nil
}

// Reset deletes userID's enrolment, recovery codes and any pending
// enrolment (an admin action; the caller audits it). The user enrols again
// at the next login. Resetting a user without an enrolment is not an error.
func (m *Manager) Reset(ctx context.Context, userID string) error {
	if err := checkUser(userID); err != nil {
		return err
	}
	// Codes before the enrolment: a failure half-way leaves the user
	// enrolled without codes (retry the reset), never with live codes and
	// no enrolment.
	if err := m.st.PutRecoveryCodes(ctx, userID, nil); err != nil {
		return unavailable("delete recovery codes", err)
	}
	if err := m.st.DeleteEnrolment(ctx, userID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return unavailable("delete enrolment", err)
	}
	if err := m.st.DeleteEphemeral(ctx, pendingKey(userID)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return unavailable("delete pending enrolment", err)
	}
	m.log.InfoContext(ctx, "mfa: enrolment reset", "user_id", userID)
	return nil
}
