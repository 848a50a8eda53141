package gateway

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// The user API: just-in-time access (/api/access/*) and trail and
// recording reads (/api/audit/*, audit_api.go), for any user, with the
// bearer token of a live MFA session (minted at /token). Authentication is
// the admin API's minus the admin role (bearerSession); what each call may
// do is decided per call from the user's effective roles.
//
// Auditing: access.Manager audits every access action it performs or
// refuses by its rules (access.* types); the gateway audits what it
// refuses itself (authentication, malformed input, unknown IDs, store
// failures) and every trail and recording read, allowed or denied. A
// success is answered only once its audit records are durable
// (audit.Sync), like the admin API's.

const (
	pathAPIAccess = "/api/access/"
	pathAPIAudit  = "/api/audit/"
	userAPIRealm  = "portcullis"
	// TypeAccessRead is the audit type of a refused read of access
	// requests or grants (allowed reads of one's own are not audited).
	TypeAccessRead = "access.read"
)

// userCall is one authenticated user-API request.
type userCall struct {
	w   http.ResponseWriter
	r   *http.Request
	rec session.Record // the bearer token's session (base roles)
	now time.Time
	seg []string // path segments below /api/access/ or /api/audit/
}

// person is the caller as access.Manager sees them: effective roles.
func (a *adminAPI) person(c *userCall) access.Person {
	return access.Person{UserID: c.rec.UserID, Roles: a.g.effectiveRoles(c.rec.UserID, c.rec.Roles, c.now)}
}

// userEvent is the skeleton of a user-API audit event.
func (a *adminAPI) userEvent(c *userCall, typ, action string) audit.Event {
	ev := a.event(c.r, c.rec.UserID)
	ev.Type, ev.UserID, ev.SessionID = typ, c.rec.UserID, c.rec.ID
	ev.Attrs = map[string]string{"action": action}
	return ev
}

// serveUser serves /api/access/* and /api/audit/* on the access host.
func (a *adminAPI) serveUser(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	p := r.URL.Path
	rest, isAccess := strings.CutPrefix(p, pathAPIAccess)
	if !isAccess {
		rest, _ = strings.CutPrefix(p, pathAPIAudit)
	}
	// A refused authentication of a trail or recording read is itself an
	// audited read attempt of that kind.
	ev := a.event(r, "")
	ev.Type = audit.TypeRequestRejected
	switch {
	case isAccess:
	case rest == "events":
		ev.Type = TypeTrailSearch
	case rest == "recordings" || strings.HasPrefix(rest, "recordings/"):
		ev.Type = TypeRecordingRead
	}
	ev.Attrs = map[string]string{"action": "authenticate"}
	rec, ok := a.bearerSession(w, r, &ev, userAPIRealm, "auth-required", nil)
	if !ok {
		return
	}
	c := &userCall{w: w, r: r, rec: rec, now: a.g.now(), seg: strings.Split(rest, "/")}
	if isAccess {
		a.routeAccess(c)
		return
	}
	a.routeAudit(c)
}

// method checks the method (GET also admits HEAD) and answers 405 itself.
func (a *adminAPI) method(c *userCall, want string, ev audit.Event) bool {
	m := c.r.Method
	if m == want || want == http.MethodGet && m == http.MethodHead {
		return true
	}
	c.w.Header().Set("Allow", want)
	a.apiFail(c.w, c.r, http.StatusMethodNotAllowed, "method not allowed", reasonMethod, nil, ev, true)
	return false
}

func (a *adminAPI) routeAccess(c *userCall) {
	seg := c.seg
	ev := a.userEvent(c, audit.TypeRequestRejected, "route")
	if a.g.deps.Access == nil {
		a.apiFail(c.w, c.r, http.StatusNotFound, "not found", "access-disabled", nil, ev, true)
		return
	}
	switch {
	case len(seg) == 1 && seg[0] == "requests":
		if c.r.Method == http.MethodPost {
			a.userSubmit(c)
			return
		}
		if a.method(c, http.MethodGet, ev) {
			a.userRequests(c)
		}
	case len(seg) == 2 && seg[0] == "requests":
		if a.method(c, http.MethodGet, ev) {
			a.userRequest(c, seg[1])
		}
	case len(seg) == 3 && seg[0] == "requests" && (seg[2] == "approve" || seg[2] == "deny" || seg[2] == "cancel"):
		if a.method(c, http.MethodPost, ev) {
			a.userDecide(c, seg[1], seg[2])
		}
	case len(seg) == 1 && seg[0] == "grants":
		if a.method(c, http.MethodGet, ev) {
			a.userGrants(c)
		}
	default:
		a.apiFail(c.w, c.r, http.StatusNotFound, "not found", reasonNotFound, nil, ev, true)
	}
}

// apiFail answers a refused call with apiError and logs the cause; when
// emit is set it also audits ev as a deny with the reason and reference
// (false when the access manager has audited the refusal already).
func (a *adminAPI) apiFail(w http.ResponseWriter, r *http.Request, status int, msg, reason string, cause error, ev audit.Event, emit bool) {
	ref := audit.NewRef(a.rand)
	level := slog.LevelWarn
	if status >= 500 {
		level = slog.LevelError
	}
	a.log.LogAttrs(r.Context(), level, "api request refused",
		slog.String("ref", ref), slog.String("reason", reason), slog.Int("status", status),
		slog.String("path", r.URL.Path), slog.String("user_id", ev.UserID), slog.Any("cause", cause))
	if emit {
		ev.Decision, ev.Reason, ev.Ref = audit.Deny, reason, ref
		a.emit(r, ev)
	}
	writeJSON(w, r, status, apiError{Error: msg, Reason: reason, Ref: ref})
}

// accessFail answers an access.Manager error; op names the action for
// auditedByManager (submit: every refusal is audited by the manager).
func (a *adminAPI) accessFail(w http.ResponseWriter, r *http.Request, err error, ev audit.Event, submit bool) {
	status, msg, reason := accessFailure(err)
	a.apiFail(w, r, status, msg, reason, err, ev, !auditedByManager(err, submit))
}

// answer is the only way a user-API or access admin-API call answers 2xx:
// it audits evs and waits until every record emitted so far (the access
// manager's included, when it shares the emitter) is durable, then writes
// v with status. When the trail cannot be made durable the caller gets a
// 503 with a reference instead (see adminAPI.succeed).
func (a *adminAPI) answer(w http.ResponseWriter, r *http.Request, status int, v any, failEv audit.Event, evs ...audit.Event) {
	for _, ev := range evs {
		a.emit(r, ev)
	}
	if err := audit.Sync(r.Context(), a.g.deps.Audit); err != nil {
		a.apiFail(w, r, http.StatusServiceUnavailable, "audit trail unavailable", "audit-unavailable", err, failEv, true)
		return
	}
	writeJSON(w, r, status, v)
}

// submitBody is POST /api/access/requests.
type submitBody struct {
	Role     string `json:"role"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
}

func (a *adminAPI) userSubmit(c *userCall) {
	ev := a.userEvent(c, access.TypeRequest, "request.submit")
	var body submitBody
	if err := decodeBody(c.w, c.r, &body); err != nil {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev, true)
		return
	}
	d, err := parseRequestDuration(body.Duration)
	if err != nil {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", err, ev, true)
		return
	}
	req, err := a.g.deps.Access.Submit(c.r.Context(), a.person(c), body.Role, d, body.Reason)
	if err != nil {
		a.accessFail(c.w, c.r, err, ev, true)
		return
	}
	a.answer(c.w, c.r, http.StatusCreated, requestWire(req), ev)
}

// myRequests is GET /api/access/requests.
type myRequests struct {
	Requests  []requestJSON `json:"requests"`
	ToApprove []requestJSON `json:"to_approve"`
}

func (a *adminAPI) userRequests(c *userCall) {
	ev := a.userEvent(c, TypeAccessRead, "requests.list")
	m := a.g.deps.Access
	all, err := m.ListRequests(c.r.Context())
	if err != nil {
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	mine, toApprove := splitRequests(m, a.person(c), all)
	writeJSON(c.w, c.r, http.StatusOK, myRequests{Requests: requestsWire(mine), ToApprove: requestsWire(toApprove)})
}

// splitRequests returns who's own requests and the pending ones who may
// approve now (newest first, as listed).
func splitRequests(m *access.Manager, who access.Person, all []access.Request) (mine, toApprove []access.Request) {
	for _, r := range all {
		switch {
		case r.UserID == who.UserID:
			mine = append(mine, r)
		case r.State == access.StatePending && m.CanApprove(who, r) == nil:
			toApprove = append(toApprove, r)
		}
	}
	return mine, toApprove
}

// mayView reports whether who may read request r: its requester, anyone
// who decided it, and members of its role's approver roles.
func mayView(m *access.Manager, who access.Person, r access.Request) bool {
	if r.UserID == who.UserID || r.Denial != nil && r.Denial.UserID == who.UserID {
		return true
	}
	if slices.ContainsFunc(r.Approvals, func(d access.Decision) bool { return d.UserID == who.UserID }) {
		return true
	}
	for _, rc := range m.Config().Roles {
		if rc.Role == r.Role {
			return slices.ContainsFunc(who.Roles, func(role string) bool { return slices.Contains(rc.Approvers, role) })
		}
	}
	return false
}

func (a *adminAPI) userRequest(c *userCall, id string) {
	ev := a.userEvent(c, TypeAccessRead, "request.get")
	if !validAccessID(id) {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", errors.New("malformed request ID"), ev, true)
		return
	}
	ev.Attrs["request_id"] = id
	m := a.g.deps.Access
	req, err := m.GetRequest(c.r.Context(), id)
	if err != nil {
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	if !mayView(m, a.person(c), req) {
		a.apiFail(c.w, c.r, http.StatusForbidden, "forbidden", "not-visible", errors.New("request of another user, caller no approver"), ev, true)
		return
	}
	writeJSON(c.w, c.r, http.StatusOK, requestWire(req))
}

// noteBody is the body of approve and deny.
type noteBody struct {
	Note string `json:"note"`
}

func (a *adminAPI) userDecide(c *userCall, id, verb string) {
	typ := map[string]string{"approve": access.TypeApprove, "deny": access.TypeDeny, "cancel": access.TypeCancel}[verb]
	ev := a.userEvent(c, typ, "request."+verb)
	if !validAccessID(id) {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", errors.New("malformed request ID"), ev, true)
		return
	}
	ev.Attrs["request_id"] = id
	var body noteBody
	if err := decodeBody(c.w, c.r, &body); err != nil || verb == "cancel" && body.Note != "" {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev, true)
		return
	}
	m := a.g.deps.Access
	ctx := c.r.Context()
	var req access.Request
	var err error
	switch verb {
	case "approve":
		req, err = m.Approve(ctx, a.person(c), id, body.Note)
	case "deny":
		req, err = m.Deny(ctx, a.person(c), id, body.Note)
	default:
		req, err = m.Cancel(ctx, a.person(c), id)
	}
	if err != nil && !approvedDespite(req, err) {
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	if err != nil {
		a.log.WarnContext(ctx, "approval recorded, grant not written yet (the access manager retries)", "request_id", id, "err", err)
	}
	a.answer(c.w, c.r, http.StatusOK, requestWire(req), ev)
}

// approvedDespite reports an approval that was recorded (and audited)
// although writing its grant failed: access.Manager.Run writes the grant
// later, so the approval itself is acknowledged.
func approvedDespite(r access.Request, err error) bool {
	return err != nil && r.ID != "" && r.State == access.StateApproved
}

// grantList is GET /api/access/grants and /api/admin/grants.
type grantList struct {
	Grants []grantJSON `json:"grants"`
}

func (a *adminAPI) userGrants(c *userCall) {
	ev := a.userEvent(c, TypeAccessRead, "grants.list")
	all, err := a.g.deps.Access.ListGrants(c.r.Context())
	if err != nil {
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	mine := slices.DeleteFunc(all, func(g access.Grant) bool { return g.UserID != c.rec.UserID })
	writeJSON(c.w, c.r, http.StatusOK, grantList{Grants: grantsWire(mine)})
}
