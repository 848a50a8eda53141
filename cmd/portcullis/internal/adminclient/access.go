package adminclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// Just-in-time access, grants, access reviews and trail reads. The wire
// types are the frozen JSON of the HTTP contract (plan ISSUE5 §5), kept
// here rather than borrowed from the server packages so that the client
// decodes what the contract says and nothing else.

// Time is an optional timestamp: the server writes RFC 3339, and an
// absent value as "", null or the zero time.
type Time struct{ time.Time }

// UnmarshalJSON accepts an RFC 3339 string, "" or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) || bytes.Equal(b, []byte(`""`)) {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v
	return nil
}

// AccessDecision is one approval or the denial of a request.
type AccessDecision struct {
	UserID string    `json:"user_id"`
	At     time.Time `json:"at"`
	Note   string    `json:"note"`
}

// AccessRequest is a request for a temporary role.
type AccessRequest struct {
	ID                string           `json:"id"`
	UserID            string           `json:"user_id"`
	Role              string           `json:"role"`
	Duration          string           `json:"duration"` // Go duration, "2h0m0s"
	Reason            string           `json:"reason"`
	CreatedAt         time.Time        `json:"created_at"`
	ExpiresAt         Time             `json:"expires_at"` // pending deadline
	State             string           `json:"state"`      // pending, approved, denied, expired, cancelled
	Approvals         []AccessDecision `json:"approvals"`
	ApprovalsRequired int              `json:"approvals_required"`
	Denial            *AccessDecision  `json:"denial"`
	GrantID           string           `json:"grant_id"`
}

// AccessGrant is a role held temporarily (from a request) or added by an
// admin ("local"). Expires is zero when the grant lasts until revoked.
type AccessGrant struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Role      string `json:"role"`
	Source    string `json:"source"` // temporary, local
	RequestID string `json:"request_id"`
	Start     Time   `json:"start"`
	Expires   Time   `json:"expires"`
	CreatedBy string `json:"created_by"`
	Reason    string `json:"reason"`
}

// MyRequests is the answer of GET /api/access/requests.
type MyRequests struct {
	Requests  []AccessRequest `json:"requests"`
	ToApprove []AccessRequest `json:"to_approve"`
}

// RequestList is the answer of GET /api/admin/requests.
type RequestList struct {
	Requests []AccessRequest `json:"requests"`
}

// GrantList is the answer of GET /api/access/grants and /api/admin/grants.
type GrantList struct {
	Grants []AccessGrant `json:"grants"`
}

const accessPrefix = "/api/access/"

type noteBody struct {
	Note string `json:"note"`
}

type reasonBody struct {
	Reason string `json:"reason"`
}

// SubmitRequest asks for role for d, with a justification.
func SubmitRequest(role string, d time.Duration, reason string) Request {
	return Request{Method: http.MethodPost, Path: accessPrefix + "requests", Body: struct {
		Role     string `json:"role"`
		Duration string `json:"duration"`
		Reason   string `json:"reason"`
	}{role, d.String(), reason}}
}

// MyAccessRequests lists the caller's requests and those they may approve.
func MyAccessRequests() Request {
	return Request{Method: http.MethodGet, Path: accessPrefix + "requests"}
}

// GetAccessRequest reads one request (own, or one the caller may approve).
func GetAccessRequest(id string) Request {
	return Request{Method: http.MethodGet, Path: accessPrefix + "requests/" + url.PathEscape(id)}
}

// DecideAccessRequest approves or denies (verb) a request as the caller.
func DecideAccessRequest(id, verb, note string) Request {
	return Request{Method: http.MethodPost, Path: accessPrefix + "requests/" + url.PathEscape(id) + "/" + verb, Body: noteBody{note}}
}

// CancelAccessRequest withdraws the caller's own pending request.
func CancelAccessRequest(id string) Request {
	return Request{Method: http.MethodPost, Path: accessPrefix + "requests/" + url.PathEscape(id) + "/cancel"}
}

// MyGrants lists the caller's active grants.
func MyGrants() Request { return Request{Method: http.MethodGet, Path: accessPrefix + "grants"} }

// AdminRequests lists every access request.
func AdminRequests() Request { return Request{Method: http.MethodGet, Path: prefix + "requests"} }

// AdminDecideRequest approves or denies (verb) a request. Approving needs
// a signed-in person: over the socket (local-admin) the server refuses
// with reason "approver-required".
func AdminDecideRequest(id, verb, note string) Request {
	return Request{Method: http.MethodPost, Path: prefix + "requests/" + url.PathEscape(id) + "/" + verb, Body: noteBody{note}}
}

// AdminGrants lists every active grant.
func AdminGrants() Request { return Request{Method: http.MethodGet, Path: prefix + "grants"} }

// AddGrant gives userID role until expires (zero: until revoked).
func AddGrant(userID, role string, expires time.Time, reason string) Request {
	exp := ""
	if !expires.IsZero() {
		exp = expires.UTC().Format(time.RFC3339)
	}
	return Request{Method: http.MethodPost, Path: prefix + "grants", Body: struct {
		UserID  string `json:"user_id"`
		Role    string `json:"role"`
		Expires string `json:"expires"`
		Reason  string `json:"reason"`
	}{userID, role, exp, reason}}
}

// RevokeGrant ends a grant at once on every instance.
func RevokeGrant(id, reason string) Request {
	return Request{Method: http.MethodPost, Path: prefix + "grants/" + url.PathEscape(id) + "/revoke", Body: reasonBody{reason}}
}

// Review wire types.

// ReviewUse is one kind of use of a role seen in the trail.
type ReviewUse struct {
	Kind  string `json:"kind"` // app, ssh
	Name  string `json:"name"`
	Login string `json:"login"`
	Last  Time   `json:"last"`
	Count int    `json:"count"`
}

// ReviewItem is one (user, role, source) line of a campaign.
type ReviewItem struct {
	ID           string      `json:"id"`
	UserID       string      `json:"user_id"`
	Email        string      `json:"email"`
	Role         string      `json:"role"`
	Source       string      `json:"source"`       // idp-group, config, local, temporary
	Group        string      `json:"group"`        // idp-group: the IdP group
	ConfigEntry  string      `json:"config_entry"` // config: the users: entry as written
	GrantID      string      `json:"grant_id"`
	GrantStart   Time        `json:"grant_start"`
	GrantExpires Time        `json:"grant_expires"`
	LastLogin    Time        `json:"last_login"`
	Uses         []ReviewUse `json:"uses"`
	LastUse      Time        `json:"last_use"`
	Dormant      bool        `json:"dormant"`
	Unused       bool        `json:"unused"`
	Locked       bool        `json:"locked"`
	MFAEnrolled  bool        `json:"mfa_enrolled"`
	Decision     string      `json:"decision"` // "", keep, revoke
	DecidedBy    string      `json:"decided_by"`
	DecidedAt    Time        `json:"decided_at"`
	Note         string      `json:"note"`
	Action       string      `json:"action"` // what a human must do for an IdP-group or config revocation
	Revoked      bool        `json:"revoked"`
}

// ReviewCampaign is a review with its items.
type ReviewCampaign struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	CreatedAt   Time         `json:"created_at"`
	Due         Time         `json:"due"`
	PeriodStart Time         `json:"period_start"`
	CreatedBy   string       `json:"created_by"`
	SignedOffBy string       `json:"signed_off_by"`
	SignedOffAt Time         `json:"signed_off_at"`
	Items       []ReviewItem `json:"items"`
}

// ReviewCampaignStatus is one campaign in the status report.
type ReviewCampaignStatus struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	State       string `json:"state"` // open, overdue, signed-off, incomplete
	CreatedAt   Time   `json:"created_at"`
	CreatedBy   string `json:"created_by"`
	Due         Time   `json:"due"`
	Items       int    `json:"items"`
	Decided     int    `json:"decided"`
	SignedOffBy string `json:"signed_off_by"`
	SignedOffAt Time   `json:"signed_off_at"`
}

// ReviewStatus is the answer of GET /api/admin/reviews.
type ReviewStatus struct {
	Campaigns []ReviewCampaignStatus `json:"campaigns"`
	// NewDue: the cadence says a new campaign should be started.
	NewDue  bool `json:"new_due"`
	NextDue Time `json:"next_due"`
}

const reviewPrefix = prefix + "reviews"

// ReviewStatusReq asks for every campaign's state.
func ReviewStatusReq() Request { return Request{Method: http.MethodGet, Path: reviewPrefix} }

// StartReview starts a campaign named name.
func StartReview(name string) Request {
	return Request{Method: http.MethodPost, Path: reviewPrefix, Body: struct {
		Name string `json:"name"`
	}{name}}
}

// GetReview reads a campaign by name or ID, with its items.
func GetReview(name string) Request {
	return Request{Method: http.MethodGet, Path: reviewPrefix + "/" + url.PathEscape(name)}
}

// DecideReviewItem records keep or revoke for one item.
func DecideReviewItem(name, item, decision, note string) Request {
	return Request{Method: http.MethodPost, Path: reviewPrefix + "/" + url.PathEscape(name) + "/items/" + url.PathEscape(item), Body: struct {
		Decision string `json:"decision"`
		Note     string `json:"note"`
	}{decision, note}}
}

// SignOffReview closes a campaign whose every item is decided.
func SignOffReview(name string) Request {
	return Request{Method: http.MethodPost, Path: reviewPrefix + "/" + url.PathEscape(name) + "/signoff"}
}

// ReportMediaTypes maps a report format to its media type.
var ReportMediaTypes = map[string]string{"csv": "text/csv", "json": "application/json", "html": "text/html"}

// ReviewReport fetches a campaign's report in format (csv, json, html).
func ReviewReport(name, format string) Request {
	return Request{Method: http.MethodGet, Path: reviewPrefix + "/" + url.PathEscape(name) + "/report",
		Query: url.Values{"format": {format}}, Accept: ReportMediaTypes[format]}
}

// Trail and recording reads (user API, bearer token).

// EventList is the answer of GET /api/audit/events.
type EventList struct {
	Events []audit.Event `json:"events"`
	More   bool          `json:"more"`
}

// RecordingInfo is one row of GET /api/audit/recordings.
type RecordingInfo struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Target string `json:"target"`
	Login  string `json:"login"`
	Start  Time   `json:"start"`
	End    Time   `json:"end"`
	Bytes  int64  `json:"bytes"`
}

// RecordingList is the answer of GET /api/audit/recordings.
type RecordingList struct {
	Recordings []RecordingInfo `json:"recordings"`
}

// SearchEvents searches the trail; zero fields of q are left out. The
// contract has no ref parameter: q.Ref is not sent.
func SearchEvents(q audit.Query) Request {
	v := url.Values{}
	for _, p := range []struct{ k, v string }{
		{"user", q.UserID}, {"type", q.Type}, {"type_prefix", q.TypePrefix}, {"app", q.App}, {"target", q.Target},
		{"decision", q.Decision}, {"reason", q.Reason},
	} {
		if p.v != "" {
			v.Set(p.k, p.v)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return Request{Method: http.MethodGet, Path: "/api/audit/events", Query: v}
}

// Recordings lists recordings: the caller's own, or user's (auditors).
func Recordings(user string) Request {
	r := Request{Method: http.MethodGet, Path: "/api/audit/recordings"}
	if user != "" {
		r.Query = url.Values{"user": {user}}
	}
	return r
}

// GetRecording downloads one recording as asciicast v2.
func GetRecording(id string) Request {
	return Request{Method: http.MethodGet, Path: "/api/audit/recordings/" + url.PathEscape(id), Accept: "application/x-asciicast"}
}
