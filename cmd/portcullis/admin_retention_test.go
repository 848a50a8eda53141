package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// retentionFake is an admin socket answering purge and delete-user.
type retentionFake struct {
	socket string
	mu     sync.Mutex
	reqs   []string // "METHOD escaped-path body"
}

func newRetentionFake(t *testing.T) *retentionFake {
	t.Helper()
	f := &retentionFake{socket: filepath.Join(t.TempDir(), "admin.sock")}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.EscapedPath()+" "+string(b))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/admin/purge" && strings.Contains(string(b), `"dry_run":true`):
			io.WriteString(w, `{"dry_run":true,"time":"2026-06-01T00:00:00Z","audit_cutoff":"2025-04-27T00:00:00Z","recording_cutoff":"2026-03-03T00:00:00Z",
				"files":[{"name":"audit-gw.20250101T000000Z.00000000000000000001.jsonl","newest":"2025-01-01T23:59:00Z","bytes":4096,"records":20}],
				"records":20,"through_seq":20,"recordings":[{"name":"ssh-1.pcrec\u001b[2J","newest":"2026-01-01T00:00:00Z","bytes":10}]}`)
		case r.URL.Path == "/api/admin/purge":
			io.WriteString(w, `{"dry_run":false,"time":"2026-06-01T00:00:00Z","audit_cutoff":"2025-04-27T00:00:00Z","recording_cutoff":"2026-03-03T00:00:00Z",
				"files":[],"records":0,"recordings":[{"name":"ssh-1.pcrec","newest":"2026-01-01T00:00:00Z","bytes":10}],"record_seq":77}`)
		case strings.HasSuffix(r.URL.Path, "/delete") && strings.Contains(r.URL.Path, "ghost"):
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"nothing is stored for this user ID","ref":"ref-NF"}`)
		case strings.HasSuffix(r.URL.Path, "/delete"):
			io.WriteString(w, `{"user_id":"https://idp#erin","directory_entry":true,"mfa_enrolment":true,"recovery_codes":9,"sessions":2,"ssh_certs_revoked":true,"risk_profile":true,"locked":true}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not found"}`)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *retentionFake) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs
	f.reqs = nil
	return r
}

// TestAdminRetention drives admin purge and delete-user against a fake
// admin socket: what is sent, what is printed, and the refusals.
func TestAdminRetention(t *testing.T) {
	f := newRetentionFake(t)
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut []string
		notOut  string
		wantErr string
		sent    string // "" : nothing may be sent
	}{
		{name: "purge dry run", args: []string{"purge", "--dry-run"},
			wantOut: []string{"would purge 1 trail file(s) with 20 records (newest record before 2025-04-27T00:00:00Z) and 1 recording(s)",
				"KIND", "trail", "audit-gw.20250101T000000Z.00000000000000000001.jsonl", "recording", "ssh-1.pcrec?[2J"},
			notOut: "signed purge record", sent: `POST /api/admin/purge {"dry_run":true}`},
		{name: "purge", args: []string{"purge"},
			wantOut: []string{"purged 0 trail file(s)", "1 recording(s)", "signed purge record: seq 77"}, sent: `POST /api/admin/purge {}`},
		{name: "purge json", args: []string{"purge", "--json"}, wantOut: []string{`"record_seq": 77`}, sent: `POST /api/admin/purge {}`},
		{name: "purge stray argument", args: []string{"purge", "now"}, code: exitUsage, wantErr: `unexpected argument "now"`},

		{name: "delete-user", args: []string{"delete-user", "https://idp#erin", "--reason", "left"},
			wantOut: []string{"deleted https://idp#erin on every instance", "web sessions revoked:  2", "SSH certificates:      revoked",
				"TOTP enrolment:        removed", "recovery codes:        9 removed", "account lock:          kept", "the audit trail keeps the user ID"},
			sent: `POST /api/admin/users/https:%2F%2Fidp%23erin/delete {"reason":"left"}`},
		{name: "delete-user user: prefix, no reason", args: []string{"delete-user", "user:https://idp#erin"}, wantOut: []string{"deleted"},
			sent: `POST /api/admin/users/https:%2F%2Fidp%23erin/delete {}`},
		{name: "delete-user unknown", args: []string{"delete-user", "ghost"}, code: exitFail,
			wantErr: "portcullis admin delete-user: nothing is stored for ghost", sent: `POST /api/admin/users/ghost/delete {}`},
		{name: "delete-user without user", args: []string{"delete-user"}, code: exitUsage, wantErr: "expected exactly one USER"},
		{name: "delete-user two users", args: []string{"delete-user", "a", "b"}, code: exitUsage, wantErr: "expected exactly one USER"},
		{name: "delete-user an address", args: []string{"delete-user", "ip:192.0.2.1"}, code: exitUsage, wantErr: "bad user"},
		{name: "delete-user control character", args: []string{"delete-user", "bob\x1b[2J"}, code: exitUsage, wantErr: `bad user "bob?[2J"`},
		{name: "delete-user long reason", args: []string{"delete-user", "bob", "--reason", strings.Repeat("x", 201)}, code: exitUsage, wantErr: "at most 200 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.take()
			code, out, errOut := runCLI(t, append([]string{"admin", "--socket", f.socket}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.notOut != "" && strings.Contains(out, tc.notOut) {
				t.Errorf("stdout has %q:\n%s", tc.notOut, out)
			}
			if tc.wantErr != "" && !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, errOut)
			}
			sent := f.take()
			switch {
			case tc.sent == "" && len(sent) > 0:
				t.Errorf("sent %v", sent)
			case tc.sent != "" && (len(sent) != 1 || sent[0] != tc.sent):
				t.Errorf("sent %q, want %q", sent, tc.sent)
			}
		})
	}
}
