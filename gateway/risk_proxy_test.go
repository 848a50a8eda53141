package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

const (
	coreAlice  = "https://idp.example.com#alice"
	corePeer   = "198.51.100.20" // coreEnv.request's RemoteAddr
	coreWiki   = "wiki.example.com"
	lockedText = "This account is locked. Contact your administrator with reference"
	blockText  = "Access from your network is temporarily blocked. Reference"
)

// withWiki adds a host whose only route is /docs, so that other paths on
// it are covered by no route at all.
func withWiki(c *Config) {
	c.Routes = append(c.Routes, Route{Name: "wiki", Host: coreWiki, PathPrefix: "/docs", Upstream: c.Routes[0].Upstream})
}

// mustLock returns the lock on subject (failing when there is none).
func mustLock(t *testing.T, st store.Store, subject string) store.Lock {
	t.Helper()
	l, err := st.GetLock(context.Background(), subject)
	if err != nil {
		t.Fatalf("lock %s: %v", subject, err)
	}
	return l
}

func noLock(t *testing.T, st store.Store, subject string) {
	t.Helper()
	if l, err := st.GetLock(context.Background(), subject); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unexpected lock on %s: %+v (%v)", subject, l, err)
	}
}

// lockedPage asserts the locked (or blocked) denial page: 403, the
// generic title and heading of every denial, the text and the lock's ref.
func lockedPage(t *testing.T, status int, body, lead, ref string) {
	t.Helper()
	if status != http.StatusForbidden {
		t.Fatalf("status %d, want 403\n%s", status, body)
	}
	for _, want := range []string{"<title>Access denied — Portcullis</title>", "<h1>Access denied</h1>",
		"<p>" + lead + " <code>" + ref + "</code>.</p>"} {
		if !strings.Contains(body, want) {
			t.Fatalf("denial page lacks %q:\n%s", want, body)
		}
	}
}

// TestCanaryRoutes: a canary route is checked before the route's policy
// and even where no route covers the path; a signed-in toucher is locked
// (their session ends) and the source blocked, an anonymous one only
// blocked; both get the locked page with the incident reference.
func TestCanaryRoutes(t *testing.T) {
	rc := risk.Config{CanaryRoutes: []string{coreGrafana + "/backup", coreWiki + "/backup"}}
	tests := []struct {
		name       string
		host, path string
		signedIn   bool
		json       bool
	}{
		{"signed-in user on a routed path", coreGrafana, "/backup/db.sql", true, false},
		{"signed-in user where no route covers the path", coreWiki, "/backup", true, false},
		{"signed-in user, API client", coreGrafana, "/backup", true, true},
		{"anonymous", coreGrafana, "/backup", false, false},
		{"anonymous, dot segments normalised first", coreGrafana, "/x/../backup/", false, false},
		{"anonymous where no route covers the path", coreWiki, "/backup/x", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newCoreEnvRisk(t, rc, withWiki)
			cookie := ""
			if tc.signedIn {
				cookie = e.login(session.Record{})
				if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusOK {
					t.Fatalf("before the touch: %d", w.Code)
				}
			}
			var hdr http.Header
			if tc.json {
				hdr = http.Header{"Accept": {"application/json"}}
			}
			w := e.get(tc.host, tc.path, cookie, hdr)
			ipLock := mustLock(t, e.st, "ip:"+corePeer)
			if ipLock.Reason != risk.ReasonCanary || ipLock.ExpiresAt.IsZero() {
				t.Fatalf("source block %+v", ipLock)
			}
			lead, ref, reason := blockText, ipLock.Ref, risk.ReasonSourceBlocked
			if tc.signedIn {
				l := mustLock(t, e.st, "user:"+coreAlice)
				if l.Reason != risk.ReasonCanary || !strings.Contains(l.Detail, "route "+tc.host+"/backup") || !l.ExpiresAt.IsZero() {
					t.Fatalf("user lock %+v", l)
				}
				lead, ref, reason = lockedText, l.Ref, risk.ReasonAccountLocked
			} else {
				noLock(t, e.st, "user:"+coreAlice)
			}
			if tc.json {
				b := decodeErrorBody(t, w)
				if w.Code != http.StatusForbidden || b.Ref != ref || b.Error != lead+" "+ref+"." {
					t.Fatalf("JSON denial %d %+v", w.Code, b)
				}
			} else {
				lockedPage(t, w.Code, w.Body.String(), lead, ref)
			}
			ev := e.lastEvent(audit.TypeDecision)
			if ev.Decision != audit.Deny || ev.Reason != reason || ev.Ref != ref || ev.Attrs["canary"] != tc.host+"/backup" {
				t.Fatalf("audit %+v", ev)
			}
			if tc.signedIn {
				// The engine revoked the session: the next request is
				// sent to log in.
				if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusFound {
					t.Fatalf("session after the lock: %d", w.Code)
				}
			}
		})
	}
}

// TestCanaryNeighbours: paths that only look like a canary are served as
// usual, and nothing is locked.
func TestCanaryNeighbours(t *testing.T) {
	e, _ := newCoreEnvRisk(t, risk.Config{CanaryRoutes: []string{coreGrafana + "/backup", coreWiki + "/backup"}}, withWiki)
	cookie := e.login(session.Record{})
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{coreGrafana, "/backups", http.StatusOK},
		{coreGrafana, "/back", http.StatusOK},
		{coreGrafana, "/x/backup", http.StatusOK},
		{coreWiki, "/docs/backup", http.StatusForbidden}, // the policy has no app "wiki": denied, not locked
		{coreStatus, "/backup", http.StatusOK},
		{"unknown.example.com", "/backup", http.StatusNotFound},
	} {
		if w := e.get(tc.host, tc.path, cookie, nil); w.Code != tc.want {
			t.Errorf("%s%s: %d, want %d", tc.host, tc.path, w.Code, tc.want)
		}
	}
	if ls, err := e.st.ListLocks(context.Background()); err != nil || len(ls) != 0 {
		t.Fatalf("locks %+v %v", ls, err)
	}
}

// TestDeniedDecisionsLock: a signed-in user's denied requests count; the
// one reaching the threshold is answered with the locked page and ends the
// session. Allowed requests never touch the store for it.
func TestDeniedDecisionsLock(t *testing.T) {
	e, _ := newCoreEnvRisk(t, risk.Config{User: map[risk.Signal]risk.Threshold{risk.SignalDenied: {Count: 3, Window: 10 * time.Minute}}})
	cookie := e.login(session.Record{})
	if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusOK {
		t.Fatalf("allowed: %d", w.Code)
	}
	before := e.st.riskReads.Load()
	for range 20 {
		if w := e.get(coreGrafana, "/d/1", cookie, nil); w.Code != http.StatusOK {
			t.Fatalf("allowed: %d", w.Code)
		}
	}
	if n := e.st.riskReads.Load() - before; n != 0 {
		t.Fatalf("allowed requests made %d risk store calls", n)
	}
	for i := 1; i <= 3; i++ {
		w := e.get(coreGrafana, "/admin/users", cookie, nil)
		if i < 3 {
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), genericLead) {
				t.Fatalf("denial %d: %d\n%s", i, w.Code, w.Body.String())
			}
			continue
		}
		l := mustLock(t, e.st, "user:"+coreAlice)
		if l.Reason != "denied-decisions" {
			t.Fatalf("lock %+v", l)
		}
		lockedPage(t, w.Code, w.Body.String(), lockedText, l.Ref)
	}
	if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusFound {
		t.Fatalf("session after the lock: %d", w.Code)
	}
	// The source is not blocked for a user's denials.
	noLock(t, e.st, "ip:"+corePeer)
}

// usageRecorder records Usage calls and passes everything to the engine.
type usageRecorder struct {
	RiskEngine
	mu    sync.Mutex
	calls []usageCall
}

type usageCall struct {
	user            string
	requests, bytes int64
}

func (u *usageRecorder) Usage(user string, requests, bytes int64) {
	u.mu.Lock()
	u.calls = append(u.calls, usageCall{user, requests, bytes})
	u.mu.Unlock()
	u.RiskEngine.Usage(user, requests, bytes)
}

func (u *usageRecorder) take() []usageCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.calls
	u.calls = nil
	return c
}

// TestUsagePerRequest: each proxied request of a signed-in user reports
// one request and the bytes of the response body: declared or, for a
// stream without a length, counted while copied.
func TestUsagePerRequest(t *testing.T) {
	e, release := newCoreEnv(t)
	close(release) // the streaming endpoints send everything at once
	rec := &usageRecorder{RiskEngine: e.g.deps.Risk}
	e.g.deps.Risk = rec
	cookie := e.login(session.Record{})
	tests := []struct {
		name, method, host, path, cookie string
		want                             int
		counted                          bool
	}{
		{"GET", http.MethodGet, coreGrafana, "/d/1", cookie, http.StatusOK, true},
		{"GET with a prefix rewrite", http.MethodGet, coreGrafana, "/api/v2/x", cookie, http.StatusOK, true},
		{"stream without a length", http.MethodGet, coreStream, "/sse", cookie, http.StatusOK, true},
		{"stream with a length", http.MethodGet, coreStream, "/stream", cookie, http.StatusOK, true},
		{"HEAD", http.MethodHead, coreGrafana, "/d/1", cookie, http.StatusOK, true},
		{"POST", http.MethodPost, coreGrafana, "/d/1", cookie, http.StatusOK, true},
		{"anonymous, public app", http.MethodGet, coreStatus, "/", "", http.StatusOK, false},
		{"denied", http.MethodGet, coreGrafana, "/admin", cookie, http.StatusForbidden, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := e.serve(e.request(tc.method, tc.host, tc.path, tc.cookie, nil))
			if w.Code != tc.want {
				t.Fatalf("status %d\n%s", w.Code, w.Body.String())
			}
			calls := rec.take()
			if !tc.counted {
				if len(calls) != 0 {
					t.Fatalf("usage %+v", calls)
				}
				return
			}
			want := usageCall{coreAlice, 1, int64(w.Body.Len())}
			if len(calls) != 1 || calls[0] != want {
				t.Fatalf("usage %+v, want %+v", calls, want)
			}
			if tc.method != http.MethodHead && want.bytes == 0 {
				t.Fatal("empty body")
			}
		})
	}
}

// TestStoreGrace: the pinger notices the store down; without grace,
// session requests get 503 at once, with a grace only once the clock has
// passed it. Public apps, which need no session, and /healthz keep
// answering; recovery restores service.
func TestStoreGrace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
	}{{"no grace", 0}, {"2m grace", 2 * time.Minute}} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newCoreEnv(t, func(c *Config) { c.StoreGrace = tc.grace })
			cookie := e.login(session.Record{})
			jsonHdr := http.Header{"Accept": {"application/json"}}
			served := func(want int) {
				t.Helper()
				w := e.get(coreGrafana, "/", cookie, jsonHdr)
				if w.Code != want {
					t.Fatalf("session request: %d, want %d\n%s", w.Code, want, w.Body.String())
				}
				if want == http.StatusServiceUnavailable {
					if b := decodeErrorBody(t, w); b.Error != "state store unavailable" {
						t.Fatalf("body %+v", b)
					}
					if w := e.get(coreAccess, "/", cookie, nil); w.Code != http.StatusServiceUnavailable {
						t.Fatalf("access-host page with a session: %d", w.Code)
					}
				}
				if w := e.get(coreStatus, "/", "", nil); w.Code != http.StatusOK {
					t.Fatalf("public app: %d", w.Code)
				}
			}
			served(http.StatusOK)
			e.st.pingDown.Store(true)
			e.pingStore()
			if w := e.get(coreAccess, "/healthz", "", nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "state store unavailable since") {
				t.Fatalf("healthz while down: %d %q", w.Code, w.Body.String())
			}
			if tc.grace > 0 {
				served(http.StatusOK)
				e.clock.Advance(tc.grace - time.Second)
				e.pingStore() // still down: "down since" stays the first failure
				served(http.StatusOK)
				e.clock.Advance(time.Second)
			}
			served(http.StatusServiceUnavailable)
			e.st.pingDown.Store(false)
			e.pingStore()
			served(http.StatusOK)
			if w := e.get(coreAccess, "/healthz", "", nil); w.Body.String() != "ok\n" {
				t.Fatalf("healthz after recovery: %q", w.Body.String())
			}
		})
	}
}

func TestStoreGraceValidation(t *testing.T) {
	for _, tc := range []struct {
		grace time.Duration
		ok    bool
	}{{0, true}, {time.Hour, true}, {-time.Second, false}, {25 * time.Hour, false}} {
		c := validCoreConfig()
		c.StoreGrace = tc.grace
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("store_grace %v: %v", tc.grace, err)
		}
	}
}

// redisOpener opens instances of one deployment on the test Redis under a
// fresh key prefix.
func redisOpener(t *testing.T) func(testing.TB, func() time.Time) store.Store {
	addr := os.Getenv("PORTCULLIS_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "portcullis-gw-test:" + hex.EncodeToString(b[:]) + ":"
	return func(t testing.TB, now func() time.Time) store.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := store.OpenRedis(ctx, store.RedisConfig{Addr: addr, KeyPrefix: prefix}, store.RedisOptions{Now: now})
		if err != nil {
			t.Fatalf("no redis-server at %s (%v): start one with `redis-server --daemonize yes`", addr, err)
		}
		return r
	}
}

// TestLockEndsSessionOnOtherInstance: two gateways share Redis; a lock
// set through one (the admin API) ends the user's session cached by the
// other within a second (the engine revokes, the feed invalidates).
func TestLockEndsSessionOnOtherInstance(t *testing.T) {
	open := redisOpener(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	clock := &coreClock{now: time.Now().UTC().Truncate(time.Second)}
	a, _ := newCoreEnvWith(t, coreSetup{open: open, cookieKey: key, clock: clock, instance: "gw-a"})
	b, _ := newCoreEnvWith(t, coreSetup{open: open, cookieKey: key, clock: clock, instance: "gw-b"})
	ctx := context.Background()
	cookie := a.login(session.Record{})
	if err := putUser(ctx, a.st, userRecord{UserID: coreAlice}); err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]*coreEnv{"a": a, "b": b} {
		if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusOK {
			t.Fatalf("instance %s before the lock: %d", name, w.Code)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/api/admin/locks/lock", strings.NewReader(`{"user_id":"`+coreAlice+`","reason":"incident 42"}`))
	w := httptest.NewRecorder()
	a.g.AdminHandler().ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("lock: %d %s", w.Code, w.Body.String())
	}
	t.Cleanup(func() { _, _ = a.risk.Unlock(ctx, coreAlice, "test cleanup", "test") })
	deadline := time.Now().Add(time.Second)
	for {
		w := b.get(coreGrafana, "/", cookie, nil)
		if w.Code == http.StatusFound {
			break
		}
		if w.Code != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("instance b still answers %d to the locked user's session after 1s", w.Code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// And b refuses a new login from the user (the lock is in Redis).
	if v, err := b.risk.Gate(ctx, coreAlice, netip.MustParseAddr(corePeer)); err != nil || v.Allow || v.Reason != risk.ReasonAccountLocked {
		t.Fatalf("gate on b: %+v %v", v, err)
	}
}

// TestLinkInducedSignals: the session cookie is SameSite=Lax, so a link
// or an image on another site (or another host of the same site) makes
// the victim's browser send it. Such requests (Sec-Fetch-Site cross-site
// or same-site) are still denied, but they never lock the user or block
// their address: otherwise one link would lock anyone out. The same
// requests made on the origin itself do count.
func TestLinkInducedSignals(t *testing.T) {
	for _, site := range []string{"cross-site", "same-site"} {
		t.Run("canary "+site, func(t *testing.T) {
			e, _ := newCoreEnvRisk(t, risk.Config{CanaryRoutes: []string{coreGrafana + "/backup"}})
			cookie := e.login(session.Record{})
			w := e.get(coreGrafana, "/backup", cookie, http.Header{"Sec-Fetch-Site": {site}})
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), genericLead) {
				t.Fatalf("canary from %s: %d\n%s", site, w.Code, w.Body.String())
			}
			noLock(t, e.st, "user:"+coreAlice)
			noLock(t, e.st, "ip:"+corePeer)
			an := e.lastEvent(audit.TypeRiskAnomaly)
			if an.Reason != risk.ReasonCanary || an.Attrs["attributed"] != "no" || an.UserID != coreAlice {
				t.Fatalf("anomaly %+v", an)
			}
			if w := e.get(coreGrafana, "/", cookie, nil); w.Code != http.StatusOK {
				t.Fatalf("session after an unattributed touch: %d", w.Code)
			}
		})
		t.Run("denied decisions "+site, func(t *testing.T) {
			e, _ := newCoreEnvRisk(t, risk.Config{User: map[risk.Signal]risk.Threshold{risk.SignalDenied: {Count: 3, Window: 10 * time.Minute}}})
			cookie := e.login(session.Record{})
			for range 10 {
				if w := e.get(coreGrafana, "/admin/users", cookie, http.Header{"Sec-Fetch-Site": {site}}); w.Code != http.StatusForbidden {
					t.Fatalf("denied request: %d", w.Code)
				}
			}
			noLock(t, e.st, "user:"+coreAlice)
		})
	}
	t.Run("same-origin counts", func(t *testing.T) {
		e, _ := newCoreEnvRisk(t, risk.Config{User: map[risk.Signal]risk.Threshold{risk.SignalDenied: {Count: 3, Window: 10 * time.Minute}}})
		cookie := e.login(session.Record{})
		for range 3 {
			e.get(coreGrafana, "/admin/users", cookie, http.Header{"Sec-Fetch-Site": {"same-origin"}})
		}
		mustLock(t, e.st, "user:"+coreAlice)
	})
}
