package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
)

// Just-in-time access in the admin API.
//
//	GET  /api/admin/requests                      every request, newest first
//	POST /api/admin/requests/{id}/approve|deny    {"note"}
//	GET  /api/admin/grants                        every active grant
//	POST /api/admin/grants                        {"user_id","role","expires":"RFC3339|''","reason"} → 201
//	POST /api/admin/grants/{id}/revoke            {"reason"}
//
// Approving needs a person: a remote admin approves as themselves (their
// effective roles must include an approver role of the request's role,
// like anyone else's), while the local socket's root has no identity of
// its own and is refused ("approver-required"): an approval is a
// named person's act, and the committee rule (N distinct approvers) would
// be meaningless if one anonymous root could approve. Denying closes a
// request without granting anything, so the local root may deny any
// request (as local-admin, standing in for the role's approvers).
//
// The access manager audits every action and every refusal by its rules;
// reads and the gateway's own refusals are audited here as admin actions.

// accessOff answers an access endpoint when JIT access is off.
func (a *adminAPI) accessOff(c *adminCall, ev audit.Event) bool {
	if a.g.deps.Access != nil {
		return false
	}
	a.apiFail(c.w, c.r, http.StatusNotFound, "not found", "access-disabled", nil, ev, true)
	return true
}

// requestList is GET /api/admin/requests.
type requestList struct {
	Requests []requestJSON `json:"requests"`
}

func (a *adminAPI) accessRequests(c *adminCall, _ []string) {
	ev := a.callEvent(c, "access.requests.list")
	if a.accessOff(c, ev) {
		return
	}
	all, err := a.g.deps.Access.ListRequests(c.r.Context())
	if err != nil {
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	ev.Decision = audit.Allow
	a.answer(c.w, c.r, http.StatusOK, requestList{Requests: requestsWire(all)}, ev, ev)
}

func (a *adminAPI) accessDecide(c *adminCall, seg []string) {
	id, verb := seg[1], seg[2]
	ev := a.callEvent(c, "access.request."+verb)
	if a.accessOff(c, ev) {
		return
	}
	if !validAccessID(id) {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", errors.New("malformed request ID"), ev, true)
		return
	}
	ev.Target = id
	ev.Attrs["request_id"] = id
	var body noteBody
	if err := decodeBody(c.w, c.r, &body); err != nil {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev, true)
		return
	}
	m := a.g.deps.Access
	ctx := c.r.Context()
	now := a.g.now()
	var who access.Person
	if c.actor == localAdminActor {
		if verb == "approve" {
			a.apiFail(c.w, c.r, http.StatusForbidden, "forbidden", "approver-required",
				errors.New("approvals need a signed-in approver, not the local socket"), ev, true)
			return
		}
		req, err := m.GetRequest(ctx, id)
		if err != nil {
			a.accessFail(c.w, c.r, err, ev, false)
			return
		}
		who = access.Person{UserID: localAdminActor}
		for _, rc := range m.Config().Roles {
			if rc.Role == req.Role {
				who.Roles = rc.Approvers
			}
		}
	} else {
		who = access.Person{UserID: c.actor, Roles: a.g.effectiveRoles(c.actor, c.roles, now)}
	}
	var req access.Request
	var err error
	if verb == "approve" {
		req, err = m.Approve(ctx, who, id, body.Note)
	} else {
		req, err = m.Deny(ctx, who, id, body.Note)
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

func (a *adminAPI) accessGrants(c *adminCall, _ []string) {
	ev := a.callEvent(c, "access.grants.list")
	if a.accessOff(c, ev) {
		return
	}
	all, err := a.g.deps.Access.ListGrants(c.r.Context())
	if err != nil {
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	ev.Decision = audit.Allow
	a.answer(c.w, c.r, http.StatusOK, grantList{Grants: grantsWire(all)}, ev, ev)
}

// grantBody is POST /api/admin/grants.
type grantBody struct {
	UserID  string `json:"user_id"`
	Role    string `json:"role"`
	Expires string `json:"expires"`
	Reason  string `json:"reason"`
}

func (a *adminAPI) accessGrantAdd(c *adminCall, _ []string) {
	ev := a.callEvent(c, "access.grant.add")
	if a.accessOff(c, ev) {
		return
	}
	var body grantBody
	if err := decodeBody(c.w, c.r, &body); err != nil {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev, true)
		return
	}
	if !validText(body.UserID, maxUserIDLen) {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", errors.New("invalid user ID"), ev, true)
		return
	}
	ev.Target = body.UserID
	if c.actor != localAdminActor {
		// A grant added here is standing access no committee approved.
		// Only a standing admin may add one, and never to themselves: an
		// admin whose role is itself a temporary grant would otherwise
		// make it (or anything else) outlive that grant, and a self-grant
		// bypasses the approvers of a requestable role.
		pol := a.g.deps.Policy.Load()
		if pol == nil || !pol.IsAdmin(c.roles) {
			a.apiFail(c.w, c.r, http.StatusForbidden, "forbidden", "standing-admin-required",
				errors.New("grant added by an admin whose admin role is only a grant"), ev, true)
			return
		}
		if body.UserID == c.actor {
			a.apiFail(c.w, c.r, http.StatusForbidden, "forbidden", "self-grant",
				errors.New("admin tried to grant a role to themselves"), ev, true)
			return
		}
	}
	var exp time.Time
	if body.Expires != "" {
		t, err := time.Parse(time.RFC3339Nano, body.Expires)
		if err != nil || len(body.Expires) > 64 {
			a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", errors.New("expires must be RFC 3339 or empty"), ev, true)
			return
		}
		exp = t
	}
	g, err := a.g.deps.Access.AddGrant(c.r.Context(), c.actor, body.UserID, body.Role, exp, body.Reason)
	if err != nil {
		// AddGrant does not audit its refusals: this is the record.
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	a.answer(c.w, c.r, http.StatusCreated, grantWire(g), ev)
}

// reasonBody is POST /api/admin/grants/{id}/revoke.
type reasonBody struct {
	Reason string `json:"reason"`
}

func (a *adminAPI) accessGrantRevoke(c *adminCall, seg []string) {
	id := seg[1]
	ev := a.callEvent(c, "access.grant.revoke")
	if a.accessOff(c, ev) {
		return
	}
	if !validAccessID(id) {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", errors.New("malformed grant ID"), ev, true)
		return
	}
	ev.Target = id
	var body reasonBody
	if err := decodeBody(c.w, c.r, &body); err != nil {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev, true)
		return
	}
	if err := a.g.deps.Access.RevokeGrant(c.r.Context(), c.actor, id, body.Reason); err != nil {
		a.accessFail(c.w, c.r, err, ev, false)
		return
	}
	a.answer(c.w, c.r, http.StatusOK, actionResult{OK: true, Target: id}, ev)
}
