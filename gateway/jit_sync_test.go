package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
)

// failingSync is an emitter whose durability barrier fails (a trail that
// cannot be fsynced): events are accepted, never acknowledged durable.
type failingSync struct{ audit.Emitter }

func (failingSync) Sync(context.Context) error { return errors.New("disk full") }

// TestJITAnswersAfterDurableAudit: access actions and audit reads answer
// a success only when the trail is durable; otherwise 503 with a
// reference, and (for reads) no data.
func TestJITAnswersAfterDurableAudit(t *testing.T) {
	e := newJITEnv(t, false)
	e.recs.add("s-bob-9", jitFrank, "{\"version\":2}\n[0.1,\"o\",\"secret output\"]\n")
	bob := e.token(jitFrank, "engineer")
	aud := e.token(jitGrace, "auditor")
	e.g.deps.Audit = failingSync{e.g.deps.Audit}
	tests := []struct {
		name, method, path, tok, body string
	}{
		{"submit", http.MethodPost, "/api/access/requests", bob, `{"role":"db-admin","duration":"1h","reason":"x"}`},
		{"search", http.MethodGet, "/api/audit/events?limit=1", aud, ""},
		{"recording list", http.MethodGet, "/api/audit/recordings", bob, ""},
		{"recording export", http.MethodGet, "/api/audit/recordings/s-bob-9", bob, ""},
		{"admin grant", http.MethodPost, "local:/api/admin/grants", "", `{"user_id":"u","role":"db-admin"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer e.useT(t)()
			var st int
			var body string
			if p, ok := strings.CutPrefix(tc.path, "local:"); ok {
				var m map[string]any
				st, m = e.local(tc.method, p, tc.body)
				body, _ = m["reason"].(string)
			} else {
				var raw []byte
				st, _, raw = e.call(tc.method, tc.path, tc.tok, tc.body)
				body = string(raw)
			}
			if st != http.StatusServiceUnavailable || !strings.Contains(body, "audit-unavailable") || strings.Contains(body, "secret output") {
				t.Fatalf("%d %s, want 503 audit-unavailable", st, body)
			}
		})
	}
}
