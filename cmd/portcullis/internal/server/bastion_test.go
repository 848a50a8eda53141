package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// running is an Instance serving in the background with its bastion.
type running struct {
	in    *Instance
	admin *adminclient.Client
	stop  func()
}

func runInstance(t *testing.T, f *testfixture.Fixture) *running {
	t.Helper()
	return runWith(t, f, Options{})
}

// runWith is runInstance with options.
func runWith(t *testing.T, f *testfixture.Fixture, opts Options) *running {
	t.Helper()
	cfg := load(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	in, err := Open(ctx, cfg, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	adminLn, err := ListenAdmin(cfg.AdminSocket)
	if err != nil {
		in.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, adminLn, nil, nil) }()
	r := &running{in: in, admin: adminclient.NewUnix(cfg.AdminSocket, 10*time.Second)}
	var once bool
	r.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not stop")
		}
		if err := in.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(r.stop)
	return r
}

func (r *running) issue(t *testing.T, userID string) (ssh.Signer, *ssh.Certificate) {
	return testfixture.Issue(t, r.in.SSHCA, userID)
}

func (r *running) dial(signer ssh.Signer) (*ssh.Client, error) {
	return testfixture.Dial(r.in.SSHAddr().String(), r.in.Config.Bastion.HostKeys[0].PublicKey(), signer)
}

func (r *running) sshSessions(t *testing.T) []adminclient.SSHSession {
	t.Helper()
	body, err := r.admin.Call(context.Background(), adminclient.SSHSessions())
	if err != nil {
		t.Fatal(err)
	}
	var out []adminclient.SSHSession
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func auditText(t *testing.T, f *testfixture.Fixture) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(f.AuditDir, "*.jsonl"))
	var b bytes.Buffer
	for _, p := range files {
		data, _ := os.ReadFile(p)
		b.Write(data)
	}
	return b.String()
}

// TestBastionAdminLive runs a whole instance with its bastion in front of
// an in-process target and drives the SSH admin API over the real admin
// socket: list, watch, kill, certificate revocation.
func TestBastionAdminLive(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	r := runInstance(t, f)
	const alice = "https://idp.example#alice"

	signer, cert := r.issue(t, alice)
	c, err := r.dial(signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stdin, ended := testfixture.LiveCat(t, c)

	var live []adminclient.SSHSession
	waitUntil(t, "the live session", func() bool { live = r.sshSessions(t); return len(live) == 1 })
	s := live[0]
	if s.UserID != alice || s.Login != testfixture.TargetLogin || s.Target != testfixture.TargetName || s.CertSerial != cert.Serial || s.Recording == "" {
		t.Fatalf("session %+v", s)
	}

	// Watch: what the user sees reaches the watcher.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := r.admin.Stream(ctx, adminclient.Watch(s.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	seen := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "hello-watcher") {
				seen <- true
				return
			}
		}
		seen <- false
	}()
	// The watch registers once the server has answered; keep typing until
	// the watcher sees a line.
	waitUntil(t, "the watcher to see the session's output", func() bool {
		io.WriteString(stdin, "hello-watcher\n")
		select {
		case ok := <-seen:
			if !ok {
				t.Fatal("watch stream ended without the output")
			}
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})

	// Kill: refused without a reason, then it ends the session.
	var apiErr *adminclient.APIError
	if _, err := r.admin.Call(context.Background(), adminclient.Kill(s.ID, "")); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("kill without reason: %v", err)
	}
	if _, err := r.admin.Call(context.Background(), adminclient.Kill(s.ID, "incident 42")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("killed session still running")
	}
	waitUntil(t, "the registry to forget the session", func() bool { return len(r.sshSessions(t)) == 0 })

	// Revoking the certificate by serial refuses the next connection.
	if _, err := r.admin.Call(context.Background(), adminclient.RevokeCert(cert.Serial, "", "laptop stolen")); err != nil {
		t.Fatal(err)
	}
	if c2, err := r.dial(signer); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("revoked certificate: %v", err)
	}
	r.stop()
	rec, err := os.Open(s.Recording)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	sum, err := recording.Summarize(rec, r.in.Config.Bastion.RecordingKey)
	if err != nil || sum.Trailer == nil || sum.Trailer.Reason != bastion.EndKilled || sum.Trailer.Detail != "incident 42" {
		t.Fatalf("recording summary %+v %v", sum, err)
	}
	trail := auditText(t, f)
	for _, want := range []string{`"reason":"ssh-session-kill"`, `"reason":"ssh-cert-revoke"`, `"serial":"` + strconv.FormatUint(cert.Serial, 10) + `"`, `"reason":"ssh-session-watch"`, `"reason":"ssh-sessions-list"`} {
		if !strings.Contains(trail, want) {
			t.Errorf("audit trail lacks %s", want)
		}
	}
}

// TestSSHAdminHandler checks the admin socket's dispatch and the
// certificate revocation endpoint's handling of hostile input.
func TestSSHAdminHandler(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	in, err := Open(context.Background(), load(t, f), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	h := in.AdminHandler()
	tests := []struct {
		name, method, path, body string
		status                   int
		wantBody                 string
	}{
		{"list", "GET", "/api/admin/ssh/sessions", "", 200, "[]"},
		{"unknown session", "GET", "/api/admin/ssh/sessions/nope", "", 404, "no such live session"},
		{"watch unknown session", "GET", "/api/admin/ssh/sessions/nope/watch", "", 404, "no such live session"},
		{"revoke by key ID", "POST", "/api/admin/ssh/certs/revoke", `{"key_id":"https://idp#bob","reason":"left"}`, 200, `"revoked":true`},
		{"revoke by serial", "POST", "/api/admin/ssh/certs/revoke", `{"serial":12345}`, 200, `"serial":12345`},
		{"revoke needs one selector", "POST", "/api/admin/ssh/certs/revoke", `{"reason":"x"}`, 400, "exactly one of serial and key_id"},
		{"revoke with both", "POST", "/api/admin/ssh/certs/revoke", `{"serial":1,"key_id":"u"}`, 400, "exactly one"},
		{"revoke unknown field", "POST", "/api/admin/ssh/certs/revoke", `{"serial":1,"all":true}`, 400, "malformed request"},
		{"revoke negative serial", "POST", "/api/admin/ssh/certs/revoke", `{"serial":-1}`, 400, "malformed request"},
		{"revoke not JSON", "POST", "/api/admin/ssh/certs/revoke", `serial=1`, 400, "malformed request"},
		{"revoke huge key ID", "POST", "/api/admin/ssh/certs/revoke", `{"key_id":"` + strings.Repeat("a", 2000) + `"}`, 400, "too long"},
		{"revoke by GET", "GET", "/api/admin/ssh/certs/revoke", "", 405, "method not allowed"},
		// The gateway's API still gets escaped user IDs unredirected.
		{"gateway escaped path", "POST", "/api/admin/users/https:%2F%2Fidp%23bob/mfa-reset", `{}`, 200, ""},
		{"gateway users", "GET", "/api/admin/users", "", 200, "["},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "http://portcullis-admin"+tc.path, strings.NewReader(tc.body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Fatalf("%d %s, want %d with %q", rec.Code, rec.Body, tc.status, tc.wantBody)
			}
			if rec.Code >= 400 && !strings.Contains(rec.Body.String(), `"ref"`) && tc.path == certRevokePath {
				t.Errorf("error without a reference: %s", rec.Body)
			}
		})
	}
	// Without a bastion the SSH endpoints do not exist.
	g := testfixture.New(t)
	plain, err := Open(context.Background(), load(t, g), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	rec := httptest.NewRecorder()
	plain.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "http://portcullis-admin/api/admin/ssh/sessions", nil))
	if rec.Code != http.StatusNotFound || plain.SSHAddr() != nil || plain.SSHCA != nil {
		t.Fatalf("no bastion: %d %v", rec.Code, plain.SSHAddr())
	}
	// The gateway issues certificates (portcullis login) only with the
	// bastion's user CA.
	for _, tc := range []struct {
		in   *Instance
		want int
	}{{in, http.StatusOK}, {plain, http.StatusNotFound}} {
		rec := httptest.NewRecorder()
		tc.in.Gateway.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "https://"+testfixture.AccessHost+"/api/ssh/cert", strings.NewReader("{}")))
		if (rec.Code == http.StatusNotFound) != (tc.want == http.StatusNotFound) {
			t.Errorf("/api/ssh/cert: %d, want 404: %v", rec.Code, tc.want == http.StatusNotFound)
		}
	}
}

// TestReloadEndsDisallowedSSHSessions: a reload that takes the admin
// role's SSH rule away ends the live session it allowed.
func TestReloadEndsDisallowedSSHSessions(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	r := runInstance(t, f)
	signer, _ := r.issue(t, "https://idp.example#alice")
	c, err := r.dial(signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, ended := testfixture.LiveCat(t, c)
	waitUntil(t, "the live session", func() bool { return len(r.sshSessions(t)) == 1 })

	f.NoAdminSSH = true
	f.WriteConfig(t, "")
	if err := r.in.Reload(context.Background(), func() (*config.Config, error) { return load(t, f), nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("session outlived the policy that allowed it")
	}
	r.stop()
	if trail := auditText(t, f); !strings.Contains(trail, `"ssh_sessions_ended":"1"`) {
		t.Errorf("reload audit lacks the ended sessions:\n%s", trail)
	}
}

// TestRestartSectionsBastion: reloading the same file (fresh key objects)
// reports nothing; a changed target needs a restart of the bastion.
func TestRestartSectionsBastion(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	a, b := load(t, f), load(t, f)
	if got := restartSections(a, b); len(got) != 0 {
		t.Fatalf("unchanged file reported %v", got)
	}
	b.Bastion.Targets[0].Addr = "10.9.9.9:22"
	if got := restartSections(a, b); len(got) != 1 || got[0] != "bastion" {
		t.Fatalf("got %v", got)
	}
	c := load(t, f)
	c.Bastion = nil
	if got := restartSections(a, c); len(got) != 1 || got[0] != "bastion" {
		t.Fatalf("removed bastion: %v", got)
	}
}
