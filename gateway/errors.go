package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// Reason codes for refusals decided by the gateway itself (authz decisions
// use authz.Reason codes). Stable: they appear in audit events.
const (
	reasonUnknownHost    = "unknown-host"
	reasonNotFound       = "not-found"
	reasonInvalidPath    = "invalid-path"
	reasonNoSession      = "no-session"
	reasonInvalidSession = "invalid-session"
	reasonStoreDown      = "store-unavailable"
	reasonNoPolicy       = "no-policy"
	reasonUpstream       = "upstream-error"
	reasonInternal       = "internal-error"
	reasonInvalidHop     = "invalid-hop-code"
	reasonMethod         = "method-not-allowed"
)

// publicMessage is the only thing a user learns about a failure: one
// message per status, never per cause, so a refusal is no oracle for which
// check failed.
func publicMessage(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "Bad request"
	case http.StatusUnauthorized:
		return "authentication required"
	case http.StatusForbidden:
		return "Access denied"
	case http.StatusNotFound:
		return "Not found"
	case http.StatusMethodNotAllowed:
		return "Method not allowed"
	case http.StatusServiceUnavailable:
		return store.ErrUnavailable.Error()
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return "The application is not responding"
	default:
		return "Something went wrong"
	}
}

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Message}} — Portcullis</title></head>
<body><main><h1>{{.Message}}</h1>
<p>{{.Lead}} <code>{{.Ref}}</code>{{.Tail}}</p>
</main></body></html>
`))

// wantsJSON reports whether the client is a script rather than a person:
// it gets JSON bodies and 401s instead of pages and login redirects.
func wantsJSON(r *http.Request) bool {
	if _, ok := r.Header["X-Requested-With"]; ok {
		return true
	}
	for _, a := range r.Header["Accept"] {
		if strings.Contains(a, "application/json") {
			return true
		}
	}
	return false
}

// fail writes a generic error page (JSON for API/XHR requests) carrying a
// fresh reference ID; the cause goes to the log and ev (with Ref, Reason,
// Decision=deny filled) to the audit trail. Never put the cause in the body.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, status int, reason string, cause error, ev audit.Event) {
	g.refuse(w, r, status, reason, cause, ev, refusal{})
}

// refusal varies the one paragraph of the error page: an existing
// incident reference instead of a fresh one, and the text around it. The
// zero value is the generic page.
type refusal struct {
	ref        string
	lead, tail string
}

// refuse is fail with the paragraph of rf. Every refusal, whatever its
// cause, costs the same: one reference, one log line, one audit event,
// one template execution.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, status int, reason string, cause error, ev audit.Event, rf refusal) {
	ref := rf.ref
	if ref == "" {
		ref = audit.NewRef(g.deps.Rand)
	}
	g.fillEvent(r, &ev)
	if ev.Type == "" {
		ev.Type = audit.TypeRequestRejected
	}
	ev.Ref = ref
	ev.Reason = reason
	ev.Decision = audit.Deny

	level := slog.LevelWarn
	if status >= 500 {
		level = slog.LevelError
	}
	if errors.Is(cause, context.Canceled) {
		// The client went away; nothing is wrong with us.
		level = slog.LevelDebug
	}
	attrs := []slog.Attr{
		slog.String("ref", ref), slog.String("reason", reason), slog.Int("status", status),
		slog.String("host", r.Host), slog.String("method", ev.Method), slog.String("path", ev.Path),
		slog.String("source_ip", ev.SourceIP),
	}
	if ev.UserID != "" {
		attrs = append(attrs, slog.String("user_id", ev.UserID))
	}
	if cause != nil {
		attrs = append(attrs, slog.String("cause", cause.Error()))
	}
	g.log.LogAttrs(r.Context(), level, "request refused", attrs...)
	g.deps.Audit.Emit(r.Context(), ev)

	h := w.Header()
	g.setPageHeaders(h)
	h["Cache-Control"] = noStoreValue
	// A length staged by an upstream or handler does not fit this body.
	h.Del("Content-Length")
	msg := publicMessage(status)
	if wantsJSON(r) {
		if rf.lead != "" {
			msg = rf.lead + " " + ref + rf.tail
		}
		h["Content-Type"] = jsonContentType
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(struct {
			Error string `json:"error"`
			Ref   string `json:"ref"`
		}{msg, ref})
		return
	}
	if rf.lead == "" {
		rf.lead = genericLead
	}
	h["Content-Type"] = htmlContentType
	w.WriteHeader(status)
	_ = errorPage.Execute(w, struct{ Message, Lead, Ref, Tail string }{msg, rf.lead, ref, rf.tail})
}

// isUnavailable reports a store that cannot answer (fail closed: 503).
func isUnavailable(err error) bool { return errors.Is(err, store.ErrUnavailable) }

// joinCause keeps the original cause of a refusal next to the store error
// that replaced it, for the log.
func joinCause(err, cause error) error {
	if cause == nil {
		return err
	}
	return errors.Join(err, cause)
}

// fillEvent completes ev with what every event about r carries, keeping
// what the caller already set.
func (g *Gateway) fillEvent(r *http.Request, ev *audit.Event) {
	if ev.Time.IsZero() {
		ev.Time = g.now()
	}
	if ev.Instance == "" {
		ev.Instance = g.cfg.Instance
	}
	if ev.SourceIP == "" {
		if ip := g.clientIP(r); ip.IsValid() {
			ev.SourceIP = ip.String()
		}
	}
	if ev.Method == "" {
		ev.Method = r.Method
	}
	if ev.Path == "" {
		ev.Path = auditPath(r)
	}
}

// auditPath is the normalised path, or for a path that cannot be
// normalised a bounded, control-free copy of the raw one (so the log line
// shows what was attempted). Never the query string: it may carry codes.
func auditPath(r *http.Request) string {
	raw := r.URL.EscapedPath()
	if p, err := authz.NormalizePath(raw); err == nil {
		return p
	}
	const maxLen = 256
	if len(raw) > maxLen {
		raw = raw[:maxLen]
	}
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return '?'
		}
		return c
	}, raw)
}
