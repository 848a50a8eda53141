package session

// Certificate revocation.
//
// Store primitive: Ephemeral records with a TTL, not Locks. A revocation
// only has to outlive the certificates it covers, and no certificate of ours
// lives longer than MaxCertTTL (+ the backdate), so every revocation record
// expires by itself once it can no longer match anything; Locks never
// expire unless told and are the lockdown feature's namespace (an account
// lock is a different, admin-lifted thing). Both backends share Ephemeral
// across instances (bbolt file or Redis), so a revocation made on one
// instance is seen by the next connection on every instance; the feed event
// published alongside lets running bastions end live sessions at once.
//
// Keys:
//   sshca-revoked:serial:<decimal serial>    → record
//   sshca-revoked:keyid:<hex SHA-256(key ID)> → record
// The key ID is hashed so that a user ID of any length or alphabet makes a
// bounded, inert store key. A key-ID revocation covers the certificates of
// that key ID issued at or before the revocation (IssuedAt ≤ At), so the
// user can log in again afterwards and get a fresh, valid certificate.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/store"
)

// Feed event kind published on revocation. Subject is "serial:<n>" or
// "key-id:<key ID>".
const EventSSHCertRevoked = "ssh-cert-revoked"

// Subject prefixes of EventSSHCertRevoked.
const (
	RevokedSerialPrefix = "serial:"
	RevokedKeyIDPrefix  = "key-id:"
)

// revocationTTL bounds how long a revocation record is kept: past it no
// certificate it could match is still valid.
const revocationTTL = MaxCertTTL + CertBackdate + 5*time.Minute

// ErrCertRevoked means the certificate was revoked (by serial or key ID).
var ErrCertRevoked = errors.New("sshca: certificate revoked")

// RevocationStore is the part of store.Store CertRevocations uses.
type RevocationStore interface {
	store.Ephemeral
	store.Feed
}

var _ RevocationStore = (store.Store)(nil)

// CertRevocations records and checks certificate revocations in the shared
// store.
type CertRevocations struct {
	st  RevocationStore
	now func() time.Time
}

type revocationRecord struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// NewCertRevocations returns revocations kept in st (opts.Now is used;
// Rand and Logger are not needed).
func NewCertRevocations(st RevocationStore, opts SSHCAOptions) (*CertRevocations, error) {
	if st == nil {
		return nil, errors.New("sshca: revocations need a store")
	}
	return &CertRevocations{st: st, now: opts.withDefaults().Now}, nil
}

// RevokeSerial revokes the certificate with serial (zero is refused: our
// serials are never zero). Errors wrap store.ErrUnavailable.
func (r *CertRevocations) RevokeSerial(ctx context.Context, serial uint64, reason string) error {
	if serial == 0 {
		return fmt.Errorf("%w: serial 0", ErrCertRequest)
	}
	return r.revoke(ctx, serialKey(serial), RevokedSerialPrefix+strconv.FormatUint(serial, 10), reason)
}

// RevokeKeyID revokes every certificate with key ID keyID (a user ID)
// issued up to now.
func (r *CertRevocations) RevokeKeyID(ctx context.Context, keyID, reason string) error {
	if !validName(keyID, false) {
		return fmt.Errorf("%w: invalid key ID", ErrCertRequest)
	}
	return r.revoke(ctx, keyIDKey(keyID), RevokedKeyIDPrefix+keyID, reason)
}

func (r *CertRevocations) revoke(ctx context.Context, key, subject, reason string) error {
	val, err := json.Marshal(revocationRecord{At: r.now().UTC(), Reason: reason})
	if err != nil {
		return err
	}
	if err := r.st.PutEphemeral(ctx, key, val, revocationTTL); err != nil {
		return fmt.Errorf("sshca: recording revocation: %w", storeDown(err))
	}
	// The record alone already refuses new connections everywhere; the
	// event ends live sessions. A lost event is covered by the feed's
	// resync, which makes bastions re-check live certificates.
	if err := r.st.Publish(ctx, store.Event{Kind: EventSSHCertRevoked, Subject: subject, Reason: reason}); err != nil {
		return fmt.Errorf("sshca: publishing revocation: %w", storeDown(err))
	}
	return nil
}

// Check returns nil when cert is not revoked, an error wrapping
// ErrCertRevoked when it is, and an error wrapping store.ErrUnavailable
// when the store cannot answer (callers deny: fail closed).
func (r *CertRevocations) Check(ctx context.Context, cert *ssh.Certificate) error {
	if cert == nil {
		return ErrCertRevoked
	}
	if _, err := r.st.GetEphemeral(ctx, serialKey(cert.Serial)); err == nil {
		return fmt.Errorf("%w: serial %d", ErrCertRevoked, cert.Serial)
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("sshca: checking revocation: %w", storeDown(err))
	}
	val, err := r.st.GetEphemeral(ctx, keyIDKey(cert.KeyId))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("sshca: checking revocation: %w", storeDown(err))
	}
	var rec revocationRecord
	if err := json.Unmarshal(val, &rec); err != nil || rec.At.IsZero() {
		// An unreadable record still says "revoked": fail closed.
		return fmt.Errorf("%w: key ID (unreadable record)", ErrCertRevoked)
	}
	if !IssuedAt(cert).After(rec.At) {
		return fmt.Errorf("%w: key ID", ErrCertRevoked)
	}
	return nil
}

func serialKey(serial uint64) string {
	return "sshca-revoked:serial:" + strconv.FormatUint(serial, 10)
}

func keyIDKey(keyID string) string {
	sum := sha256.Sum256([]byte(keyID))
	return "sshca-revoked:keyid:" + hex.EncodeToString(sum[:])
}

// storeDown makes sure a store failure wraps store.ErrUnavailable, so
// callers fail closed on it.
func storeDown(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
