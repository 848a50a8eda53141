package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// searchTrail searches the trail as tok; it returns the status, the
// refusal's reason and the events.
func (e *jitEnv) searchTrail(tok, query string) (int, string, []audit.Event) {
	e.t.Helper()
	p := e.rawGet("/api/audit/events?"+query, tok)
	var body struct {
		Events []audit.Event `json:"events"`
		More   bool          `json:"more"`
		Reason string        `json:"reason"`
	}
	if err := json.Unmarshal([]byte(p.body), &body); err != nil {
		e.t.Fatalf("search body %q: %v", p.body, err)
	}
	return p.status, body.Reason, body.Events
}

// TestJITAuditReadMatrix: who may search the trail and read whose
// recordings, with and without require_approval, and that every read is
// audited (allow and deny), durably (the trail itself holds them).
func TestJITAuditReadMatrix(t *testing.T) {
	for _, requireApproval := range []bool{false, true} {
		name := "standing role suffices"
		if requireApproval {
			name = "approval required"
		}
		t.Run(name, func(t *testing.T) {
			e := newJITEnv(t, requireApproval)
			e.recs.add("s-bob-1", jitFrank, "{\"version\":2}\n[0.1,\"o\",\"hello bob\"]\n")
			e.recs.add("s-grace-1", jitGrace, "{\"version\":2}\n[0.1,\"o\",\"hello grace\"]\n")
			bob := e.token(jitFrank, "engineer")
			standing := e.token(jitGrace, "auditor")
			dave := e.token(jitDave, "sre-lead")
			erin := e.token(jitErin, "sre-lead")

			// Non-auditor: no search, own recordings only.
			if st, reason, _ := e.searchTrail(bob, "limit=5"); st != http.StatusForbidden || reason != "auditor-role-required" {
				t.Fatalf("non-auditor search: %d %s", st, reason)
			}
			e.mustAudit(TypeTrailSearch, "auditor-role-required", audit.Deny)
			st, m, raw := e.call(http.MethodGet, "/api/audit/recordings", bob, "")
			if rs := m["recordings"].([]any); st != http.StatusOK || len(rs) != 1 || rs[0].(map[string]any)["id"] != "s-bob-1" {
				t.Fatalf("own recordings: %d %s", st, raw)
			}
			if st, m, _ := e.call(http.MethodGet, "/api/audit/recordings?user="+url.QueryEscape(jitGrace), bob, ""); st != http.StatusForbidden || m["reason"] != "auditor-role-required" {
				t.Fatalf("others' list as non-auditor: %d %v", st, m)
			}
			if p := e.rawGet("/api/audit/recordings/s-bob-1", bob); p.status != http.StatusOK ||
				p.header.Get("Content-Type") != asciicastType || !strings.Contains(p.body, "hello bob") {
				t.Fatalf("own recording: %d %q %s", p.status, p.header.Get("Content-Type"), p.body)
			}
			if p := e.rawGet("/api/audit/recordings/s-grace-1", bob); p.status != http.StatusForbidden || strings.Contains(p.body, "hello") {
				t.Fatalf("other's recording as non-auditor: %d %s", p.status, p.body)
			}
			e.mustAudit(TypeRecordingRead, "auditor-role-required", audit.Deny)

			// Standing auditor role.
			wantStanding := http.StatusOK
			if requireApproval {
				wantStanding = http.StatusForbidden
			}
			st, reason, _ := e.searchTrail(standing, "type=recording.read")
			if st != wantStanding || requireApproval && reason != "approval-required" {
				t.Fatalf("standing auditor search: %d %s", st, reason)
			}
			if p := e.rawGet("/api/audit/recordings/s-bob-1", standing); p.status != wantStanding {
				t.Fatalf("standing auditor reads bob's recording: %d", p.status)
			}

			// A committee of two grants the auditor role to bob.
			id := e.submit(bob, "auditor", "20m") // within the session's idle timeout
			if st, reason, _ := e.decide(dave, id, "approve"); st != http.StatusOK {
				t.Fatalf("first approval: %d %s", st, reason)
			}
			if st, reason, _ := e.searchTrail(bob, "limit=5"); st != http.StatusForbidden || reason != "auditor-role-required" {
				t.Fatalf("after one approval of two: %d %s", st, reason)
			}
			if st, reason, _ := e.decide(erin, id, "approve"); st != http.StatusOK {
				t.Fatalf("second approval: %d %s", st, reason)
			}
			st, _, evs := e.searchTrail(bob, "type="+TypeTrailSearch)
			if st != http.StatusOK {
				t.Fatalf("approved auditor search: %d", st)
			}
			// The refused searches are on record in the trail itself.
			denied := 0
			for _, ev := range evs {
				if ev.Decision == audit.Deny && ev.UserID == jitFrank && ev.Reason == "auditor-role-required" && ev.Ref != "" {
					denied++
				}
			}
			if denied != 2 {
				t.Errorf("trail holds %d denied searches by bob, want 2: %+v", denied, evs)
			}
			if p := e.rawGet("/api/audit/recordings/s-grace-1", bob); p.status != http.StatusOK || !strings.Contains(p.body, "hello grace") {
				t.Fatalf("approved auditor reads grace's recording: %d", p.status)
			}
			ev := e.mustAudit(TypeRecordingRead, "allowed", audit.Allow)
			if ev.Attrs["recording_id"] != "s-grace-1" || ev.Attrs["owner"] != jitGrace || ev.UserID != jitFrank {
				t.Errorf("recording read audit %+v", ev)
			}
			st, m, raw = e.call(http.MethodGet, "/api/audit/recordings", bob, "")
			if st != http.StatusOK || len(m["recordings"].([]any)) != 2 {
				t.Fatalf("auditor lists all: %d %s", st, raw)
			}
			// The grant ends: so does the reading.
			e.clock.Advance(20 * time.Minute)
			if st, reason, _ := e.searchTrail(bob, "limit=1"); st != http.StatusForbidden || reason != "auditor-role-required" {
				t.Fatalf("after the grant ended: %d %s", st, reason)
			}
		})
	}
}

// TestJITTrailQueryHostile: the search parameters are validated strictly
// (400) — after the verdict, so a non-auditor learns nothing from them.
func TestJITTrailQueryHostile(t *testing.T) {
	e := newJITEnv(t, false)
	aud := e.token(jitGrace, "auditor")
	bob := e.token(jitFrank, "engineer")
	tests := []struct {
		name, query string
		status      int
	}{
		{"valid", "user=" + url.QueryEscape(jitFrank) + "&type=decision&decision=deny&since=2020-01-01T00:00:00Z&limit=10", http.StatusOK},
		{"nanoseconds", "since=2020-01-01T00:00:00.5Z&until=2999-01-01T00:00:00Z", http.StatusOK},
		{"unknown parameter", "password=x", http.StatusBadRequest},
		{"repeated parameter", "type=a&type=b", http.StatusBadRequest},
		{"bad decision", "decision=maybe", http.StatusBadRequest},
		{"bad since", "since=yesterday", http.StatusBadRequest},
		{"since after until", "since=2021-01-01T00:00:00Z&until=2020-01-01T00:00:00Z", http.StatusBadRequest},
		{"limit zero", "limit=0", http.StatusBadRequest},
		{"limit too high", "limit=10001", http.StatusBadRequest},
		{"limit not a number", "limit=1e3", http.StatusBadRequest},
		{"control character", "user=a%01b", http.StatusBadRequest},
		{"newline", "reason=a%0Ab", http.StatusBadRequest},
		{"invalid UTF-8", "user=%ff%fe", http.StatusBadRequest},
		{"value too long", "user=" + strings.Repeat("u", 513), http.StatusBadRequest},
		{"query too long", "user=" + strings.Repeat("u", 500) + "&type=" + strings.Repeat("t", 500) + strings.Repeat("&x=1", 900), http.StatusBadRequest},
		{"bad escape", "user=%zz", http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			e.audit.Reset()
			if st, reason, _ := e.searchTrail(aud, tc.query); st != tc.status {
				t.Fatalf("auditor: %d %s, want %d", st, reason, tc.status)
			}
			want := audit.Allow
			if tc.status != http.StatusOK {
				want = audit.Deny
			}
			if evs := e.audit.Find(TypeTrailSearch, ""); len(evs) != 1 || evs[0].Decision != want {
				t.Errorf("search audited as %+v, want one %s", evs, want)
			}
			if st, reason, _ := e.searchTrail(bob, tc.query); st != http.StatusForbidden || reason != "auditor-role-required" {
				t.Fatalf("non-auditor: %d %s, want 403", st, reason)
			}
		})
	}
}

// TestJITRecordingsHostile: recording IDs and parameters, unknown IDs,
// and an export that fails midway is aborted, not passed off as whole.
func TestJITRecordingsHostile(t *testing.T) {
	e := newJITEnv(t, false)
	e.recs.add("s-bob-2", jitFrank, "{\"version\":2}\n[0.1,\"o\",\"one\"]\n[0.2,\"o\",\"two\"]\n")
	e.recs.broken["s-bob-2"] = true
	e.recs.add("s-bob-3", jitFrank, "{\"version\":2}\n")
	bob := e.token(jitFrank, "engineer")
	// auditType: the refusal's audit type (the path normaliser refuses
	// an escaped slash before any API sees it).
	tests := []struct {
		name, path string
		status     int
		auditType  string
	}{
		{"unknown", "/api/audit/recordings/s-nope", http.StatusNotFound, TypeRecordingRead},
		{"dot", "/api/audit/recordings/s.bob", http.StatusBadRequest, TypeRecordingRead},
		{"escaped slash", "/api/audit/recordings/..%2F..%2Fetc%2Fpasswd", http.StatusBadRequest, audit.TypeRequestRejected},
		{"too long", "/api/audit/recordings/" + strings.Repeat("a", 129), http.StatusBadRequest, TypeRecordingRead},
		{"parameters on export", "/api/audit/recordings/s-bob-3?user=x", http.StatusBadRequest, TypeRecordingRead},
		{"unknown list parameter", "/api/audit/recordings?owner=x", http.StatusBadRequest, TypeRecordingRead},
		{"repeated user", "/api/audit/recordings?user=a&user=b", http.StatusBadRequest, TypeRecordingRead},
		{"nested", "/api/audit/recordings/s-bob-3/raw", http.StatusNotFound, audit.TypeRequestRejected},
		{"own, explicit user", "/api/audit/recordings?user=" + url.QueryEscape(jitFrank), http.StatusOK, TypeRecordingRead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			e.audit.Reset()
			if p := e.rawGet(tc.path, bob); p.status != tc.status {
				t.Fatalf("%d, want %d: %s", p.status, tc.status, p.body)
			}
			if n := len(e.audit.Find(tc.auditType, "")); n != 1 {
				t.Errorf("%d %s events, want 1", n, tc.auditType)
			}
		})
	}
	// Broken export: the client sees a failed transfer, the trail a deny.
	req, _ := http.NewRequest(http.MethodGet, e.origin+"/api/audit/recordings/s-bob-2", nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	resp, err := e.browser().c.Do(req)
	if err == nil {
		_, err = readAllErr(resp)
	}
	if err == nil {
		t.Error("a recording that failed midway was delivered as complete")
	}
	e.mustAudit(TypeRecordingRead, "recording-unreadable", audit.Deny)
	// Empty but valid.
	if p := e.rawGet("/api/audit/recordings/s-bob-3", bob); p.status != http.StatusOK || p.body != "{\"version\":2}\n" {
		t.Errorf("short recording: %d %q", p.status, p.body)
	}
}
