package gateway

import (
	"bytes"
	"errors"
	"net/http"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/authz/store"
)

// Access reviews on the admin API:
//
//	GET  /api/admin/reviews                          status of every campaign
//	POST /api/admin/reviews {"name"}                 start one (201)
//	GET  /api/admin/reviews/{name}                   a campaign with its items
//	POST /api/admin/reviews/{name}/items/{item}      {"decision","note"}
//	POST /api/admin/reviews/{name}/signoff
//	GET  /api/admin/reviews/{name}/report?format=csv|json|html
//
// review.Manager audits what it does (review.start, .decide, .signoff,
// .report) with the acting admin; each call here is audited once more as
// an admin action, which adds what the manager cannot know (source IP,
// token session, instance) and covers the reads the manager does not
// audit. Every answer waits for audit.Sync (succeed*), which also covers
// the manager's events, emitted before it.

// reviewAnyMethod is an endpoint "method" that no request has: with it the
// router answers 405 and lists both methods of /api/admin/reviews in Allow.
const reviewAnyMethod = http.MethodGet + ", " + http.MethodPost

// reviewEndpoint picks the handler of a path below /api/admin/reviews
// (seg[0] == "reviews") and the method it takes; fn is nil for no such
// endpoint (404).
func (a *adminAPI) reviewEndpoint(method string, seg []string) (string, func(*adminCall, []string)) {
	switch {
	case len(seg) == 1:
		switch method {
		case http.MethodPost:
			return http.MethodPost, a.reviewStart
		case http.MethodGet, http.MethodHead:
			return http.MethodGet, a.reviewStatus
		}
		return reviewAnyMethod, a.reviewStatus
	case len(seg) == 2:
		return http.MethodGet, a.reviewGet
	case len(seg) == 3 && seg[2] == "signoff":
		return http.MethodPost, a.reviewSignOff
	case len(seg) == 3 && seg[2] == "report":
		return http.MethodGet, a.reviewReport
	case len(seg) == 4 && seg[2] == "items":
		return http.MethodPost, a.reviewDecide
	}
	return "", nil
}

// reviewRefusal is how a review error is answered: status, stable reason
// code and a fixed message (never the error's text).
type reviewRefusal struct {
	status      int
	reason, msg string
}

// classifyReview maps review.Manager's typed errors; ok is false for
// anything else (store or internal failures).
func classifyReview(err error) (reviewRefusal, bool) {
	for _, c := range []struct {
		err error
		rf  reviewRefusal
	}{
		{review.ErrInvalid, reviewRefusal{http.StatusBadRequest, "bad-request", "invalid request"}},
		{review.ErrNotFound, reviewRefusal{http.StatusNotFound, "not-found", "not found"}},
		{review.ErrExists, reviewRefusal{http.StatusConflict, "already-exists", "a campaign with this name already exists"}},
		{review.ErrSignedOff, reviewRefusal{http.StatusConflict, "signed-off", "the campaign is signed off"}},
		{review.ErrUndecided, reviewRefusal{http.StatusConflict, "undecided", "not every item is decided"}},
		{review.ErrBusy, reviewRefusal{http.StatusConflict, "busy", "another admin is changing this campaign; try again"}},
		{review.ErrRevoked, reviewRefusal{http.StatusConflict, "already-revoked", "the grant is already revoked"}},
		{review.ErrIncomplete, reviewRefusal{http.StatusConflict, "incomplete", "the campaign's start was interrupted; start a new one"}},
	} {
		if errors.Is(err, c.err) {
			return c.rf, true
		}
	}
	return reviewRefusal{}, false
}

// reviewFail answers an error of review.Manager.
func (a *adminAPI) reviewFail(c *adminCall, err error, ev audit.Event) {
	if rf, ok := classifyReview(err); ok {
		a.fail(c.w, c.r, rf.status, rf.msg, rf.reason, err, ev)
		return
	}
	if errors.Is(err, store.ErrUnavailable) {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	a.fail(c.w, c.r, http.StatusInternalServerError, "internal error", "internal-error", err, ev)
}

// reviewCampaign validates the campaign segment and names it in ev.
func (a *adminAPI) reviewCampaign(c *adminCall, ev *audit.Event, name string) bool {
	if err := review.CheckName(name); err != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "invalid campaign name", "bad-request", err, *ev)
		return false
	}
	ev.Target = name
	return true
}

func (a *adminAPI) reviewStatus(c *adminCall, _ []string) {
	ev := a.callEvent(c, "review.status")
	rep, err := a.g.deps.Reviews.Status(c.r.Context())
	if err != nil {
		a.reviewFail(c, err, ev)
		return
	}
	ev.Decision = audit.Allow
	a.succeed(c, rep, ev)
}

type reviewStartBody struct {
	Name string `json:"name"`
}

func (a *adminAPI) reviewStart(c *adminCall, _ []string) {
	ev := a.callEvent(c, "review.start")
	var body reviewStartBody
	if err := decodeBody(c.w, c.r, &body); err != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev)
		return
	}
	if !a.reviewCampaign(c, &ev, body.Name) {
		return
	}
	camp, err := a.g.deps.Reviews.Start(c.r.Context(), c.actor, body.Name)
	if err != nil {
		a.reviewFail(c, err, ev)
		return
	}
	ev.Decision = audit.Allow
	ev.Attrs["campaign_id"] = camp.ID
	a.succeedStatus(c, http.StatusCreated, camp, ev)
}

func (a *adminAPI) reviewGet(c *adminCall, seg []string) {
	ev := a.callEvent(c, "review.get")
	if !a.reviewCampaign(c, &ev, seg[1]) {
		return
	}
	camp, err := a.g.deps.Reviews.Get(c.r.Context(), seg[1])
	if err != nil {
		a.reviewFail(c, err, ev)
		return
	}
	ev.Decision = audit.Allow
	a.succeed(c, camp, ev)
}

type reviewDecideBody struct {
	Decision string `json:"decision"`
	Note     string `json:"note"`
}

func (a *adminAPI) reviewDecide(c *adminCall, seg []string) {
	ev := a.callEvent(c, "review.decide")
	if !a.reviewCampaign(c, &ev, seg[1]) {
		return
	}
	item := seg[3]
	if !isReviewItemID(item) {
		a.fail(c.w, c.r, http.StatusBadRequest, "invalid item", "bad-request", nil, ev)
		return
	}
	ev.Attrs["item"] = item
	var body reviewDecideBody
	if err := decodeBody(c.w, c.r, &body); err != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev)
		return
	}
	if body.Decision != review.Keep && body.Decision != review.Revoke {
		a.fail(c.w, c.r, http.StatusBadRequest, "decision must be keep or revoke", "bad-request", nil, ev)
		return
	}
	ev.Attrs["decision"] = body.Decision
	it, err := a.g.deps.Reviews.Decide(c.r.Context(), c.actor, seg[1], item, body.Decision, body.Note)
	if err != nil {
		a.reviewFail(c, err, ev)
		return
	}
	ev.Decision = audit.Allow
	a.succeed(c, it, ev)
}

func (a *adminAPI) reviewSignOff(c *adminCall, seg []string) {
	ev := a.callEvent(c, "review.signoff")
	if !a.reviewCampaign(c, &ev, seg[1]) {
		return
	}
	// No body is expected; an oversized or malformed one is refused all
	// the same, so that nothing unread is mistaken for a parameter.
	if err := decodeBody(c.w, c.r, &struct{}{}); err != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev)
		return
	}
	camp, err := a.g.deps.Reviews.SignOff(c.r.Context(), c.actor, seg[1])
	if err != nil {
		a.reviewFail(c, err, ev)
		return
	}
	ev.Decision = audit.Allow
	a.succeed(c, camp, ev)
}

func (a *adminAPI) reviewReport(c *adminCall, seg []string) {
	ev := a.callEvent(c, "review.report")
	if !a.reviewCampaign(c, &ev, seg[1]) {
		return
	}
	formats := c.r.URL.Query()["format"]
	if len(formats) != 1 || review.CheckFormat(formats[0]) != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "format must be csv, json or html", "bad-request", nil, ev)
		return
	}
	format := formats[0]
	ev.Attrs["format"] = format
	// The report is rendered into memory: it is sent only after its audit
	// record (review.report) is durable, and a failure half-way must not
	// leave half a report with a 200.
	var buf bytes.Buffer
	if err := a.g.deps.Reviews.Report(c.r.Context(), c.actor, seg[1], format, &buf); err != nil {
		a.reviewFail(c, err, ev)
		return
	}
	ev.Decision = audit.Allow
	hdr := http.Header{"Content-Type": {reportContentType[format]}}
	if format == review.FormatHTML {
		hdr.Set("Content-Security-Policy", reportCSP(buf.Bytes()))
	}
	a.succeedRaw(c, hdr, buf.Bytes(), ev)
}

// reportContentType maps a report format to its media type.
var reportContentType = map[string]string{
	review.FormatCSV:  "text/csv; charset=utf-8",
	review.FormatJSON: "application/json",
	review.FormatHTML: "text/html; charset=utf-8",
}

// maxReviewItemLen bounds an item ID from a path before it reaches the
// manager (which knows the exact form).
const maxReviewItemLen = 64

// isReviewItemID accepts the characters an item ID may have; the manager
// decides whether such an item exists.
func isReviewItemID(s string) bool {
	if s == "" || len(s) > maxReviewItemLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
