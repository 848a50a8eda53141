package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAdminLocks drives admin locks, lock and unlock against the fake
// admin API: what is sent, what is printed, and every refusal.
func TestAdminLocks(t *testing.T) {
	f := newFakeAdmin(t)
	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    []string
		notOut     string
		wantErr    string
		sent       *fakeRequest // nil: nothing may be sent
		jsonOutput bool
	}{
		{name: "locks table", args: []string{"locks"},
			wantOut: []string{"SUBJECT", "REASON", "REF", "CREATED", "EXPIRES", "DETAIL",
				"user:https://idp#alice", "totp-failure", "R-7KQ2", "never", "5 in 15m?[2J",
				"ip:203.0.113.0/24", "2026-01-02T03:19:05Z"},
			sent: &fakeRequest{"GET", "/api/admin/locks", "", ""}},
		{name: "locks json", args: []string{"locks", "--json"}, wantOut: []string{`"subject": "ip:203.0.113.0/24"`}, jsonOutput: true,
			sent: &fakeRequest{"GET", "/api/admin/locks", "", ""}},
		{name: "locks stray argument", args: []string{"locks", "x"}, code: exitUsage, wantErr: `unexpected argument "x"`},
		{name: "locks unknown flag", args: []string{"locks", "--all"}, code: exitUsage, wantErr: "flag provided but not defined: -all"},

		{name: "lock", args: []string{"lock", "https://idp#bob", "--reason", "phished"}, wantOut: []string{"https://idp#bob locked on every instance (ref R-LOCK1)"},
			sent: &fakeRequest{"POST", "/api/admin/locks/lock", "", `{"user_id":"https://idp#bob","reason":"phished"}`}},
		{name: "lock user: prefix", args: []string{"lock", "--reason", "phished", "user:https://idp#bob"}, wantOut: []string{"locked"},
			sent: &fakeRequest{"POST", "/api/admin/locks/lock", "", `{"user_id":"https://idp#bob","reason":"phished"}`}},
		{name: "lock json", args: []string{"--json", "lock", "bob", "--reason", "x"}, wantOut: []string{`"ref": "R-LOCK1"`}, jsonOutput: true,
			sent: &fakeRequest{"POST", "/api/admin/locks/lock", "", `{"user_id":"bob","reason":"x"}`}},
		{name: "lock without reason", args: []string{"lock", "bob"}, code: exitUsage, wantErr: "--reason is required"},
		{name: "lock blank reason", args: []string{"lock", "bob", "--reason", "  "}, code: exitUsage, wantErr: "--reason is required"},
		{name: "lock without user", args: []string{"lock", "--reason", "x"}, code: exitUsage, wantErr: "expected exactly one USER"},
		{name: "lock two users", args: []string{"lock", "a", "b", "--reason", "x"}, code: exitUsage, wantErr: "expected exactly one USER"},
		{name: "lock an address", args: []string{"lock", "ip:192.0.2.1", "--reason", "x"}, code: exitUsage, wantErr: "only accounts are locked by hand"},
		{name: "lock empty user: ", args: []string{"lock", "user:", "--reason", "x"}, code: exitUsage, wantErr: "bad subject"},
		{name: "lock control character", args: []string{"lock", "bob\x1b[2J", "--reason", "x"}, code: exitUsage, wantErr: `bad subject "bob?[2J"`},
		{name: "lock unknown flag", args: []string{"lock", "bob", "--reason", "x", "--force"}, code: exitUsage, wantErr: "flag provided but not defined: -force"},
		{name: "lock reason too long", args: []string{"lock", "bob", "--reason", strings.Repeat("x", 201)}, code: exitUsage, wantErr: "at most 200 bytes"},
		{name: "lock reason with control character", args: []string{"lock", "bob", "--reason", "a\x1b[2J"}, code: exitUsage, wantErr: "printable"},
		{name: "lock unknown user", args: []string{"lock", "ghost", "--reason", "x"}, code: exitFail, wantErr: "portcullis admin lock: ghost is not a known user",
			sent: &fakeRequest{"POST", "/api/admin/locks/lock", "", `{"user_id":"ghost","reason":"x"}`}},

		{name: "unlock user", args: []string{"unlock", "https://idp#alice", "--reason", "verified by phone"}, wantOut: []string{"https://idp#alice unlocked on every instance"},
			sent: &fakeRequest{"POST", "/api/admin/locks/unlock", "", `{"subject":"https://idp#alice","reason":"verified by phone"}`}},
		{name: "unlock user: subject", args: []string{"unlock", "user:https://idp#alice", "--reason", "ok"}, wantOut: []string{"unlocked"},
			sent: &fakeRequest{"POST", "/api/admin/locks/unlock", "", `{"subject":"user:https://idp#alice","reason":"ok"}`}},
		{name: "unlock network", args: []string{"unlock", "ip:203.0.113.0/24", "--reason", "pen test over"}, wantOut: []string{"ip:203.0.113.0/24 unlocked"},
			sent: &fakeRequest{"POST", "/api/admin/locks/unlock", "", `{"subject":"ip:203.0.113.0/24","reason":"pen test over"}`}},
		{name: "unlock ipv6 address", args: []string{"unlock", "ip:2001:db8::1", "--reason", "ok"}, wantOut: []string{"unlocked"},
			sent: &fakeRequest{"POST", "/api/admin/locks/unlock", "", `{"subject":"ip:2001:db8::1","reason":"ok"}`}},
		{name: "unlock not locked", args: []string{"unlock", "nobody", "--reason", "x"}, code: exitFail, wantErr: "portcullis admin unlock: nobody is not locked",
			sent: &fakeRequest{"POST", "/api/admin/locks/unlock", "", `{"subject":"nobody","reason":"x"}`}},
		{name: "unlock server error", args: []string{"unlock", "store-down", "--reason", "x"}, code: exitFail, wantErr: "503 Service Unavailable: state store unavailable (ref ref-SU)",
			sent: &fakeRequest{"POST", "/api/admin/locks/unlock", "", `{"subject":"store-down","reason":"x"}`}},
		{name: "unlock without reason", args: []string{"unlock", "ip:192.0.2.1"}, code: exitUsage, wantErr: "--reason is required"},
		{name: "unlock without subject", args: []string{"unlock", "--reason", "x"}, code: exitUsage, wantErr: "expected exactly one USER or ip:ADDR"},
		{name: "unlock bad address", args: []string{"unlock", "ip:999.1.1.1", "--reason", "x"}, code: exitUsage, wantErr: `bad subject "ip:999.1.1.1"`},
		{name: "unlock prefix with host bits", args: []string{"unlock", "ip:203.0.113.7/24", "--reason", "x"}, wantOut: []string{"unlocked"},
			sent: &fakeRequest{"POST", "/api/admin/locks/unlock", "", `{"subject":"ip:203.0.113.7/24","reason":"x"}`}},
		{name: "unlock prefix out of range", args: []string{"unlock", "ip:203.0.113.0/33", "--reason", "x"}, code: exitUsage, wantErr: "bad subject"},
		{name: "unlock empty ip", args: []string{"unlock", "ip:", "--reason", "x"}, code: exitUsage, wantErr: "bad subject"},
		{name: "unlock empty user", args: []string{"unlock", "user: ", "--reason", "x"}, code: exitUsage, wantErr: "user: needs a user ID"},
		{name: "unlock unknown flag", args: []string{"unlock", "bob", "--reason", "x", "--all"}, code: exitUsage, wantErr: "flag provided but not defined: -all"},
		{name: "unlock help", args: []string{"unlock", "--help"}, code: exitOK, wantErr: "Usage: portcullis admin unlock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"admin", "--socket", f.socket}, tc.args...)
			code, out, errOut := runCLI(t, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if strings.ContainsAny(out+errOut, "\x1b") {
				t.Error("control character reached the terminal")
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tc.wantErr)
			}
			sent := f.take()
			switch {
			case tc.sent == nil && len(sent) > 0:
				t.Errorf("sent %+v, want nothing sent", sent)
			case tc.sent != nil && (len(sent) != 1 || sent[0] != *tc.sent):
				t.Errorf("sent %+v, want %+v", sent, *tc.sent)
			}
			if tc.jsonOutput && !json.Valid([]byte(out)) {
				t.Errorf("--json output is not JSON: %s", out)
			}
		})
	}
}
