package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// TestLoginBrowser is the whole user journey in headless Chromium against
// one instance with the embedded store: OIDC login at the real
// oidc-provider, TOTP enrolment (secret read from the page), the dashboard
// with the right identity headers and a verifiable JWT assertion, logout,
// and a second login that needs only a TOTP code.
func TestLoginBrowser(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, map[string][]string{"bob": {"engineers"}})
	p := s.start(0, "")
	bctx := harness.Browser(t, true)
	uid := s.userID("bob")

	start := p.URL(appHost, "/dashboard")
	first := harness.LoginBrowser(t, bctx, start, s.users["bob"], nil)
	if !first.Enrolled || len(first.RecoveryCodes) != 10 {
		t.Fatalf("first login: enrolled=%v with %d recovery codes (pages %v); want enrolment with 10 codes",
			first.Enrolled, len(first.RecoveryCodes), first.Pages)
	}
	if first.URL != start {
		t.Fatalf("first login ended at %s, want the dashboard %s\n%s", first.URL, start, tail(p.Output(), 3000))
	}
	checkIdentity(t, s, p, browserEcho(t, bctx), "bob", "app")
	cookie := harness.BrowserCookie(t, bctx, p.URL(appHost, "/"), sessionName)
	if cookie == "" {
		t.Fatal("no session cookie on the app host after login")
	}
	harness.WaitAudit(t, p.AuditDir, harness.AuditQuery{Type: audit.TypeMFAEnrolConfirm, UserID: uid, Decision: audit.Allow})
	started := harness.WaitAudit(t, p.AuditDir, harness.AuditQuery{Type: audit.TypeSessionStart, UserID: uid, Reason: "login-complete"})
	harness.WaitAudit(t, p.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, UserID: uid, App: "app", Decision: audit.Allow, PathContains: "/dashboard"})

	browserLogout(t, bctx, p)
	harness.WaitAudit(t, p.AuditDir, harness.AuditQuery{Type: audit.TypeSessionEnd, UserID: uid, SessionID: started.SessionID, Reason: "logout"})

	// The session is gone on the route host too: its cookie now leads to
	// the login page, and an API client gets 401.
	anon := s.client(t)
	if r := getWithCookie(anon, p.URL(appHost, "/after-logout"), cookie); !isLoginRedirect(p, r) {
		t.Fatalf("after logout the old cookie got %d %s, want a redirect to login", r.StatusCode, r.Header.Get("Location"))
	}
	if r := getWithCookie(anon, p.URL(appHost, "/after-logout"), cookie, "Accept: application/json"); r.StatusCode != 401 {
		t.Fatalf("after logout an API call with the old cookie got %d, want 401", r.StatusCode)
	}
	harness.WaitAudit(t, p.AuditDir, harness.AuditQuery{Type: audit.TypeRequestRejected, Reason: "invalid-session", PathContains: "/after-logout"})

	// Second login: the IdP still knows the browser, Portcullis asks only
	// for a TOTP code (the next step: the enrolment used this one).
	second := harness.LoginBrowser(t, bctx, p.URL(appHost, "/second"), s.users["bob"], first.TOTP)
	if second.Enrolled || !slices.Contains(second.Pages, "mfa") || second.URL != p.URL(appHost, "/second") {
		t.Fatalf("second login: pages %v, enrolled %v, ended at %s; want the TOTP page only, then the app",
			second.Pages, second.Enrolled, second.URL)
	}
	checkIdentity(t, s, p, browserEcho(t, bctx), "bob", "app")
	cookie2 := harness.BrowserCookie(t, bctx, p.URL(appHost, "/"), sessionName)
	if cookie2 == "" || cookie2 == cookie {
		t.Fatalf("second login kept the session cookie: a new login must issue a new session ID")
	}
	again := harness.WaitAudit(t, p.AuditDir, harness.AuditQuery{Type: audit.TypeSessionStart, UserID: uid, Reason: "login-complete", Since: started.Time.Add(time.Nanosecond)})
	if again.SessionID == started.SessionID || again.Attrs["mfa_method"] != "totp" {
		t.Fatalf("second session.start %+v: want a new session ID and mfa_method totp", again)
	}

	t.Run("streaming", func(t *testing.T) { checkStreaming(t, s, p, cookie2) })
}

// browserLogout clicks "Sign out" on the access host's home page.
func browserLogout(t *testing.T, bctx context.Context, p *harness.Portcullis) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(p.AccessURL+"/")); err != nil {
		t.Fatalf("open home: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#logout"))); err != nil {
		t.Fatalf("click sign out: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil || !strings.Contains(text, "signed out") {
		t.Fatalf("after sign out the page says %q (%v)", text, err)
	}
}

// browserEcho reads the upstream's echo from the dashboard page.
func browserEcho(t *testing.T, bctx context.Context) harness.Echo {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
	defer cancel()
	txt, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#echo")))
	if err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	return echo(t, txt)
}
