package gateway

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// The admin API is one set of JSON handlers reached two ways:
//
//   - localHandler, on the 0600 Unix socket: whoever can open the socket is
//     root on the server host already, so the caller is trusted and acts as
//     "local-admin";
//   - remoteHandler, over HTTPS on the access host: the caller presents an
//     admin API token (Authorization: Bearer, minted at /admin/token after a
//     fresh TOTP code) which must be a live session with MFA whose roles
//     include an admin role. Cookies are never accepted here, so a browser
//     cannot be tricked into calling the API cross-site.
//
// Every action, reads included, is audited with the acting admin, and a
// success is answered only once its audit record is durable (succeed).

const (
	adminPrefix     = "/api/admin/"
	maxAdminBody    = 64 << 10
	localAdminActor = "local-admin"
)

// adminAPI serves /api/admin/* to the local socket and to admins over HTTPS.
type adminAPI struct {
	g    *Gateway
	log  *slog.Logger
	rand io.Reader
}

func newAdminAPI(g *Gateway) *adminAPI {
	a := &adminAPI{g: g, log: g.deps.Logger, rand: g.deps.Rand}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	return a
}

// adminCall is one authenticated admin request.
type adminCall struct {
	w     http.ResponseWriter
	r     *http.Request
	actor string // admin's user ID, or local-admin
	// sessionID is the admin token's session (remote callers only).
	sessionID string
	// roles are the admin token's base roles (remote callers only).
	roles []string
}

// localHandler trusts its caller (the 0600 Unix socket) as the local root admin.
func (a *adminAPI) localHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.route(&adminCall{w: w, r: r, actor: localAdminActor})
	})
}

// remoteHandler requires an admin bearer token (HTTPS).
func (a *adminAPI) remoteHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		ev := a.event(r, "")
		ev.Attrs = map[string]string{"action": "authenticate"}
		pol := a.g.deps.Policy.Load()
		rec, ok := a.bearerSession(w, r, &ev, "portcullis-admin", "admin-auth-required", func(rec session.Record) (string, error) {
			if !a.g.isAdmin(pol, rec.UserID, rec.Roles, a.g.now()) {
				return "not-admin", errors.New("admin API called without admin role")
			}
			return "", nil
		})
		if !ok {
			return
		}
		a.route(&adminCall{w: w, r: r, actor: rec.UserID, sessionID: rec.ID, roles: rec.Roles})
	})
}

// route dispatches on the path below /api/admin/. Segments are unescaped
// one by one so that user IDs (issuer URL + "#" + subject) can travel as a
// single %2F-escaped segment.
func (a *adminAPI) route(c *adminCall) {
	ev := a.callEvent(c, "route")
	rest, ok := strings.CutPrefix(c.r.URL.EscapedPath(), adminPrefix)
	if !ok {
		a.fail(c.w, c.r, http.StatusNotFound, "not found", "not-found", nil, ev)
		return
	}
	raw := strings.Split(rest, "/")
	seg := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil {
			a.fail(c.w, c.r, http.StatusBadRequest, "malformed path", "bad-request", err, ev)
			return
		}
		seg[i] = u
	}
	type endpoint struct {
		method string
		fn     func(*adminCall, []string)
	}
	var ep endpoint
	switch {
	case len(seg) == 1 && seg[0] == "users":
		ep = endpoint{http.MethodGet, a.users}
	case len(seg) == 1 && seg[0] == "sessions":
		ep = endpoint{http.MethodGet, a.sessions}
	case len(seg) == 1 && seg[0] == "explain":
		ep = endpoint{http.MethodGet, a.explain}
	case len(seg) == 3 && seg[0] == "sessions" && seg[2] == "revoke":
		ep = endpoint{http.MethodPost, a.revoke}
	case len(seg) == 3 && seg[0] == "users" && seg[2] == "mfa-reset":
		ep = endpoint{http.MethodPost, a.mfaReset}
	case len(seg) == 1 && seg[0] == "locks":
		ep = endpoint{http.MethodGet, a.locks}
	case len(seg) == 2 && seg[0] == "locks" && seg[1] == "lock":
		ep = endpoint{http.MethodPost, a.lock}
	case len(seg) == 2 && seg[0] == "locks" && seg[1] == "unlock":
		ep = endpoint{http.MethodPost, a.unlock}
	// Just-in-time access (admin_access.go).
	case len(seg) == 1 && seg[0] == "requests":
		ep = endpoint{http.MethodGet, a.accessRequests}
	case len(seg) == 3 && seg[0] == "requests" && (seg[2] == "approve" || seg[2] == "deny"):
		ep = endpoint{http.MethodPost, a.accessDecide}
	case len(seg) == 1 && seg[0] == "grants" && c.r.Method == http.MethodPost:
		ep = endpoint{http.MethodPost, a.accessGrantAdd}
	case len(seg) == 1 && seg[0] == "grants":
		ep = endpoint{http.MethodGet, a.accessGrants}
	case len(seg) == 3 && seg[0] == "grants" && seg[2] == "revoke":
		ep = endpoint{http.MethodPost, a.accessGrantRevoke}
	case seg[0] == "reviews" && a.g.deps.Reviews != nil:
		// Access reviews (review_api.go).
		method, fn := a.reviewEndpoint(c.r.Method, seg)
		if fn == nil {
			a.fail(c.w, c.r, http.StatusNotFound, "not found", "not-found", nil, ev)
			return
		}
		ep = endpoint{method, fn}
	default:
		a.fail(c.w, c.r, http.StatusNotFound, "not found", "not-found", nil, ev)
		return
	}
	if c.r.Method != ep.method && !(ep.method == http.MethodGet && c.r.Method == http.MethodHead) {
		c.w.Header().Set("Allow", ep.method)
		a.fail(c.w, c.r, http.StatusMethodNotAllowed, "method not allowed", "method-not-allowed", nil, ev)
		return
	}
	ep.fn(c, seg)
}

// event is the skeleton of an admin audit event.
func (a *adminAPI) event(r *http.Request, actor string) audit.Event {
	ev := audit.Event{Type: audit.TypeAdmin, Actor: actor, Method: r.Method, Path: r.URL.Path}
	if ip := a.g.clientIP(r); ip.IsValid() {
		ev.SourceIP = ip.String()
	}
	return ev
}

func (a *adminAPI) callEvent(c *adminCall, action string) audit.Event {
	ev := a.event(c.r, c.actor)
	ev.SessionID = c.sessionID
	if c.actor != localAdminActor {
		ev.UserID = c.actor
	}
	ev.Attrs = map[string]string{"action": action}
	return ev
}

func (a *adminAPI) emit(r *http.Request, ev audit.Event) {
	if ev.Time.IsZero() {
		ev.Time = a.g.now()
	}
	if ev.Instance == "" {
		ev.Instance = a.g.cfg.Instance
	}
	a.g.deps.Audit.Emit(r.Context(), ev)
}

// succeed is the only way an admin call answers 2xx. It audits evs, then
// waits until they are durable (audit.Sync) before it writes v: a caller
// who got a success answer was told "done and on record", so a crash right
// after the answer must not lose the record. When the trail cannot be made
// durable the action may well have happened, but it is NOT acknowledged:
// the caller gets a 503 with a reference (and must check and retry), never
// a success whose record could vanish.
func (a *adminAPI) succeed(c *adminCall, v any, evs ...audit.Event) {
	a.succeedStatus(c, http.StatusOK, v, evs...)
}

// succeedStatus is succeed with another 2xx status (201 Created).
func (a *adminAPI) succeedStatus(c *adminCall, status int, v any, evs ...audit.Event) {
	if a.durable(c, evs) {
		writeJSON(c.w, c.r, status, v)
	}
}

// succeedRaw is succeed for a body that is not JSON (a report): hdr,
// Content-Type included, and body are written only once evs and every
// event emitted before (the domain events of the action) are durable.
func (a *adminAPI) succeedRaw(c *adminCall, hdr http.Header, body []byte, evs ...audit.Event) {
	if !a.durable(c, evs) {
		return
	}
	h := c.w.Header()
	for k, v := range hdr {
		h[k] = v
	}
	h.Set("X-Content-Type-Options", "nosniff")
	c.w.WriteHeader(http.StatusOK)
	if c.r.Method != http.MethodHead {
		_, _ = c.w.Write(body)
	}
}

// durable audits evs and waits until they, and whatever was emitted
// before them, are durable; on failure it answers 503 and returns false.
func (a *adminAPI) durable(c *adminCall, evs []audit.Event) bool {
	for _, ev := range evs {
		a.emit(c.r, ev)
	}
	if err := audit.Sync(c.r.Context(), a.g.deps.Audit); err != nil {
		ev := a.callEvent(c, "")
		if len(evs) > 0 {
			ev = evs[0]
		}
		a.fail(c.w, c.r, http.StatusServiceUnavailable, "audit trail unavailable", "audit-unavailable", err, ev)
		return false
	}
	return true
}

// adminError is every admin API error: a short generic message and the
// reference ID that finds the cause in the log and the audit trail.
type adminError struct {
	Error string `json:"error"`
	Ref   string `json:"ref"`
}

// fail answers with a JSON error, logs the cause and audits a deny.
func (a *adminAPI) fail(w http.ResponseWriter, r *http.Request, status int, msg, reason string, cause error, ev audit.Event) {
	a.failRef(w, r, status, msg, reason, cause, ev, "")
}

// failRef is fail with an existing incident reference ("" = a fresh one).
func (a *adminAPI) failRef(w http.ResponseWriter, r *http.Request, status int, msg, reason string, cause error, ev audit.Event, ref string) {
	if ref == "" {
		ref = audit.NewRef(a.rand)
	}
	ev.Decision, ev.Reason, ev.Ref = audit.Deny, reason, ref
	a.log.LogAttrs(r.Context(), slog.LevelWarn, "admin api request refused",
		slog.String("ref", ref), slog.String("reason", reason), slog.Int("status", status),
		slog.String("path", r.URL.Path), slog.Any("cause", cause))
	a.emit(r, ev)
	writeJSON(w, r, status, adminError{Error: msg, Ref: ref})
}

func (a *adminAPI) storeFail(w http.ResponseWriter, r *http.Request, err error, ev audit.Event) {
	if errors.Is(err, store.ErrUnavailable) {
		a.fail(w, r, http.StatusServiceUnavailable, store.ErrUnavailable.Error(), "store-unavailable", err, ev)
		return
	}
	a.fail(w, r, http.StatusInternalServerError, "internal error", "internal-error", err, ev)
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(b, '\n'))
	}
}

// decodeBody reads a small JSON object into v, refusing unknown fields,
// trailing data and oversized bodies. An empty body is the zero value.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, maxAdminBody)
	data, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("decode body: trailing data")
	}
	return nil
}

// validText accepts short printable UTF-8 (IDs, reasons): control
// characters could forge log lines or confuse terminals of later readers.
func validText(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
