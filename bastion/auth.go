package bastion

// Client authentication: certificates only.
//
// x/crypto calls PublicKeyCallback for every key a client offers, including
// keys it only asks about and never signs with (CVE-2024-45337: servers
// that remembered "the last key seen" granted the identity of a key the
// client does not hold). So nothing here is remembered outside the
// Permissions returned for that exact key: PublicKeyCallback binds them to
// the key's fingerprint, VerifiedPublicKeyCallback — run only after the
// client proved possession with a signature — checks the binding and marks
// them verified, and newConn refuses a connection whose Permissions are not
// verified for the certificate they carry. Identity is read from that
// certificate alone.

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// Permissions keys set during authentication.
const (
	permKeyFP    = "portcullis-key-fp"   // fingerprint of the certificate this Permissions is for
	permVerified = "portcullis-verified" // same, set only once its signature verified
)

// certKey is the Permissions.ExtraData key holding the *ssh.Certificate.
type certKey struct{}

// Audit event types of the bastion (stable keys).
const (
	TypeSSHAuth         = "ssh.auth"          // certificate accepted or refused
	TypeSSHSessionStart = "ssh.session.start" // relay started
	TypeSSHSessionEnd   = "ssh.session.end"   // connection ended, with the cause
	TypeSSHChannel      = "ssh.channel"       // a channel or request refused
	TypeSSHUpstream     = "ssh.upstream"      // target connection failed
	TypeSSHList         = "ssh.list"          // target listing shown
	TypeSSHAlert        = "ssh.alert"         // recording failure and other alerts
)

// Authentication reason codes (stable).
const (
	ReasonBadUsername       = "bad-username"
	ReasonNotCertificate    = "not-a-certificate"
	ReasonNotUserCert       = "not-a-user-certificate"
	ReasonCAIsCertificate   = "ca-is-certificate"
	ReasonUntrustedCA       = "untrusted-ca"
	ReasonEmptyPrincipals   = "empty-principals"
	ReasonPrincipal         = "principal-not-allowed"
	ReasonNotYetValid       = "cert-not-yet-valid"
	ReasonExpired           = "cert-expired"
	ReasonNoExpiry          = "cert-lifetime-too-long"
	ReasonBadCertificate    = "bad-certificate"
	ReasonSourceAddress     = "source-address-mismatch"
	ReasonNoKeyID           = "no-key-id"
	ReasonRevoked           = "cert-revoked"
	ReasonRevocationUnknown = "revocation-check-failed"
	ReasonBindingMismatch   = "key-binding-mismatch"
	ReasonAuthenticated     = "authenticated"
)

// errAuth is all a client learns about a refused key.
var errAuth = errors.New("permission denied")

// maxCertLifetime bounds ValidBefore-ValidAfter of an acceptable user
// certificate: Portcullis certificates live at most MaxCertTTL (plus the
// backdate). A longer-lived certificate from a trusted CA is a mistake or
// a leak, and never-expiring ones are refused outright.
const maxCertLifetime = session.MaxCertTTL + session.CertBackdate + time.Minute

// revocationTimeout bounds the store round trip during authentication.
const revocationTimeout = 5 * time.Second

func (b *Bastion) publicKeyCallback(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	src := sourceAddr(meta.RemoteAddr())
	login, tgt, ok := splitUser(meta.User())
	cert, _ := key.(*ssh.Certificate)
	reject := func(reason string, detail error) (*ssh.Permissions, error) {
		b.auditAuth(meta, src, key, cert, audit.Deny, reason, detail)
		return nil, errAuth
	}
	if !ok {
		return reject(ReasonBadUsername, nil)
	}
	if cert == nil {
		return reject(ReasonNotCertificate, nil)
	}
	if cert.CertType != ssh.UserCert {
		return reject(ReasonNotUserCert, nil)
	}
	if isCert(cert.SignatureKey) {
		return reject(ReasonCAIsCertificate, nil)
	}
	if !b.userCAs[string(cert.SignatureKey.Marshal())] {
		return reject(ReasonUntrustedCA, nil)
	}
	// x/crypto treats an empty principal list as "any user"; for us it is
	// a malformed certificate.
	if len(cert.ValidPrincipals) == 0 || slices.Contains(cert.ValidPrincipals, "") {
		return reject(ReasonEmptyPrincipals, nil)
	}
	principal := login
	if tgt == "" {
		// Listing mode reaches no target: the certificate must be valid,
		// but the user name is not a login.
		principal = cert.ValidPrincipals[0]
	} else if !slices.Contains(cert.ValidPrincipals, login) {
		return reject(ReasonPrincipal, nil)
	}
	now := b.now().Unix()
	switch {
	case cert.ValidAfter > 1<<62 || now < int64(cert.ValidAfter):
		return reject(ReasonNotYetValid, nil)
	case cert.ValidBefore == ssh.CertTimeInfinity || cert.ValidBefore > 1<<62 ||
		cert.ValidBefore < cert.ValidAfter ||
		time.Duration(cert.ValidBefore-cert.ValidAfter)*time.Second > maxCertLifetime:
		return reject(ReasonNoExpiry, nil)
	case now >= int64(cert.ValidBefore):
		return reject(ReasonExpired, nil)
	}
	checker := ssh.CertChecker{
		SupportedCriticalOptions: []string{session.OptSourceAddress},
		Clock:                    b.now,
	}
	if err := checker.CheckCert(principal, cert); err != nil {
		// Signature, unknown critical options.
		return reject(ReasonBadCertificate, err)
	}
	if sa, ok := cert.CriticalOptions[session.OptSourceAddress]; ok && !sourceAllowed(sa, src) {
		return reject(ReasonSourceAddress, nil)
	}
	if cert.KeyId == "" {
		return reject(ReasonNoKeyID, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), revocationTimeout)
	defer cancel()
	if err := b.rev.Check(ctx, cert); err != nil {
		if errors.Is(err, session.ErrCertRevoked) {
			return reject(ReasonRevoked, nil)
		}
		// Store down or anything unexpected: deny (fail closed).
		if !errors.Is(err, store.ErrUnavailable) {
			b.log.Error("revocation check returned an unexpected error", "err", err)
		}
		return reject(ReasonRevocationUnknown, err)
	}
	perms := &ssh.Permissions{
		// Returned so x/crypto enforces source-address itself as well.
		CriticalOptions: map[string]string{},
		Extensions:      map[string]string{permKeyFP: ssh.FingerprintSHA256(cert)},
		ExtraData:       map[any]any{certKey{}: cert},
	}
	if sa, ok := cert.CriticalOptions[session.OptSourceAddress]; ok {
		perms.CriticalOptions[session.OptSourceAddress] = sa
	}
	return perms, nil
}

// verifiedKeyCallback runs only after the client signed with key. It
// accepts the Permissions only if they were made for this very key.
func (b *Bastion) verifiedKeyCallback(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	src := sourceAddr(meta.RemoteAddr())
	cert, _ := key.(*ssh.Certificate)
	if !permsBoundTo(perms, key) {
		b.auditAuth(meta, src, key, cert, audit.Deny, ReasonBindingMismatch, nil)
		return nil, errAuth
	}
	perms.Extensions[permVerified] = perms.Extensions[permKeyFP]
	b.auditAuth(meta, src, key, cert, audit.Allow, ReasonAuthenticated, nil)
	if next := b.sessionMFA(meta, src, cert, perms); next != nil {
		return nil, next
	}
	return perms, nil
}

// permsBoundTo reports whether perms were issued by publicKeyCallback for
// key: the fingerprint recorded in them and the certificate they carry
// are both key.
func permsBoundTo(perms *ssh.Permissions, key ssh.PublicKey) bool {
	if perms == nil || key == nil || perms.Extensions == nil {
		return false
	}
	fp := ssh.FingerprintSHA256(key)
	cert, _ := perms.ExtraData[certKey{}].(*ssh.Certificate)
	return perms.Extensions[permKeyFP] == fp && cert != nil && ssh.FingerprintSHA256(cert) == fp
}

// verifiedCert returns the certificate of a finished authentication, or
// nil unless VerifiedPublicKeyCallback marked exactly that certificate.
func verifiedCert(perms *ssh.Permissions) *ssh.Certificate {
	if perms == nil || perms.Extensions == nil {
		return nil
	}
	cert, _ := perms.ExtraData[certKey{}].(*ssh.Certificate)
	if cert == nil {
		return nil
	}
	fp := ssh.FingerprintSHA256(cert)
	if perms.Extensions[permVerified] != fp || perms.Extensions[permKeyFP] != fp {
		return nil
	}
	return cert
}

func (b *Bastion) auditAuth(meta ssh.ConnMetadata, src netip.Addr, key ssh.PublicKey, cert *ssh.Certificate, decision, reason string, detail error) {
	login, tgt, _ := splitUser(meta.User())
	ev := audit.Event{
		Type:     TypeSSHAuth,
		SourceIP: addrString(src),
		Target:   tgt,
		Decision: decision,
		Reason:   reason,
		Attrs:    map[string]string{"login": login},
	}
	if key != nil {
		ev.Attrs["key_type"] = key.Type()
		ev.Attrs["key_fp"] = ssh.FingerprintSHA256(key)
	}
	if cert != nil {
		ev.Attrs["cert_serial"] = strconv.FormatUint(cert.Serial, 10)
		if decision == audit.Allow {
			ev.UserID = cert.KeyId
		} else {
			// Not verified: a claim, never an identity.
			ev.Attrs["claimed_key_id"] = cert.KeyId
		}
	}
	b.audit.Emit(context.Background(), ev)
	if detail != nil {
		b.log.Info("ssh authentication refused", "reason", reason, "source_ip", ev.SourceIP, "err", detail)
	}
}

// splitUser splits "login@target" at the LAST '@' (as OpenSSH splits
// user and host). Without '@' the whole name is the user asking for the
// target list (target ""). Both parts must be well formed.
func splitUser(u string) (login, target string, ok bool) {
	i := strings.LastIndexByte(u, '@')
	if i < 0 {
		return u, "", validLogin(u)
	}
	login, target = u[:i], u[i+1:]
	return login, target, validLogin(login) && validTargetName(target)
}

// validLogin accepts portable user names (letters, digits, '.', '_', '-'
// and '@' for directory-style names), not starting with '-'.
func validLogin(s string) bool {
	if s == "" || len(s) > 256 || s[0] == '-' {
		return false
	}
	for _, r := range s {
		switch {
		case r == '.', r == '_', r == '-', r == '@',
			r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		default:
			return false
		}
	}
	return true
}

func sourceAllowed(list string, src netip.Addr) bool {
	prefixes, err := session.ParseSourceAddress(list)
	if err != nil || !src.IsValid() {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// MFAVerifier checks a TOTP code (mfa.Manager). Errors other than a wrong
// code must wrap store.ErrUnavailable; every error denies.
type MFAVerifier interface {
	Verify(ctx context.Context, userID, code string) error
}

// permSessionMFA marks Permissions whose connection also passed a
// per-session TOTP check (value: the certificate's fingerprint).
const permSessionMFA = "portcullis-session-mfa"

// Per-session MFA reason codes.
const (
	ReasonSessionMFAOK     = "per-session-mfa-verified"
	ReasonSessionMFAFailed = "per-session-mfa-failed"
)

// sessionMFA returns, when a role granting this connection requires a
// TOTP code on every connection, the keyboard-interactive step that asks
// for it; nil when none is needed or no verifier is configured (the
// decision then denies with ReasonPerSessionMFA).
func (b *Bastion) sessionMFA(meta ssh.ConnMetadata, src netip.Addr, cert *ssh.Certificate, perms *ssh.Permissions) error {
	login, tgt, _ := splitUser(meta.User())
	if b.mfa == nil || tgt == "" {
		return nil
	}
	dec, _ := b.decide(b.policy.Load(), accessFor(cert, src, tgt, login))
	if dec.Reason != ReasonPerSessionMFA {
		return nil
	}
	fp := perms.Extensions[permKeyFP]
	return &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
		KeyboardInteractiveCallback: func(meta ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			answers, err := client("", "Portcullis: your role asks for a one-time code on every connection.",
				[]string{"TOTP code: "}, []bool{false})
			if err != nil || len(answers) != 1 {
				return nil, errAuth
			}
			ctx, cancel := context.WithTimeout(context.Background(), revocationTimeout)
			defer cancel()
			// The code itself is never logged or audited.
			if err := b.mfa.Verify(ctx, cert.KeyId, strings.TrimSpace(answers[0])); err != nil {
				b.auditAuth(meta, src, cert, cert, audit.Deny, ReasonSessionMFAFailed, err)
				return nil, errAuth
			}
			b.auditAuth(meta, src, cert, cert, audit.Allow, ReasonSessionMFAOK, nil)
			perms.Extensions[permSessionMFA] = fp
			return perms, nil
		},
	}}
}

// sessionMFAVerified reports whether perms record a per-session TOTP check
// for cert.
func sessionMFAVerified(perms *ssh.Permissions, cert *ssh.Certificate) bool {
	return perms != nil && perms.Extensions[permSessionMFA] == ssh.FingerprintSHA256(cert)
}
