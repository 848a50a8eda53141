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

// adminTokenTTL bounds an admin API token: it is a bearer credential for
// the most powerful API, so it is short-lived and needs a fresh TOTP code.
const adminTokenTTL = time.Hour

type adminTokenView struct {
	Token     string
	ExpiresAt string
}

// adminSession loads the session for /admin/token and checks the admin
// role; it writes the response itself when it returns false.
func (h *loginHandler) adminSession(w http.ResponseWriter, r *http.Request) (string, session.Record, bool) {
	tok, rec, ok := h.requireSession(w, r, pathAdminToken)
	if !ok {
		return "", rec, false
	}
	pol := h.g.deps.Policy.Load()
	if pol == nil || !pol.IsAdmin(rec.Roles) {
		ev := h.sessionEvent(r, audit.TypeAdmin, rec)
		ev.Actor = rec.UserID
		ev.Attrs = map[string]string{"action": "token.issue"}
		h.g.fail(w, r, http.StatusForbidden, "not-admin", errors.New("admin token requested without admin role"), ev)
		return "", rec, false
	}
	return tok, rec, true
}

func (h *loginHandler) adminTokenPage(w http.ResponseWriter, r *http.Request) {
	tok, _, ok := h.adminSession(w, r)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, pageAdminToken, pageData{Title: "Admin API token", CSRF: h.csrf.token(csrfSession, tok), Page: adminTokenView{}})
}

// adminTokenIssue mints an admin API token: a new, separate session record
// (so revoking it does not end the browser session and vice versa) whose
// cookie value is the bearer token. It is shown once and never stored in
// clear.
func (h *loginHandler) adminTokenIssue(w http.ResponseWriter, r *http.Request) {
	tok := pageCookie(r, h.g.deps.Sessions.CookieName())
	if err := h.csrf.check(r, csrfSession, tok); err != nil {
		h.g.fail(w, r, http.StatusForbidden, "csrf-invalid", err, h.event(r, audit.TypeRequestRejected))
		return
	}
	tok, rec, ok := h.adminSession(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	ev := h.sessionEvent(r, audit.TypeAdmin, rec)
	ev.Actor = rec.UserID
	ev.Attrs = map[string]string{"action": "token.issue"}
	if !h.g.gate(w, r, rec.UserID, ev) {
		return
	}
	code, valid := normalizeTOTP(r.PostFormValue("code"))
	err := mfa.ErrInvalidCode
	if valid {
		err = h.g.deps.MFA.Verify(ctx, rec.UserID, code)
	}
	mev := h.sessionEvent(r, audit.TypeMFAVerify, rec)
	mev.Attrs = map[string]string{"method": "totp", "purpose": "admin-token"}
	switch {
	case err == nil:
	case errors.Is(err, mfa.ErrInvalidCode), errors.Is(err, mfa.ErrNotEnrolled):
		mev.Decision, mev.Reason = audit.Deny, "mfa-invalid"
		h.emit(r, mev)
		ev.Decision, ev.Reason = audit.Deny, "mfa-invalid"
		h.emit(r, ev)
		// A wrong code here is as much a guess at the second factor as
		// on the login page (a stolen browser session trying for the
		// admin API).
		v, ferr := h.g.deps.Risk.Fail(ctx, risk.SignalTOTPFailure, rec.UserID, h.g.clientIP(r))
		if !h.g.obey(w, r, v, ferr, ev) {
			return
		}
		h.render(w, r, http.StatusUnauthorized, pageAdminToken, pageData{
			Title: "Admin API token", Error: genericCodeError, CSRF: h.csrf.token(csrfSession, tok), Page: adminTokenView{},
		})
		return
	default:
		h.storeFail(w, r, err, ev)
		return
	}
	mev.Decision, mev.Reason = audit.Allow, "mfa-verified"
	h.emit(r, mev)

	now := h.g.now()
	token, nrec, err := h.g.deps.Sessions.Create(ctx, session.Record{
		UserID: rec.UserID, Email: rec.Email, Name: rec.Name, Groups: rec.Groups, Roles: rec.Roles,
		MFA: true, AuthTime: now, ExpiresAt: now.Add(adminTokenTTL),
		SourceIP: ev.SourceIP, UserAgent: "admin-api-token",
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
			h.log.ErrorContext(ctx, "revoking the admin token of a user locked meanwhile", "user_id", rec.UserID, "err", rerr)
		}
		h.g.obey(w, r, v, err, ev)
		return
	}
	bearer := h.g.deps.Sessions.Cookie(token, nrec.ExpiresAt.Sub(now)).Value
	ev.Decision, ev.Reason = audit.Allow, "admin-token-issued"
	ev.Target = nrec.ID
	ev.Attrs["token_session"] = nrec.ID
	h.emit(r, ev)
	h.render(w, r, http.StatusOK, pageAdminToken, pageData{
		Title: "Admin API token",
		Page:  adminTokenView{Token: bearer, ExpiresAt: formatTime(nrec.ExpiresAt)},
	})
}
