package main

import (
	"strings"
	"testing"
	"time"
)

func TestAdminGrantsCLI(t *testing.T) {
	f := newUnixFake(t, adminAccessRoute)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old := clock
	clock = func() time.Time { return now }
	t.Cleanup(func() { clock = old })
	add := func(user, role, expires, reason string) *sentReq {
		return &sentReq{"POST", "/api/admin/grants", "", `{"user_id":"` + user + `","role":"` + role + `","expires":"` + expires + `","reason":"` + reason + `"}`}
	}
	cases := []cliCase{
		{name: "list", args: []string{"grants"}, wantOut: []string{"ID", "SOURCE", "EXPIRES", "g1", "temporary", "g2", "local", "until revoked", "auditor?[2J"},
			sent: &sentReq{"GET", "/api/admin/grants", "", ""}},
		{name: "list json", args: []string{"grants", "list", "--json"}, wantOut: []string{`"grants"`}, json: true, sent: &sentReq{"GET", "/api/admin/grants", "", ""}},
		{name: "list with reason", args: []string{"grants", "--reason", "x"}, code: exitUsage, wantErr: "go with add or revoke"},
		{name: "add for", args: []string{"grants", "add", "https://idp#dave", "db-admin", "--for", "720h", "--reason", "on call"},
			wantOut: []string{"grant g7: https://idp#dave?[2J has db-admin until 2026-02-01T03:04:05Z"},
			sent:    add("https://idp#dave", "db-admin", "2026-02-01T03:04:05Z", "on call")},
		{name: "add until", args: []string{"grants", "add", "user:https://idp#dave", "db-admin", "--until", "2026-03-31T18:00:00+02:00", "--reason", "q1"},
			wantOut: []string{"until 2026-03-31T16:00:00Z"}, sent: add("https://idp#dave", "db-admin", "2026-03-31T16:00:00Z", "q1")},
		{name: "add until revoked", args: []string{"grants", "add", "bob", "db-admin", "--reason", "standing"},
			wantOut: []string{"has db-admin until revoked"}, sent: add("bob", "db-admin", "", "standing")},
		{name: "add unknown user", args: []string{"grants", "add", "ghost", "db-admin", "--reason", "x"}, code: exitFail,
			wantErr: "the server does not know this user or role: server answered 404 Not Found: unknown role (ref ref-UR)", sent: add("ghost", "db-admin", "", "x")},
		{name: "add until and for", args: []string{"grants", "add", "bob", "r", "--until", "2026-03-01T00:00:00Z", "--for", "1h", "--reason", "x"}, code: exitUsage,
			wantErr: "give --until or --for, not both"},
		{name: "add until in the past", args: []string{"grants", "add", "bob", "r", "--until", "2026-01-01T00:00:00Z", "--reason", "x"}, code: exitUsage, wantErr: "--until is in the past"},
		{name: "add until not RFC 3339", args: []string{"grants", "add", "bob", "r", "--until", "tomorrow", "--reason", "x"}, code: exitUsage, wantErr: `--until "tomorrow" is not an RFC 3339 time`},
		{name: "add for zero", args: []string{"grants", "add", "bob", "r", "--for", "0h", "--reason", "x"}, code: exitUsage, wantErr: "--for must be positive"},
		{name: "add for too long", args: []string{"grants", "add", "bob", "r", "--for", "8760h", "--reason", "x"}, code: exitUsage, wantErr: "--for is at most 720h"},
		{name: "add without reason", args: []string{"grants", "add", "bob", "r", "--for", "1h"}, code: exitUsage, wantErr: "--reason is required"},
		{name: "add without role", args: []string{"grants", "add", "bob", "--reason", "x"}, code: exitUsage, wantErr: "expects USER and ROLE"},
		{name: "add an address", args: []string{"grants", "add", "ip:10.0.0.1", "r", "--reason", "x"}, code: exitUsage, wantErr: "bad user"},
		{name: "add hostile role", args: []string{"grants", "add", "bob", "r\x1b[2J", "--reason", "x"}, code: exitUsage, wantErr: "ROLE must be printable"},
		{name: "revoke", args: []string{"grants", "revoke", "g1", "--reason", "incident over"}, wantOut: []string{"grant g1 revoked on every instance"},
			sent: &sentReq{"POST", "/api/admin/grants/g1/revoke", "", `{"reason":"incident over"}`}},
		{name: "revoke escapes the ID", args: []string{"grants", "revoke", "a/b", "--reason", "x"}, wantOut: []string{"grant a/b revoked"},
			sent: &sentReq{"POST", "/api/admin/grants/a%2Fb/revoke", "", `{"reason":"x"}`}},
		{name: "revoke unknown", args: []string{"grants", "revoke", "gone", "--reason", "x"}, code: exitFail, wantErr: "no such active grant (already revoked or expired?) (ref ref-GG)",
			sent: &sentReq{"POST", "/api/admin/grants/gone/revoke", "", `{"reason":"x"}`}},
		{name: "revoke without reason", args: []string{"grants", "revoke", "g1"}, code: exitUsage, wantErr: "--reason is required"},
		{name: "revoke with for", args: []string{"grants", "revoke", "g1", "--for", "1h", "--reason", "x"}, code: exitUsage, wantErr: "--until and --for go with add"},
		{name: "revoke two IDs", args: []string{"grants", "revoke", "a", "b", "--reason", "x"}, code: exitUsage, wantErr: "exactly one grant ID"},
		{name: "unknown", args: []string{"grants", "extend"}, code: exitUsage, wantErr: `unknown grants command "extend"`},
		{name: "reason too long", args: []string{"grants", "revoke", "g1", "--reason", strings.Repeat("r", 201)}, code: exitUsage, wantErr: "at most 200 bytes"},
	}
	runCases(t, f, []string{"admin", "--socket", f.socket}, cases)
}
