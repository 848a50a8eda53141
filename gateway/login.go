package gateway

import (
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// Access-host page paths.
const (
	pathHome       = "/"
	pathLogin      = "/login"
	pathCallback   = "/oauth2/callback"
	pathMFA        = "/mfa"
	pathEnrol      = "/mfa/enrol"
	pathContinue   = "/mfa/continue"
	pathLogout     = "/logout"
	pathAdminToken = "/admin/token"
	pathCSS        = "/assets/portcullis.css"
)

// Browser cookies of the login flow. Both are __Host- cookies (Secure,
// Path=/, no Domain) so no sibling subdomain can plant or read them, and
// both hold only random values whose SHA-256 keys the server-side record.
const (
	loginCookie = "__Host-portcullis-login" // binds OIDC state to this browser
	mfaCookie   = "__Host-portcullis-mfa"   // pending second factor
)

// CSRF purposes (one per kind of cookie a form is bound to).
const (
	csrfPending = "pending"
	csrfSession = "session"
)

const (
	defaultLoginTimeout = 5 * time.Minute
	maxFormBytes        = 16 << 10
	// maxPendingFailures bounds code guesses per half-finished login; after
	// that the pending record is dropped and the OIDC login must be redone.
	maxPendingFailures = 5
)

// loginHandler serves the access-host pages: login, OIDC callback, TOTP
// enrolment and verification, logout, home, admin token.
//
// Trust boundary: nothing here grants access until both factors passed and
// a session exists. The login-state and pending-MFA records live in the
// shared store (any instance may serve any step) and are single use.
type loginHandler struct {
	g            *Gateway
	log          *slog.Logger
	rand         io.Reader
	csrf         csrfGuard
	pages        pageSet
	loginTimeout time.Duration
	approvals    *session.SSHApprovals // keyboard-interactive SSH approvals (ssh_approve.go)
}

func newLoginHandler(g *Gateway) (*loginHandler, error) {
	h := &loginHandler{g: g, log: g.deps.Logger, rand: g.deps.Rand, loginTimeout: g.cfg.LoginTimeout}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.rand == nil {
		h.rand = rand.Reader
	}
	if h.loginTimeout <= 0 {
		h.loginTimeout = defaultLoginTimeout
	}
	key, err := newCSRFKey(g.deps.SigningKey, h.rand)
	if err != nil {
		return nil, err
	}
	h.csrf = csrfGuard{key: key, origin: g.externalURL(g.cfg.AccessHost, "")}
	if h.pages, err = loadPages(); err != nil {
		return nil, err
	}
	// SSH certificate and approval pages (ssh_*.go).
	if err := h.initSSH(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *loginHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Pages carry secrets (TOTP secret, recovery codes, tokens) or are
	// per-user: never cache them anywhere.
	w.Header().Set("Cache-Control", "no-store")
	type route struct {
		get, post http.HandlerFunc
	}
	var rt route
	switch r.URL.Path {
	case pathHome:
		rt = route{get: h.home}
	case pathLogin:
		rt = route{get: h.login}
	case pathCallback:
		rt = route{get: h.callback}
	case pathEnrol:
		rt = route{get: h.enrolPage, post: h.enrolConfirm}
	case pathContinue:
		rt = route{post: h.enrolContinue}
	case pathMFA:
		rt = route{get: h.mfaPage, post: h.mfaVerify}
	case pathLogout:
		rt = route{get: h.logoutPage, post: h.logout}
	case pathAdminToken:
		rt = route{get: h.adminTokenPage, post: h.adminTokenIssue}
	case pathToken:
		rt = route{get: h.userTokenPage, post: h.userTokenIssue}
	// Just-in-time access pages (access_pages.go).
	case pathAccess:
		rt = route{get: h.accessPage}
	case pathAccessRequest:
		rt = route{post: h.accessSubmit}
	// SSH certificates for `portcullis login` and keyboard-interactive
	// approvals (ssh_login.go, ssh_approve.go).
	case pathSSHLogin:
		rt = route{get: h.sshLoginPage, post: h.sshLoginConfirm}
	case pathSSHCert:
		rt = route{post: h.sshCert}
	case pathSSHApprove:
		rt = route{get: h.sshApprovePage, post: h.sshApproveDecide}
	case pathCSS:
		w.Header().Set("Cache-Control", "public, max-age=3600")
		rt = route{get: h.css}
	default:
		// Pages whose path carries an ID.
		get, post := h.prefixRoute(r.URL.Path)
		if get == nil && post == nil {
			h.g.fail(w, r, http.StatusNotFound, "not-found", nil, h.event(r, audit.TypeRequestRejected))
			return
		}
		rt = route{get: get, post: post}
	}
	switch {
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && rt.get != nil:
		rt.get(w, r)
	case r.Method == http.MethodPost && rt.post != nil:
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			h.g.fail(w, r, http.StatusBadRequest, "bad-form", err, h.event(r, audit.TypeRequestRejected))
			return
		}
		rt.post(w, r)
	default:
		var allow []string
		if rt.get != nil {
			allow = append(allow, http.MethodGet, http.MethodHead)
		}
		if rt.post != nil {
			allow = append(allow, http.MethodPost)
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		h.g.fail(w, r, http.StatusMethodNotAllowed, "method-not-allowed", nil, h.event(r, audit.TypeRequestRejected))
	}
}

// prefixRoute returns the handlers of a page whose path carries an ID
// (nil, nil for none). The access host's paths were normalised before
// dispatch (serveAccess), so no "..", "//" or escaped "/" reaches here.
func (h *loginHandler) prefixRoute(p string) (get, post http.HandlerFunc) {
	switch {
	case strings.HasPrefix(p, pathAccessRequests):
		return nil, h.accessDecide
	case p == pathReviews || strings.HasPrefix(p, pathReviews+"/"):
		// Access reviews (review_pages.go) parse the rest themselves.
		return h.reviewRoute(p)
	}
	return nil, nil
}

// event is the skeleton of every audit event raised by a page.
func (h *loginHandler) event(r *http.Request, typ string) audit.Event {
	ev := audit.Event{Type: typ, Method: r.Method, Path: r.URL.Path}
	if ip := h.g.clientIP(r); ip.IsValid() {
		ev.SourceIP = ip.String()
	}
	return ev
}

func (h *loginHandler) emit(r *http.Request, ev audit.Event) {
	if ev.Time.IsZero() {
		ev.Time = h.g.now()
	}
	if ev.Instance == "" {
		ev.Instance = h.g.cfg.Instance
	}
	h.g.deps.Audit.Emit(r.Context(), ev)
}

// storeFail answers a failed store call: 503 "state store unavailable" when
// the backend is down (fail closed), 500 otherwise.
func (h *loginHandler) storeFail(w http.ResponseWriter, r *http.Request, err error, ev audit.Event) {
	if errors.Is(err, store.ErrUnavailable) {
		h.g.fail(w, r, http.StatusServiceUnavailable, "store-unavailable", err, ev)
		return
	}
	h.g.fail(w, r, http.StatusInternalServerError, "internal-error", err, ev)
}

// redirect sends the browser on with 303 (so a POST becomes a GET).
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (h *loginHandler) css(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(h.pages.css)
}

// setFlowCookie sets a short-lived __Host- cookie of the login flow.
func setFlowCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func clearFlowCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// pageCookie returns the value of the named cookie, "" when absent or
// implausible (a 4 KiB cookie is never ours; refuse it before hashing or
// using it as a store key).
func pageCookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil || len(c.Value) == 0 || len(c.Value) > 512 {
		return ""
	}
	return c.Value
}

// formatTime renders times on pages in UTC (the server's zone means nothing
// to the reader).
func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

var errNoPending = errors.New("no pending login")
