package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/store"
)

// The JSON of just-in-time access on the wire (the frozen HTTP contract):
// durations as Go duration strings, times in RFC 3339 UTC, lists never
// null. It is kept apart from authz/access's storage encoding so that
// neither can change the other by accident.

type decisionJSON struct {
	UserID string    `json:"user_id"`
	At     time.Time `json:"at"`
	Note   string    `json:"note"`
}

type requestJSON struct {
	ID                string         `json:"id"`
	UserID            string         `json:"user_id"`
	Role              string         `json:"role"`
	Duration          string         `json:"duration"`
	Reason            string         `json:"reason"`
	CreatedAt         time.Time      `json:"created_at"`
	ExpiresAt         time.Time      `json:"expires_at"`
	State             string         `json:"state"`
	Approvals         []decisionJSON `json:"approvals"`
	ApprovalsRequired int            `json:"approvals_required"`
	Denial            *decisionJSON  `json:"denial"`
	GrantID           string         `json:"grant_id"`
}

type grantJSON struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Role      string    `json:"role"`
	Source    string    `json:"source"`
	RequestID string    `json:"request_id"`
	Start     time.Time `json:"start"`
	Expires   string    `json:"expires,omitempty"` // RFC 3339; absent = until revoked
	CreatedBy string    `json:"created_by"`
	Reason    string    `json:"reason"`
}

func decisionWire(d access.Decision) decisionJSON {
	return decisionJSON{UserID: d.UserID, At: d.At.UTC(), Note: d.Note}
}

func requestWire(r access.Request) requestJSON {
	out := requestJSON{
		ID: r.ID, UserID: r.UserID, Role: r.Role, Duration: r.Duration.String(), Reason: r.Reason,
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(), State: string(r.State),
		Approvals: make([]decisionJSON, 0, len(r.Approvals)), ApprovalsRequired: r.Needed, GrantID: r.GrantID,
	}
	for _, d := range r.Approvals {
		out.Approvals = append(out.Approvals, decisionWire(d))
	}
	if r.Denial != nil {
		d := decisionWire(*r.Denial)
		out.Denial = &d
	}
	return out
}

func requestsWire(rs []access.Request) []requestJSON {
	out := make([]requestJSON, 0, len(rs))
	for _, r := range rs {
		out = append(out, requestWire(r))
	}
	return out
}

func grantWire(g access.Grant) grantJSON {
	out := grantJSON{
		ID: g.ID, UserID: g.UserID, Role: g.Role, Source: g.Source, RequestID: g.RequestID,
		Start: g.Start.UTC(), CreatedBy: g.CreatedBy, Reason: g.Reason,
	}
	if !g.Expires.IsZero() {
		out.Expires = g.Expires.UTC().Format(time.RFC3339Nano) // as precise as start
	}
	return out
}

func grantsWire(gs []access.Grant) []grantJSON {
	out := make([]grantJSON, 0, len(gs))
	for _, g := range gs {
		out = append(out, grantWire(g))
	}
	return out
}

// apiError is the body of a refused user-API (and access admin-API) call:
// a short generic message, a stable reason code where it helps the
// caller, and the reference that finds the cause in the log.
type apiError struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
	Ref    string `json:"ref"`
}

// accessFailure maps an access.Manager error to the answer: status, the
// public message and the reason code. Store failures are 503 (deny by
// default), anything unknown 500.
func accessFailure(err error) (int, string, string) {
	switch {
	case errors.Is(err, access.ErrSelfApproval):
		return http.StatusForbidden, "forbidden", "self-approval"
	case errors.Is(err, access.ErrNotApprover):
		return http.StatusForbidden, "forbidden", "not-approver"
	case errors.Is(err, access.ErrNotRequester):
		return http.StatusForbidden, "forbidden", "not-requester"
	case errors.Is(err, access.ErrNotRequestable):
		return http.StatusForbidden, "forbidden", "not-requestable"
	case errors.Is(err, access.ErrAlreadyDecided):
		return http.StatusConflict, "conflict", "already-decided"
	case errors.Is(err, access.ErrDuplicateApproval):
		return http.StatusConflict, "conflict", "duplicate-approval"
	case errors.Is(err, access.ErrAlreadyPending):
		return http.StatusConflict, "conflict", "already-pending"
	case errors.Is(err, access.ErrInvalid):
		return http.StatusBadRequest, "bad request", "invalid-input"
	case errors.Is(err, access.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not found", reasonNotFound
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, store.ErrUnavailable.Error(), reasonStoreDown
	default:
		return http.StatusInternalServerError, "internal error", reasonInternal
	}
}

// auditedByManager reports whether the access manager has already audited
// the refusal err (its rule refusals of a decision, and every refusal of a
// submission): the gateway then only answers, so the trail holds one
// record per refused action.
func auditedByManager(err error, submit bool) bool {
	for _, e := range []error{access.ErrSelfApproval, access.ErrNotApprover, access.ErrDuplicateApproval,
		access.ErrAlreadyDecided, access.ErrNotRequestable, access.ErrNotRequester, access.ErrAlreadyPending} {
		if errors.Is(err, e) {
			return true
		}
	}
	return submit && errors.Is(err, access.ErrInvalid)
}

// maxAccessIDLen bounds a request, grant or recording ID from a path.
const maxAccessIDLen = 128

// validAccessID accepts the IDs access and the bastion generate
// ([A-Za-z0-9_-], bounded): nothing else reaches the store or a file
// name.
func validAccessID(id string) bool {
	if id == "" || len(id) > maxAccessIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// maxDurationLen bounds a duration string before parsing.
const maxDurationLen = 32

// parseRequestDuration parses a requested duration ("2h", "90m"); the
// manager checks it against the role's maximum.
func parseRequestDuration(s string) (time.Duration, error) {
	if s == "" || len(s) > maxDurationLen {
		return 0, errors.New("duration must be like 2h or 90m")
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("duration must be a positive Go duration like 2h or 90m")
	}
	return d, nil
}
