package gateway

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/portcullis/portcullis/authz/audit"
	ident "github.com/portcullis/portcullis/authz/identity"
	"github.com/portcullis/portcullis/authz/risk"
)

// loginRecord is the server half of an OIDC login in flight, stored under
// "login:"+state. Binding is the SHA-256 of the random value in the
// browser's login cookie: the callback is accepted only from the browser
// that started the login (a state/code pair lured into another browser —
// login CSRF — is refused), and TakeEphemeral makes the state single use.
type loginRecord struct {
	State   ident.LoginState `json:"state"`
	Binding string           `json:"binding"`
}

// maxStateLen bounds the state parameter before it is used as a store key.
const maxStateLen = 128

// login starts an OIDC login, or hops straight back when the browser
// already has a valid session (a route host sent it here because that
// host has no cookie of its own yet).
func (h *loginHandler) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rd := h.g.safeRedirect(r.URL.Query().Get("rd"))
	// A blocked source does not even get to the IdP.
	if !h.g.gate(w, r, "", h.event(r, audit.TypeLoginStart)) {
		return
	}

	if tok, rec, err := h.session(r); err == nil && rec.MFA {
		to, err := h.g.hopURL(ctx, rd, tok)
		if err != nil {
			h.storeFail(w, r, err, h.sessionEvent(r, audit.TypeLoginStart, rec))
			return
		}
		redirect(w, r, to)
		return
	} else if err != nil && !isNoSession(err) {
		h.storeFail(w, r, err, h.event(r, audit.TypeLoginStart))
		return
	}

	ev := h.event(r, audit.TypeLoginStart)
	st, authURL, err := h.g.deps.Identity.Begin(rd)
	if err != nil {
		h.g.fail(w, r, http.StatusInternalServerError, "idp-error", err, ev)
		return
	}
	// Several tabs may log in at once: keep an existing binding value so
	// that starting a second login does not break the first one.
	binding := pageCookie(r, loginCookie)
	if len(binding) != 43 || !isTokenChars(binding) {
		if binding, err = randomToken(h.rand, 32); err != nil {
			h.g.fail(w, r, http.StatusInternalServerError, "internal-error", err, ev)
			return
		}
	}
	if st.CreatedAt.IsZero() {
		st.CreatedAt = h.g.now()
	}
	b, err := json.Marshal(loginRecord{State: st, Binding: sha256Hex(binding)})
	if err != nil {
		h.g.fail(w, r, http.StatusInternalServerError, "internal-error", err, ev)
		return
	}
	if err := h.g.deps.Store.PutEphemeral(ctx, "login:"+st.State, b, h.loginTimeout); err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	setFlowCookie(w, loginCookie, binding, h.loginTimeout)
	ev.Decision = audit.Allow
	ev.Attrs = map[string]string{"return_host": returnHost(rd)}
	h.emit(r, ev)
	http.Redirect(w, r, authURL, http.StatusFound)
}

// returnHost is what the audit trail records of a return URL: the host
// only (query strings may carry secrets of the upstream app).
func returnHost(rd string) string {
	u, err := url.Parse(rd)
	if err != nil || u.Host == "" {
		return "access"
	}
	return u.Hostname()
}

// callback completes the OIDC step. Whatever fails, the user sees one
// generic page; the reason code goes to the audit trail.
func (h *loginHandler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	ev := h.event(r, audit.TypeLoginCallback)
	// A blocked source is refused before anything of the callback is
	// looked at, so it cannot make failures count against anyone.
	if !h.g.gate(w, r, "", ev) {
		return
	}
	// rejected is every refusal of the callback itself (state, code,
	// token, nonce, claims): one OIDC failure for the source (the user
	// is not known yet).
	rejected := func(status int, reason string, cause error) {
		h.g.failed(w, r, risk.SignalOIDCFailure, "", ev, status, reason, cause)
	}
	state := q.Get("state")
	validState := len(state) > 0 && len(state) <= maxStateLen && isTokenChars(state)

	if !validState {
		reason, cause := "state-invalid", errors.New("state parameter missing or malformed")
		if e := q.Get("error"); e != "" {
			reason, cause = "idp-error", fmt.Errorf("identity provider returned error %.64q without usable state", e)
		}
		rejected(http.StatusBadRequest, reason, cause)
		return
	}
	// Take (atomic get-and-delete) before any other check: whatever the
	// outcome, this state can never be presented again on any instance.
	raw, err := h.g.deps.Store.TakeEphemeral(ctx, "login:"+state)
	if isNotFound(err) {
		rejected(http.StatusBadRequest, "state-invalid", errors.New("unknown, expired or already used state"))
		return
	} else if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	var lr loginRecord
	if err := json.Unmarshal(raw, &lr); err != nil {
		rejected(http.StatusBadRequest, "state-invalid", fmt.Errorf("corrupt login record: %w", err))
		return
	}
	binding := pageCookie(r, loginCookie)
	if binding == "" || subtle.ConstantTimeCompare([]byte(sha256Hex(binding)), []byte(lr.Binding)) != 1 {
		rejected(http.StatusBadRequest, "state-invalid", errors.New("login state not bound to this browser"))
		return
	}
	if h.g.now().Sub(lr.State.CreatedAt) > h.loginTimeout {
		rejected(http.StatusBadRequest, "state-invalid", errors.New("login state expired"))
		return
	}

	// FinishCallback re-checks state (constant time), the RFC 9207 iss
	// parameter and ?error=, exchanges the code with the PKCE verifier and
	// verifies the ID token and nonce.
	id, err := h.g.deps.Identity.FinishCallback(ctx, lr.State, q)
	if err != nil {
		status, reason := http.StatusUnauthorized, "idp-error"
		switch {
		case errors.Is(err, ident.ErrStateMismatch), errors.Is(err, ident.ErrLoginExpired):
			status, reason = http.StatusBadRequest, "state-invalid"
		case errors.Is(err, ident.ErrNonceMismatch):
			reason = "nonce-mismatch"
		case errors.Is(err, ident.ErrTokenInvalid):
			reason = "token-invalid"
		}
		var netErr net.Error
		if errors.As(err, &netErr) {
			// The IdP's token endpoint could not be reached: an outage
			// of ours, not a failure of this client. Counting it would
			// block whole offices behind one NAT address during it.
			h.g.fail(w, r, status, reason, err, ev)
			return
		}
		rejected(status, reason, err)
		return
	}
	if id.UserID == "" {
		rejected(http.StatusUnauthorized, "token-invalid", errors.New("identity without user ID"))
		return
	}
	ev.UserID = id.UserID
	ip := h.g.clientIP(r)
	// A locked user stops here: no pending login, no second factor. A
	// successful OIDC login never lifts a lock.
	if !h.g.gate(w, r, id.UserID, ev) {
		return
	}
	// Unusual network or hour: audited and alerted by the engine. The
	// web login always asks for the second factor, so there is nothing
	// to step up here.
	assessed, err := h.g.deps.Risk.Assess(ctx, id.UserID, ip, "web")
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}

	pol := h.g.deps.Policy.Load()
	if pol == nil {
		h.g.fail(w, r, http.StatusServiceUnavailable, "policy-unavailable", errors.New("no policy loaded"), ev)
		return
	}
	now := h.g.now()
	roles := pol.RolesFor(id.UserID, id.Email, id.Groups)
	if err := putUser(ctx, h.g.deps.Store, userRecord{
		UserID: id.UserID, Email: id.Email, Name: id.Name, Groups: id.Groups, Roles: roles,
		LastLogin: now, LastIP: ev.SourceIP,
	}); err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	enrolled, err := h.g.deps.MFA.Enrolled(ctx, id.UserID)
	if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	p := pendingLogin{
		UserID: id.UserID, Email: id.Email, Name: id.Name, Groups: id.Groups, Roles: roles,
		ReturnTo: lr.State.ReturnTo, CreatedAt: now,
	}
	if err := h.startPending(w, r, p); err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	ev.Decision = audit.Allow
	ev.Reason = "oidc-verified"
	ev.Attrs = map[string]string{"mfa_enrolled": fmt.Sprint(enrolled)}
	// Personal data: the audit log keeps these only when configured to
	// (audit.include_email / include_name); the user ID is what it needs.
	if id.Email != "" {
		ev.Attrs[audit.AttrEmail] = id.Email
	}
	if id.Name != "" {
		ev.Attrs[audit.AttrName] = id.Name
	}
	if len(assessed.Anomalies) > 0 {
		ev.Attrs["anomalies"] = strings.Join(assessed.Anomalies, ",")
	}
	h.emit(r, ev)
	if enrolled {
		redirect(w, r, pathMFA)
		return
	}
	redirect(w, r, pathEnrol)
}

// isTokenChars reports whether s only holds URL-safe token characters
// (base64url, hex, and the few others RFC 3986 leaves unreserved).
func isTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
}
