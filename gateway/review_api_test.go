package gateway

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
)

const revAPI = "/api/admin/reviews"

// TestReviewAPILifecycle runs a campaign through the admin API, once over
// the local socket and once with an admin bearer token: start, list, get,
// decide (a revoke of a local grant revokes it), sign-off and the three
// reports, with the acting admin on record.
func TestReviewAPILifecycle(t *testing.T) {
	for _, mk := range []func(e *reviewEnv) apiCaller{
		func(*reviewEnv) apiCaller { return localCaller() },
		func(e *reviewEnv) apiCaller { return bearerCaller(e, revAlice, "admin") },
	} {
		e := newReviewEnv(t, true)
		c := mk(e)
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			st := decodeAs[review.StatusReport](t, c.call(e, "GET", revAPI, ""), http.StatusOK)
			if len(st.Campaigns) != 0 || !st.NewDue {
				t.Fatalf("status before any campaign: %+v", st)
			}
			camp := decodeAs[review.Campaign](t, c.call(e, "POST", revAPI, `{"name":"2026-Q3"}`), http.StatusCreated)
			if camp.Name != "2026-Q3" || camp.CreatedBy != c.actor || len(camp.Items) != 4 {
				t.Fatalf("started %+v", camp)
			}
			if w := c.call(e, "POST", revAPI, `{"name":"2026-q3"}`); w.Code != http.StatusConflict {
				t.Fatalf("second start of the same campaign: %d %s", w.Code, w.Body)
			}
			st = decodeAs[review.StatusReport](t, c.call(e, "GET", revAPI, ""), http.StatusOK)
			if len(st.Campaigns) != 1 || st.Campaigns[0].State != review.StateOpen || st.NewDue {
				t.Fatalf("status: %+v", st)
			}
			got := decodeAs[review.Campaign](t, c.call(e, "GET", revAPI+"/2026-Q3", ""), http.StatusOK)
			if got.ID != camp.ID || len(got.Items) != len(camp.Items) {
				t.Fatalf("get: %+v", got)
			}
			if w := c.call(e, "POST", revAPI+"/2026-Q3/signoff", ""); w.Code != http.StatusConflict {
				t.Fatalf("sign-off with undecided items: %d %s", w.Code, w.Body)
			}
			local := findItem(t, got, revBob, "dba")
			if local.Source != review.SourceLocal || local.GrantID != e.grant.ID {
				t.Fatalf("local grant item %+v", local)
			}
			for _, it := range got.Items {
				decision := review.Keep
				if it.ID == local.ID {
					decision = review.Revoke
				}
				res := decodeAs[review.Item](t, c.call(e, "POST", revAPI+"/2026-Q3/items/"+it.ID,
					`{"decision":"`+decision+`","note":"quarterly"}`), http.StatusOK)
				if res.Decision != decision || res.DecidedBy != c.actor || res.Revoked != (decision == review.Revoke) {
					t.Fatalf("decided %+v", res)
				}
				// The manager's review.decide event was emitted before the
				// barrier the answer waited for.
				last := -1
				for i, ev := range e.audit.Events() {
					if ev.Type == review.TypeDecide && ev.Attrs["item"] == it.ID {
						last = i
					}
				}
				if last < 0 || int64(last) >= e.audit.atSync.Load() {
					t.Fatalf("review.decide event %d not covered by the last Sync (%d events)", last, e.audit.atSync.Load())
				}
			}
			if gs, err := e.jit.ListGrants(t.Context()); err != nil || len(gs) != 0 {
				t.Fatalf("grants after revoke: %+v %v", gs, err)
			}
			signed := decodeAs[review.Campaign](t, c.call(e, "POST", revAPI+"/2026-Q3/signoff", ""), http.StatusOK)
			if signed.SignedOffBy != c.actor || signed.SignedOffAt.IsZero() {
				t.Fatalf("signed off %+v", signed)
			}
			if w := c.call(e, "POST", revAPI+"/2026-Q3/items/"+local.ID, `{"decision":"keep"}`); w.Code != http.StatusConflict {
				t.Fatalf("decide after sign-off: %d %s", w.Code, w.Body)
			}

			for _, tc := range []struct {
				format, ctype string
				check         func(t *testing.T, body string)
			}{
				{"csv", "text/csv; charset=utf-8", func(t *testing.T, body string) {
					rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
					if err != nil || len(rows) != 1+len(camp.Items) {
						t.Fatalf("csv: %d rows, %v", len(rows), err)
					}
				}},
				{"json", "application/json", func(t *testing.T, body string) {
					var rep struct {
						Campaign struct {
							SignedOffBy string `json:"signed_off_by"`
						} `json:"campaign"`
						Items []json.RawMessage `json:"items"`
					}
					if err := json.Unmarshal([]byte(body), &rep); err != nil || rep.Campaign.SignedOffBy != c.actor || len(rep.Items) != len(camp.Items) {
						t.Fatalf("json report %+v %v", rep, err)
					}
				}},
				{"html", "text/html; charset=utf-8", func(t *testing.T, body string) {
					if !strings.Contains(body, `<table id="items">`) || strings.Contains(strings.ToLower(body), "<script") {
						t.Fatalf("html report:\n%s", body)
					}
				}},
			} {
				t.Run("report "+tc.format, func(t *testing.T) {
					w := c.call(e, "GET", revAPI+"/2026-Q3/report?format="+tc.format, "")
					if w.Code != http.StatusOK || w.Header().Get("Content-Type") != tc.ctype {
						t.Fatalf("status %d, type %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
					}
					if tc.format == "html" {
						csp := w.Header().Get("Content-Security-Policy")
						if !strings.HasPrefix(csp, "default-src 'none'") || strings.Contains(csp, "script") || strings.Contains(csp, "unsafe") {
							t.Fatalf("report CSP %q", csp)
						}
					}
					tc.check(t, w.Body.String())
					ev := e.audit.Find(review.TypeReport, "")
					if len(ev) == 0 || ev[len(ev)-1].Actor != c.actor || ev[len(ev)-1].Attrs["format"] != tc.format {
						t.Fatalf("review.report events %+v", ev)
					}
				})
			}

			// Every call was audited as an admin action by the caller.
			for _, action := range []string{"review.status", "review.start", "review.get", "review.decide", "review.signoff", "review.report"} {
				var found bool
				for _, ev := range e.audit.Find(audit.TypeAdmin, "") {
					if ev.Attrs["action"] == action && ev.Decision == audit.Allow && ev.Actor == c.actor {
						found = true
					}
				}
				if !found {
					t.Errorf("no allowed admin event %s by %s", action, c.actor)
				}
			}
			for _, typ := range []string{review.TypeStart, review.TypeDecide, review.TypeSignOff} {
				if evs := e.audit.Find(typ, ""); len(evs) == 0 || evs[0].Actor != c.actor {
					t.Errorf("%s events %+v", typ, evs)
				}
			}
		})
	}
}

// TestReviewAPIHostile: malformed names and paths, unknown campaigns and
// items, bad decisions and formats, oversized and unknown bodies, wrong
// methods — each a typed refusal with a reference, audited as a deny.
func TestReviewAPIHostile(t *testing.T) {
	e := newReviewEnv(t, true)
	c := localCaller()
	camp := decodeAs[review.Campaign](t, c.call(e, "POST", revAPI, `{"name":"q1"}`), http.StatusCreated)
	item := camp.Items[0].ID
	long := strings.Repeat("a", 65)
	tests := []struct {
		name         string
		method, path string
		body         string
		want         int
		reason       string
	}{
		{"start: empty name", "POST", revAPI, `{"name":""}`, 400, "bad-request"},
		{"start: no body", "POST", revAPI, ``, 400, "bad-request"},
		{"start: name with slash", "POST", revAPI, `{"name":"a/b"}`, 400, "bad-request"},
		{"start: dot-dot", "POST", revAPI, `{"name":".."}`, 400, "bad-request"},
		{"start: 65 characters", "POST", revAPI, `{"name":"` + long + `"}`, 400, "bad-request"},
		{"start: control character", "POST", revAPI, `{"name":"q\u00002"}`, 400, "bad-request"},
		{"start: unknown field", "POST", revAPI, `{"name":"q2","items":[]}`, 400, "bad-request"},
		{"start: trailing data", "POST", revAPI, `{"name":"q2"}{"name":"q3"}`, 400, "bad-request"},
		{"start: not JSON", "POST", revAPI, `name=q2`, 400, "bad-request"},
		{"start: existing", "POST", revAPI, `{"name":"Q1"}`, 409, "already-exists"},
		{"start: oversized body", "POST", revAPI, `{"name":"q2","x":"` + strings.Repeat("x", 70<<10) + `"}`, 400, "bad-request"},
		{"list: wrong method", "DELETE", revAPI, ``, 405, "method-not-allowed"},
		{"get: unknown campaign", "GET", revAPI + "/nope", ``, 404, "not-found"},
		{"get: dot-dot", "GET", revAPI + "/..", ``, 400, "bad-request"},
		{"get: escaped dot-dot", "GET", revAPI + "/%2E%2E", ``, 400, "bad-request"},
		{"get: escaped slash", "GET", revAPI + "/q1%2Freport", ``, 400, "bad-request"},
		{"get: escaped traversal", "GET", revAPI + "/..%2F..%2Fusers", ``, 400, "bad-request"},
		{"get: empty name", "GET", revAPI + "/", ``, 400, "bad-request"},
		{"get: over-long name", "GET", revAPI + "/" + long, ``, 400, "bad-request"},
		{"get: space", "GET", revAPI + "/q%201", ``, 400, "bad-request"},
		{"get: wrong method", "POST", revAPI + "/q1", ``, 405, "method-not-allowed"},
		{"unknown sub-path", "GET", revAPI + "/q1/items", ``, 404, "not-found"},
		{"too deep", "POST", revAPI + "/q1/items/" + item + "/x", ``, 404, "not-found"},
		{"decide: unknown item", "POST", revAPI + "/q1/items/9999", `{"decision":"keep"}`, 404, "not-found"},
		{"decide: unknown campaign", "POST", revAPI + "/q9/items/" + item, `{"decision":"keep"}`, 404, "not-found"},
		{"decide: escaped slash in item", "POST", revAPI + "/q1/items/0%2F1", `{"decision":"keep"}`, 400, "bad-request"},
		{"decide: dot-dot item", "POST", revAPI + "/q1/items/..", `{"decision":"keep"}`, 400, "bad-request"},
		{"decide: over-long item", "POST", revAPI + "/q1/items/" + strings.Repeat("1", 65), `{"decision":"keep"}`, 400, "bad-request"},
		{"decide: letters item", "POST", revAPI + "/q1/items/abc", `{"decision":"keep"}`, 400, "bad-request"},
		{"decide: bad decision", "POST", revAPI + "/q1/items/" + item, `{"decision":"delete"}`, 400, "bad-request"},
		{"decide: upper-case decision", "POST", revAPI + "/q1/items/" + item, `{"decision":"KEEP"}`, 400, "bad-request"},
		{"decide: no decision", "POST", revAPI + "/q1/items/" + item, `{}`, 400, "bad-request"},
		{"decide: control character note", "POST", revAPI + "/q1/items/" + item, `{"decision":"keep","note":"a\u001b[2Jb"}`, 400, "bad-request"},
		{"decide: over-long note", "POST", revAPI + "/q1/items/" + item, `{"decision":"keep","note":"` + strings.Repeat("n", 1001) + `"}`, 400, "bad-request"},
		{"decide: oversized body", "POST", revAPI + "/q1/items/" + item, `{"decision":"keep","note":"` + strings.Repeat("n", 70<<10) + `"}`, 400, "bad-request"},
		{"decide: wrong method", "GET", revAPI + "/q1/items/" + item, ``, 405, "method-not-allowed"},
		{"sign-off: undecided", "POST", revAPI + "/q1/signoff", ``, 409, "undecided"},
		{"sign-off: body", "POST", revAPI + "/q1/signoff", `{"force":true}`, 400, "bad-request"},
		{"sign-off: unknown", "POST", revAPI + "/q9/signoff", ``, 404, "not-found"},
		{"sign-off: wrong method", "GET", revAPI + "/q1/signoff", ``, 405, "method-not-allowed"},
		{"report: no format", "GET", revAPI + "/q1/report", ``, 400, "bad-request"},
		{"report: pdf", "GET", revAPI + "/q1/report?format=pdf", ``, 400, "bad-request"},
		{"report: upper case", "GET", revAPI + "/q1/report?format=HTML", ``, 400, "bad-request"},
		{"report: two formats", "GET", revAPI + "/q1/report?format=csv&format=html", ``, 400, "bad-request"},
		{"report: unknown campaign", "GET", revAPI + "/q9/report?format=csv", ``, 404, "not-found"},
		{"report: wrong method", "POST", revAPI + "/q1/report?format=csv", ``, 405, "method-not-allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.audit.Reset()
			w := c.call(e, tc.method, tc.path, tc.body)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			b := decodeErrorBody(t, w)
			if b.Ref == "" || b.Error == "" {
				t.Fatalf("error body %+v", b)
			}
			if strings.Contains(b.Error, "review:") {
				t.Errorf("error message leaks the cause: %q", b.Error)
			}
			var found bool
			for _, ev := range e.audit.Find(audit.TypeAdmin, tc.reason) {
				found = found || (ev.Decision == audit.Deny && ev.Ref == b.Ref && ev.Actor == localAdminActor)
			}
			if !found {
				t.Errorf("no deny %s with ref %s in %+v", tc.reason, b.Ref, e.audit.Events())
			}
			if tc.want == 405 && w.Header().Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	if w := c.call(e, "PUT", revAPI, ""); w.Header().Get("Allow") != "GET, POST" {
		t.Errorf("Allow of /api/admin/reviews: %q", w.Header().Get("Allow"))
	}
	// Nothing above changed the campaign.
	got := decodeAs[review.Campaign](t, c.call(e, "GET", revAPI+"/q1", ""), http.StatusOK)
	for _, it := range got.Items {
		if it.Decision != "" {
			t.Errorf("item %s decided: %+v", it.ID, it)
		}
	}
	st := decodeAs[review.StatusReport](t, c.call(e, "GET", revAPI, ""), http.StatusOK)
	if len(st.Campaigns) != 1 {
		t.Errorf("campaigns %+v", st.Campaigns)
	}
}

// TestReviewAPIAuth: the remote API wants an admin bearer token; without
// reviews configured every review endpoint is 404.
func TestReviewAPIAuth(t *testing.T) {
	e := newReviewEnv(t, true)
	tests := []struct {
		name   string
		caller apiCaller
		want   int
	}{
		{"admin", bearerCaller(e, revAlice, "admin"), http.StatusOK},
		{"engineer", bearerCaller(e, revBob, "engineer"), http.StatusForbidden},
		{"no roles", bearerCaller(e, revCarol), http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if w := tc.caller.call(e, "GET", revAPI, ""); w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if w := tc.caller.call(e, "POST", revAPI, `{"name":"by-`+strings.ReplaceAll(tc.name, " ", "-")+`"}`); tc.want != http.StatusOK && w.Code != tc.want {
				t.Fatalf("start: status %d, want %d", w.Code, tc.want)
			}
		})
	}
	for _, ev := range e.audit.Find(review.TypeStart, "") {
		if ev.Actor != revAlice {
			t.Errorf("campaign started by a non-admin: %+v", ev)
		}
	}

	off := newReviewEnv(t, false)
	for _, p := range []string{revAPI, revAPI + "/q1", revAPI + "/q1/report?format=csv"} {
		w := localCaller().call(off, "GET", p, "")
		if b := decodeErrorBody(t, w); w.Code != http.StatusNotFound || b.Error != "not found" {
			t.Errorf("%s without reviews: %d %+v", p, w.Code, b)
		}
	}
}

// TestReviewAPIUnacknowledged: when the trail cannot be made durable, a
// decision or a report is not acknowledged: 503 with a reference, and no
// report body.
func TestReviewAPIUnacknowledged(t *testing.T) {
	e := newReviewEnv(t, true)
	c := localCaller()
	camp := decodeAs[review.Campaign](t, c.call(e, "POST", revAPI, `{"name":"q1"}`), http.StatusCreated)
	e.audit.fail.Store(true)
	for _, tc := range []struct{ name, method, path, body string }{
		{"decide", "POST", revAPI + "/q1/items/" + camp.Items[0].ID, `{"decision":"keep"}`},
		{"report", "GET", revAPI + "/q1/report?format=html", ``},
		{"start", "POST", revAPI, `{"name":"q2"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := c.call(e, tc.method, tc.path, tc.body)
			if w.Code != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
			}
			if b := decodeErrorBody(t, w); b.Ref == "" || strings.Contains(w.Body.String(), "<table") {
				t.Fatalf("body %s", w.Body)
			}
		})
	}
}
