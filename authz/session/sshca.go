package session

// The SSH user CA. After a web login (OIDC + TOTP) the gateway asks the CA
// for a short-lived OpenSSH user certificate for a public key the client
// generated; the bastion trusts the CA's public key and takes the user's
// identity from the certificate (key ID = user ID, principals = logins,
// roles in an extension). Nothing here is long-lived: the longest
// certificate lives MaxCertTTL, so revocation records (sshca_revoke.go)
// only have to outlive that.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// Certificate extensions and limits shared with the bastion.
const (
	// ExtRoles carries the user's role names (comma separated) in the
	// certificate. The CA signs it, so the bastion may trust it exactly as
	// it trusts the key ID.
	ExtRoles = "portcullis-roles@portcullis"
	// ExtWebSession carries the public ID of the web session the
	// certificate was issued from, so revoking that session ends the SSH
	// sessions opened with it.
	ExtWebSession = "portcullis-session@portcullis"

	// Standard OpenSSH extensions the CA sets only when a role allows.
	ExtPermitPTY            = "permit-pty"
	ExtPermitPortForwarding = "permit-port-forwarding"
	ExtPermitAgentForward   = "permit-agent-forwarding"

	// OptSourceAddress is the OpenSSH critical option binding a
	// certificate to client addresses.
	OptSourceAddress = "source-address"

	// MaxCertTTL caps every certificate's lifetime whatever the request
	// says (the longest max_session_ttl default).
	MaxCertTTL = 8 * time.Hour
	// CertBackdate is how far before issuance ValidAfter lies, so a
	// bastion whose clock is slightly behind accepts a fresh certificate.
	// The issuance time of one of our certificates is therefore
	// ValidAfter + CertBackdate.
	CertBackdate = time.Minute

	maxPrincipals = 256
	maxFieldLen   = 1024
)

// Errors returned by Issue. They name the refused input without echoing it.
var (
	ErrCertRequest = errors.New("sshca: invalid certificate request")
)

// SSHCAOptions are the CA's injected dependencies.
type SSHCAOptions struct {
	Now    func() time.Time // default time.Now
	Rand   io.Reader        // serials and nonces; default crypto/rand.Reader
	Logger *slog.Logger     // default: discard
}

// withDefaults fills unset dependencies: wall clock, crypto/rand, a
// discarding logger.
func (o SSHCAOptions) withDefaults() SSHCAOptions {
	d := SSHCAOptions{Now: time.Now, Rand: rand.Reader, Logger: slog.New(slog.DiscardHandler)}
	if o.Now != nil {
		d.Now = o.Now
	}
	if o.Rand != nil {
		d.Rand = o.Rand
	}
	if o.Logger != nil {
		d.Logger = o.Logger
	}
	return d
}

// CertRequest asks for one user certificate. Everything in it must come
// from a verified web session (identity, roles) and the policy (logins,
// TTL, permissions), never from the client.
type CertRequest struct {
	PublicKey  ssh.PublicKey
	UserID     string   // becomes the key ID
	Principals []string // logins the user's roles allow; never empty
	Roles      []string // role names, carried in ExtRoles
	// TTL is the certificate lifetime, capped at MaxCertTTL; callers pass
	// the roles' max_session_ttl.
	TTL time.Duration
	// WebSessionID is the public ID of the web session asking (optional;
	// carried in ExtWebSession).
	WebSessionID string
	// SourceAddress, when set, is a comma-separated list of addresses or
	// CIDR prefixes the certificate may be used from (the login IP).
	SourceAddress        string
	PermitPTY            bool
	PermitPortForwarding bool
	// PermitAgentForwarding sets the OpenSSH extension for servers that
	// trust this CA directly; the bastion decides agent forwarding from
	// the role alone.
	PermitAgentForwarding bool
}

// SSHCA issues short-lived OpenSSH user certificates. It is safe for
// concurrent use.
type SSHCA struct {
	signer ssh.Signer
	now    func() time.Time
	rand   io.Reader
	log    *slog.Logger
}

// NewSSHCA returns a CA signing with signer. The CA key must be a plain key:
// a certificate can never be an authority (OpenSSH and x/crypto both refuse
// to verify such chains, and accepting one would make the trust anchor
// whatever signed it).
func NewSSHCA(signer ssh.Signer, opts SSHCAOptions) (*SSHCA, error) {
	if signer == nil || signer.PublicKey() == nil {
		return nil, errors.New("sshca: no signing key")
	}
	if _, isCert := signer.PublicKey().(*ssh.Certificate); isCert {
		return nil, errors.New("sshca: the CA key must not be a certificate")
	}
	opts = opts.withDefaults()
	ca := &SSHCA{signer: signer, now: opts.Now, rand: opts.Rand, log: opts.Logger}
	return ca, nil
}

// PublicKey is the CA's public key, for the bastion's trusted user CAs
// (and an OpenSSH TrustedUserCAKeys line).
func (ca *SSHCA) PublicKey() ssh.PublicKey { return ca.signer.PublicKey() }

// Issue signs a user certificate for req: key ID = UserID, a random
// non-zero 64-bit serial, valid from now-CertBackdate to now+TTL (TTL capped
// at MaxCertTTL). It refuses empty principals (an empty list would mean
// "any login" to OpenSSH), a key that is itself a certificate, the CA's own
// key, and malformed names.
func (ca *SSHCA) Issue(req CertRequest) (*ssh.Certificate, error) {
	if err := checkCertRequest(&req); err != nil {
		return nil, err
	}
	if keysEqual(req.PublicKey, ca.signer.PublicKey()) {
		return nil, fmt.Errorf("%w: refusing to certify the CA key", ErrCertRequest)
	}
	serial, err := randomSerial(ca.rand)
	if err != nil {
		return nil, fmt.Errorf("sshca: drawing a serial: %w", err)
	}
	ttl := min(req.TTL, MaxCertTTL)
	now := ca.now()
	cert := &ssh.Certificate{
		Key:             req.PublicKey,
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           req.UserID,
		ValidPrincipals: dedupe(req.Principals),
		ValidAfter:      unixTime(now.Add(-CertBackdate)),
		ValidBefore:     unixTime(now.Add(ttl)),
		Permissions: ssh.Permissions{
			CriticalOptions: map[string]string{},
			Extensions:      map[string]string{ExtRoles: strings.Join(dedupe(req.Roles), ",")},
		},
	}
	if req.SourceAddress != "" {
		cert.CriticalOptions[OptSourceAddress] = req.SourceAddress
	}
	if req.WebSessionID != "" {
		cert.Extensions[ExtWebSession] = req.WebSessionID
	}
	for ext, on := range map[string]bool{
		ExtPermitPTY:            req.PermitPTY,
		ExtPermitPortForwarding: req.PermitPortForwarding,
		ExtPermitAgentForward:   req.PermitAgentForwarding,
	} {
		if on {
			cert.Extensions[ext] = ""
		}
	}
	if err := cert.SignCert(ca.rand, ca.signer); err != nil {
		return nil, fmt.Errorf("sshca: signing: %w", err)
	}
	ca.log.Info("ssh certificate issued", "key_id", req.UserID, "serial", serial,
		"principals", len(cert.ValidPrincipals), "valid_before", now.Add(ttl))
	return cert, nil
}

// checkCertRequest validates req in place (SourceAddress is normalised).
func checkCertRequest(req *CertRequest) error {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrCertRequest, what) }
	switch {
	case req.PublicKey == nil:
		return bad("no public key")
	case isCertificate(req.PublicKey):
		return bad("the key is a certificate")
	case !validName(req.UserID, false):
		return bad("invalid user ID")
	case req.WebSessionID != "" && !validName(req.WebSessionID, true):
		return bad("invalid web session ID")
	case len(req.Principals) == 0:
		return bad("no principals")
	case len(req.Principals) > maxPrincipals || len(req.Roles) > maxPrincipals:
		return bad("too many principals or roles")
	case req.TTL <= 0:
		return bad("non-positive TTL")
	}
	for _, p := range req.Principals {
		if !validName(p, true) {
			return bad("invalid principal")
		}
	}
	for _, r := range req.Roles {
		if !validName(r, true) {
			return bad("invalid role name")
		}
	}
	if req.SourceAddress != "" {
		norm, err := NormalizeSourceAddress(req.SourceAddress)
		if err != nil {
			return bad("invalid source address")
		}
		req.SourceAddress = norm
	}
	return nil
}

// NormalizeSourceAddress parses an OpenSSH source-address list (comma
// separated addresses or CIDR prefixes) and returns it in canonical form
// with IPv4-mapped addresses unmapped.
func NormalizeSourceAddress(s string) (string, error) {
	prefixes, err := ParseSourceAddress(s)
	if err != nil {
		return "", err
	}
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return strings.Join(out, ","), nil
}

// ParseSourceAddress parses an OpenSSH source-address list into prefixes
// (single addresses become /32 or /128). Empty entries are errors.
func ParseSourceAddress(s string) ([]netip.Prefix, error) {
	if s == "" {
		return nil, errors.New("empty source address")
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxPrincipals {
		return nil, errors.New("too many source addresses")
	}
	out := make([]netip.Prefix, 0, len(parts))
	for _, part := range parts {
		var p netip.Prefix
		if strings.Contains(part, "/") {
			pp, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, err
			}
			if pp.Addr().Is4In6() {
				if pp.Bits() < 96 {
					return nil, fmt.Errorf("source address %q: mapped prefix too short", part)
				}
				pp = netip.PrefixFrom(pp.Addr().Unmap(), pp.Bits()-96)
			}
			p = pp.Masked()
		} else {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, err
			}
			a = a.Unmap().WithZone("")
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p)
	}
	return out, nil
}

// validName accepts non-empty UTF-8 without control characters, bounded in
// length; list members (principals, roles) must not contain commas either,
// since OpenSSH and ExtRoles join them with commas.
func validName(s string, member bool) bool {
	if s == "" || len(s) > maxFieldLen || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r < ' ' || r == 0x7f || (member && r == ',')
	})
}

func isCertificate(k ssh.PublicKey) bool {
	_, ok := k.(*ssh.Certificate)
	return ok
}

func keysEqual(a, b ssh.PublicKey) bool {
	return string(a.Marshal()) == string(b.Marshal())
}

// randomSerial draws a non-zero serial: zero is what a forgotten serial
// looks like, and a revocation by serial must never match "unset".
func randomSerial(r io.Reader) (uint64, error) {
	var b [8]byte
	for range 8 {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		if s := binary.BigEndian.Uint64(b[:]); s != 0 {
			return s, nil
		}
	}
	return 0, errors.New("randomness source returns zeros")
}

func unixTime(t time.Time) uint64 {
	if u := t.Unix(); u > 0 {
		return uint64(u)
	}
	return 0
}

func dedupe(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// RolesFromCert returns the role names carried in cert's ExtRoles
// extension (nil when absent or empty).
func RolesFromCert(cert *ssh.Certificate) []string {
	v := cert.Extensions[ExtRoles]
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// IssuedAt is when one of our certificates was issued (ValidAfter +
// CertBackdate): the moment the user last completed OIDC + TOTP.
func IssuedAt(cert *ssh.Certificate) time.Time {
	return time.Unix(int64(min(cert.ValidAfter, 1<<62)), 0).Add(CertBackdate)
}
