package mfa

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis/portcullis/authz/store"
)

// Recovery codes are 10 characters of Crockford base32 (50 bits), shown as
// "xxxxx-xxxxx". 50 bits are plenty online (each guess is counted and one
// code dies per use); offline, the keyed hash is what protects them.
const (
	recoveryLen      = 10
	recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
)

// newRecoveryCodes returns cfg.RecoveryCodes distinct codes and their
// hashes for userID.
func (m *Manager) newRecoveryCodes(userID string) (codes, hashes []string, err error) {
	n := m.cfg.RecoveryCodes
	codes = make([]string, 0, n)
	hashes = make([]string, 0, n)
	seen := make(map[string]bool, n)
	raw := make([]byte, recoveryLen)
	for len(codes) < n {
		if _, err := io.ReadFull(m.rand, raw); err != nil {
			return nil, nil, fmt.Errorf("mfa: recovery codes: %w", err)
		}
		var c [recoveryLen]byte
		for i, b := range raw {
			c[i] = recoveryAlphabet[b&31] // 256 is a multiple of 32: uniform
		}
		code := string(c[:])
		if seen[code] {
			continue // a 2^-50 event, but two equal codes would be one code
		}
		seen[code] = true
		codes = append(codes, code[:5]+"-"+code[5:])
		hashes = append(hashes, m.recoveryHash(userID, code))
	}
	return codes, hashes, nil
}

// normaliseRecovery lower-cases, drops spaces, tabs and dashes, maps the
// Crockford look-alikes (i, l → 1; o → 0) and accepts exactly recoveryLen
// characters of the alphabet.
func normaliseRecovery(code string) (string, bool) {
	return normalise(code, recoveryLen, " \t-", func(c byte) (byte, bool) {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		switch c {
		case 'i', 'l':
			c = '1'
		case 'o':
			c = '0'
		}
		return c, strings.IndexByte(recoveryAlphabet, c) >= 0
	})
}

// VerifyRecovery accepts one of userID's recovery codes, once: the store
// removes it atomically, so the same code cannot succeed twice even on two
// instances at the same moment. Failures return ErrInvalidCode and count
// under RecoveryFailureKey(userID).
func (m *Manager) VerifyRecovery(ctx context.Context, userID, code string) error {
	if err := checkUser(userID); err != nil {
		return err
	}
	norm, ok := normaliseRecovery(code)
	if !ok {
		return m.fail(ctx, RecoveryFailureKey(userID), userID, "malformed recovery code", ErrInvalidCode)
	}
	// Codes only count while the enrolment they belong to exists: a Reset
	// that failed half-way must not leave usable codes behind.
	enrolled, err := m.Enrolled(ctx, userID)
	if err != nil {
		return err
	}
	if !enrolled {
		return ErrNotEnrolled
	}
	used, err := m.st.ConsumeRecoveryCode(ctx, userID, m.recoveryHash(userID, norm))
	if err != nil {
		return unavailable("consume recovery code", err)
	}
	if !used {
		return m.fail(ctx, RecoveryFailureKey(userID), userID, "unknown or used recovery code", ErrInvalidCode)
	}
	m.log.InfoContext(ctx, "mfa: recovery code used", "user_id", userID)
	return nil
}

// RecoveryCodesLeft is how many unused recovery codes userID has.
func (m *Manager) RecoveryCodesLeft(ctx context.Context, userID string) (int, error) {
	if err := checkUser(userID); err != nil {
		return 0, err
	}
	n, err := m.st.RecoveryCodesLeft(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("count recovery codes", err)
	}
	return n, nil
}
