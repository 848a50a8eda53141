package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
)

// API tokens for the command line. Two pages mint them the same way:
//
//   - /admin/token, for admins only: the token opens the admin API;
//   - /token, for any user with an MFA session: the token opens the user
//     API (/api/access/*, /api/audit/*), which decides per call what the
//     user may do.
//
// A token is a new, separate session record (so revoking it does not end
// the browser session and vice versa) with the browser session's base
// roles, minted only after a fresh TOTP code, valid for an hour, shown
// once and never stored in clear.

// apiTokenTTL bounds an API token: it is a bearer credential, so it is
// short-lived and needs a fresh TOTP code.
const apiTokenTTL = time.Hour

// pathToken is the user API token page.
const pathToken = "/token"

// TypeAPITokenIssue is the audit type of a user API token issued (or
// refused) at /token.
const TypeAPITokenIssue = "api.token.issue"

// tokenKind is what differs between the two token pages.
type tokenKind struct {
	path, title string
	admin       bool   // the page needs the admin role
	elemID      string // id of the element showing the token
	purpose     string // mfa.verify attrs purpose
	userAgent   string // the token session's user agent label
	issued      string // reason code of an issued token
}

var (
	adminTokenKind = tokenKind{
		path: pathAdminToken, title: "Admin API token", admin: true, elemID: "admin-token",
		purpose: "admin-token", userAgent: "admin-api-token", issued: "admin-token-issued",
	}
	userTokenKind = tokenKind{
		path: pathToken, title: "API token", elemID: "api-token",
		purpose: "api-token", userAgent: "api-token", issued: "api-token-issued",
	}
)

// event is the skeleton of the page's audit event: the admin page is an
// admin action (type admin, action token.issue), the user page has its
// own type.
func (k tokenKind) event(h *loginHandler, r *http.Request, rec session.Record) audit.Event {
	typ := TypeAPITokenIssue
	if k.admin {
		typ = audit.TypeAdmin
	}
	ev := h.sessionEvent(r, typ, rec)
	ev.Actor = rec.UserID
	ev.Attrs = map[string]string{"action": "token.issue"}
	return ev
}

type adminTokenView struct {
	Token     string
	ExpiresAt string
	Action    string // the form's target
	ElemID    string
	Admin     bool
}

func (k tokenKind) view() adminTokenView {
	return adminTokenView{Action: k.path, ElemID: k.elemID, Admin: k.admin}
}

// tokenSession loads the session for a token page and, for the admin
// page, checks the admin role; it writes the response itself when it
// returns false.
func (h *loginHandler) tokenSession(w http.ResponseWriter, r *http.Request, k tokenKind) (string, session.Record, bool) {
	tok, rec, ok := h.requireSession(w, r, k.path)
	if !ok {
		return "", rec, false
	}
	if k.admin && !h.g.isAdmin(h.g.deps.Policy.Load(), rec.UserID, rec.Roles, h.g.now()) {
		h.g.fail(w, r, http.StatusForbidden, "not-admin", errors.New("admin token requested without admin role"), k.event(h, r, rec))
		return "", rec, false
	}
	return tok, rec, true
}

func (h *loginHandler) adminTokenPage(w http.ResponseWriter, r *http.Request) {
	h.tokenPage(w, r, adminTokenKind)
}

func (h *loginHandler) adminTokenIssue(w http.ResponseWriter, r *http.Request) {
	h.tokenIssue(w, r, adminTokenKind)
}

func (h *loginHandler) userTokenPage(w http.ResponseWriter, r *http.Request) {
	h.tokenPage(w, r, userTokenKind)
}

func (h *loginHandler) userTokenIssue(w http.ResponseWriter, r *http.Request) {
	h.tokenIssue(w, r, userTokenKind)
}

func (h *loginHandler) tokenPage(w http.ResponseWriter, r *http.Request, k tokenKind) {
	tok, _, ok := h.tokenSession(w, r, k)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, pageAdminToken, pageData{Title: k.title, CSRF: h.csrf.token(csrfSession, tok), Page: k.view()})
}

// tokenIssue mints an API token after a fresh TOTP code. Its cookie value
// is the bearer token.
func (h *loginHandler) tokenIssue(w http.ResponseWriter, r *http.Request, k tokenKind) {
	tok := pageCookie(r, h.g.deps.Sessions.CookieName())
	if err := h.csrf.check(r, csrfSession, tok); err != nil {
		h.g.fail(w, r, http.StatusForbidden, "csrf-invalid", err, h.event(r, audit.TypeRequestRejected))
		return
	}
	tok, rec, ok := h.tokenSession(w, r, k)
	if !ok {
		return
	}
	ctx := r.Context()
	ev := k.event(h, r, rec)
	if !h.g.gate(w, r, rec.UserID, ev) {
		return
	}
	code, valid := normalizeTOTP(r.PostFormValue("code"))
	err := mfa.ErrInvalidCode
	if valid {
		err = h.g.deps.MFA.Verify(ctx, rec.UserID, code)
	}
	mev := h.sessionEvent(r, audit.TypeMFAVerify, rec)
	mev.Attrs = map[string]string{"method": "totp", "purpose": k.purpose}
	switch {
	case err == nil:
	case errors.Is(err, mfa.ErrInvalidCode), errors.Is(err, mfa.ErrNotEnrolled):
		mev.Decision, mev.Reason = audit.Deny, "mfa-invalid"
		h.emit(r, mev)
		ev.Decision, ev.Reason = audit.Deny, "mfa-invalid"
		h.emit(r, ev)
		// A wrong code here is as much a guess at the second factor as
		// on the login page (a stolen browser session trying for an API
		// token).
		v, ferr := h.g.deps.Risk.Fail(ctx, risk.SignalTOTPFailure, rec.UserID, h.g.clientIP(r))
		if !h.g.obey(w, r, v, ferr, ev) {
			return
		}
		h.render(w, r, http.StatusUnauthorized, pageAdminToken, pageData{
			Title: k.title, Error: genericCodeError, CSRF: h.csrf.token(csrfSession, tok), Page: k.view(),
		})
		return
	default:
		h.storeFail(w, r, err, ev)
		return
	}
	mev.Decision, mev.Reason = audit.Allow, "mfa-verified"
	h.emit(r, mev)

	now := h.g.now()
	// Base roles only: grants are added at every decision from the grant
	// cache, so a token never carries a grant past its revocation.
	token, nrec, err := h.g.deps.Sessions.Create(ctx, session.Record{
		UserID: rec.UserID, Email: rec.Email, Name: rec.Name, Groups: rec.Groups, Roles: rec.Roles,
		MFA: true, AuthTime: now, ExpiresAt: now.Add(apiTokenTTL),
		SourceIP: ev.SourceIP, UserAgent: k.userAgent,
	})
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	// A lock raised between the gate above and Create may have revoked
	// the user's sessions before this one existed: check again, as a
	// login does (completeLogin). The token is a session token and would
	// also work as a web cookie.
	if v, err := h.g.deps.Risk.Locked(ctx, rec.UserID); err != nil || !v.Allow {
		if rerr := h.g.deps.Sessions.Revoke(ctx, nrec.ID, "locked"); rerr != nil && !isNoSession(rerr) {
			h.log.ErrorContext(ctx, "revoking the API token of a user locked meanwhile", "user_id", rec.UserID, "err", rerr)
		}
		h.g.obey(w, r, v, err, ev)
		return
	}
	bearer := h.g.deps.Sessions.Cookie(token, nrec.ExpiresAt.Sub(now)).Value
	ev.Decision, ev.Reason = audit.Allow, k.issued
	ev.Target = nrec.ID
	ev.Attrs["token_session"] = nrec.ID
	h.emit(r, ev)
	v := k.view()
	v.Token, v.ExpiresAt = bearer, formatTime(nrec.ExpiresAt)
	h.render(w, r, http.StatusOK, pageAdminToken, pageData{Title: k.title, Page: v})
}
