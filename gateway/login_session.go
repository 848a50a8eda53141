package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"sort"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// session returns the access host's session (cookie value and record).
// Only a record with MFA counts: anything less is "not signed in".
func (h *loginHandler) session(r *http.Request) (string, session.Record, error) {
	tok := pageCookie(r, h.g.deps.Sessions.CookieName())
	if tok == "" {
		return "", session.Record{}, session.ErrNoSession
	}
	if h.g.storeDown(h.g.now()) {
		return "", session.Record{}, errStoreDown
	}
	rec, err := h.g.deps.Sessions.Lookup(r.Context(), tok)
	if err != nil {
		return "", session.Record{}, err
	}
	if !rec.MFA {
		return "", session.Record{}, session.ErrNoSession
	}
	return tok, rec, nil
}

func isNoSession(err error) bool { return errors.Is(err, session.ErrNoSession) }

func (h *loginHandler) sessionEvent(r *http.Request, typ string, rec session.Record) audit.Event {
	ev := h.event(r, typ)
	ev.UserID, ev.SessionID = rec.UserID, rec.ID
	return ev
}

// requireSession loads the session for a page; without one the browser
// is sent to log in and come back to returnTo.
func (h *loginHandler) requireSession(w http.ResponseWriter, r *http.Request, returnTo string) (string, session.Record, bool) {
	tok, rec, err := h.session(r)
	if isNoSession(err) {
		to := pathLogin
		if returnTo != pathHome {
			to += "?rd=" + url.QueryEscape(returnTo)
		}
		redirect(w, r, to)
		return "", rec, false
	} else if err != nil {
		h.storeFail(w, r, err, h.event(r, audit.TypeRequestRejected))
		return "", rec, false
	}
	return tok, rec, true
}

type appLink struct{ Name, URL string }

type homeView struct {
	UserID, Name, Email string
	Roles               []string
	ExpiresAt           string
	Apps                []appLink
	Admin               bool
	Access              bool // just-in-time access is on (/access)
}

func (h *loginHandler) home(w http.ResponseWriter, r *http.Request) {
	tok, rec, ok := h.requireSession(w, r, pathHome)
	if !ok {
		return
	}
	now := h.g.now()
	roles := h.g.effectiveRoles(rec.UserID, rec.Roles, now)
	v := homeView{
		UserID: rec.UserID, Name: rec.Name, Email: rec.Email, Roles: roles,
		ExpiresAt: formatTime(rec.ExpiresAt), Access: h.g.deps.Access != nil,
	}
	if pol := h.g.deps.Policy.Load(); pol != nil {
		v.Admin = h.g.isAdmin(pol, rec.UserID, rec.Roles, now)
		v.Apps = h.allowedApps(r, pol, rec, roles)
	}
	h.render(w, r, http.StatusOK, pageHome, pageData{Title: "Portcullis", CSRF: h.csrf.token(csrfSession, tok), Page: v})
}

// allowedApps lists the routes whose entry point (GET on the route's path
// prefix) the policy allows for this session from this source. It is a
// convenience list; every request is still evaluated on its own.
func (h *loginHandler) allowedApps(r *http.Request, pol *authz.Policy, rec session.Record, roles []string) []appLink {
	ip := h.g.clientIP(r)
	seen := map[string]bool{}
	var out []appLink
	for _, rt := range h.g.cfg.Routes {
		if seen[rt.Name] {
			continue
		}
		p := rt.PathPrefix
		if p == "" {
			p = "/"
		}
		d := pol.Evaluate(&authz.Request{
			Kind:     authz.KindHTTP,
			Subject:  authz.Subject{UserID: rec.UserID, Roles: roles, MFA: rec.MFA, AuthTime: rec.AuthTime},
			SourceIP: ip, App: rt.Name, Method: http.MethodGet, Path: p,
		}, h.g.now())
		if !d.Allow {
			continue
		}
		seen[rt.Name] = true
		out = append(out, appLink{Name: rt.Name, URL: h.g.externalURL(rt.Host, p)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// logoutPage asks for confirmation: logout changes state, so it is a POST
// with a CSRF token (a cross-site <img src=/logout> must not sign anyone out).
func (h *loginHandler) logoutPage(w http.ResponseWriter, r *http.Request) {
	d := pageData{Title: "Sign out"}
	if tok, _, err := h.session(r); err == nil {
		d.CSRF = h.csrf.token(csrfSession, tok)
	} else if !isNoSession(err) {
		h.storeFail(w, r, err, h.event(r, audit.TypeSessionEnd))
		return
	}
	h.render(w, r, http.StatusOK, pageLogout, d)
}

func (h *loginHandler) logout(w http.ResponseWriter, r *http.Request) {
	tok := pageCookie(r, h.g.deps.Sessions.CookieName())
	if err := h.csrf.check(r, csrfSession, tok); err != nil {
		h.g.fail(w, r, http.StatusForbidden, "csrf-invalid", err, h.event(r, audit.TypeRequestRejected))
		return
	}
	rec, err := h.g.deps.Sessions.Lookup(r.Context(), tok)
	switch {
	case err == nil:
		ev := h.sessionEvent(r, audit.TypeSessionEnd, rec)
		// Revoke deletes the record and publishes the revocation to every
		// instance, which drops it from their caches: the route hosts'
		// cookies carry the same token, so they are signed out too.
		// A session that vanished between Lookup and Revoke (revoked or
		// expired on another instance) is as logged out as it gets.
		if err := h.g.deps.Sessions.Revoke(r.Context(), rec.ID, "logout"); err != nil && !isNoSession(err) {
			h.storeFail(w, r, err, ev)
			return
		}
		ev.Decision, ev.Reason = audit.Allow, "logout"
		h.emit(r, ev)
	case isNoSession(err):
		// Already gone (expired or revoked elsewhere): just clear the cookie.
	default:
		h.storeFail(w, r, err, h.event(r, audit.TypeSessionEnd))
		return
	}
	http.SetCookie(w, h.g.deps.Sessions.ClearCookie())
	h.message(w, r, http.StatusOK, "Signed out", messagePage{
		Message: "You are signed out of Portcullis and every application opened through it.",
		Link:    pathLogin, LinkText: "Sign in again",
	})
}
