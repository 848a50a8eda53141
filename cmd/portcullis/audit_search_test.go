package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuditSearchCLI(t *testing.T) {
	f := newTLSFake(t, userRoute)
	get := func(query string) *sentReq { return &sentReq{"GET", "/api/audit/events", query, ""} }
	cases := []cliCase{
		{name: "all", args: []string{}, wantOut: []string{"TIME", "TYPE", "WHERE", "ROLE", "grafana GET /d/1", "sre", "ref-1", "evil?[2J", "root@db-1", "request_id=r2"},
			sent: get("")},
		{name: "filters", args: []string{"--user", "https://idp#alice", "--type-prefix", "access.", "--decision", "deny", "--reason", "no-rule",
			"--app", "grafana", "--target", "db-1", "--since", "2026-01-01T00:00:00Z", "--until", "2026-01-02T12:00:00+02:00", "--limit", "50"},
			wantOut: []string{"access.approve"},
			sent:    get("app=grafana&decision=deny&limit=50&reason=no-rule&since=2026-01-01T00%3A00%3A00Z&target=db-1&type_prefix=access.&until=2026-01-02T10%3A00%3A00Z&user=https%3A%2F%2Fidp%23alice")},
		{name: "more", args: []string{"--limit", "3"}, wantOut: []string{"access.approve"}, wantErr: "more events match than shown", sent: get("limit=3")},
		{name: "json", args: []string{"--json", "--type", "decision"}, wantOut: []string{`"events"`, `"more": false`}, json: true, sent: get("type=decision")},
		{name: "not an auditor", args: []string{"--user", "outsider"}, code: exitFail,
			wantErr: "portcullis audit search: reading the audit trail and others' recordings needs the auditor role (reason auditor-role-required, ref ref-AR)", sent: get("user=outsider")},
		{name: "standing role without approval", args: []string{"--user", "standing"}, code: exitFail,
			wantErr: "needs the auditor role from an approved request", sent: get("user=standing")},
		{name: "malformed answer", args: []string{"--type", "broken"}, code: exitFail, wantErr: "unexpected answer from the server", sent: get("type=broken")},
		{name: "since not RFC 3339", args: []string{"--since", "yesterday"}, code: exitUsage, wantErr: `--since "yesterday" is not an RFC 3339 time`},
		{name: "until before since", args: []string{"--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"}, code: exitUsage, wantErr: "since must be before until"},
		{name: "limit zero", args: []string{"--limit", "0"}, code: exitUsage, wantErr: "--limit must be between 1 and 10000"},
		{name: "limit too large", args: []string{"--limit", "10001"}, code: exitUsage, wantErr: "--limit must be between 1 and 10000"},
		{name: "bad decision", args: []string{"--decision", "maybe"}, code: exitUsage, wantErr: "--decision must be allow or deny"},
		{name: "control character", args: []string{"--user", "a\x1b[2J"}, code: exitUsage, wantErr: "control characters"},
		{name: "stray argument", args: []string{"alice"}, code: exitUsage, wantErr: `unexpected argument "alice"`},
	}
	runCases(t, f, append([]string{"audit", "search"}, f.remote()...), cases)
	runCases(t, f, []string{"audit", "search"}, []cliCase{
		{name: "no server", args: []string{"--token-file", f.tokFile}, code: exitUsage, wantErr: "--server is required"},
	})
}

func TestAuditRecordingCLI(t *testing.T) {
	f := newTLSFake(t, userRoute)
	dir := t.TempDir()
	cast := "{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"\\u001b[1m$ \"]\n"
	cases := []cliCase{
		{name: "list", args: []string{"recordings"}, wantOut: []string{"ID", "BYTES", "rec-1", "root?[2J", "4096", "rec-2"},
			sent: &sentReq{"GET", "/api/audit/recordings", "", ""}},
		{name: "list of a user", args: []string{"recordings", "--user", "https://idp#alice"}, wantOut: []string{"rec-1"},
			sent: &sentReq{"GET", "/api/audit/recordings", "user=https%3A%2F%2Fidp%23alice", ""}},
		{name: "list json", args: []string{"recordings", "--json"}, wantOut: []string{`"recordings"`}, json: true, sent: &sentReq{"GET", "/api/audit/recordings", "", ""}},
		{name: "download to stdout as is", args: []string{"recording", "rec-1"}, wantOut: []string{cast}, raw: true,
			sent: &sentReq{"GET", "/api/audit/recordings/rec-1", "", ""}},
		{name: "download to file", args: []string{"recording", "rec-1", "--out", filepath.Join(dir, "rec-1.cast")}, wantOut: []string{"recording written to"},
			sent: &sentReq{"GET", "/api/audit/recordings/rec-1", "", ""}},
		{name: "unknown", args: []string{"recording", "rec-9", "--out", filepath.Join(dir, "rec-9.cast")}, code: exitFail,
			wantErr: "no such recording (or it is not yours to read) (ref ref-RNF)", sent: &sentReq{"GET", "/api/audit/recordings/rec-9", "", ""}},
		{name: "escapes the ID", args: []string{"recording", "../../etc"}, code: exitFail, wantErr: "no such recording",
			sent: &sentReq{"GET", "/api/audit/recordings/..%2F..%2Fetc", "", ""}},
		{name: "no ID", args: []string{"recording"}, code: exitUsage, wantErr: "expected exactly one recording ID"},
		{name: "hostile ID", args: []string{"recording", "a\x1b[2J"}, code: exitUsage, wantErr: "bad recording ID"},
		{name: "json", args: []string{"recording", "rec-1", "--json"}, code: exitUsage, wantErr: "--json does not go with recording"},
		{name: "out in missing directory", args: []string{"recording", "rec-1", "--out", filepath.Join(dir, "x", "y.cast")}, code: exitUsage, wantErr: "does not exist"},
		{name: "hostile user", args: []string{"recordings", "--user", "\x1b[2J"}, code: exitUsage, wantErr: "bad --user"},
	}
	prefix := []string{"audit"}
	for i := range cases {
		cases[i].args = append(cases[i].args, f.remote()...)
	}
	runCases(t, f, prefix, cases)
	b, err := os.ReadFile(filepath.Join(dir, "rec-1.cast"))
	fi, _ := os.Stat(filepath.Join(dir, "rec-1.cast"))
	if err != nil || string(b) != cast || fi.Mode().Perm() != 0o600 {
		t.Fatalf("recording file %q %v", b, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v, want only rec-1.cast", entries)
	}
}

func TestAuditUsageListsReads(t *testing.T) {
	code, out, _ := runCLI(t, "audit", "--help")
	for _, w := range []string{"verify", "search --server URL", "recording --server URL"} {
		if code != exitOK || !strings.Contains(out, w) {
			t.Errorf("audit --help lacks %q:\n%s", w, out)
		}
	}
}
