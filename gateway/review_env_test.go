package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// The review tests run the gateway with real collaborators: the embedded
// store, the session manager, the risk engine, the just-in-time access
// manager and the review manager reading a real trail directory. Only the
// clock is fake and the audit emitter is in memory (with a Sync that can
// be made to fail).

const (
	revAlice = "https://idp.example.com#alice" // admin (group admins)
	revBob   = "https://idp.example.com#bob"   // engineer (group eng) + local dba grant
	revCarol = "https://idp.example.com#carol" // engineer, never used anything
)

// revAudit is audit.Memory whose durability barrier can fail, and which
// notes how many events it held when the barrier was last entered.
type revAudit struct {
	*audit.Memory
	fail     atomic.Bool
	atSync   atomic.Int64
	syncs    atomic.Int64
	failWith error
}

func (a *revAudit) Sync(context.Context) error {
	a.syncs.Add(1)
	a.atSync.Store(int64(len(a.Memory.Events())))
	if a.fail.Load() {
		return a.failWith
	}
	return nil
}

type reviewEnv struct {
	t      *testing.T
	clock  *coreClock
	st     store.Store
	sess   *session.Manager
	audit  *revAudit
	jit    *access.Manager
	rev    *review.Manager
	g      *Gateway
	policy atomic.Pointer[authz.Policy]
	// grant is bob's local dba grant.
	grant access.Grant
}

func reviewPolicy(t *testing.T) *authz.Policy {
	t.Helper()
	p, err := authz.Compile(authz.PolicyConfig{
		Apps: []authz.AppConfig{{Name: "grafana"}},
		Roles: []authz.RoleConfig{
			{Name: "admin", Groups: []string{"admins"}, Admin: true, Allow: []authz.Rule{{Apps: []string{"grafana"}}}},
			{Name: "engineer", Groups: []string{"eng"}, Allow: []authz.Rule{{Apps: []string{"grafana"}}}},
			{Name: "dba", Groups: []string{"dbas"}, Allow: []authz.Rule{{Apps: []string{"grafana"}, PathPrefixes: []string{"/db"}}}},
		},
	})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// newReviewEnv builds the gateway; withReviews false leaves Deps.Reviews nil.
func newReviewEnv(t *testing.T, withReviews bool) *reviewEnv {
	t.Helper()
	ctx := context.Background()
	clock := &coreClock{now: time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)}
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), store.EmbeddedOptions{Now: clock.Now})
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e := &reviewEnv{t: t, clock: clock, st: st, audit: &revAudit{Memory: &audit.Memory{}, failWith: errors.New("disk full")}}
	e.policy.Store(reviewPolicy(t))

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	e.sess, err = session.NewManager(session.Config{CookieKey: key}, st, session.Options{Now: clock.Now})
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := e.sess.Start(sctx); err != nil {
		t.Fatalf("session start: %v", err)
	}
	rk, err := risk.New(risk.Config{}, st, risk.Options{Audit: e.audit, Now: clock.Now, Revokers: []risk.Revoker{e.sess}})
	if err != nil {
		t.Fatalf("risk: %v", err)
	}
	e.jit, err = access.New(access.Config{}, access.Deps{Store: st, Audit: e.audit, Now: clock.Now,
		Policy: func() *authz.Policy { return e.policy.Load() }})
	if err != nil {
		t.Fatalf("access: %v", err)
	}

	// The directory (written at login), a standing local grant and a
	// trail with one use of engineer by bob.
	for _, u := range []userRecord{
		{UserID: revAlice, Email: "alice@example.com", Groups: []string{"admins"}, LastLogin: clock.Now().Add(-24 * time.Hour)},
		{UserID: revBob, Email: "bob@example.com", Groups: []string{"eng"}, LastLogin: clock.Now().Add(-48 * time.Hour)},
		{UserID: revCarol, Email: "carol@example.com", Groups: []string{"eng"}, LastLogin: clock.Now().Add(-200 * 24 * time.Hour)},
	} {
		if err := putUser(ctx, st, u); err != nil {
			t.Fatal(err)
		}
	}
	if e.grant, err = e.jit.AddGrant(ctx, "local-admin", revBob, "dba", time.Time{}, "standing dba access"); err != nil {
		t.Fatalf("grant: %v", err)
	}
	trail := t.TempDir()
	fl, err := audit.OpenFile(audit.FileConfig{Dir: trail, Instance: "gw-1"}, audit.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	fl.Emit(ctx, audit.Event{Time: clock.Now().Add(-72 * time.Hour), Type: audit.TypeDecision, UserID: revBob,
		App: "grafana", Method: "GET", Path: "/", Decision: audit.Allow, Reason: "allowed", Role: "engineer"})
	if err := fl.Close(); err != nil {
		t.Fatal(err)
	}
	if withReviews {
		e.rev, err = review.New(review.Config{}, review.Deps{
			Store: st, Policy: func() *authz.Policy { return e.policy.Load() }, Grants: e.jit,
			AuditDir: trail, Audit: e.audit, Now: clock.Now,
		})
		if err != nil {
			t.Fatalf("review: %v", err)
		}
	}
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.g, err = New(Config{
		AccessHost: coreAccess, TLS: TLSConfig{Mode: ModeSelfSigned}, Instance: "gw-test",
		Routes: []Route{{Name: "grafana", Host: coreGrafana, Upstream: "http://127.0.0.1:1"}},
	}, Deps{
		Policy: &e.policy, Sessions: e.sess, Store: st, Audit: e.audit, SigningKey: sk, Now: clock.Now,
		Risk: rk, StoreTick: make(chan time.Time), AuditHealth: e.audit, Access: e.jit, Reviews: e.rev,
	})
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	t.Cleanup(func() { e.g.Close() })
	return e
}

// login creates a web session with MFA (the cookie value, also usable as
// a bearer token) for user with base roles.
func (e *reviewEnv) login(user string, roles ...string) string {
	e.t.Helper()
	tok, _, err := e.sess.Create(context.Background(), session.Record{
		UserID: user, Roles: roles, MFA: true, AuthTime: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour),
	})
	if err != nil {
		e.t.Fatalf("session: %v", err)
	}
	return e.sess.Cookie(tok, time.Hour).Value
}

// apiCaller calls the admin API one way: over the local socket's handler
// (as local-admin) or over HTTPS with a bearer token.
type apiCaller struct {
	name  string
	actor string // the actor the calls are recorded with
	do    func(e *reviewEnv, method, target string, body io.Reader) *httptest.ResponseRecorder
}

func localCaller() apiCaller {
	return apiCaller{name: "local socket", actor: localAdminActor,
		do: func(e *reviewEnv, method, target string, body io.Reader) *httptest.ResponseRecorder {
			r := httptest.NewRequest(method, "http://localhost"+target, body)
			r.RemoteAddr = "@"
			w := httptest.NewRecorder()
			e.g.AdminHandler().ServeHTTP(w, r)
			return w
		}}
}

// bearerCaller uses a token of user (roles) on the access host.
func bearerCaller(e *reviewEnv, user string, roles ...string) apiCaller {
	tok := e.login(user, roles...)
	return apiCaller{name: "bearer token", actor: user,
		do: func(e *reviewEnv, method, target string, body io.Reader) *httptest.ResponseRecorder {
			r := httptest.NewRequest(method, "https://"+coreAccess+target, body)
			r.RemoteAddr = "198.51.100.20:40000"
			r.Header.Set("Authorization", "Bearer "+tok)
			r.Header.Set("Accept", "application/json")
			w := httptest.NewRecorder()
			e.g.Handler().ServeHTTP(w, r)
			return w
		}}
}

func (c apiCaller) call(e *reviewEnv, method, target, body string) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return c.do(e, method, target, rd)
}

// decode unmarshals a 2xx JSON answer, failing on any other status.
func decodeAs[T any](t *testing.T, w *httptest.ResponseRecorder, status int) T {
	t.Helper()
	var v T
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body.String())
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T: %v (%s)", v, err, w.Body.String())
	}
	return v
}

// item finds a campaign's item of user and role.
func findItem(t *testing.T, c review.Campaign, user, role string) review.Item {
	t.Helper()
	for _, it := range c.Items {
		if it.UserID == user && it.Role == role {
			return it
		}
	}
	t.Fatalf("no item %s %s in %+v", user, role, c.Items)
	return review.Item{}
}

// page is a browser on the access host with a session cookie.
type revBrowser struct {
	e      *reviewEnv
	cookie string
}

func (e *reviewEnv) browser(user string, roles ...string) *revBrowser {
	return &revBrowser{e: e, cookie: e.login(user, roles...)}
}

func (b *revBrowser) request(method, target string, form url.Values, hdr ...string) *httptest.ResponseRecorder {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, "https://"+coreAccess+target, body)
	r.RemoteAddr = "198.51.100.20:40000"
	if b.cookie != "" {
		r.Header.Set("Cookie", b.e.sess.CookieName()+"="+b.cookie)
	}
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Origin", "https://"+coreAccess)
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	b.e.g.Handler().ServeHTTP(w, r)
	return w
}

func (b *revBrowser) get(target string) *httptest.ResponseRecorder {
	return b.request(http.MethodGet, target, nil)
}

func (b *revBrowser) post(target string, form url.Values, hdr ...string) *httptest.ResponseRecorder {
	return b.request(http.MethodPost, target, form, hdr...)
}
