package adminclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

func TestAccessRequests(t *testing.T) {
	exp := time.Date(2026, 3, 31, 18, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		name                         string
		req                          Request
		method, rawPath, query, body string
	}{
		{"submit", SubmitRequest("db-admin", 2*time.Hour, "INC-1"), "POST", "/api/access/requests", "", `{"role":"db-admin","duration":"2h0m0s","reason":"INC-1"}`},
		{"my requests", MyAccessRequests(), "GET", "/api/access/requests", "", ""},
		{"get escapes", GetAccessRequest("a/b"), "GET", "/api/access/requests/a%2Fb", "", ""},
		{"approve", DecideAccessRequest("r1", "approve", ""), "POST", "/api/access/requests/r1/approve", "", `{"note":""}`},
		{"cancel", CancelAccessRequest("r1"), "POST", "/api/access/requests/r1/cancel", "", ""},
		{"my grants", MyGrants(), "GET", "/api/access/grants", "", ""},
		{"admin requests", AdminRequests(), "GET", "/api/admin/requests", "", ""},
		{"admin deny", AdminDecideRequest("r1", "deny", "no"), "POST", "/api/admin/requests/r1/deny", "", `{"note":"no"}`},
		{"admin grants", AdminGrants(), "GET", "/api/admin/grants", "", ""},
		{"add grant until", AddGrant("https://idp#u", "db", exp, "x"), "POST", "/api/admin/grants", "", `{"user_id":"https://idp#u","role":"db","expires":"2026-03-31T16:00:00Z","reason":"x"}`},
		{"add grant forever", AddGrant("u", "db", time.Time{}, "x"), "POST", "/api/admin/grants", "", `{"user_id":"u","role":"db","expires":"","reason":"x"}`},
		{"revoke grant", RevokeGrant("g/1", "x"), "POST", "/api/admin/grants/g%2F1/revoke", "", `{"reason":"x"}`},
		{"review status", ReviewStatusReq(), "GET", "/api/admin/reviews", "", ""},
		{"review start", StartReview("2026-Q4"), "POST", "/api/admin/reviews", "", `{"name":"2026-Q4"}`},
		{"review get", GetReview("2026 Q4"), "GET", "/api/admin/reviews/2026%20Q4", "", ""},
		{"review decide", DecideReviewItem("q", "i/1", "keep", ""), "POST", "/api/admin/reviews/q/items/i%2F1", "", `{"decision":"keep","note":""}`},
		{"review signoff", SignOffReview("q"), "POST", "/api/admin/reviews/q/signoff", "", ""},
		{"review report", ReviewReport("q", "csv"), "GET", "/api/admin/reviews/q/report", "format=csv", ""},
		{"search", SearchEvents(audit.Query{UserID: "u", TypePrefix: "access.", Ref: "not-sent", Since: exp, Limit: 5}), "GET", "/api/audit/events",
			"limit=5&since=2026-03-31T16%3A00%3A00Z&type_prefix=access.&user=u", ""},
		{"search everything", SearchEvents(audit.Query{}), "GET", "/api/audit/events", "", ""},
		{"recordings", Recordings(""), "GET", "/api/audit/recordings", "", ""},
		{"recordings of a user", Recordings("u#1"), "GET", "/api/audit/recordings", "user=u%231", ""},
		{"recording", GetRecording("ssh-1"), "GET", "/api/audit/recordings/ssh-1", "", ""},
	}
	var rec recorder
	c := NewUnix(unixServer(t, fakeAPI(&rec, 200, `{}`)), 5*time.Second)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Call(context.Background(), tc.req); err != nil {
				t.Fatal(err)
			}
			if rec.method != tc.method || rec.rawPath != tc.rawPath || rec.query != tc.query || rec.body != tc.body {
				t.Errorf("sent %s %s ?%s %s\nwant %s %s ?%s %s", rec.method, rec.rawPath, rec.query, rec.body, tc.method, tc.rawPath, tc.query, tc.body)
			}
		})
	}
}

func TestAcceptHeader(t *testing.T) {
	var got []string
	sock := unixServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = append(got, r.Header.Get("Accept")) }))
	c := NewUnix(sock, 5*time.Second)
	for _, r := range []Request{Users(), ReviewReport("q", "html"), GetRecording("x")} {
		if _, err := c.Call(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(got, " ") != "application/json text/html application/x-asciicast" {
		t.Fatalf("Accept headers %q", got)
	}
}

func TestReasonCode(t *testing.T) {
	tests := []struct{ name, body, reason, msg string }{
		{"reason and ref", `{"error":"forbidden","reason":"self-approval","ref":"R1"}`, "self-approval", "server answered 403 Forbidden: forbidden (reason self-approval, ref R1)"},
		{"reason only", `{"error":"forbidden","reason":"not-approver"}`, "not-approver", "server answered 403 Forbidden: forbidden (reason not-approver)"},
		{"hostile reason", `{"error":"x","reason":"a\u001b[2J"}`, "a?[2J", "server answered 403 Forbidden: x (reason a?[2J)"},
		{"no reason", `{"error":"x","ref":"R"}`, "", "server answered 403 Forbidden: x (ref R)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			c := NewUnix(unixServer(t, fakeAPI(&rec, 403, tc.body)), 5*time.Second)
			_, err := c.Call(context.Background(), Users())
			var ae *APIError
			if !errors.As(err, &ae) || ae.Reason != tc.reason || err.Error() != tc.msg {
				t.Fatalf("got %v (reason %q), want %q", err, ae.Reason, tc.msg)
			}
		})
	}
}

// TestAPILabel: a client of the user API does not call itself the admin
// API in its errors.
func TestAPILabel(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	srv.Close() // nothing listens any more
	c, err := NewRemote(RemoteOptions{Server: srv.URL, Token: "t", Timeout: time.Second, API: "access API"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(context.Background(), MyGrants()); err == nil || !strings.Contains(err.Error(), "cannot reach the access API") {
		t.Fatalf("err %v", err)
	}
	if _, err := NewRemote(RemoteOptions{Server: "https://a.example", API: "access API"}); err == nil || strings.Contains(err.Error(), "admin") {
		t.Fatalf("empty token: %v", err)
	}
}

func TestTime(t *testing.T) {
	tests := []struct {
		name, in string
		want     time.Time
		bad      bool
	}{
		{"rfc3339", `"2026-01-02T03:04:05Z"`, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), false},
		{"fraction and offset", `"2026-01-02T05:04:05.5+02:00"`, time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC), false},
		{"empty", `""`, time.Time{}, false},
		{"null", `null`, time.Time{}, false},
		{"zero time", `"0001-01-01T00:00:00Z"`, time.Time{}, false},
		{"not a time", `"yesterday"`, time.Time{}, true},
		{"number", `12`, time.Time{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v struct {
				T Time `json:"t"`
			}
			err := json.Unmarshal([]byte(`{"t":`+tc.in+`}`), &v)
			if (err != nil) != tc.bad || !v.T.Equal(tc.want) {
				t.Fatalf("got %v %v", v.T, err)
			}
		})
	}
}

func TestDecodeAccessTypes(t *testing.T) {
	var r AccessRequest
	err := json.Unmarshal([]byte(`{"id":"r1","duration":"2h0m0s","created_at":"2026-01-02T03:04:05Z","expires_at":"2026-01-03T03:04:05Z","state":"approved",
		"approvals":[{"user_id":"a","at":"2026-01-02T04:00:00Z","note":""}],"approvals_required":1,"denial":null,"grant_id":"r1"}`), &r)
	if err != nil || r.GrantID != "r1" || len(r.Approvals) != 1 || r.Denial != nil || r.ExpiresAt.IsZero() {
		t.Fatalf("%+v %v", r, err)
	}
	var g GrantList
	if err := json.Unmarshal([]byte(`{"grants":[{"id":"g","start":"2026-01-02T04:00:00Z"}]}`), &g); err != nil || !g.Grants[0].Expires.IsZero() {
		t.Fatalf("%+v %v", g, err)
	}
}
