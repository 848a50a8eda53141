package gateway

import (
	"errors"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// maxBearerLen bounds an Authorization token before it is hashed or used
// as a store key: our session tokens are far shorter.
const maxBearerLen = 512

// bearerCheck is what an API asks of an authenticated session beyond
// "live, with MFA, not locked": the reason code of a refusal (403) and
// its cause, or "" to go on.
type bearerCheck func(rec session.Record) (reason string, cause error)

// bearerSession authenticates an API call by its bearer token (never a
// cookie: a browser cannot be made to send an Authorization header
// cross-site). The token must be a live session with MFA that passes
// check, of a user who is not locked; the lock is read from the store on
// every call, because a locked user's session may still sit in some
// instance's cache for the feed's latency. It answers the request itself
// (audited with ev, which it completes with the caller) and returns false
// on any refusal: 401 without a usable token, 403 when check or the lock
// refuses, 503 when the store cannot say.
func (a *adminAPI) bearerSession(w http.ResponseWriter, r *http.Request, ev *audit.Event, realm, authReason string, check bearerCheck) (session.Record, bool) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > maxBearerLen {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
		a.fail(w, r, http.StatusUnauthorized, "authentication required", authReason, nil, *ev)
		return session.Record{}, false
	}
	if a.g.storeDown(a.g.now()) {
		// The session cache can no longer learn of revocations.
		a.storeFail(w, r, errStoreDown, *ev)
		return session.Record{}, false
	}
	rec, err := a.g.deps.Sessions.Lookup(r.Context(), tok)
	if isNoSession(err) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
		a.fail(w, r, http.StatusUnauthorized, "authentication required", authReason, err, *ev)
		return session.Record{}, false
	} else if err != nil {
		a.storeFail(w, r, err, *ev)
		return session.Record{}, false
	}
	ev.UserID, ev.SessionID, ev.Actor = rec.UserID, rec.ID, rec.UserID
	if !rec.MFA {
		a.fail(w, r, http.StatusForbidden, "forbidden", "mfa-required", errors.New("API called with a session without MFA"), *ev)
		return session.Record{}, false
	}
	if check != nil {
		if reason, cause := check(rec); reason != "" {
			a.fail(w, r, http.StatusForbidden, "forbidden", reason, cause, *ev)
			return session.Record{}, false
		}
	}
	v, err := a.g.deps.Risk.Locked(r.Context(), rec.UserID)
	if err != nil {
		a.storeFail(w, r, err, *ev)
		return session.Record{}, false
	}
	if !v.Allow {
		a.failRef(w, r, http.StatusForbidden, lockedMessage(v, v.Ref), v.Reason, nil, *ev, v.Ref)
		return session.Record{}, false
	}
	return rec, true
}
