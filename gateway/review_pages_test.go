package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
)

var (
	reRevCSRF = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	reRevRow  = regexp.MustCompile(`<tr id="item-(\d+)" data-item="(\d+)" data-user="([^"]*)" data-role="([^"]*)"`)
)

func revScrape(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%v not in page:\n%s", re, body)
	}
	return html.UnescapeString(m[1])
}

// startCampaign starts one over the local admin API.
func (e *reviewEnv) startCampaign(name string) review.Campaign {
	e.t.Helper()
	return decodeAs[review.Campaign](e.t, localCaller().call(e, "POST", revAPI, `{"name":"`+name+`"}`), http.StatusCreated)
}

// rowOf finds the item row of user and role on the campaign page.
func rowOf(t *testing.T, body, user, role string) string {
	t.Helper()
	for _, m := range reRevRow.FindAllStringSubmatch(body, -1) {
		if html.UnescapeString(m[3]) == user && m[4] == role {
			return m[2]
		}
	}
	t.Fatalf("no row for %s %s in:\n%s", user, role, body)
	return ""
}

// TestReviewPagesFlow: an admin sees the campaigns, opens one, decides
// every item with the forms (the revoke of a local grant removes it),
// signs off, and reads the report under a CSP that runs nothing.
func TestReviewPagesFlow(t *testing.T) {
	e := newReviewEnv(t, true)
	admin := e.browser(revAlice, "admin")

	p := admin.get(pathReviews)
	if p.Code != http.StatusOK || !strings.Contains(p.Body.String(), `id="new-due"`) || !strings.Contains(p.Body.String(), `id="campaigns"`) {
		t.Fatalf("/reviews before any campaign: %d\n%s", p.Code, p.Body)
	}
	// Start from the page.
	p = admin.post(pathReviews, url.Values{"csrf": {revScrape(t, reRevCSRF, p.Body.String())}, "name": {"2026-Q3"}})
	if p.Code != http.StatusSeeOther || p.Header().Get("Location") != "/reviews/2026-Q3" {
		t.Fatalf("start: %d %q\n%s", p.Code, p.Header().Get("Location"), p.Body)
	}
	p = admin.get(pathReviews)
	body := p.Body.String()
	if !strings.Contains(body, `data-campaign="2026-Q3" data-state="open"`) || strings.Contains(body, `id="new-due"`) {
		t.Fatalf("/reviews after start:\n%s", body)
	}

	p = admin.get("/reviews/2026-Q3")
	body = p.Body.String()
	if p.Code != http.StatusOK || !strings.Contains(body, `<table id="items">`) || !strings.Contains(body, `id="signoff"`) {
		t.Fatalf("campaign page: %d\n%s", p.Code, body)
	}
	if n := len(reRevRow.FindAllString(body, -1)); n != 4 {
		t.Fatalf("%d item rows, want 4\n%s", n, body)
	}
	csrf := revScrape(t, reRevCSRF, body)
	local := rowOf(t, body, revBob, "dba")
	decide := func(item, decision string) *httpResult {
		return res(admin.post("/reviews/2026-Q3/items/"+item, url.Values{"csrf": {csrf}, "decision": {decision}, "note": {"checked with the team"}}))
	}
	if r := decide(local, "revoke"); r.code != http.StatusSeeOther || r.location != "/reviews/2026-Q3#item-"+local {
		t.Fatalf("revoke: %+v", r)
	}
	if gs, err := e.jit.ListGrants(t.Context()); err != nil || len(gs) != 0 {
		t.Fatalf("grants after the revoke: %+v %v", gs, err)
	}
	for _, row := range []struct{ user, role string }{{revAlice, "admin"}, {revBob, "engineer"}, {revCarol, "engineer"}} {
		if r := decide(rowOf(t, body, row.user, row.role), "keep"); r.code != http.StatusSeeOther {
			t.Fatalf("keep %s: %+v", row.user, r)
		}
	}
	// A revoked grant cannot be kept afterwards: a conflict page with a reference.
	if r := decide(local, "keep"); r.code != http.StatusConflict || !strings.Contains(r.body, "already revoked") {
		t.Fatalf("keep after revoke: %+v", r)
	}
	ev := e.audit.Find(review.TypeDecide, "")
	if len(ev) < 4 || ev[0].Actor != revAlice || ev[0].Attrs["decision"] != "revoke" {
		t.Fatalf("decide events %+v", ev)
	}

	p = admin.post("/reviews/2026-Q3/signoff", url.Values{"csrf": {csrf}})
	if p.Code != http.StatusSeeOther {
		t.Fatalf("sign-off: %d\n%s", p.Code, p.Body)
	}
	camp, err := e.rev.Get(t.Context(), "2026-Q3")
	if err != nil || camp.SignedOffBy != revAlice {
		t.Fatalf("after sign-off %+v %v", camp, err)
	}
	p = admin.get("/reviews/2026-Q3")
	body = p.Body.String()
	if !strings.Contains(body, `data-state="signed-off"`) || strings.Contains(body, "<form method=\"post\" action=\"/reviews/2026-Q3/") {
		t.Fatalf("signed-off page still has forms:\n%s", body)
	}
	if r := decide(local, "revoke"); r.code != http.StatusConflict {
		t.Fatalf("decide after sign-off: %+v", r)
	}

	p = admin.get("/reviews/2026-Q3/report")
	body = p.Body.String()
	if p.Code != http.StatusOK || !strings.Contains(body, `<table id="items">`) || strings.Contains(strings.ToLower(body), "<script") {
		t.Fatalf("report: %d\n%s", p.Code, body)
	}
	csp := p.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "form-action 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("report CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "script") || strings.Contains(csp, "unsafe") {
		t.Errorf("report CSP %q allows too much", csp)
	}
	// The style hash is the report's own style sheet.
	style := body[strings.Index(body, "<style>")+len("<style>") : strings.Index(body, "</style>")]
	sum := sha256.Sum256([]byte(style))
	if !strings.Contains(csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		t.Errorf("report CSP %q does not allow the report's style", csp)
	}
	if p.Header().Get("X-Content-Type-Options") != "nosniff" || p.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("report headers %v", p.Header())
	}
	if evs := e.audit.Find(review.TypeReport, ""); len(evs) != 1 || evs[0].Actor != revAlice || evs[0].Attrs["format"] != "html" {
		t.Errorf("report events %+v", evs)
	}
	for _, action := range []string{"review.status", "review.start", "review.get", "review.decide", "review.signoff", "review.report"} {
		var found bool
		for _, ev := range e.audit.Find(audit.TypeAdmin, "") {
			found = found || (ev.Attrs["action"] == action && ev.Decision == audit.Allow && ev.Actor == revAlice && ev.SessionID != "")
		}
		if !found {
			t.Errorf("no admin event %s", action)
		}
	}
}

type httpResult struct {
	code     int
	location string
	body     string
}

// TestReviewPagesRefuse: non-admins, missing or forged CSRF tokens,
// foreign origins and path tricks are refused before anything changes.
func TestReviewPagesRefuse(t *testing.T) {
	e := newReviewEnv(t, true)
	camp := e.startCampaign("q1")
	item := camp.Items[0].ID
	admin := e.browser(revAlice, "admin")
	eng := e.browser(revBob, "engineer")
	anon := &revBrowser{e: e}
	adminCSRF := revScrape(t, reRevCSRF, admin.get("/reviews/q1").Body.String())
	// A valid token of bob's own session: what a non-admin can get.
	engCSRF := e.g.login.csrf.token(csrfSession, eng.cookie)
	decideForm := func(csrf string) url.Values {
		v := url.Values{"decision": {"revoke"}}
		if csrf != "" {
			v.Set("csrf", csrf)
		}
		return v
	}
	tests := []struct {
		name   string
		do     func() *httpResult
		want   int
		reason string // audited deny reason; "" = none checked
	}{
		{"engineer lists", func() *httpResult { return res(eng.get("/reviews")) }, 403, "not-admin"},
		{"engineer opens", func() *httpResult { return res(eng.get("/reviews/q1")) }, 403, "not-admin"},
		{"engineer report", func() *httpResult { return res(eng.get("/reviews/q1/report")) }, 403, "not-admin"},
		{"engineer decides with own token", func() *httpResult {
			return res(eng.post("/reviews/q1/items/"+item, decideForm(engCSRF)))
		}, 403, "not-admin"},
		{"engineer signs off with own token", func() *httpResult {
			return res(eng.post("/reviews/q1/signoff", url.Values{"csrf": {engCSRF}}))
		}, 403, "not-admin"},
		{"engineer starts with own token", func() *httpResult {
			return res(eng.post("/reviews", url.Values{"csrf": {engCSRF}, "name": {"q2"}}))
		}, 403, "not-admin"},
		{"no session", func() *httpResult { return res(anon.get("/reviews/q1")) }, 303, ""},
		{"csrf missing", func() *httpResult { return res(admin.post("/reviews/q1/items/"+item, decideForm(""))) }, 403, "csrf-invalid"},
		{"csrf forged", func() *httpResult {
			return res(admin.post("/reviews/q1/items/"+item, decideForm("AAAA"+adminCSRF[4:])))
		}, 403, "csrf-invalid"},
		{"csrf of another session", func() *httpResult {
			return res(admin.post("/reviews/q1/items/"+item, decideForm(engCSRF)))
		}, 403, "csrf-invalid"},
		{"csrf missing on sign-off", func() *httpResult { return res(admin.post("/reviews/q1/signoff", url.Values{})) }, 403, "csrf-invalid"},
		{"foreign origin", func() *httpResult {
			return res(admin.post("/reviews/q1/items/"+item, decideForm(adminCSRF), "Origin", "https://evil.example.net", "Sec-Fetch-Site", "cross-site"))
		}, 403, "csrf-invalid"},
		{"bad decision", func() *httpResult {
			f := decideForm(adminCSRF)
			f.Set("decision", "delete")
			return res(admin.post("/reviews/q1/items/"+item, f))
		}, 400, "bad-request"},
		{"unknown item", func() *httpResult { return res(admin.post("/reviews/q1/items/9999", decideForm(adminCSRF))) }, 404, "not-found"},
		{"unknown campaign", func() *httpResult { return res(admin.get("/reviews/q9")) }, 404, "not-found"},
		{"undecided sign-off", func() *httpResult {
			return res(admin.post("/reviews/q1/signoff", url.Values{"csrf": {adminCSRF}}))
		}, 409, "undecided"},
		{"start existing", func() *httpResult {
			return res(admin.post("/reviews", url.Values{"csrf": {adminCSRF}, "name": {"Q1"}}))
		}, 409, "already-exists"},
		{"start bad name", func() *httpResult {
			return res(admin.post("/reviews", url.Values{"csrf": {adminCSRF}, "name": {"../x"}}))
		}, 400, "bad-request"},
		{"GET sign-off", func() *httpResult { return res(admin.get("/reviews/q1/signoff")) }, 405, ""},
		{"POST campaign page", func() *httpResult { return res(admin.post("/reviews/q1", decideForm(adminCSRF))) }, 405, ""},
		{"dot-dot", func() *httpResult { return res(admin.get("/reviews/../admin/token")) }, 404, ""},
		{"escaped slash", func() *httpResult { return res(admin.get("/reviews/q1%2Freport")) }, 400, ""},
		{"escaped dot-dot", func() *httpResult { return res(admin.get("/reviews/%2E%2E/q1")) }, 404, ""},
		{"empty segment", func() *httpResult { return res(admin.get("/reviews//q1")) }, 404, ""},
		{"trailing slash", func() *httpResult { return res(admin.get("/reviews/q1/")) }, 404, ""},
		{"over-long name", func() *httpResult { return res(admin.get("/reviews/" + strings.Repeat("q", 65))) }, 404, ""},
		{"unknown action", func() *httpResult { return res(admin.get("/reviews/q1/export")) }, 404, ""},
		{"items without item", func() *httpResult { return res(admin.post("/reviews/q1/items", decideForm(adminCSRF))) }, 404, ""},
		{"reviewsX", func() *httpResult { return res(admin.get("/reviewsX")) }, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.audit.Reset()
			r := tc.do()
			if r.code != tc.want {
				t.Fatalf("status %d, want %d\n%s", r.code, tc.want, r.body)
			}
			if tc.want == http.StatusSeeOther && !strings.HasPrefix(r.location, pathLogin) {
				t.Fatalf("redirect to %q, want login", r.location)
			}
			if tc.reason != "" {
				var found bool
				for _, ev := range e.audit.Events() {
					found = found || (ev.Reason == tc.reason && ev.Decision == audit.Deny && ev.Ref != "" && strings.Contains(r.body, ev.Ref))
				}
				if !found {
					t.Fatalf("no deny %s whose reference is on the page; events %+v\n%s", tc.reason, e.audit.Events(), r.body)
				}
			}
		})
	}
	got, err := e.rev.Get(t.Context(), "q1")
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range got.Items {
		if it.Decision != "" {
			t.Errorf("item %s decided by a refused request: %+v", it.ID, it)
		}
	}
	if gs, err := e.jit.ListGrants(t.Context()); err != nil || len(gs) != 1 {
		t.Errorf("grants %+v %v", gs, err)
	}
	if st, err := e.rev.Status(t.Context()); err != nil || len(st.Campaigns) != 1 {
		t.Errorf("campaigns %+v %v", st, err)
	}
}

// res is what a test looks at in an answer.
func res(w *httptest.ResponseRecorder) *httpResult {
	return &httpResult{w.Code, w.Header().Get("Location"), w.Body.String()}
}

// TestReviewPagesNotConfigured: without a review manager the pages say so
// (to admins only).
func TestReviewPagesNotConfigured(t *testing.T) {
	e := newReviewEnv(t, false)
	admin := e.browser(revAlice, "admin")
	for _, p := range []string{"/reviews", "/reviews/q1", "/reviews/q1/report"} {
		w := admin.get(p)
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "not configured") {
			t.Errorf("%s: %d\n%s", p, w.Code, w.Body)
		}
	}
	if w := e.browser(revBob, "engineer").get("/reviews"); w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "not configured") {
		t.Errorf("engineer: %d\n%s", w.Code, w.Body)
	}
}

// TestReviewHomeLink: the home page links the reviews for admins only.
func TestReviewHomeLink(t *testing.T) {
	e := newReviewEnv(t, true)
	for _, tc := range []struct {
		name string
		b    *revBrowser
		link bool
	}{
		{"admin", e.browser(revAlice, "admin"), true},
		{"engineer", e.browser(revBob, "engineer"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.b.get(pathHome)
			if w.Code != http.StatusOK || strings.Contains(w.Body.String(), `id="reviews-link"`) != tc.link {
				t.Fatalf("home: %d, link %v\n%s", w.Code, tc.link, w.Body)
			}
		})
	}
}

// TestParseReviewPath is the page router's own check, below the access
// host's normaliser: it must stand alone.
func TestParseReviewPath(t *testing.T) {
	tests := []struct {
		path string
		want reviewPath
		ok   bool
	}{
		{"/reviews", reviewPath{}, true},
		{"/reviews/2026-Q4", reviewPath{name: "2026-Q4"}, true},
		{"/reviews/a.b_c-d", reviewPath{name: "a.b_c-d"}, true},
		{"/reviews/q1/report", reviewPath{name: "q1", action: "report"}, true},
		{"/reviews/q1/signoff", reviewPath{name: "q1", action: "signoff"}, true},
		{"/reviews/q1/items/0001", reviewPath{name: "q1", action: "items", item: "0001"}, true},
		{"/reviews/" + strings.Repeat("q", 64), reviewPath{name: strings.Repeat("q", 64)}, true},
		{"/reviews/", reviewPath{}, false},
		{"/reviews//", reviewPath{}, false},
		{"/reviews/..", reviewPath{}, false},
		{"/reviews/.", reviewPath{}, false},
		{"/reviews/../x", reviewPath{}, false},
		{"/reviews/.hidden", reviewPath{}, false},
		{"/reviews/q1%2Freport", reviewPath{}, false},
		{"/reviews/%2E%2E", reviewPath{}, false},
		{"/reviews/q%00", reviewPath{}, false},
		{"/reviews/q 1", reviewPath{}, false},
		{"/reviews/" + strings.Repeat("q", 65), reviewPath{}, false},
		{"/reviews/q1/", reviewPath{}, false},
		{"/reviews/q1//report", reviewPath{}, false},
		{"/reviews/q1/report/x", reviewPath{}, false},
		{"/reviews/q1/items", reviewPath{}, false},
		{"/reviews/q1/items/", reviewPath{}, false},
		{"/reviews/q1/items/..", reviewPath{}, false},
		{"/reviews/q1/items/1%2F2", reviewPath{}, false},
		{"/reviews/q1/items/" + strings.Repeat("1", 65), reviewPath{}, false},
		{"/reviews/q1/items/1/x", reviewPath{}, false},
		{"/reviews/q1/bogus", reviewPath{}, false},
		{"/reviewsX", reviewPath{}, false},
		{"/admin/reviews", reviewPath{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, ok := parseReviewPath(tc.path)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("parseReviewPath(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
			}
		})
	}
}
