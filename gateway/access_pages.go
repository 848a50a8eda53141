package gateway

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// The /access page: request a role for a while, follow one's requests,
// decide the requests one may approve, see one's grants.
//
//	GET  /access                               the page
//	POST /access/request                       role, duration, reason → new request
//	POST /access/requests/{id}/approve|deny    note → decision (approvers)
//	POST /access/requests/{id}/cancel          withdraw one's own pending request
//
// Every POST carries the session-bound CSRF token and passes the origin
// check (csrf.go) and the lock gate; the access manager decides and
// audits. The page shows what the manager allows: the Approve and Deny
// buttons appear only on requests CanApprove accepts, but the POST is
// decided again by the manager whatever the page showed.

const (
	pathAccess         = "/access"
	pathAccessRequest  = "/access/request"
	pathAccessRequests = "/access/requests/"
	pageAccess         = "access"
)

type requestableView struct {
	Role        string
	MaxDuration string
	Approvals   int
}

type accessRow struct {
	ID, UserID, Role, Duration, Reason, State string
	Created, PendingUntil, Approvals          string
	Pending                                   bool
}

type grantRow struct {
	ID, Role, Source, Start, Expires string
}

type accessView struct {
	UserID      string
	Requestable []requestableView
	Mine        []accessRow
	ToApprove   []accessRow
	Grants      []grantRow
}

func accessRowOf(r access.Request) accessRow {
	return accessRow{
		ID: r.ID, UserID: r.UserID, Role: r.Role, Duration: r.Duration.String(), Reason: r.Reason,
		State: string(r.State), Created: formatTime(r.CreatedAt), PendingUntil: formatTime(r.ExpiresAt),
		Approvals: strconv.Itoa(len(r.Approvals)) + "/" + strconv.Itoa(r.Needed),
		Pending:   r.State == access.StatePending,
	}
}

// accessPage renders /access.
func (h *loginHandler) accessPage(w http.ResponseWriter, r *http.Request) {
	if h.g.deps.Access == nil {
		h.message(w, r, http.StatusNotFound, "Temporary access", messagePage{Message: "Temporary access is not configured here.", Link: pathHome, LinkText: "Back"})
		return
	}
	tok, rec, ok := h.requireSession(w, r, pathAccess)
	if !ok {
		return
	}
	h.renderAccess(w, r, http.StatusOK, tok, rec, "")
}

// renderAccess renders the page for rec with an optional error line.
func (h *loginHandler) renderAccess(w http.ResponseWriter, r *http.Request, status int, tok string, rec session.Record, errMsg string) {
	m := h.g.deps.Access
	ctx := r.Context()
	now := h.g.now()
	who := access.Person{UserID: rec.UserID, Roles: h.g.effectiveRoles(rec.UserID, rec.Roles, now)}
	all, err := m.ListRequests(ctx)
	if err != nil {
		h.storeFail(w, r, err, h.sessionEvent(r, TypeAccessRead, rec))
		return
	}
	grants, err := m.ListGrants(ctx)
	if err != nil {
		h.storeFail(w, r, err, h.sessionEvent(r, TypeAccessRead, rec))
		return
	}
	v := accessView{UserID: rec.UserID}
	for _, rc := range m.Config().Roles {
		v.Requestable = append(v.Requestable, requestableView{Role: rc.Role, MaxDuration: rc.MaxDuration.String(), Approvals: rc.Approvals})
	}
	mine, toApprove := splitRequests(m, who, all)
	for _, r := range mine {
		v.Mine = append(v.Mine, accessRowOf(r))
	}
	for _, r := range toApprove {
		v.ToApprove = append(v.ToApprove, accessRowOf(r))
	}
	for _, g := range grants {
		if g.UserID != rec.UserID {
			continue
		}
		row := grantRow{ID: g.ID, Role: g.Role, Source: g.Source, Start: formatTime(g.Start), Expires: "until revoked"}
		if !g.Expires.IsZero() {
			row.Expires = formatTime(g.Expires)
		}
		v.Grants = append(v.Grants, row)
	}
	h.render(w, r, status, pageAccess, pageData{Title: "Temporary access", Error: errMsg, CSRF: h.csrf.token(csrfSession, tok), Page: v})
}

// accessRefusalText is what a user reads about a refused action: the
// rule that refused it (not a secret: it is their own action), never a
// store or internal cause.
func accessRefusalText(reason string) string {
	switch reason {
	case "self-approval":
		return "You cannot decide your own request."
	case "not-approver":
		return "You are not an approver for this role."
	case "already-decided":
		return "This request was already decided or has expired."
	case "duplicate-approval":
		return "You have already approved this request."
	case "not-requestable":
		return "This role cannot be requested."
	case "already-pending":
		return "You already have a pending request for this role (or too many pending requests)."
	case "not-requester":
		return "Only the requester can cancel a request."
	case "invalid-input":
		return "Check the duration (like 2h, at most the role's maximum) and the reason (printable text, at most 200 characters)."
	}
	return "The action was refused."
}

// accessPost is the common start of the page's POSTs: Access on, CSRF
// and session, lock gate. It answers itself when it returns false.
func (h *loginHandler) accessPost(w http.ResponseWriter, r *http.Request, typ string) (session.Record, audit.Event, bool) {
	ev := h.event(r, typ)
	if h.g.deps.Access == nil {
		h.g.fail(w, r, http.StatusNotFound, "access-disabled", nil, ev)
		return session.Record{}, ev, false
	}
	rec, ok := h.sessionForPost(w, r, ev)
	if !ok {
		return rec, ev, false
	}
	ev = h.sessionEvent(r, typ, rec)
	ev.Actor = rec.UserID
	if !h.g.gate(w, r, rec.UserID, ev) {
		return rec, ev, false
	}
	return rec, ev, true
}

// accessDone finishes a POST: on err the page again with the refusal
// (audited here unless the manager audited it), else, once the trail is
// durable, back to the page (303).
func (h *loginHandler) accessDone(w http.ResponseWriter, r *http.Request, rec session.Record, ev audit.Event, err error, submit bool) {
	if err != nil {
		status, _, reason := accessFailure(err)
		switch status {
		case http.StatusServiceUnavailable:
			h.storeFail(w, r, err, ev)
			return
		case http.StatusInternalServerError:
			h.g.fail(w, r, status, reasonInternal, err, ev)
			return
		}
		ref := audit.NewRef(h.rand)
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "access page action refused", slog.String("ref", ref),
			slog.String("reason", reason), slog.String("user_id", rec.UserID), slog.Any("cause", err))
		if !auditedByManager(err, submit) {
			ev.Decision, ev.Reason, ev.Ref = audit.Deny, reason, ref
			h.emit(r, ev)
		}
		tok := pageCookie(r, h.g.deps.Sessions.CookieName())
		h.renderAccess(w, r, status, tok, rec, accessRefusalText(reason)+" (reference "+ref+")")
		return
	}
	if err := audit.Sync(r.Context(), h.g.deps.Audit); err != nil {
		h.g.fail(w, r, http.StatusServiceUnavailable, "audit-unavailable", err, ev)
		return
	}
	redirect(w, r, pathAccess)
}

// accessSubmit is POST /access/request.
func (h *loginHandler) accessSubmit(w http.ResponseWriter, r *http.Request) {
	rec, ev, ok := h.accessPost(w, r, access.TypeRequest)
	if !ok {
		return
	}
	now := h.g.now()
	who := access.Person{UserID: rec.UserID, Roles: h.g.effectiveRoles(rec.UserID, rec.Roles, now)}
	d, err := parseRequestDuration(strings.TrimSpace(r.PostFormValue("duration")))
	if err != nil {
		h.accessDone(w, r, rec, ev, errors.Join(access.ErrInvalid, err), false)
		return
	}
	_, err = h.g.deps.Access.Submit(r.Context(), who, r.PostFormValue("role"), d, r.PostFormValue("reason"))
	h.accessDone(w, r, rec, ev, err, true)
}

// accessDecide is POST /access/requests/{id}/approve|deny|cancel.
func (h *loginHandler) accessDecide(w http.ResponseWriter, r *http.Request) {
	id, verb, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, pathAccessRequests), "/")
	typ := map[string]string{"approve": access.TypeApprove, "deny": access.TypeDeny, "cancel": access.TypeCancel}[verb]
	if typ == "" || !validAccessID(id) {
		h.g.fail(w, r, http.StatusNotFound, reasonNotFound, nil, h.event(r, audit.TypeRequestRejected))
		return
	}
	rec, ev, ok := h.accessPost(w, r, typ)
	if !ok {
		return
	}
	ev.Attrs = map[string]string{"request_id": id}
	m := h.g.deps.Access
	now := h.g.now()
	who := access.Person{UserID: rec.UserID, Roles: h.g.effectiveRoles(rec.UserID, rec.Roles, now)}
	note := r.PostFormValue("note")
	var req access.Request
	var err error
	switch verb {
	case "approve":
		req, err = m.Approve(r.Context(), who, id, note)
	case "deny":
		req, err = m.Deny(r.Context(), who, id, note)
	default:
		req, err = m.Cancel(r.Context(), who, id)
	}
	if approvedDespite(req, err) {
		h.log.WarnContext(r.Context(), "approval recorded, grant not written yet (the access manager retries)", "request_id", id, "err", err)
		err = nil
	}
	h.accessDone(w, r, rec, ev, err, false)
}
