package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
)

// pendingLogin is a half-finished login: OIDC verified, second factor not
// yet. It lives in the store under "mfa:"+SHA-256(cookie) for at most the
// login timeout and grants NOTHING by itself: no page other than the MFA
// pages reads it, and it is consumed (TakeEphemeral) when the session is
// created, so it completes at most one login on any instance.
type pendingLogin struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email,omitempty"`
	Name      string    `json:"name,omitempty"`
	Groups    []string  `json:"groups,omitempty"`
	Roles     []string  `json:"roles,omitempty"`
	ReturnTo  string    `json:"return_to"`
	CreatedAt time.Time `json:"created_at"`
	// SecondFactor is set once the enrolment was confirmed with a valid
	// code: the user then only has to acknowledge the recovery codes.
	SecondFactor bool `json:"second_factor,omitempty"`
}

const genericCodeError = "The code was not accepted."

func pendingKey(cookie string) string { return "mfa:" + sha256Hex(cookie) }

func pendingFailKey(cookie string) string { return "mfa-pending-fail:" + sha256Hex(cookie) }

// startPending stores p under a fresh random cookie.
func (h *loginHandler) startPending(w http.ResponseWriter, r *http.Request, p pendingLogin) error {
	tok, err := randomToken(h.rand, 32)
	if err != nil {
		return err
	}
	if err := h.putPending(r, tok, p); err != nil {
		return err
	}
	setFlowCookie(w, mfaCookie, tok, h.loginTimeout)
	return nil
}

func (h *loginHandler) putPending(r *http.Request, cookie string, p pendingLogin) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode pending login: %w", err)
	}
	return h.g.deps.Store.PutEphemeral(r.Context(), pendingKey(cookie), b, h.loginTimeout)
}

// loadPending reads (take=false) or consumes (take=true) the pending login
// named by the browser's cookie. Missing, expired and unknown records all
// return errNoPending; store failures are returned as they are.
func (h *loginHandler) loadPending(r *http.Request, take bool) (string, pendingLogin, error) {
	cookie := pageCookie(r, mfaCookie)
	if cookie == "" {
		return "", pendingLogin{}, errNoPending
	}
	get := h.g.deps.Store.GetEphemeral
	if take {
		get = h.g.deps.Store.TakeEphemeral
	}
	raw, err := get(r.Context(), pendingKey(cookie))
	if isNotFound(err) {
		return "", pendingLogin{}, errNoPending
	} else if err != nil {
		return "", pendingLogin{}, err
	}
	var p pendingLogin
	if err := json.Unmarshal(raw, &p); err != nil || p.UserID == "" {
		return "", pendingLogin{}, fmt.Errorf("%w: corrupt record", errNoPending)
	}
	// The store expires the record; this also bounds it by the gateway's
	// clock, whichever is stricter.
	if h.g.now().Sub(p.CreatedAt) > 2*h.loginTimeout {
		return "", pendingLogin{}, fmt.Errorf("%w: expired", errNoPending)
	}
	return cookie, p, nil
}

// pendingOrRestart loads the pending login for a GET page; without one
// the browser is sent to start over.
func (h *loginHandler) pendingOrRestart(w http.ResponseWriter, r *http.Request) (string, pendingLogin, bool) {
	cookie, p, err := h.loadPending(r, false)
	if errors.Is(err, errNoPending) {
		clearFlowCookie(w, mfaCookie)
		redirect(w, r, pathLogin)
		return "", p, false
	} else if err != nil {
		h.storeFail(w, r, err, h.event(r, audit.TypeMFAVerify))
		return "", p, false
	}
	return cookie, p, true
}

// pendingForPost checks CSRF and loads the pending login for a POST.
func (h *loginHandler) pendingForPost(w http.ResponseWriter, r *http.Request, typ string) (string, pendingLogin, bool) {
	cookie := pageCookie(r, mfaCookie)
	if err := h.csrf.check(r, csrfPending, cookie); err != nil {
		h.g.fail(w, r, http.StatusForbidden, "csrf-invalid", err, h.event(r, audit.TypeRequestRejected))
		return "", pendingLogin{}, false
	}
	cookie, p, err := h.loadPending(r, false)
	if errors.Is(err, errNoPending) {
		clearFlowCookie(w, mfaCookie)
		h.g.fail(w, r, http.StatusUnauthorized, "mfa-pending-invalid", err, h.event(r, typ))
		return "", p, false
	} else if err != nil {
		h.storeFail(w, r, err, h.event(r, typ))
		return "", p, false
	}
	return cookie, p, true
}

// enrolView is the data of the enrolment page. Secret is empty when the
// page is shown again after a wrong code (a new secret would not match
// what the app already scanned).
type enrolView struct {
	QR     template.URL
	Secret string
	URI    string
}

func (h *loginHandler) enrolPage(w http.ResponseWriter, r *http.Request) {
	cookie, p, ok := h.pendingOrRestart(w, r)
	if !ok {
		return
	}
	ev := h.pendingEvent(r, audit.TypeMFAEnrolStart, p)
	enrolled, err := h.g.deps.MFA.Enrolled(r.Context(), p.UserID)
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	// Never replace an existing enrolment from a login that only passed
	// the first factor: that would let a stolen IdP password take over
	// the second factor.
	if enrolled || p.SecondFactor {
		redirect(w, r, pathMFA)
		return
	}
	account := p.Email
	if account == "" {
		account = p.UserID
	}
	e, err := h.g.deps.MFA.BeginEnrolment(r.Context(), p.UserID, account)
	if errors.Is(err, mfa.ErrAlreadyEnrolled) {
		redirect(w, r, pathMFA) // enrolled on another instance meanwhile
		return
	} else if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	h.allowAndRender(w, r, ev, pageEnrol, pageData{
		Title: "Set up your authenticator",
		CSRF:  h.csrf.token(csrfPending, cookie),
		Page: enrolView{
			// Built here from our own PNG bytes; html/template would
			// otherwise reject the data: URL.
			QR:     template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(e.QRPNG)),
			Secret: e.Secret,
			URI:    e.URI,
		},
	})
}

func (h *loginHandler) enrolConfirm(w http.ResponseWriter, r *http.Request) {
	cookie, p, ok := h.pendingForPost(w, r, audit.TypeMFAEnrolConfirm)
	if !ok {
		return
	}
	ctx := r.Context()
	ev := h.pendingEvent(r, audit.TypeMFAEnrolConfirm, p)
	if p.SecondFactor {
		redirect(w, r, pathMFA)
		return
	}
	if !h.g.gate(w, r, p.UserID, ev) {
		return
	}
	code, valid := normalizeTOTP(r.PostFormValue("code"))
	var codes []string
	err := mfa.ErrInvalidCode
	if valid {
		codes, err = h.g.deps.MFA.ConfirmEnrolment(ctx, p.UserID, code)
	}
	switch {
	case err == nil:
	case errors.Is(err, mfa.ErrAlreadyEnrolled):
		redirect(w, r, pathMFA)
		return
	case errors.Is(err, mfa.ErrNoPendingEnrolment):
		redirect(w, r, pathEnrol) // the enrolment secret expired: start again
		return
	case errors.Is(err, mfa.ErrInvalidCode):
		// The code is checked against the secret this page has just
		// shown: a wrong one is a typo, never a guess at the user's
		// second factor, so it counts against the source only (a new
		// user who fumbles is not locked out).
		h.codeRejected(w, r, cookie, ev, pageEnrol, "Set up your authenticator", enrolView{}, risk.SignalTOTPFailure, "")
		return
	default:
		h.storeFail(w, r, err, ev)
		return
	}
	p.SecondFactor = true
	if err := h.putPending(r, cookie, p); err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	h.allowAndRender(w, r, ev, pageRecovery, pageData{
		Title: "Save your recovery codes",
		CSRF:  h.csrf.token(csrfPending, cookie),
		Page:  struct{ Codes []string }{codes},
	})
}

// allowAndRender audits a successful step and shows the next page.
func (h *loginHandler) allowAndRender(w http.ResponseWriter, r *http.Request, ev audit.Event, page string, d pageData) {
	ev.Decision = audit.Allow
	h.emit(r, ev)
	h.render(w, r, http.StatusOK, page, d)
}

// enrolContinue completes a login whose second factor was just enrolled.
func (h *loginHandler) enrolContinue(w http.ResponseWriter, r *http.Request) {
	_, p, ok := h.pendingForPost(w, r, audit.TypeSessionStart)
	if !ok {
		return
	}
	if !p.SecondFactor {
		redirect(w, r, pathMFA)
		return
	}
	h.completeLogin(w, r, "enrolment")
}

func (h *loginHandler) mfaPage(w http.ResponseWriter, r *http.Request) {
	cookie, p, ok := h.pendingOrRestart(w, r)
	if !ok {
		return
	}
	if !p.SecondFactor {
		enrolled, err := h.g.deps.MFA.Enrolled(r.Context(), p.UserID)
		if err != nil {
			h.storeFail(w, r, err, h.pendingEvent(r, audit.TypeMFAVerify, p))
			return
		}
		if !enrolled {
			redirect(w, r, pathEnrol)
			return
		}
	}
	h.render(w, r, http.StatusOK, pageMFA, pageData{Title: "Two-factor verification", CSRF: h.csrf.token(csrfPending, cookie)})
}

func (h *loginHandler) mfaVerify(w http.ResponseWriter, r *http.Request) {
	cookie, p, ok := h.pendingForPost(w, r, audit.TypeMFAVerify)
	if !ok {
		return
	}
	ctx := r.Context()
	ev := h.pendingEvent(r, audit.TypeMFAVerify, p)
	// Before any code is checked: a locked user's codes are not even
	// looked at (no oracle for a correct one).
	if !h.g.gate(w, r, p.UserID, ev) {
		return
	}
	method, err, sig := "totp", mfa.ErrInvalidCode, risk.SignalTOTPFailure
	if rc := strings.TrimSpace(r.PostFormValue("recovery")); rc != "" {
		method, sig = "recovery", risk.SignalRecoveryFailure
		if len(rc) <= 64 {
			err = h.g.deps.MFA.VerifyRecovery(ctx, p.UserID, rc)
		}
	} else if code, valid := normalizeTOTP(r.PostFormValue("code")); valid {
		err = h.g.deps.MFA.Verify(ctx, p.UserID, code)
	}
	ev.Attrs = map[string]string{"method": method}
	switch {
	case err == nil:
	case errors.Is(err, mfa.ErrNotEnrolled):
		// Reset by an admin while this login was pending.
		redirect(w, r, pathEnrol)
		return
	case errors.Is(err, mfa.ErrInvalidCode):
		h.codeRejected(w, r, cookie, ev, pageMFA, "Two-factor verification", nil, sig, p.UserID)
		return
	default:
		h.storeFail(w, r, err, ev)
		return
	}
	ev.Decision, ev.Reason = audit.Allow, "mfa-verified"
	h.emit(r, ev)
	h.completeLogin(w, r, method)
}

// codeRejected counts a wrong code with the risk engine (sig, against
// failUser and the source) and against the pending login, and shows the
// same generic message whatever was wrong. When the engine's count locks
// the user (or blocks the source), this very response is the locked page.
// After maxPendingFailures the pending login is dropped: guessing needs a
// fresh IdP login.
func (h *loginHandler) codeRejected(w http.ResponseWriter, r *http.Request, cookie string, ev audit.Event, page, title string, view any, sig risk.Signal, failUser string) {
	ev.Decision, ev.Reason = audit.Deny, "mfa-invalid"
	v, err := h.g.deps.Risk.Fail(r.Context(), sig, failUser, h.g.clientIP(r))
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	if !v.Allow {
		// The pending login can never complete now: drop it.
		if err := h.g.deps.Store.DeleteEphemeral(r.Context(), pendingKey(cookie)); err != nil {
			h.log.ErrorContext(r.Context(), "dropping the pending login of a locked user", "user_id", ev.UserID, "err", err)
		}
		clearFlowCookie(w, mfaCookie)
		h.emit(r, ev)
		dev := ev
		dev.Attrs = map[string]string{"pending": "dropped"}
		h.g.denyVerdict(w, r, v, dev)
		return
	}
	n, err := h.g.deps.Store.Incr(r.Context(), pendingFailKey(cookie), 1, h.loginTimeout)
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	if n >= maxPendingFailures {
		if err := h.g.deps.Store.DeleteEphemeral(r.Context(), pendingKey(cookie)); err != nil {
			h.storeFail(w, r, err, ev)
			return
		}
		clearFlowCookie(w, mfaCookie)
		if ev.Attrs == nil {
			ev.Attrs = map[string]string{}
		}
		ev.Attrs["pending"] = "dropped"
		h.emit(r, ev)
		h.message(w, r, http.StatusUnauthorized, "Sign-in stopped", messagePage{
			Message: "Too many codes were not accepted. Sign in again to retry.",
			Link:    pathLogin, LinkText: "Sign in again",
		})
		return
	}
	h.emit(r, ev)
	h.render(w, r, http.StatusUnauthorized, page, pageData{
		Title: title, Error: genericCodeError, CSRF: h.csrf.token(csrfPending, cookie), Page: view,
	})
}

// completeLogin consumes the pending login (single use on every instance)
// and creates the session: the only place a browser login grants access.
func (h *loginHandler) completeLogin(w http.ResponseWriter, r *http.Request, method string) {
	ctx := r.Context()
	_, p, err := h.loadPending(r, true)
	if errors.Is(err, errNoPending) {
		// Raced with another request that completed or dropped it.
		clearFlowCookie(w, mfaCookie)
		h.g.fail(w, r, http.StatusUnauthorized, "mfa-pending-invalid", err, h.event(r, audit.TypeSessionStart))
		return
	} else if err != nil {
		h.storeFail(w, r, err, h.event(r, audit.TypeSessionStart))
		return
	}
	ev := h.pendingEvent(r, audit.TypeSessionStart, p)
	pol := h.g.deps.Policy.Load()
	if pol == nil {
		h.g.fail(w, r, http.StatusServiceUnavailable, "policy-unavailable", errors.New("no policy loaded"), ev)
		return
	}
	// Right before the session exists: a lock (or block) raised while
	// this login was pending, on any instance or by SSH failures, wins.
	if !h.g.gate(w, r, p.UserID, ev) {
		return
	}
	now := h.g.now()
	token, rec, err := h.g.deps.Sessions.Create(ctx, session.Record{
		UserID: p.UserID, Email: p.Email, Name: p.Name, Groups: p.Groups, Roles: p.Roles,
		MFA: true, AuthTime: now, ExpiresAt: now.Add(pol.MaxSessionTTL(p.Roles)),
		SourceIP: ev.SourceIP, UserAgent: userAgent(r),
	})
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	// And once more after: a lock raised between the check above and
	// Create may have revoked the user's sessions before this one
	// existed. Whichever order, one of the two checks sees it.
	if v, err := h.g.deps.Risk.Locked(ctx, p.UserID); err != nil || !v.Allow {
		if rerr := h.g.deps.Sessions.Revoke(ctx, rec.ID, "locked"); rerr != nil && !isNoSession(rerr) {
			h.log.ErrorContext(ctx, "revoking the session of a user locked during login", "user_id", p.UserID, "err", rerr)
		}
		h.g.obey(w, r, v, err, ev)
		return
	}
	// Only a login that passed every factor joins the user's history
	// (networks, hours). Losing this write only makes the next login
	// look new (more scrutiny, never less): it does not fail the login.
	if err := h.g.deps.Risk.Record(ctx, p.UserID, h.g.clientIP(r)); err != nil {
		h.log.ErrorContext(ctx, "recording a login in the risk history", "user_id", p.UserID, "err", err)
	}
	c := h.g.deps.Sessions.Cookie(token, rec.ExpiresAt.Sub(now))
	to, err := h.g.hopURL(ctx, p.ReturnTo, c.Value)
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	http.SetCookie(w, c)
	clearFlowCookie(w, mfaCookie)
	clearFlowCookie(w, loginCookie)
	ev.SessionID = rec.ID
	ev.Decision, ev.Reason = audit.Allow, "login-complete"
	ev.Attrs = map[string]string{"mfa_method": method}
	h.emit(r, ev)
	redirect(w, r, to)
}

// normalizeTOTP strips the spaces people type and reports whether what
// is left can be a TOTP code at all (6 to 8 digits).
func normalizeTOTP(s string) (string, bool) {
	s = strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if len(s) < 6 || len(s) > 8 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	return s, true
}

// userAgent is bounded: it is stored in the session record and shown to
// admins.
func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	return ua
}

func (h *loginHandler) pendingEvent(r *http.Request, typ string, p pendingLogin) audit.Event {
	ev := h.event(r, typ)
	ev.UserID = p.UserID
	return ev
}
