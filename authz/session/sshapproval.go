package session

// SSH connection approvals: the login for SSH clients without the
// portcullis tool. The bastion, facing a client with no acceptable
// certificate, records a pending approval (source IP, target, login) under
// a random one-time code and shows the user an URL on the gateway; the
// user signs in there (OIDC + TOTP) and approves or denies that exact
// connection; the bastion picks up the decision and continues as the
// approving user. Gateway and bastion never import each other, so the
// record format and its rules live here, next to the SSH CA.
//
// Store layout (Ephemeral, shared by every instance):
//
//	ssh-approval:<hex SHA-256(code)>           → pending SSHApproval
//	ssh-approval-decision:<hex SHA-256(code)>  → SSHApprovalDecision
//	ssh-approval-rate:<source IP>              → counter (Counters)
//
// The code is a bearer secret for the pending connection (whoever holds
// it can attach their identity to it), so the store keys are its hash
// and logs and audit events carry only ApprovalRef(code).
//
// Single use: Decide takes (atomically gets and deletes) the pending
// record before writing the decision, so one code is approved or denied
// at most once on any instance; Outcome takes the decision, so it
// completes at most one connection. An expired, unknown, already decided
// or malformed code gives the same ErrApprovalUnknown.

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// Approval limits.
const (
	// DefaultApprovalTTL is how long a pending approval waits.
	DefaultApprovalTTL = 5 * time.Minute
	// MaxApprovalTTL caps it whatever the caller asks.
	MaxApprovalTTL = 15 * time.Minute
	// DefaultApprovalsPerSource bounds the approvals one source IP may
	// create per DefaultApprovalTTL window: creating one costs nothing
	// but a TCP connection, so the store must not be an open sink.
	DefaultApprovalsPerSource = 20
)

const (
	approvalPrefix   = "ssh-approval:"
	decisionPrefix   = "ssh-approval-decision:"
	approvalRateKey  = "ssh-approval-rate:"
	approvalCodeLen  = 22                                 // base64url of 128 bits
	displayAlphabet  = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789" // no 0/O, 1/I
	approvalRefBytes = 8
)

var displayEncoding = base32.NewEncoding(displayAlphabet).WithPadding(base32.NoPadding)

// Approval errors. Neither says which check failed.
var (
	// ErrApprovalUnknown: no pending approval for this code (malformed,
	// unknown, expired, or already decided).
	ErrApprovalUnknown = errors.New("ssh approval: unknown, expired or already used code")
	// ErrApprovalRate: the source created too many approvals recently.
	ErrApprovalRate = errors.New("ssh approval: too many approval requests from this source")
	// ErrApprovalRequest: the request or decision is malformed.
	ErrApprovalRequest = errors.New("ssh approval: invalid request")
)

// SSHApproval is one connection waiting for a browser approval. The
// bastion fills SourceIP, Target and Login; Create fills the rest.
type SSHApproval struct {
	SourceIP string `json:"source_ip"`
	// Target is "" when the client asked for the list of targets.
	Target  string    `json:"target"`
	Login   string    `json:"login"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Display is the short code shown both in the terminal and on the
	// page (XXXX-XXXX), so the user can tell connections apart.
	Display string `json:"display"`
	// Instance is the bastion instance holding the connection.
	Instance string `json:"instance,omitempty"`
}

// SSHApprovalDecision is what the gateway records for the bastion. An
// approval carries the approving user's identity from their verified web
// session (with MFA); Request is the pending record it decided, so the
// bastion can check it approved exactly its own connection.
type SSHApprovalDecision struct {
	Approved     bool        `json:"approved"`
	UserID       string      `json:"user_id"`
	Roles        []string    `json:"roles,omitempty"`
	WebSessionID string      `json:"web_session_id,omitempty"`
	At           time.Time   `json:"at"`
	Request      SSHApproval `json:"request"`
}

// ApprovalStore is the part of store.Store approvals use.
type ApprovalStore interface {
	store.Ephemeral
	store.Counters
}

var _ ApprovalStore = (store.Store)(nil)

// SSHApprovals creates, shows, decides and collects approvals. It is
// safe for concurrent use; all state is in the store.
type SSHApprovals struct {
	st        ApprovalStore
	now       func() time.Time
	rand      io.Reader
	perSource int64
}

// NewSSHApprovals returns approvals kept in st (opts.Now and opts.Rand are
// used).
func NewSSHApprovals(st ApprovalStore, opts SSHCAOptions) (*SSHApprovals, error) {
	if st == nil {
		return nil, errors.New("ssh approval: a store is required")
	}
	opts = opts.withDefaults()
	return &SSHApprovals{st: st, now: opts.Now, rand: opts.Rand, perSource: DefaultApprovalsPerSource}, nil
}

// ApprovalRef is the public reference of a code for logs and audit
// events: a prefix of its hash, never the code itself.
func ApprovalRef(code string) string {
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:approvalRefBytes])
}

// ValidApprovalCode reports whether code has the shape Create produces
// (checked before it is hashed into a store key).
func ValidApprovalCode(code string) bool {
	if len(code) != approvalCodeLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(code)
	return err == nil
}

func approvalKey(code string) string {
	sum := sha256.Sum256([]byte(code))
	return approvalPrefix + hex.EncodeToString(sum[:])
}

func decisionKey(code string) string {
	sum := sha256.Sum256([]byte(code))
	return decisionPrefix + hex.EncodeToString(sum[:])
}

// Create records a pending approval for req, valid for ttl (capped at
// MaxApprovalTTL), and returns its one-time code and the stored record.
// Errors: ErrApprovalRequest, ErrApprovalRate, or the store's
// (store.ErrUnavailable: deny).
func (a *SSHApprovals) Create(ctx context.Context, req SSHApproval, ttl time.Duration) (string, SSHApproval, error) {
	src, err := netip.ParseAddr(req.SourceIP)
	switch {
	case err != nil || src.Zone() != "":
		return "", SSHApproval{}, fmt.Errorf("%w: source address", ErrApprovalRequest)
	case !validName(req.Login, true), req.Target != "" && !validName(req.Target, true):
		return "", SSHApproval{}, fmt.Errorf("%w: login or target", ErrApprovalRequest)
	case len(req.Instance) > maxFieldLen:
		return "", SSHApproval{}, fmt.Errorf("%w: instance", ErrApprovalRequest)
	case ttl <= 0:
		return "", SSHApproval{}, fmt.Errorf("%w: non-positive TTL", ErrApprovalRequest)
	}
	ttl = min(ttl, MaxApprovalTTL)
	src = src.Unmap()
	n, err := a.st.Incr(ctx, approvalRateKey+src.String(), 1, DefaultApprovalTTL)
	if err != nil {
		return "", SSHApproval{}, err
	}
	if n > a.perSource {
		return "", SSHApproval{}, ErrApprovalRate
	}
	var raw [16 + 5]byte
	if _, err := io.ReadFull(a.rand, raw[:]); err != nil {
		return "", SSHApproval{}, fmt.Errorf("ssh approval: randomness: %w", err)
	}
	code := base64.RawURLEncoding.EncodeToString(raw[:16])
	disp := displayEncoding.EncodeToString(raw[16:])
	now := a.now()
	rec := req
	rec.SourceIP = src.String()
	rec.Created, rec.Expires = now, now.Add(ttl)
	rec.Display = disp[:4] + "-" + disp[4:]
	b, err := json.Marshal(rec)
	if err != nil {
		return "", SSHApproval{}, err
	}
	if err := a.st.PutEphemeral(ctx, approvalKey(code), b, ttl); err != nil {
		return "", SSHApproval{}, err
	}
	return code, rec, nil
}

// Pending returns the pending approval named by code without using it up
// (for the approval page).
func (a *SSHApprovals) Pending(ctx context.Context, code string) (SSHApproval, error) {
	if !ValidApprovalCode(code) {
		return SSHApproval{}, ErrApprovalUnknown
	}
	raw, err := a.st.GetEphemeral(ctx, approvalKey(code))
	return a.decodePending(raw, err)
}

// decodePending turns a store answer into a live pending record.
func (a *SSHApprovals) decodePending(raw []byte, err error) (SSHApproval, error) {
	if errors.Is(err, store.ErrNotFound) {
		return SSHApproval{}, ErrApprovalUnknown
	} else if err != nil {
		return SSHApproval{}, err
	}
	var rec SSHApproval
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Login == "" {
		return SSHApproval{}, fmt.Errorf("%w: corrupt record", ErrApprovalUnknown)
	}
	// The store expires the record; this also bounds it by our clock.
	if !a.now().Before(rec.Expires) {
		return SSHApproval{}, fmt.Errorf("%w: expired", ErrApprovalUnknown)
	}
	return rec, nil
}

// Decide approves or denies the pending approval named by code, once. For
// an approval, d must carry the approving user's verified identity. It
// returns the decided record; ErrApprovalUnknown when there is nothing (or
// no longer anything) to decide.
func (a *SSHApprovals) Decide(ctx context.Context, code string, d SSHApprovalDecision) (SSHApproval, error) {
	if !ValidApprovalCode(code) {
		return SSHApproval{}, ErrApprovalUnknown
	}
	if d.Approved {
		switch {
		case !validName(d.UserID, false):
			return SSHApproval{}, fmt.Errorf("%w: user ID", ErrApprovalRequest)
		case d.WebSessionID != "" && !validName(d.WebSessionID, true):
			return SSHApproval{}, fmt.Errorf("%w: web session ID", ErrApprovalRequest)
		case len(d.Roles) > maxPrincipals:
			return SSHApproval{}, fmt.Errorf("%w: too many roles", ErrApprovalRequest)
		}
		for _, r := range d.Roles {
			if !validName(r, true) {
				return SSHApproval{}, fmt.Errorf("%w: role name", ErrApprovalRequest)
			}
		}
	}
	// Take first: whatever happens next, this code is decided once.
	rec, err := a.decodePending(a.st.TakeEphemeral(ctx, approvalKey(code)))
	if err != nil {
		return SSHApproval{}, err
	}
	d.At, d.Request = a.now(), rec
	d.Roles = slices.Clone(d.Roles)
	b, err := json.Marshal(d)
	if err != nil {
		return SSHApproval{}, err
	}
	ttl := max(rec.Expires.Sub(d.At), time.Second)
	if err := a.st.PutEphemeral(ctx, decisionKey(code), b, ttl); err != nil {
		return SSHApproval{}, err
	}
	return rec, nil
}

// Outcome collects the decision for code, once: ok is false while the
// approval is still undecided (or was never created).
func (a *SSHApprovals) Outcome(ctx context.Context, code string) (d SSHApprovalDecision, ok bool, err error) {
	if !ValidApprovalCode(code) {
		return d, false, ErrApprovalUnknown
	}
	raw, err := a.st.TakeEphemeral(ctx, decisionKey(code))
	if errors.Is(err, store.ErrNotFound) {
		return d, false, nil
	} else if err != nil {
		return d, false, err
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return SSHApprovalDecision{}, false, fmt.Errorf("%w: corrupt decision", ErrApprovalUnknown)
	}
	return d, true, nil
}

// Cancel forgets code (the connection gave up): a later Decide fails and a
// decision already made is dropped.
func (a *SSHApprovals) Cancel(ctx context.Context, code string) error {
	if !ValidApprovalCode(code) {
		return ErrApprovalUnknown
	}
	return errors.Join(a.st.DeleteEphemeral(ctx, approvalKey(code)), a.st.DeleteEphemeral(ctx, decisionKey(code)))
}

// Same reports whether d decided exactly the connection described by
// pending (source, target, login and creation time).
func (d SSHApprovalDecision) Same(pending SSHApproval) bool {
	r := d.Request
	return r.SourceIP == pending.SourceIP && r.Target == pending.Target && r.Login == pending.Login &&
		r.Created.Equal(pending.Created) && r.Display == pending.Display
}
