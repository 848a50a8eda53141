package gateway

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"

	"github.com/portcullis/portcullis/authz/audit"
)

// The templates and the stylesheet are embedded so the binary is
// self-contained. Pages contain no inline script or style at all, so the
// core's Content-Security-Policy can forbid both; the only non-'self'
// resource is the enrolment QR code, a data: image.
//
//go:embed templates/*.html templates/portcullis.css
var templateFS embed.FS

// Page names (template file names without .html).
const (
	pageHome       = "home"
	pageEnrol      = "enrol"
	pageRecovery   = "recovery"
	pageMFA        = "mfa"
	pageLogout     = "logout"
	pageMessage    = "message"
	pageAdminToken = "admintoken"
)

type pageSet struct {
	tmpl map[string]*template.Template
	css  []byte
}

func loadPages() (pageSet, error) {
	base, err := template.ParseFS(templateFS, "templates/base.html")
	if err != nil {
		return pageSet{}, fmt.Errorf("parse base template: %w", err)
	}
	ps := pageSet{tmpl: map[string]*template.Template{}}
	for _, name := range []string{pageHome, pageEnrol, pageRecovery, pageMFA, pageLogout, pageMessage, pageAdminToken, pageAccess} {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return pageSet{}, fmt.Errorf("parse template %s: %w", name, err)
		}
		ps.tmpl[name] = t
	}
	if ps.css, err = templateFS.ReadFile("templates/portcullis.css"); err != nil {
		return pageSet{}, fmt.Errorf("read stylesheet: %w", err)
	}
	return ps, nil
}

// pageData is what every template receives.
type pageData struct {
	Title string
	Error string // a generic, user-facing message; never a cause
	CSRF  string
	Page  any
}

// messagePage is the data of the generic message page.
type messagePage struct {
	Message  string
	Link     string
	LinkText string
}

// render executes a page into a buffer first so that a template error
// never leaves a half-written page behind.
func (h *loginHandler) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	var buf bytes.Buffer
	t, ok := h.pages.tmpl[name]
	if !ok {
		h.g.fail(w, r, http.StatusInternalServerError, "internal-error", fmt.Errorf("no template %q", name), h.event(r, audit.TypeRequestRejected))
		return
	}
	if err := t.ExecuteTemplate(&buf, "base", d); err != nil {
		h.g.fail(w, r, http.StatusInternalServerError, "internal-error", fmt.Errorf("render %s: %w", name, err), h.event(r, audit.TypeRequestRejected))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// message renders the generic message page.
func (h *loginHandler) message(w http.ResponseWriter, r *http.Request, status int, title string, m messagePage) {
	h.render(w, r, status, pageMessage, pageData{Title: title, Page: m})
}
