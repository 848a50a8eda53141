package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// loopback is where every test browser connects from.
var loopback = netip.MustParseAddr("127.0.0.1")

// userID returns the stable user ID of a user who completed a callback
// (from the user directory, by e-mail: the IdP's subjects are opaque).
func (e *loginEnv) userID(name string) string {
	e.t.Helper()
	us, err := listUsers(context.Background(), e.st)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, u := range us {
		if u.Email == name+"@example.com" {
			return u.UserID
		}
	}
	e.t.Fatalf("no verified callback of %s", name)
	return ""
}

// lock locks a user through the engine (as an admin would).
func (e *loginEnv) lock(userID string) store.Lock {
	e.t.Helper()
	l, err := e.risk.Lock(context.Background(), userID, "test", "test-admin")
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (e *loginEnv) sessionsOf(userID string) int {
	e.t.Helper()
	ss, err := e.sessions.List(context.Background(), userID)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ss)
}

// TestLockedUserCannotLogIn: a lock stops a login at whichever step it
// is found — the callback (no pending login is created), the TOTP page,
// or the moment the session would be created — and a successful OIDC
// login never lifts it.
func TestLockedUserCannotLogIn(t *testing.T) {
	tests := []struct {
		name string
		user string
		// run logs the user in up to the step under test, locking it at
		// the right moment, and returns the refused response and its
		// audit event type.
		run func(e *loginEnv, secret string) (page, string)
	}{
		{"at the callback", "bob", func(e *loginEnv, _ string) (page, string) {
			e.lock(e.userID("bob"))
			b := e.browser()
			p := b.get(b.idpLogin("/", "bob"))
			if b.cookie(accessHost, mfaCookie) != "" {
				e.t.Error("a pending login was created for a locked user")
			}
			return p, audit.TypeLoginCallback
		}},
		{"on the TOTP page", "bob", func(e *loginEnv, secret string) (page, string) {
			b := e.browser()
			p := b.get(b.idpLogin("/", "bob"))
			p = b.get(p.location())
			e.lock(e.userID("bob"))
			return b.post(pathMFA, url.Values{"csrf": {scrape(e.t, reCSRF, p.body)}, "code": {e.code(secret)}}), audit.TypeMFAVerify
		}},
		{"with a recovery code", "bob", func(e *loginEnv, _ string) (page, string) {
			b := e.browser()
			p := b.get(b.idpLogin("/", "bob"))
			p = b.get(p.location())
			e.lock(e.userID("bob"))
			return b.post(pathMFA, url.Values{"csrf": {scrape(e.t, reCSRF, p.body)}, "recovery": {"aaaa-bbbb-cccc"}}), audit.TypeMFAVerify
		}},
		{"at session creation (after enrolment)", "carol", func(e *loginEnv, _ string) (page, string) {
			b := e.browser()
			b.get(b.idpLogin("/", "carol"))
			p := b.get(pathEnrol)
			secret := scrape(e.t, reSecret, p.body)
			p = b.post(pathEnrol, url.Values{"csrf": {scrape(e.t, reCSRF, p.body)}, "code": {e.code(secret)}})
			if p.status != http.StatusOK {
				e.t.Fatalf("enrol confirm: %d", p.status)
			}
			e.lock(e.userID("carol"))
			return b.post(pathContinue, url.Values{"csrf": {scrape(e.t, reCSRF, p.body)}}), audit.TypeSessionStart
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newLoginEnv(t)
			secret, _ := e.browser().loginNew("bob", "/")
			p, typ := tc.run(e, secret)
			locks, err := e.risk.Locks(context.Background())
			if err != nil || len(locks) != 1 {
				t.Fatalf("locks %+v %v", locks, err)
			}
			l := locks[0]
			lockedPage(t, p.status, p.body, lockedText, l.Ref)
			user := strings.TrimPrefix(l.Subject, "user:")
			if user != e.userID(tc.user) {
				t.Fatalf("lock on %q", l.Subject)
			}
			if n := e.sessionsOf(user); n != 0 {
				t.Fatalf("%d sessions of the locked user", n)
			}
			ev := e.mustAudit(typ, risk.ReasonAccountLocked, audit.Deny)
			if ev.Ref != l.Ref || ev.UserID != user {
				t.Fatalf("audit %+v", ev)
			}
			// The whole login again, OIDC succeeding: still locked.
			b := e.browser()
			p = b.get(b.idpLogin("/", tc.user))
			lockedPage(t, p.status, p.body, lockedText, l.Ref)
			if v, err := e.risk.Locked(context.Background(), user); err != nil || v.Allow {
				t.Fatalf("lock lifted: %+v %v", v, err)
			}
		})
	}
}

// TestWrongCodesLock: the 5th wrong TOTP (or recovery) code in the window
// locks the account (the risk engine's default threshold), and that 5th
// response is already the locked page; the earlier ones are the usual
// "code not accepted".
func TestWrongCodesLock(t *testing.T) {
	tests := []struct {
		name, field, value, reason string
	}{
		{"totp", "code", "000000", "totp-failures"},
		{"recovery", "recovery", "zzzz-zzzz-zzzz", "recovery-failures"},
	}
	threshold := risk.Config{}.WithDefaults().User[risk.SignalTOTPFailure].Count
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newLoginEnv(t)
			e.browser().loginNew("bob", "/")
			bob := e.userID("bob")
			b := e.browser()
			p := b.get(b.idpLogin("/", "bob"))
			p = b.get(p.location())
			csrf := scrape(t, reCSRF, p.body)
			for i := 1; i <= threshold; i++ {
				p = b.post(pathMFA, url.Values{"csrf": {csrf}, tc.field: {tc.value}})
				if i < threshold {
					if p.status != http.StatusUnauthorized || !strings.Contains(p.body, genericCodeError) {
						t.Fatalf("wrong code %d: %d\n%s", i, p.status, p.body)
					}
					continue
				}
			}
			l := mustLock(t, e.st, "user:"+bob)
			if l.Reason != tc.reason || !l.ExpiresAt.IsZero() {
				t.Fatalf("lock %+v", l)
			}
			lockedPage(t, p.status, p.body, lockedText, l.Ref)
			ev := e.mustAudit(audit.TypeRiskLock, tc.reason, audit.Deny)
			if ev.UserID != bob || ev.Ref != l.Ref || ev.Attrs["count"] != "5" {
				t.Fatalf("risk.lock %+v", ev)
			}
			// bob's first session was revoked; a correct code now gets
			// nowhere either.
			if n := e.sessionsOf(bob); n != 0 {
				t.Fatalf("%d live sessions", n)
			}
			b2 := e.browser()
			p = b2.get(b2.idpLogin("/", "bob"))
			lockedPage(t, p.status, p.body, lockedText, l.Ref)
		})
	}
}

// TestOIDCFailuresBlockSource: every kind of rejected callback counts
// against the source; the one reaching the threshold answers with the
// blocked page, and from then on /login itself refuses the source.
func TestOIDCFailuresBlockSource(t *testing.T) {
	e := newLoginEnv(t)
	other := e.browser()
	foreign := other.idpLogin("/", "bob") // a callback bound to another browser
	kinds := []struct {
		name string
		url  func(b *browser) string
	}{
		{"no state", func(*browser) string { return pathCallback + "?code=x" }},
		{"malformed state", func(*browser) string { return pathCallback + "?state=%00&code=x" }},
		{"unknown state", func(*browser) string { return pathCallback + "?state=" + strings.Repeat("a", 43) + "&code=x" }},
		{"IdP error without state", func(*browser) string { return pathCallback + "?error=access_denied" }},
		{"state of another browser", func(*browser) string { return foreign }},
		{"forged code", func(b *browser) string {
			u, _ := url.Parse(b.idpLogin("/", "bob"))
			q := u.Query()
			q.Set("code", "forged")
			u.RawQuery = q.Encode()
			return u.String()
		}},
	}
	if err := e.risk.SetConfig(risk.Config{SourceIP: risk.Threshold{Count: len(kinds), Window: 5 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	var p page
	for i, k := range kinds {
		p = b.get(k.url(b))
		if i < len(kinds)-1 && (p.status < 400 || p.status >= 500 || strings.Contains(p.body, blockText)) {
			t.Fatalf("%s: %d\n%s", k.name, p.status, p.body)
		}
	}
	l := mustLock(t, e.st, "ip:127.0.0.1")
	if l.Reason != risk.ReasonSourceIP || l.ExpiresAt.IsZero() {
		t.Fatalf("block %+v", l)
	}
	lockedPage(t, p.status, p.body, blockText, l.Ref)
	e.mustAudit(audit.TypeLoginCallback, risk.ReasonSourceBlocked, audit.Deny)
	// /login: refused before the IdP round trip.
	p = e.browser().get(pathLogin)
	lockedPage(t, p.status, p.body, blockText, l.Ref)
	if p.location() != "" {
		t.Fatalf("redirect to %q", p.location())
	}
	e.mustAudit(audit.TypeLoginStart, risk.ReasonSourceBlocked, audit.Deny)
	// No user was charged with the source's failures.
	ls, _ := e.risk.Locks(context.Background())
	if len(ls) != 1 {
		t.Fatalf("locks %+v", ls)
	}
}

// TestDenialPagesLookAlike: the locked page is the generic denial page
// with another sentence: same status, title, heading and structure.
func TestDenialPagesLookAlike(t *testing.T) {
	e, _ := newCoreEnv(t)
	generic := e.get(coreGrafana, "/admin", e.login(session.Record{}), nil)
	l, err := e.risk.Lock(context.Background(), coreAlice, "test", "admin")
	if err != nil {
		t.Fatal(err)
	}
	locked := httptest.NewRecorder()
	e.g.denyVerdict(locked, e.request(http.MethodGet, coreAccess, pathLogin, "", nil),
		risk.Verdict{Reason: risk.ReasonAccountLocked, Ref: l.Ref}, audit.Event{})
	lockedPage(t, locked.Code, locked.Body.String(), lockedText, l.Ref)
	if generic.Code != locked.Code || generic.Header().Get("Content-Type") != locked.Header().Get("Content-Type") {
		t.Fatalf("status/type %d %q vs %d %q", generic.Code, generic.Header().Get("Content-Type"), locked.Code, locked.Header().Get("Content-Type"))
	}
	shape := func(s string) string { // the markup without the paragraph's text
		i, j := strings.Index(s, "<p>"), strings.Index(s, "</p>")
		return s[:i] + s[j:]
	}
	if shape(generic.Body.String()) != shape(locked.Body.String()) {
		t.Fatalf("shapes differ:\n%s\n%s", generic.Body.String(), locked.Body.String())
	}
}

// TestLoginFailsClosed: with the store down, the login steps answer 503
// "state store unavailable" (the risk engine's reads fail closed too).
func TestLoginFailsClosed(t *testing.T) {
	e, _ := newCoreEnv(t)
	e.st.down.Store(true)
	for _, target := range []string{pathLogin, pathCallback + "?state=" + strings.Repeat("a", 43)} {
		w := e.get(coreAccess, target, "", nil)
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "state store unavailable") {
			t.Errorf("%s: %d\n%s", target, w.Code, w.Body.String())
		}
	}
}

// TestSignalsUseTrustedClientIP: failures are counted against the client
// address the gateway derives — the socket peer unless it is a trusted
// proxy — so X-Forwarded-For from anyone else moves nothing.
func TestSignalsUseTrustedClientIP(t *testing.T) {
	tests := []struct {
		name    string
		remote  string
		xff     []string // per request
		blocked string
		clean   []string
	}{
		{"untrusted peer, spoofed XFF", corePeer + ":4000", []string{"203.0.113.9", "203.0.113.9"}, corePeer, []string{"203.0.113.9"}},
		{"untrusted peer, rotating XFF", corePeer + ":4000", []string{"203.0.113.1", "203.0.113.2"}, corePeer, []string{"203.0.113.1", "203.0.113.2"}},
		{"trusted proxy", "10.0.0.1:4000", []string{"203.0.113.9", "203.0.113.9"}, "203.0.113.9", []string{"10.0.0.1"}},
		{"trusted proxy, client prepends a fake hop", "10.0.0.1:4000", []string{"192.0.2.1, 203.0.113.9", "192.0.2.2, 203.0.113.9"}, "203.0.113.9", []string{"192.0.2.1", "192.0.2.2", "10.0.0.1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newCoreEnvRisk(t, risk.Config{SourceIP: risk.Threshold{Count: len(tc.xff), Window: 5 * time.Minute}},
				func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
			var w *httptest.ResponseRecorder
			for _, xff := range tc.xff {
				r := e.request(http.MethodGet, coreAccess, pathCallback+"?code=x", "", http.Header{"X-Forwarded-For": {xff}})
				r.RemoteAddr = tc.remote
				w = e.serve(r)
			}
			l := mustLock(t, e.st, "ip:"+tc.blocked)
			lockedPage(t, w.Code, w.Body.String(), blockText, l.Ref)
			for _, c := range tc.clean {
				noLock(t, e.st, "ip:"+c)
			}
		})
	}
}
