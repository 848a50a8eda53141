package e2e

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// revocationBudget is how long a logout may take to reach another
// instance before the test fails. The design target is under a second;
// this shared 2-core machine gets slack, and the measured delay is logged.
const revocationBudget = 5 * time.Second

// TestRedisTwoInstances runs the login journey against two `serve`
// instances sharing one Redis (and the same keys and config): a session
// made on one works on the other, a logout on one is refused on the other,
// the TOTP-only second login works on the other, and a TOTP code used on
// one instance is refused on the other.
func TestRedisTwoInstances(t *testing.T) {
	t.Parallel()
	s := newSite(t, 2, map[string][]string{"carol": {"engineers"}, "dave": {"engineers"}})
	addr, prefix := harness.SharedRedis(t), harness.KeyPrefix(t)
	t.Cleanup(func() { archiveRedis(t, addr, prefix) }) // after both servers stopped
	store := harness.RedisStore(addr, prefix)
	a, b := s.start(0, store), s.start(1, store)
	anon := s.client(t)
	carol := s.userID("carol")

	bctx := harness.Browser(t, true)
	first := harness.LoginBrowser(t, bctx, a.URL(appHost, "/on-a"), s.users["carol"], nil)
	if !first.Enrolled || first.URL != a.URL(appHost, "/on-a") {
		t.Fatalf("login on gw-1: enrolled=%v, ended at %s (pages %v)\n%s", first.Enrolled, first.URL, first.Pages, tail(a.Output(), 3000))
	}
	cookie := harness.BrowserCookie(t, bctx, a.URL(appHost, "/"), sessionName)
	accessCookie := harness.BrowserCookie(t, bctx, a.AccessURL+"/", sessionName)
	if cookie == "" || accessCookie == "" {
		t.Fatalf("missing session cookies after login (app %v, access %v)", cookie != "", accessCookie != "")
	}

	// The session made on gw-1 works on gw-2: route host and access host.
	r := getWithCookie(anon, b.URL(appHost, "/on-b"), cookie)
	if r.StatusCode != 200 {
		t.Fatalf("gw-2 refused gw-1's session: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	checkIdentity(t, s, b, echo(t, r.Body), "carol", "app")
	if r := getWithCookie(anon, b.URL(accessHost, "/"), accessCookie); r.StatusCode != 200 || !strings.Contains(r.Body, carol) {
		t.Fatalf("gw-2 home with gw-1's session: %d", r.StatusCode)
	}
	harness.WaitAudit(t, b.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, Decision: audit.Allow, UserID: carol, PathContains: "/on-b"})

	// Logout on gw-1 (in the browser); gw-2 must refuse the session soon.
	browserLogout(t, bctx, a)
	loggedOut := time.Now()
	var delay time.Duration
	for {
		r := getWithCookie(anon, b.URL(appHost, "/poll-after-logout"), cookie, "Accept: application/json")
		if r.StatusCode == 401 {
			delay = time.Since(loggedOut)
			break
		}
		if r.StatusCode != 200 {
			t.Fatalf("gw-2 answered %d while polling after logout", r.StatusCode)
		}
		if time.Since(loggedOut) > revocationBudget {
			t.Fatalf("gw-2 still accepts the session %v after logout on gw-1", revocationBudget)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("logout on gw-1 was refused on gw-2 after %v (design target < 1s)", delay)
	harness.WaitAudit(t, a.AuditDir, harness.AuditQuery{Type: audit.TypeSessionEnd, UserID: carol, Reason: "logout"})
	harness.WaitAudit(t, b.AuditDir, harness.AuditQuery{Type: audit.TypeRequestRejected, Reason: "invalid-session", PathContains: "/poll-after-logout"})

	// Second login on gw-2: TOTP only; the new session works on gw-1.
	second := harness.LoginBrowser(t, bctx, b.URL(appHost, "/second-on-b"), s.users["carol"], first.TOTP)
	if second.Enrolled || !slices.Contains(second.Pages, "mfa") || second.URL != b.URL(appHost, "/second-on-b") {
		t.Fatalf("second login on gw-2: pages %v, enrolled %v, ended at %s", second.Pages, second.Enrolled, second.URL)
	}
	cookie2 := harness.BrowserCookie(t, bctx, b.URL(appHost, "/"), sessionName)
	if r := getWithCookie(anon, a.URL(appHost, "/back-on-a"), cookie2); r.StatusCode != 200 {
		t.Fatalf("gw-1 refused gw-2's new session: %d", r.StatusCode)
	}

	t.Run("totp-replay-across-instances", func(t *testing.T) { totpReplayAcross(t, s, a, b) })
}

// totpReplayAcross: dave enrols on gw-1 with the code of step S; on gw-2
// the same code is refused (the step is claimed in the shared store),
// while the next step's code is accepted.
func totpReplayAcross(t *testing.T, s *site, a, b *harness.Portcullis) {
	dave := s.userID("dave")
	l := s.client(t).LoginFlow(a.URL(appHost, "/dave-on-a"), s.users["dave"], nil, nil)
	if !l.Enrolled || l.Final.StatusCode != 200 {
		t.Fatalf("dave's enrolment on gw-1: enrolled=%v, %d at %s", l.Enrolled, l.Final.StatusCode, l.Final.Request.URL)
	}
	used := l.TOTP.Steps()
	if len(used) != 1 {
		t.Fatalf("enrolment used steps %v, want one", used)
	}
	c := s.client(t)
	atMFA := func(u *url.URL) bool { return u.Host == hostPort(accessHost, b.Port) && u.Path == "/mfa" }
	stopped := c.LoginFlow(b.URL(appHost, "/dave-on-b"), s.users["dave"], l.TOTP, atMFA)
	if !stopped.Final.IsRedirect() {
		t.Fatalf("gw-2 login did not reach the TOTP page: %d at %s", stopped.Final.StatusCode, stopped.Final.Request.URL)
	}
	page := c.Get(stopped.Final.Location().String())
	if harness.CurrentStep() > used[0]+1 {
		t.Fatalf("more than 30 s passed since enrolment: the replayed code would be refused as stale, proving nothing")
	}
	replay := c.PostCode(page, l.TOTP.CodeAt(t, used[0]))
	if replay.StatusCode != 401 || !strings.Contains(replay.Body, "not accepted") {
		t.Fatalf("gw-2 accepted a TOTP code already used on gw-1: %d %s", replay.StatusCode, replay.Header.Get("Location"))
	}
	if got := c.Cookie(b.AccessURL+"/", sessionName); got != "" {
		t.Fatalf("a session cookie was set after a replayed code")
	}
	harness.WaitAudit(t, b.AuditDir, harness.AuditQuery{Type: audit.TypeMFAVerify, UserID: dave, Decision: audit.Deny, Reason: "mfa-invalid"})

	// The next step's code works on gw-2: the refusal was the replay guard.
	ok := c.Follow(c.PostCode(replay, l.TOTP.Code(t)), nil)
	if ok.StatusCode != 200 || ok.Request.URL.Host != hostPort(appHost, b.Port) {
		t.Fatalf("fresh code on gw-2: %d at %s", ok.StatusCode, ok.Request.URL)
	}
	harness.WaitAudit(t, b.AuditDir, harness.AuditQuery{Type: audit.TypeSessionStart, UserID: dave, Reason: "login-complete"})
}

// archiveRedis copies everything the deployment stored under prefix into
// the secrets scan (the Redis counterpart of the embedded state file),
// then deletes it from the shared server.
func archiveRedis(t *testing.T, addr, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	var dump strings.Builder
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scan Redis keys: %v", err)
		return
	}
	for _, k := range keys {
		var v any
		var err error
		switch typ, _ := rdb.Type(ctx, k).Result(); typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "set":
			v, err = rdb.SMembers(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		default:
			v = "type " + typ
		}
		if err != nil {
			v = "unreadable: " + err.Error()
		}
		fmt.Fprintf(&dump, "%s = %v\n", k, v)
	}
	harness.Archive(t.Name()+"/redis", []byte(dump.String()))
	if len(keys) == 0 {
		t.Errorf("no Redis keys under %q: the deployment did not use the shared store", prefix)
		return
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Logf("delete test keys: %v", err)
	}
}
