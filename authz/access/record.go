package access

import (
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz/store"
)

// Limits on identifiers that arrive from callers.
const (
	maxIDLen     = 64
	maxUserIDLen = 512
	maxRoleLen   = 128
)

// idEncoding is lower-case base32 without padding: IDs appear in URLs and
// commands, so they avoid case and punctuation.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns prefix + 26 random characters (128 bits).
func (m *Manager) newID(prefix string) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(m.rand, b[:]); err != nil {
		// Never fall back to a predictable ID: refuse instead.
		return "", fmt.Errorf("access: reading randomness: %w", err)
	}
	return prefix + idEncoding.EncodeToString(b[:]), nil
}

// validID reports whether id can name a request or grant: IDs are
// generated here, so anything else (empty, long, odd bytes) is refused
// before it reaches the store.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
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

// safeID returns id for logs when it is well-formed, else a placeholder
// (stored keys are not trusted).
func safeID(id string) string {
	if validID(id) {
		return id
	}
	return "(malformed)"
}

// validName reports whether s can be a role name: non-empty, bounded,
// printable, without spaces.
func validName(s string) bool {
	if s == "" || len(s) > maxRoleLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// validUserID reports whether s can be a user ID (issuer + subject, or an
// admin's ID): non-empty, bounded, valid UTF-8, printable.
func validUserID(s string) bool {
	return s != "" && len(s) <= maxUserIDLen && utf8.ValidString(s) && !hasControl(s) && printable(s)
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// checkText validates free text (a reason or a note) and returns it with
// surrounding spaces trimmed. It must be valid UTF-8 of at most
// MaxReasonLen bytes and printable: no control characters (newlines
// would forge log lines, escapes would drive terminals) and no format
// characters (bidirectional overrides would make an approver read
// something other than what is stored).
func checkText(what, s string, required bool) (string, error) {
	if len(s) > MaxReasonLen {
		return "", fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, what, MaxReasonLen)
	}
	if !utf8.ValidString(s) || !printable(s) {
		return "", fmt.Errorf("%w: %s must be printable text", ErrInvalid, what)
	}
	s = strings.TrimSpace(s)
	if required && s == "" {
		return "", fmt.Errorf("%w: %s is required", ErrInvalid, what)
	}
	return s, nil
}

func corrupt(kind, id, why string) error {
	return fmt.Errorf("%w: %w: %s %s: %s", store.ErrUnavailable, ErrCorrupt, kind, safeID(id), why)
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("access: encoding record: %w", err)
	}
	return b, nil
}

// requestRecord is a request as stored. Rev is random per write, so that
// after a SwapRecord that reported false, finding exactly the bytes we
// wrote proves that our write took effect (a retried write whose reply was
// lost), and never that another instance wrote the same content (two
// identical approvals by one approver in the same instant).
type requestRecord struct {
	Request
	Rev string `json:"rev,omitempty"`
}

func (m *Manager) encodeRequest(r Request) ([]byte, error) {
	rev, err := m.newID("")
	if err != nil {
		return nil, err
	}
	return encode(requestRecord{Request: r, Rev: rev})
}

// decodeRequest decodes and checks a stored request: a record that is not
// a well-formed request under its own key is an error, never a default.
func decodeRequest(id string, b []byte) (Request, error) {
	var rec requestRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return Request{}, corrupt(KindRequest, id, "not JSON")
	}
	r := rec.Request
	switch {
	case r.ID != id || !validID(r.ID):
		return Request{}, corrupt(KindRequest, id, "ID does not match its key")
	case !validUserID(r.UserID) || !validName(r.Role):
		return Request{}, corrupt(KindRequest, id, "bad user or role")
	case r.Duration <= 0 || r.Duration > MaxGrantDuration:
		return Request{}, corrupt(KindRequest, id, "bad duration")
	case r.CreatedAt.IsZero() || r.ExpiresAt.IsZero():
		return Request{}, corrupt(KindRequest, id, "missing times")
	case r.Needed < 1 || r.Needed > MaxApprovals || len(r.Approvals) > MaxApprovals:
		return Request{}, corrupt(KindRequest, id, "bad approval count")
	}
	switch r.State {
	case StatePending:
		// Approve closes a request the moment it has enough approvals:
		// a pending one with as many is not ours, and one more approval
		// would store more than MaxApprovals (a record nobody could
		// read again).
		if len(r.Approvals) >= r.Needed {
			return Request{}, corrupt(KindRequest, id, "pending with enough approvals")
		}
	case StateDenied, StateExpired, StateCancelled:
	case StateApproved:
		if len(r.Approvals) == 0 || r.GrantID != r.ID {
			return Request{}, corrupt(KindRequest, id, "approved without approvals")
		}
	default:
		return Request{}, corrupt(KindRequest, id, "unknown state")
	}
	for _, a := range r.Approvals {
		if a.UserID == r.UserID || a.At.IsZero() {
			return Request{}, corrupt(KindRequest, id, "bad approval")
		}
	}
	return r, nil
}

func decodeGrant(id string, b []byte) (Grant, error) {
	var g Grant
	if err := json.Unmarshal(b, &g); err != nil {
		return Grant{}, corrupt(KindGrant, id, "not JSON")
	}
	switch {
	case g.ID != id || !validID(g.ID):
		return Grant{}, corrupt(KindGrant, id, "ID does not match its key")
	case !validUserID(g.UserID) || !validName(g.Role):
		return Grant{}, corrupt(KindGrant, id, "bad user or role")
	case g.Start.IsZero():
		return Grant{}, corrupt(KindGrant, id, "missing start")
	case !g.Expires.IsZero() && !g.Expires.After(g.Start):
		return Grant{}, corrupt(KindGrant, id, "expires before it starts")
	}
	switch g.Source {
	case SourceLocal:
	case SourceTemporary:
		// A temporary grant without an end would be standing access
		// that no committee approved.
		if g.Expires.IsZero() || g.RequestID != g.ID || g.Expires.Sub(g.Start) > MaxGrantDuration {
			return Grant{}, corrupt(KindGrant, id, "temporary grant without a bounded end")
		}
	default:
		return Grant{}, corrupt(KindGrant, id, "unknown source")
	}
	return g, nil
}

// notFound maps the store's ErrNotFound to ours and passes others through.
func notFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	return err
}
