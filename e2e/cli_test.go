package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// testConfigCheck runs `portcullis config check` on the running
// instance's own file (exit 0) and on broken copies of it: each must exit
// 1 and name FILE:LINE and the key path of the problem.
func testConfigCheck(t *testing.T, h *hostile) {
	good := h.spec.YAML()
	if r := harness.RunPortcullis(t, "config", "check", h.p.ConfigFile); r.Code != 0 || !strings.Contains(r.Stdout, "config OK") {
		t.Fatalf("config check of the running config: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := harness.RunPortcullis(t, "config", "check"); r.Code != 2 {
		t.Errorf("config check without FILE: exit %d, want 2 (usage)", r.Code)
	}
	dir := t.TempDir()
	readable := filepath.Join(dir, "cookie-world-readable.key")
	if err := os.WriteFile(readable, []byte(harness.RandomString(32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const inline = "hunter2-inline-client-secret"
	harness.RecordSecret(harness.KindClientSecret, inline)
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("config has no %q", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	cases := []struct {
		name   string
		mutate func(string) string
		marker string // text on the line the message must point at
		path   string // key path the message must name
		msg    string
	}{
		{"unknown key", replace("gateway:\n", "gateway:\n  listne: 127.0.0.1:1\n"), "listne:", "gateway.listne", "unknown"},
		{"bad type", replace("  public_port: "+strconv.Itoa(h.p.Port), "  public_port: many"), "public_port:", "gateway.public_port", ""},
		{"bad CIDR", replace("[127.0.0.2/32]", "[127.0.0.2/33]"), "trusted_proxies:", "gateway.trusted_proxies[0]", ""},
		{"bad policy CIDR", replace("[10.0.0.0/8]", "[10.0.0.300/8]"), "10.0.0.300", "policy.apps[0].allowed_cidrs[0]", ""},
		{"bad duration", replace("gateway:\n", "gateway:\n  hsts_max_age: 1year\n"), "hsts_max_age:", "gateway.hsts_max_age", ""},
		{"inline secret", replace("client_secret_file: "+h.s.keys.ClientSecret, "client_secret: "+inline), "client_secret:", "identity.client_secret", ""},
		{"missing secret file", replace("key_file: "+h.s.keys.MFAKey, "key_file: /nonexistent/mfa.key"), "/nonexistent/mfa.key", "mfa.key_file", "does not exist"},
		{"world-readable secret", replace("cookie_key_file: "+h.s.keys.CookieKey, "cookie_key_file: "+readable), readable, "session.cookie_key_file", "all users"},
		{"rule for an unknown app", replace("apps: [app, intranet, stream]", "apps: [app, intranet, stream, nosuchapp]"), "nosuchapp", "policy.roles[1].allow[0].apps", ""},
		{"self-signed in serve", replace("mode: files", "mode: self-signed"), "mode: self-signed", "gateway.tls.mode", ""},
	}
	for _, tc := range cases {
		bad := tc.mutate(good)
		file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		line := 1 + slices.IndexFunc(strings.Split(bad, "\n"), func(l string) bool { return strings.Contains(l, tc.marker) })
		r := harness.RunPortcullis(t, "config", "check", file)
		want := file + ":" + strconv.Itoa(line) + ": " + tc.path
		found := false
		for _, l := range strings.Split(r.Stderr, "\n") {
			found = found || (strings.HasPrefix(l, want) && strings.Contains(l, tc.msg))
		}
		if r.Code != 1 || !found {
			t.Errorf("%s: exit %d, want 1 and a line starting %q (containing %q); stderr:\n%s", tc.name, r.Code, want, tc.msg, r.Stderr)
		}
		if strings.Contains(r.Stdout+r.Stderr, inline) {
			t.Errorf("%s: config check printed the inline secret", tc.name)
		}
	}
}

// adminUser is a row of `portcullis admin --json users`.
type adminUser struct {
	UserID      string   `json:"user_id"`
	Roles       []string `json:"roles"`
	MFAEnrolled bool     `json:"mfa_enrolled"`
}

// testAdminCLI drives `portcullis admin` against the running server's
// local socket: list users and sessions, explain a decision, reset a
// second factor, revoke a session (which then stops working), and the
// admin API refusing callers that are not admins.
func testAdminCLI(t *testing.T, h *hostile) {
	_, _, cookie := h.s.session(t, h.p, "frank")
	frank := h.s.userID("frank")
	sock := h.p.AdminSocket
	if st, err := os.Stat(sock); err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v, mode %v; want a 0600 socket", sock, err, st.Mode())
	}
	run := func(args ...string) harness.Result {
		t.Helper()
		r := harness.RunPortcullis(t, append([]string{"admin", "--socket", sock}, args...)...)
		if r.Code != 0 {
			t.Fatalf("portcullis admin %v: exit %d\n%s%s", args, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}

	var sessions []struct {
		ID     string `json:"id"`
		UserID string `json:"user_id"`
	}
	if err := json.Unmarshal([]byte(run("--json", "sessions").Stdout), &sessions); err != nil {
		t.Fatalf("admin sessions --json: %v", err)
	}
	var id string
	for _, s := range sessions {
		if s.UserID == frank {
			id = s.ID
		}
	}
	if id == "" {
		t.Fatalf("frank's session is not listed: %+v", sessions)
	}
	if out := run("sessions").Stdout; !strings.Contains(out, id) || !strings.Contains(out, frank) {
		t.Errorf("admin sessions table lacks frank's session:\n%s", out)
	}
	var users []adminUser
	if err := json.Unmarshal([]byte(run("--json", "users").Stdout), &users); err != nil {
		t.Fatalf("admin users --json: %v", err)
	}
	if i := slices.IndexFunc(users, func(u adminUser) bool { return u.UserID == frank }); i < 0 || !users[i].MFAEnrolled || !slices.Contains(users[i].Roles, "engineer") {
		t.Errorf("admin users: frank missing, not enrolled or not an engineer: %+v", users)
	}
	if out := run("explain", "--user", frank, "--app", "app", "--path", "/admin/x", "--ip", "127.0.0.1").Stdout; !strings.Contains(out, "DENY") || !strings.Contains(out, "deny-rule") {
		t.Errorf("admin explain of a denied path:\n%s", out)
	}

	// Revoke: the session stops working (polled, bounded).
	run("revoke", id, "--reason", "e2e revoke")
	harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeSessionRevoke, SessionID: id})
	anon := h.s.client(t)
	deadline := time.Now().Add(revocationBudget)
	for {
		r := getWithCookie(anon, h.p.URL(appHost, "/after-revoke"), cookie, "Accept: application/json")
		if r.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked session still answers %d after %v", r.StatusCode, revocationBudget)
		}
		time.Sleep(20 * time.Millisecond)
	}
	run("mfa-reset", frank, "--reason", "e2e reset")
	harness.WaitAudit(t, h.p.AuditDir, harness.AuditQuery{Type: audit.TypeMFAReset, UserID: frank})

	if r := harness.RunPortcullis(t, "admin", "--socket", filepath.Join(t.TempDir(), "none.sock"), "sessions"); r.Code != 1 {
		t.Errorf("admin against a missing socket: exit %d, want 1", r.Code)
	}
	// The remote admin API: no token, or a non-admin's session, is refused.
	for name, hdr := range map[string][]string{
		"no token":         nil,
		"forged token":     {"Authorization: Bearer forged-admin-token"},
		"engineer session": {"Cookie: " + sessionName + "=" + h.cookie},
	} {
		r := anon.Get(h.p.AccessURL+"/api/admin/sessions", hdr...)
		if r.StatusCode != http.StatusUnauthorized && r.StatusCode != http.StatusForbidden {
			t.Errorf("admin API with %s: %d, want 401 or 403", name, r.StatusCode)
			continue
		}
		if ev := h.auditForRef(t, r.Body); ev.Decision != audit.Deny {
			t.Errorf("admin API with %s audited as %+v", name, ev)
		}
	}
}
