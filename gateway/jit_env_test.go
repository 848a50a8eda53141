package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// jitEnv is the SSH login environment (real TLS gateway, dev IdP, embedded
// store, real session, MFA and risk managers) plus a real access.Manager
// on the same store and clock, a real audit FileLog as the trail searched
// by /api/audit/events (the gateway and the manager write to it and to
// the in-memory audit), and an in-memory recording store.
//
// Policy: alice (IdP group admins) is admin and sre-lead; bob (engineers)
// is engineer: app paths under /dash, login deploy on web-1. db-admin
// (requestable, 1 approval by sre-lead) adds app paths under /db and login
// dba on db-1; auditor (requestable, a committee of 2 sre-leads) reads the
// trail; ops-admin is an admin role, requestable.
type jitEnv struct {
	*sshEnv
	acc   *access.Manager
	trail *audit.FileLog
	dir   string
	recs  *jitRecordings
}

const (
	jitDave  = "https://idp.example.com#dave"  // sre-lead
	jitErin  = "https://idp.example.com#erin"  // sre-lead
	jitFrank = "https://idp.example.com#frank" // engineer
	jitGrace = "https://idp.example.com#grace" // no role
)

func jitPolicy(t *testing.T) *authz.Policy {
	t.Helper()
	p, err := authz.Compile(authz.PolicyConfig{
		Apps:    []authz.AppConfig{{Name: "app"}},
		Targets: []authz.TargetConfig{{Name: "db-1", Labels: map[string]string{"tier": "db"}}, {Name: "web-1"}},
		Roles: []authz.RoleConfig{
			{Name: "admin", Groups: []string{"admins"}, Admin: true,
				Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/dash"}}, {TargetLabels: map[string]string{"tier": "db"}, Logins: []string{"root"}}}},
			{Name: "sre-lead", Groups: []string{"admins"}, Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/dash"}}}},
			{Name: "engineer", Groups: []string{"engineers"},
				Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/dash"}}, {Targets: []string{"web-1"}, Logins: []string{"deploy"}}}},
			// Held through grants in these tests (authz wants a group:
			// nobody in the IdP is in these ones).
			{Name: "db-admin", Groups: []string{"db-admins"},
				Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/db"}}, {Targets: []string{"db-1"}, Logins: []string{"dba"}}}},
			{Name: "auditor", Groups: []string{"auditors"}, Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/audit"}}}},
			{Name: "ops-admin", Groups: []string{"ops"}, Admin: true, Allow: []authz.Rule{{Apps: []string{"app"}, PathPrefixes: []string{"/ops"}}}},
		},
	})
	if err != nil {
		t.Fatalf("compile policy: %v", err)
	}
	return p
}

func jitAccessConfig(requireApproval bool) access.Config {
	return access.Config{
		Roles: []access.RoleConfig{
			{Role: "db-admin", Approvers: []string{"sre-lead"}, Approvals: 1, MaxDuration: 4 * time.Hour},
			{Role: "auditor", Approvers: []string{"sre-lead"}, Approvals: 2, MaxDuration: 2 * time.Hour},
			{Role: "ops-admin", Approvers: []string{"sre-lead"}},
		},
		AuditRead: access.AuditReadConfig{Role: "auditor", RequireApproval: requireApproval},
	}
}

func newJITEnv(t *testing.T, requireApproval bool) *jitEnv {
	t.Helper()
	e := &jitEnv{sshEnv: newSSHEnv(t, nil), dir: t.TempDir(), recs: newJITRecordings()}
	e.policy.Store(jitPolicy(t))
	var err error
	e.trail, err = audit.OpenFile(audit.FileConfig{Dir: e.dir, Instance: "gw-test"}, audit.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.trail.Close() })
	em := audit.Multi{e.trail, e.audit}
	e.acc, err = access.New(jitAccessConfig(requireApproval), access.Deps{
		Store: e.st, Feed: e.st, Audit: em, Now: e.clock.Now, Policy: e.policy.Load,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.acc.Run(ctx)
	}()
	// Registered last, so it runs before the store closes.
	t.Cleanup(func() { cancel(); <-done })
	e.g.deps.Audit = em
	e.g.deps.Access = e.acc
	e.g.deps.TrailDir = e.dir
	e.g.deps.Recordings = e.recs
	return e
}

// token creates a live MFA session of user with roles (as a login would)
// and returns its bearer token.
func (e *jitEnv) token(user string, roles ...string) string {
	e.t.Helper()
	now := e.clock.Now()
	tok, _, err := e.sessions.Create(context.Background(), session.Record{
		UserID: user, Roles: roles, MFA: true, AuthTime: now, ExpiresAt: now.Add(8 * time.Hour),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.sessions.Cookie(tok, 0).Value
}

// call calls the user or admin API over HTTPS with a bearer token.
func (e *jitEnv) call(method, path, token, body string) (int, map[string]any, []byte) {
	e.t.Helper()
	return e.browser().adminCall(method, path, token, body)
}

// local calls the admin API on the local socket handler (local-admin).
func (e *jitEnv) local(method, path, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, "http://local"+path, strings.NewReader(body))
	w := httptest.NewRecorder()
	e.g.AdminHandler().ServeHTTP(w, req)
	var m map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &m)
	return w.Code, m
}

// submit makes user's request for role through the API and returns its ID.
func (e *jitEnv) submit(tok, role, d string) string {
	e.t.Helper()
	st, m, raw := e.call(http.MethodPost, "/api/access/requests", tok, `{"role":"`+role+`","duration":"`+d+`","reason":"INC-1234"}`)
	if st != http.StatusCreated {
		e.t.Fatalf("submit %s: %d %s", role, st, raw)
	}
	return m["id"].(string)
}

// decide approves or denies (verb) request id as tok; it returns the
// status and the reason code of a refusal.
func (e *jitEnv) decide(tok, id, verb string) (int, string, map[string]any) {
	e.t.Helper()
	body := `{"note":"ok"}`
	if verb == "cancel" {
		body = ""
	}
	st, m, _ := e.call(http.MethodPost, "/api/access/requests/"+id+"/"+verb, tok, body)
	var reason string
	if st != http.StatusOK && st != http.StatusCreated {
		reason, _ = m["reason"].(string)
	}
	return st, reason, m
}

// countAudit counts events of typ with reason and decision ("" = any).
func (e *jitEnv) countAudit(typ, reason, decision string) int {
	n := 0
	for _, ev := range e.audit.Find(typ, reason) {
		if decision == "" || ev.Decision == decision {
			n++
		}
	}
	return n
}

// jitRecordings is an in-memory RecordingStore: recordings by ID with
// their asciicast text; a recording listed in broken fails its export
// after the first line.
type jitRecordings struct {
	mu     sync.Mutex
	infos  map[string]RecordingInfo
	casts  map[string]string
	broken map[string]bool
}

func newJITRecordings() *jitRecordings {
	return &jitRecordings{infos: map[string]RecordingInfo{}, casts: map[string]string{}, broken: map[string]bool{}}
}

func (s *jitRecordings) add(id, user, cast string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.infos[id] = RecordingInfo{ID: id, UserID: user, Target: "db-1", Login: "dba", Start: time.Unix(1000, 0).UTC(), End: time.Unix(1060, 0).UTC(), Bytes: int64(len(cast))}
	s.casts[id] = cast
}

func (s *jitRecordings) ListRecordings(_ context.Context, userID string) ([]RecordingInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RecordingInfo
	for _, ri := range s.infos {
		if userID == "" || ri.UserID == userID {
			out = append(out, ri)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *jitRecordings) RecordingInfo(_ context.Context, id string) (RecordingInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ri, ok := s.infos[id]
	if !ok {
		return RecordingInfo{}, store.ErrNotFound
	}
	return ri, nil
}

func (s *jitRecordings) ExportRecording(_ context.Context, id string, w io.Writer) error {
	s.mu.Lock()
	cast, ok := s.casts[id]
	broken := s.broken[id]
	s.mu.Unlock()
	if !ok {
		return store.ErrNotFound
	}
	if broken {
		first, _, _ := strings.Cut(cast, "\n")
		if _, err := io.WriteString(w, first+"\n"); err != nil {
			return err
		}
		return errors.New("chunk 2: authentication failed")
	}
	_, err := io.WriteString(w, cast)
	return err
}

// rawGet is a GET of path (already escaped) with a bearer token.
func (e *jitEnv) rawGet(path, token string) page {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.origin+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "application/json")
	return e.browser().do(req)
}

// readAllErr reads and closes a response body, returning the read error
// (an aborted transfer).
func readAllErr(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}
