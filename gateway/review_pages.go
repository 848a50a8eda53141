package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/authz/session"
)

// Access-review pages on the access host, for admins (the same admin
// decision as the admin API and /admin/token):
//
//	GET  /reviews                          campaigns with their state; "a new review is due"
//	POST /reviews                          start a campaign (name)
//	GET  /reviews/{name}                   the items, Keep/Revoke per row, Sign-off
//	POST /reviews/{name}/items/{item}      decision (keep|revoke) + note
//	POST /reviews/{name}/signoff
//	GET  /reviews/{name}/report            the HTML report, under a CSP that lets nothing run or load
//
// Every page is audited as an admin action (the manager adds its own
// review.* events), and a change or a report is answered only once its
// audit records are durable, as on the admin API. POSTs carry the session
// CSRF token of the other forms.

const pathReviews = "/reviews"

// Page names of the review templates.
const (
	pageReviews = "reviews"
	pageReview  = "review"
)

// reviewTemplates are parsed on first use from the embedded templates.
var reviewTemplates = sync.OnceValues(func() (map[string]*template.Template, error) {
	base, err := template.ParseFS(templateFS, "templates/base.html")
	if err != nil {
		return nil, fmt.Errorf("parse base template: %w", err)
	}
	out := map[string]*template.Template{}
	for _, name := range []string{pageReviews, pageReview} {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
})

// renderReview is loginHandler.render for the review templates.
func (h *loginHandler) renderReview(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	ts, err := reviewTemplates()
	var buf bytes.Buffer
	if err == nil {
		err = ts[name].ExecuteTemplate(&buf, "base", d)
	}
	if err != nil {
		h.g.fail(w, r, http.StatusInternalServerError, reasonInternal, fmt.Errorf("render %s: %w", name, err), h.event(r, audit.TypeRequestRejected))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// reviewPath is a parsed page path below /reviews.
type reviewPath struct {
	name   string // "" for /reviews itself
	action string // "", "report", "signoff" or "items"
	item   string // action "items"
}

// parseReviewPath accepts exactly the page paths above. Every segment must
// be a valid campaign name or item ID, so ".", "..", empty segments,
// escapes (a '%' never is valid) and over-long names are refused here,
// whatever the normaliser in front let through.
func parseReviewPath(p string) (reviewPath, bool) {
	rest, ok := strings.CutPrefix(p, pathReviews)
	switch {
	case !ok:
		return reviewPath{}, false
	case rest == "":
		return reviewPath{}, true
	case rest[0] != '/':
		return reviewPath{}, false
	}
	seg := strings.Split(rest[1:], "/")
	if len(seg) > 3 || review.CheckName(seg[0]) != nil {
		return reviewPath{}, false
	}
	rp := reviewPath{name: seg[0]}
	switch {
	case len(seg) == 1:
		return rp, true
	case len(seg) == 2 && (seg[1] == "report" || seg[1] == "signoff"):
		rp.action = seg[1]
		return rp, true
	case len(seg) == 3 && seg[1] == "items" && isReviewItemID(seg[2]):
		rp.action, rp.item = seg[1], seg[2]
		return rp, true
	}
	return reviewPath{}, false
}

// reviewRoute returns the handlers of a page below /reviews (nil, nil
// for none: 404).
func (h *loginHandler) reviewRoute(p string) (get, post http.HandlerFunc) {
	rp, ok := parseReviewPath(p)
	switch {
	case !ok:
		return nil, nil
	case rp.name == "":
		return h.reviewsPage, h.reviewStartPost
	case rp.action == "":
		return h.reviewPage, nil
	case rp.action == "report":
		return h.reviewReportPage, nil
	case rp.action == "signoff":
		return nil, h.reviewSignOffPost
	default:
		return nil, h.reviewDecidePost
	}
}

// reviewCall is one admin request on a review page.
type reviewCall struct {
	path reviewPath
	rec  session.Record
	tok  string // the session cookie value (CSRF tokens of the page)
	ev   audit.Event
}

// reviewAdmin admits a review page request: a valid CSRF token first for
// a POST, then a signed-in admin who is not locked (read per request from
// the store: a lock may lag in some instance's session cache), then
// reviews being configured. It answers the request itself when it
// returns false.
func (h *loginHandler) reviewAdmin(w http.ResponseWriter, r *http.Request, action string) (*reviewCall, bool) {
	// The raw path, parsed again: an escaped byte anywhere refuses it.
	rp, ok := parseReviewPath(r.URL.EscapedPath())
	if !ok {
		h.g.fail(w, r, http.StatusNotFound, reasonNotFound, nil, h.event(r, audit.TypeRequestRejected))
		return nil, false
	}
	if r.Method == http.MethodPost {
		if err := h.csrf.check(r, csrfSession, pageCookie(r, h.g.deps.Sessions.CookieName())); err != nil {
			h.g.fail(w, r, http.StatusForbidden, "csrf-invalid", err, h.event(r, audit.TypeRequestRejected))
			return nil, false
		}
	}
	returnTo := pathReviews
	if r.Method != http.MethodPost {
		returnTo = r.URL.Path
	}
	tok, rec, ok := h.requireSession(w, r, returnTo)
	if !ok {
		return nil, false
	}
	c := &reviewCall{path: rp, rec: rec, tok: tok, ev: h.sessionEvent(r, audit.TypeAdmin, rec)}
	c.ev.Actor = rec.UserID
	c.ev.Attrs = map[string]string{"action": action}
	if rp.name != "" {
		c.ev.Target = rp.name
	}
	now := h.g.now()
	if !h.g.isAdmin(h.g.deps.Policy.Load(), rec.UserID, rec.Roles, now) {
		h.g.fail(w, r, http.StatusForbidden, "not-admin", errors.New("review page requested without admin role"), c.ev)
		return nil, false
	}
	v, err := h.g.deps.Risk.Locked(r.Context(), rec.UserID)
	if !h.g.obey(w, r, v, err, c.ev) {
		return nil, false
	}
	if h.g.deps.Reviews == nil {
		h.message(w, r, http.StatusNotFound, "Access reviews", messagePage{
			Message: "Access reviews are not configured on this server.", Link: pathHome, LinkText: "Back",
		})
		return nil, false
	}
	return c, true
}

// reviewFail answers an error of review.Manager on a page.
func (h *loginHandler) reviewFail(w http.ResponseWriter, r *http.Request, err error, ev audit.Event) {
	if rf, ok := classifyReview(err); ok {
		lead := strings.ToUpper(rf.msg[:1]) + rf.msg[1:] + ". Reference:"
		if rf.status == http.StatusNotFound || rf.status == http.StatusBadRequest {
			lead = "" // the generic page
		}
		h.g.refuse(w, r, rf.status, rf.reason, err, ev, refusal{lead: lead})
		return
	}
	h.storeFail(w, r, err, ev)
}

// acknowledge audits ev and waits until it and the manager's events are
// durable; on failure it answers 503 and returns false.
func (h *loginHandler) acknowledge(w http.ResponseWriter, r *http.Request, ev audit.Event) bool {
	ev.Decision = audit.Allow
	h.emit(r, ev)
	if err := audit.Sync(r.Context(), h.g.deps.Audit); err != nil {
		h.g.fail(w, r, http.StatusServiceUnavailable, "audit-unavailable", err, ev)
		return false
	}
	return true
}

// pageTime formats a time for the review pages ("never" for zero).
func pageTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return formatTime(t)
}

type campaignRow struct {
	Name, State, CreatedBy, CreatedAt, Due, SignedOffBy, SignedOffAt string
	Items, Decided                                                   int
}

type reviewsView struct {
	Campaigns []campaignRow
	NewDue    bool
	NextDue   string // "" when no campaign was ever started
}

func (h *loginHandler) reviewsPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.reviewAdmin(w, r, "review.status")
	if !ok {
		return
	}
	rep, err := h.g.deps.Reviews.Status(r.Context())
	if err != nil {
		h.reviewFail(w, r, err, c.ev)
		return
	}
	v := reviewsView{NewDue: rep.NewDue, Campaigns: make([]campaignRow, 0, len(rep.Campaigns))}
	if !rep.NextDue.IsZero() {
		v.NextDue = formatTime(rep.NextDue)
	}
	for _, cs := range rep.Campaigns {
		row := campaignRow{
			Name: cs.Name, State: cs.State, CreatedBy: cs.CreatedBy, CreatedAt: pageTime(cs.CreatedAt),
			Due: pageTime(cs.Due), Items: cs.Items, Decided: cs.Decided, SignedOffBy: cs.SignedOffBy,
		}
		if !cs.SignedOffAt.IsZero() {
			row.SignedOffAt = formatTime(cs.SignedOffAt)
		}
		v.Campaigns = append(v.Campaigns, row)
	}
	h.emit(r, allowed(c.ev))
	h.renderReview(w, r, http.StatusOK, pageReviews, pageData{Title: "Access reviews", CSRF: h.csrf.token(csrfSession, c.tok), Page: v})
}

func allowed(ev audit.Event) audit.Event {
	ev.Decision = audit.Allow
	return ev
}

// reviewStartPost starts a campaign from the form on /reviews.
func (h *loginHandler) reviewStartPost(w http.ResponseWriter, r *http.Request) {
	c, ok := h.reviewAdmin(w, r, "review.start")
	if !ok {
		return
	}
	name := r.PostFormValue("name")
	if review.CheckName(name) != nil {
		h.g.fail(w, r, http.StatusBadRequest, "bad-request", errors.New("invalid campaign name"), c.ev)
		return
	}
	c.ev.Target = name
	camp, err := h.g.deps.Reviews.Start(r.Context(), c.rec.UserID, name)
	if err != nil {
		h.reviewFail(w, r, err, c.ev)
		return
	}
	c.ev.Attrs["campaign_id"] = camp.ID
	if h.acknowledge(w, r, c.ev) {
		redirect(w, r, pathReviews+"/"+camp.Name)
	}
}

type reviewItemRow struct {
	ID, UserID, Email, Role, Source, Via string
	LastLogin, LastUse                   string
	Uses                                 int
	Dormant, Unused, Locked, MFA         bool
	Decision, DecidedBy, Note, Action    string
	Revoked                              bool
}

type reviewView struct {
	Name, ID, State                   string
	CreatedBy, CreatedAt, PeriodStart string
	Due, SignedOffBy, SignedOffAt     string
	SignedOff                         bool
	Base                              string // "/reviews/NAME": the forms' and links' prefix
	Items                             []reviewItemRow
	Decided, Keep, Revoke             int
}

func itemRow(it review.Item) reviewItemRow {
	row := reviewItemRow{
		ID: it.ID, UserID: it.UserID, Email: it.Email, Role: it.Role, Source: string(it.Source),
		LastLogin: pageTime(it.LastLogin), LastUse: pageTime(it.LastUse),
		Dormant: it.Dormant, Unused: it.Unused, Locked: it.Locked, MFA: it.MFAEnrolled,
		Decision: it.Decision, DecidedBy: it.DecidedBy, Note: it.Note, Action: it.Action, Revoked: it.Revoked,
	}
	switch {
	case it.Group != "":
		row.Via = "group " + it.Group
	case it.ConfigEntry != "":
		row.Via = "users: " + it.ConfigEntry
	case it.GrantID != "":
		row.Via = "grant " + it.GrantID
		if !it.GrantExpires.IsZero() {
			row.Via += ", until " + formatTime(it.GrantExpires)
		}
	}
	for _, u := range it.Uses {
		row.Uses += u.Count
	}
	return row
}

func (h *loginHandler) reviewPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.reviewAdmin(w, r, "review.get")
	if !ok {
		return
	}
	camp, err := h.g.deps.Reviews.Get(r.Context(), c.path.name)
	if err != nil {
		h.reviewFail(w, r, err, c.ev)
		return
	}
	v := reviewView{
		Name: camp.Name, ID: camp.ID, CreatedBy: camp.CreatedBy, CreatedAt: pageTime(camp.CreatedAt),
		PeriodStart: pageTime(camp.PeriodStart), Due: pageTime(camp.Due), SignedOffBy: camp.SignedOffBy,
		SignedOff: !camp.SignedOffAt.IsZero(), Base: pathReviews + "/" + camp.Name,
		Items: make([]reviewItemRow, 0, len(camp.Items)),
	}
	switch {
	case v.SignedOff:
		v.State, v.SignedOffAt = review.StateSignedOff, formatTime(camp.SignedOffAt)
	case h.g.now().After(camp.Due):
		v.State = review.StateOverdue
	default:
		v.State = review.StateOpen
	}
	for _, it := range camp.Items {
		v.Items = append(v.Items, itemRow(it))
		switch it.Decision {
		case review.Keep:
			v.Keep++
		case review.Revoke:
			v.Revoke++
		}
	}
	v.Decided = v.Keep + v.Revoke
	h.emit(r, allowed(c.ev))
	h.renderReview(w, r, http.StatusOK, pageReview, pageData{
		Title: "Access review " + camp.Name, CSRF: h.csrf.token(csrfSession, c.tok), Page: v,
	})
}

func (h *loginHandler) reviewDecidePost(w http.ResponseWriter, r *http.Request) {
	c, ok := h.reviewAdmin(w, r, "review.decide")
	if !ok {
		return
	}
	c.ev.Attrs["item"] = c.path.item
	decision := r.PostFormValue("decision")
	if decision != review.Keep && decision != review.Revoke {
		h.g.fail(w, r, http.StatusBadRequest, "bad-request", errors.New("decision must be keep or revoke"), c.ev)
		return
	}
	c.ev.Attrs["decision"] = decision
	it, err := h.g.deps.Reviews.Decide(r.Context(), c.rec.UserID, c.path.name, c.path.item, decision, r.PostFormValue("note"))
	if err != nil {
		h.reviewFail(w, r, err, c.ev)
		return
	}
	if h.acknowledge(w, r, c.ev) {
		redirect(w, r, pathReviews+"/"+c.path.name+"#item-"+it.ID)
	}
}

func (h *loginHandler) reviewSignOffPost(w http.ResponseWriter, r *http.Request) {
	c, ok := h.reviewAdmin(w, r, "review.signoff")
	if !ok {
		return
	}
	if _, err := h.g.deps.Reviews.SignOff(r.Context(), c.rec.UserID, c.path.name); err != nil {
		h.reviewFail(w, r, err, c.ev)
		return
	}
	if h.acknowledge(w, r, c.ev) {
		redirect(w, r, pathReviews+"/"+c.path.name)
	}
}

// reviewReportPage serves the campaign's HTML report as a document of its
// own: review.WriteReport escapes every value, and the page's policy
// forbids scripts, loads, forms and framing, allowing only the report's
// own inline style sheet (by hash).
func (h *loginHandler) reviewReportPage(w http.ResponseWriter, r *http.Request) {
	c, ok := h.reviewAdmin(w, r, "review.report")
	if !ok {
		return
	}
	c.ev.Attrs["format"] = review.FormatHTML
	var buf bytes.Buffer
	if err := h.g.deps.Reviews.Report(r.Context(), c.rec.UserID, c.path.name, review.FormatHTML, &buf); err != nil {
		h.reviewFail(w, r, err, c.ev)
		return
	}
	if !h.acknowledge(w, r, c.ev) {
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", reportCSP(buf.Bytes()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// reportCSP is the Content-Security-Policy of an HTML report: nothing may
// run, load, submit or frame it; the first inline <style> element, the
// report's own, is allowed by its SHA-256 and no other style is.
func reportCSP(page []byte) string {
	csp := "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	_, after, ok := bytes.Cut(page, []byte("<style>"))
	if !ok {
		return csp
	}
	style, _, ok := bytes.Cut(after, []byte("</style>"))
	if !ok {
		return csp
	}
	sum := sha256.Sum256(style)
	return csp + "; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
