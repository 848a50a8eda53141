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
// certificate alone — also for the risk engine: a certificate of our CA
// that is refused counts against its key ID only once the client signed
// with it (risk.go).

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
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// Permissions keys set during authentication.
const (
	permKeyFP    = "portcullis-key-fp"   // fingerprint of the certificate this Permissions is for
	permVerified = "portcullis-verified" // same, set only once its signature verified
	permRefused  = "portcullis-refused"  // reason: our CA's certificate, refused (never authenticates)
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

// publicKeyCallback checks a key the client offers (stateless; the
// connection's authConn.publicKey calls it). A certificate of a trusted
// CA whose CA signature verifies but which is refused for another reason
// (revoked, expired, wrong principal …) gets Permissions marked
// permRefused instead of an error: the refusal is then counted against
// its key ID once the client has signed with it (authConn.verifiedKey),
// and those Permissions never authenticate.
func (b *Bastion) publicKeyCallback(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	src := sourceAddr(meta.RemoteAddr())
	login, tgt, ok := splitUser(meta.User())
	cert, _ := key.(*ssh.Certificate)
	reject := func(reason string, detail error) (*ssh.Permissions, error) {
		b.auditAuth(meta, src, key, cert, audit.Deny, reason, detail)
		return nil, errAuth
	}
	perms := func() *ssh.Permissions {
		return &ssh.Permissions{
			CriticalOptions: map[string]string{},
			Extensions:      map[string]string{permKeyFP: ssh.FingerprintSHA256(cert)},
			ExtraData:       map[any]any{certKey{}: cert},
		}
	}
	refuse := func(reason string, detail error) (*ssh.Permissions, error) {
		if cert.KeyId == "" {
			return reject(reason, detail)
		}
		b.auditAuth(meta, src, key, cert, audit.Deny, reason, detail)
		p := perms()
		p.Extensions[permRefused] = reason
		return p, nil
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
	if err := caSignature(cert); err != nil {
		// Not our CA's statement: nobody's identity.
		return reject(ReasonBadCertificate, err)
	}
	if cert.KeyId == "" {
		return reject(ReasonNoKeyID, nil)
	}
	// x/crypto treats an empty principal list as "any user"; for us it is
	// a malformed certificate.
	if len(cert.ValidPrincipals) == 0 || slices.Contains(cert.ValidPrincipals, "") {
		return refuse(ReasonEmptyPrincipals, nil)
	}
	principal := login
	if tgt == "" {
		// Listing mode reaches no target: the certificate must be valid,
		// but the user name is not a login.
		principal = cert.ValidPrincipals[0]
	} else if !slices.Contains(cert.ValidPrincipals, login) {
		return refuse(ReasonPrincipal, nil)
	}
	now := b.now().Unix()
	switch {
	case cert.ValidAfter > 1<<62 || now < int64(cert.ValidAfter):
		return refuse(ReasonNotYetValid, nil)
	case cert.ValidBefore == ssh.CertTimeInfinity || cert.ValidBefore > 1<<62 ||
		cert.ValidBefore < cert.ValidAfter ||
		time.Duration(cert.ValidBefore-cert.ValidAfter)*time.Second > maxCertLifetime:
		return refuse(ReasonNoExpiry, nil)
	case now >= int64(cert.ValidBefore):
		return refuse(ReasonExpired, nil)
	}
	checker := ssh.CertChecker{
		SupportedCriticalOptions: []string{session.OptSourceAddress},
		Clock:                    b.now,
	}
	if err := checker.CheckCert(principal, cert); err != nil {
		// Unknown critical options (the signature verified above).
		return refuse(ReasonBadCertificate, err)
	}
	if sa, ok := cert.CriticalOptions[session.OptSourceAddress]; ok && !sourceAllowed(sa, src) {
		return refuse(ReasonSourceAddress, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), revocationTimeout)
	defer cancel()
	if err := b.rev.Check(ctx, cert); err != nil {
		if errors.Is(err, session.ErrCertRevoked) {
			return refuse(ReasonRevoked, nil)
		}
		// Store down or anything unexpected: deny (fail closed).
		if !errors.Is(err, store.ErrUnavailable) {
			b.log.Error("revocation check returned an unexpected error", "err", err)
		}
		return reject(ReasonRevocationUnknown, err)
	}
	p := perms()
	// Returned so x/crypto enforces source-address itself as well.
	if sa, ok := cert.CriticalOptions[session.OptSourceAddress]; ok {
		p.CriticalOptions[session.OptSourceAddress] = sa
	}
	return p, nil
}

// caSignature verifies cert's CA signature alone (x/crypto checks it last,
// after principals and validity), so that a refusal can tell our CA's
// certificates from forgeries.
func caSignature(cert *ssh.Certificate) error {
	opts := make([]string, 0, len(cert.CriticalOptions))
	for k := range cert.CriticalOptions {
		opts = append(opts, k)
	}
	principal := ""
	if len(cert.ValidPrincipals) > 0 {
		principal = cert.ValidPrincipals[0]
	}
	at := time.Unix(int64(cert.ValidAfter), 0)
	c := ssh.CertChecker{SupportedCriticalOptions: opts, Clock: func() time.Time { return at }}
	return c.CheckCert(principal, cert)
}

// publicKey is the connection's PublicKeyCallback.
func (a *authConn) publicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if a.refused {
		return nil, errAuth
	}
	a.noteUser(meta)
	return a.b.publicKeyCallback(meta, key)
}

// verifiedKey is the connection's VerifiedPublicKeyCallback: it runs only
// after the client signed with key, and accepts the Permissions only if
// they were made for this very key. The certificate's key ID is now who
// is trying: canary touches, locks and refusals are theirs.
func (a *authConn) verifiedKey(meta ssh.ConnMetadata, key ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	b := a.b
	if a.refused {
		return nil, errAuth
	}
	src := a.src
	if !src.IsValid() {
		src = sourceAddr(meta.RemoteAddr())
	}
	cert, _ := key.(*ssh.Certificate)
	if !permsBoundTo(perms, key) {
		b.auditAuth(meta, src, key, cert, audit.Deny, ReasonBindingMismatch, nil)
		return nil, errAuth
	}
	userID := cert.KeyId
	if a.canary != "" {
		return nil, a.fireCanary(meta, userID)
	}
	v, err := a.gate(userID)
	if err := a.obey(meta, userID, v, err); err != nil {
		return nil, err
	}
	if perms.Extensions[permRefused] != "" {
		// Our CA's certificate, refused (audited when offered): one
		// failure per certificate and connection.
		fp := perms.Extensions[permKeyFP]
		if a.failedCerts[fp] {
			return nil, errAuth
		}
		a.failedCerts[fp] = true
		v, err := a.fail(risk.SignalSSHAuthFailure, userID)
		if err := a.obey(meta, userID, v, err); err != nil {
			return nil, err
		}
		return nil, errAuth
	}
	perms.Extensions[permVerified] = perms.Extensions[permKeyFP]
	a.accepted = true
	b.auditAuth(meta, src, key, cert, audit.Allow, ReasonAuthenticated, nil)
	return a.secondFactor(meta, cert, perms)
}

// permsBoundTo reports whether perms were issued by publicKeyCallback for
// key: the fingerprint recorded in them and the certificate they carry
// are both key.
func permsBoundTo(perms *ssh.Permissions, key ssh.PublicKey) bool {
	if perms == nil || key == nil || perms.Extensions == nil {
		return false
	}
	if _, ok := key.(*ssh.Certificate); !ok {
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
	if perms.Extensions[permVerified] != fp || perms.Extensions[permKeyFP] != fp || perms.Extensions[permRefused] != "" {
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

// MFAVerifier checks TOTP codes (mfa.Manager). Errors other than a wrong
// code must wrap store.ErrUnavailable; every error denies.
type MFAVerifier interface {
	Verify(ctx context.Context, userID, code string) error
	// Enrolled tells whether userID has TOTP at all (a step-up is only
	// asked of users who can answer it).
	Enrolled(ctx context.Context, userID string) (bool, error)
}

// permSessionMFA marks Permissions whose connection also passed a
// per-session TOTP check (value: the certificate's fingerprint).
const permSessionMFA = "portcullis-session-mfa"

// Per-session MFA reason codes.
const (
	ReasonSessionMFAOK     = "per-session-mfa-verified"
	ReasonSessionMFAFailed = "per-session-mfa-failed"
)

// secondFactor runs after the first factor (certificate or approval) of
// cert's user was accepted: it asks the risk engine about the login and
// returns perms when nothing more is needed, or the keyboard-interactive
// step asking for a TOTP code — when a role granting this connection
// requires one on every connection, or when the risk engine asks for a
// step-up (a network new for the user). A step-up is denied outright
// when the user has no TOTP to answer it with (deny by default: the
// step-up exists because the certificate alone is not trusted here).
func (a *authConn) secondFactor(meta ssh.ConnMetadata, cert *ssh.Certificate, perms *ssh.Permissions) (*ssh.Permissions, error) {
	b := a.b
	userID := cert.KeyId
	ctx, cancel := riskCtx(a.ctx)
	lr, err := b.risk.Assess(ctx, userID, a.src, "ssh")
	cancel()
	if err != nil {
		return nil, a.obey(meta, userID, risk.Verdict{}, err)
	}
	roleMFA := a.roleNeedsMFA(meta, cert)
	switch {
	case !lr.StepUp && !roleMFA:
		a.record(userID)
		return perms, nil
	case lr.StepUp && b.mfa == nil:
		a.auditRefusal(meta, userID, ReasonStepUpNoTOTP, "")
		return nil, a.refuse(stepUpNoVerifier)
	case b.mfa == nil:
		// The decision denies with ReasonPerSessionMFA.
		return perms, nil
	}
	ctx, cancel = riskCtx(a.ctx)
	enrolled, err := b.mfa.Enrolled(ctx, userID)
	cancel()
	switch {
	case err != nil:
		return nil, a.obey(meta, userID, risk.Verdict{}, err)
	case !enrolled && lr.StepUp:
		a.auditRefusal(meta, userID, ReasonStepUpNoTOTP, "")
		return nil, a.refuse(stepUpNoTOTP)
	case !enrolled:
		// Nothing to ask (and a code asked for would count as a wrong
		// guess): the decision denies with ReasonPerSessionMFA.
		return perms, nil
	}
	instruction := "Portcullis: your role asks for a one-time code on every connection."
	if lr.StepUp {
		instruction = "Portcullis: this login comes from a network new for your account; enter a one-time code from your authenticator."
	}
	src := a.src
	fp := perms.Extensions[permKeyFP]
	return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
		KeyboardInteractiveCallback: func(meta ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			if a.refused {
				return nil, errAuth
			}
			answers, err := client("", instruction, []string{"TOTP code: "}, []bool{false})
			if err != nil || len(answers) != 1 {
				return nil, errAuth
			}
			// Locked meanwhile (on any instance)? Ask before the code.
			v, err := a.gate(userID)
			if err := a.obey(meta, userID, v, err); err != nil {
				return nil, err
			}
			ctx, cancel := riskCtx(a.ctx)
			defer cancel()
			// The code itself is never logged or audited.
			if err := b.mfa.Verify(ctx, userID, strings.TrimSpace(answers[0])); err != nil {
				if errors.Is(err, store.ErrUnavailable) {
					return nil, a.obey(meta, userID, risk.Verdict{}, err)
				}
				b.auditAuth(meta, src, cert, cert, audit.Deny, ReasonSessionMFAFailed, err)
				v, err := a.fail(risk.SignalTOTPFailure, userID)
				if err := a.obey(meta, userID, v, err); err != nil {
					return nil, err
				}
				return nil, errAuth
			}
			b.auditAuth(meta, src, cert, cert, audit.Allow, ReasonSessionMFAOK, nil)
			perms.Extensions[permSessionMFA] = fp
			a.record(userID)
			return perms, nil
		},
	}}
}

// roleNeedsMFA reports whether a role granting this connection requires a
// TOTP code on every connection.
func (a *authConn) roleNeedsMFA(meta ssh.ConnMetadata, cert *ssh.Certificate) bool {
	login, tgt, _ := splitUser(meta.User())
	if tgt == "" {
		return false
	}
	dec, _ := a.b.decide(a.b.policy.Load(), a.b.accessFor(cert, a.src, tgt, login))
	return dec.Reason == ReasonPerSessionMFA
}

// sessionMFAVerified reports whether perms record a per-session TOTP check
// for cert.
func sessionMFAVerified(perms *ssh.Permissions, cert *ssh.Certificate) bool {
	return perms != nil && perms.Extensions[permSessionMFA] == ssh.FingerprintSHA256(cert)
}
