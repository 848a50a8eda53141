// Package access is just-in-time access: a user requests a policy role for
// a while with a reason, N distinct members of the role's approver roles
// approve (never the requester), and the approval creates a grant that
// starts then and ends by itself. Admins can also add standing ("local")
// grants and revoke any grant.
//
// Requests and grants are durable records in the shared store (kinds
// "access-request" and "access-grant"), updated by compare-and-swap so that
// several instances approving, expiring or revoking at once agree: exactly
// one approval flips a request to approved, exactly one instance deletes an
// expired grant and audits it. A grant's ID is its request's ID, so creating
// it twice (a retry, or Run's reconcile after a crash) is harmless.
//
// Enforcement never touches the store: every instance keeps an immutable
// snapshot of the grants in memory (Roles, GrantedUntil, CanReadAudit),
// reloaded on the "grants-changed" and "resync" feed events, and compares
// expiry with the caller's clock at use time, so an expired grant stops
// counting at once without any event. A missing or failed load means fewer
// roles, never more.
//
// Every change and every refused decision is audited (access.* types). The
// requester's reason and approvers' notes are user input: bounded,
// printable text, refused otherwise, because they reach audit attributes,
// admin pages and approver webhooks.
package access

import (
	"errors"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// Record kinds in the store.
const (
	KindRequest = "access-request"
	KindGrant   = "access-grant"
)

// EventGrantsChanged is the feed event kind published after a grant is
// added, revoked or expired (Subject = user ID).
const EventGrantsChanged = store.EventGrantsChanged

// Audit event types.
const (
	TypeRequest = "access.request"
	TypeApprove = "access.approve"
	TypeDeny    = "access.deny"
	TypeCancel  = "access.cancel"
	TypeGrant   = "access.grant"
	TypeRevoke  = "access.revoke"
	TypeExpire  = "access.expire"
)

// Errors. Store failures are passed through (they wrap
// store.ErrUnavailable): callers deny on them.
var (
	ErrNotFound          = errors.New("access: no such request or grant")
	ErrSelfApproval      = errors.New("access: a requester cannot decide their own request")
	ErrNotApprover       = errors.New("access: not an approver for this role")
	ErrNotRequestable    = errors.New("access: role cannot be requested")
	ErrAlreadyDecided    = errors.New("access: request is no longer pending")
	ErrDuplicateApproval = errors.New("access: already approved by this user")
	ErrInvalid           = errors.New("access: invalid input")
	// ErrNotRequester: only the requester may cancel a request.
	ErrNotRequester = errors.New("access: only the requester may cancel a request")
	// ErrAlreadyPending: the user already has a pending request for the
	// role (or too many pending requests).
	ErrAlreadyPending = errors.New("access: a request for this role is already pending")
	// ErrCorrupt: a stored record does not decode or is inconsistent. It
	// also wraps store.ErrUnavailable, so callers that deny on store
	// failures deny on it too.
	ErrCorrupt = errors.New("access: corrupt record")
)

// Person is a verified identity. Roles are the effective roles (base roles
// and active grants); approver eligibility is checked against them.
type Person struct {
	UserID string
	Roles  []string
}

// State of a request.
type State string

// Request states. Only pending requests can be decided.
const (
	StatePending   State = "pending"
	StateApproved  State = "approved"
	StateDenied    State = "denied"
	StateExpired   State = "expired" // nobody decided before ExpiresAt
	StateCancelled State = "cancelled"
)

// Decision is one approver's (or the denier's, canceller's, revoker's) act.
type Decision struct {
	UserID string    `json:"user_id"`
	At     time.Time `json:"at"`
	Note   string    `json:"note,omitempty"`
}

// Request is a request for a role.
type Request struct {
	ID        string        `json:"id"`
	UserID    string        `json:"user_id"`
	Role      string        `json:"role"`
	Duration  time.Duration `json:"duration"`
	Reason    string        `json:"reason"`
	CreatedAt time.Time     `json:"created_at"`
	ExpiresAt time.Time     `json:"expires_at"` // pending deadline
	State     State         `json:"state"`
	Approvals []Decision    `json:"approvals,omitempty"`
	Denial    *Decision     `json:"denial,omitempty"`
	// Needed is how many distinct approvals the role required when the
	// request was made (for "k/n" displays).
	Needed int `json:"needed"`
	// ClosedAt is when the request left pending (approved, denied,
	// cancelled, expired).
	ClosedAt time.Time `json:"closed_at,omitzero"`
	// Cancelled names who cancelled it (the requester).
	Cancelled *Decision `json:"cancelled,omitempty"`
	GrantID   string    `json:"grant_id,omitempty"` // set when approved (== ID)
	// Revoked is set when the grant made from this request was revoked:
	// reconcile must never recreate it.
	Revoked *Decision `json:"revoked,omitempty"`
}

// Grant sources.
const (
	SourceTemporary = "temporary" // from an approved request
	SourceLocal     = "local"     // added by an admin
)

// Grant gives UserID the policy role Role from Start until Expires.
type Grant struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Role      string    `json:"role"`
	Source    string    `json:"source"` // SourceTemporary or SourceLocal
	RequestID string    `json:"request_id,omitempty"`
	Start     time.Time `json:"start"`
	Expires   time.Time `json:"expires,omitzero"` // zero = until revoked (local only)
	CreatedBy string    `json:"created_by"`
	Reason    string    `json:"reason,omitempty"`
}

// Active reports whether g applies at now: from Start (inclusive) until
// Expires (exclusive).
func (g Grant) Active(now time.Time) bool {
	return !now.Before(g.Start) && (g.Expires.IsZero() || now.Before(g.Expires))
}

// ReadVerdict answers CanReadAudit.
type ReadVerdict struct {
	Allow  bool
	Reason string // ReasonAllowed, ReasonAuditorRequired or ReasonApprovalRequired
}

// CanReadAudit reason codes.
const (
	ReasonAllowed          = "allowed"
	ReasonAuditorRequired  = "auditor-role-required"
	ReasonApprovalRequired = "approval-required"
)

// Stable reason codes on audit events of refused or system actions.
const (
	codeSelfApproval   = "self-approval"
	codeNotApprover    = "not-approver"
	codeDuplicate      = "duplicate-approval"
	codeDecided        = "already-decided"
	codeNotRequestable = "not-requestable"
	codeNotRequester   = "not-requester"
	codeAlreadyPending = "already-pending"
	codeInvalid        = "invalid-input"
	codeAdminRevoke    = "admin-revoke"
	codeUserDeleted    = "user-deleted"
	codeRequestRevoked = "request-revoked"
	codeGrantExpired   = "grant-expired"
	codeRequestExpired = "request-expired"
	codeReconciled     = "reconciled"
)
