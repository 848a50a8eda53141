package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// storeDownMessage is what a refusal for an unreachable store says.
const storeDownMessage = "state store unavailable"

// TestRiskStoreDown: with locks in a private Redis that persists (AOF,
// fsync always) — one raised by wrong TOTP codes, one by an admin —
// Redis is killed: a login is refused with 503 and the clear message,
// and an established session too (store_grace 0, the default). Redis is
// restarted on the same port from its files: both locks are in force
// (the locked page with each lock's reference; admin locks lists them),
// and other users log in again.
func TestRiskStoreDown(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, map[string][]string{"vera": {"engineers"}, "walt": {"engineers"}, "xena": {"engineers"}})
	rds := harness.StartPrivateRedis(t, true)
	prefix := harness.KeyPrefix(t)
	t.Cleanup(func() { archiveRedis(t, rds.Addr, prefix) }) // after the server stopped, before Redis stops
	spec := s.spec(0, harness.RedisStore(rds.Addr, prefix))
	spec.GatewayExtra = "store_grace: 0s\n"
	p := harness.StartPortcullis(t, spec.YAML())
	rs := &riskSite{site: s, a: p, b: p}

	// walt: locked by wrong codes; vera: locked by an admin; xena: a
	// live session.
	_, waltOTP, _ := rs.login(t, p, "127.0.50.1", "walt", nil)
	rs.lockByWrongCodes(t, p, "127.0.50.1", "walt", waltOTP)
	walt := rs.waitLockEvent(t, s.userID("walt"))
	_, veraOTP, _ := rs.login(t, p, "127.0.51.1", "vera", nil)
	p.Admin(t, "lock", s.userID("vera"), "--reason", "e2e: suspicious")
	vera := harness.WaitAudit(t, p.AuditDir, harness.AuditQuery{Type: audit.TypeRiskLock, UserID: s.userID("vera")})
	anon := rs.clientFrom(t, "127.0.52.1")
	_, xenaOTP, xenaCookie := rs.login(t, p, "127.0.52.1", "xena", nil)
	if r := anon.Do(withCookie(p.URL(appHost, "/before-stop"), xenaCookie)); r.StatusCode != 200 {
		t.Fatalf("xena's session before the stop: %d", r.StatusCode)
	}
	locksBefore := p.Locks(t)

	rds.Stop()
	stopped := time.Now()
	// A login attempt: 503 with the message, wherever the flow first
	// needs the store.
	l := rs.clientFrom(t, "127.0.53.1").LoginFlow(p.URL(appHost, "/while-down"), s.users["xena"], nil, nil)
	if l.Final.StatusCode != 503 || !strings.Contains(l.Final.Body, storeDownMessage) {
		t.Errorf("login with Redis down: %d at %s, want 503 with %q\n%s", l.Final.StatusCode, l.Final.Request.URL, storeDownMessage, tail(l.Final.Body, 2000))
	}
	refused := eventually(t, "xena's established session refused while the store is down", func() bool {
		r, err := anon.Try(withCookie(p.URL(appHost, "/while-down"), xenaCookie))
		return err == nil && r.StatusCode == 503
	})
	t.Logf("with Redis down: login refused with 503; established session refused %v after the stop (store_grace 0)",
		refused.Sub(stopped).Round(time.Millisecond))

	rds.Start(true)
	restarted := time.Now()
	// The first requests may still meet a reconnecting client.
	var final *harness.Response
	back := eventually(t, "a login answered after the restart", func() bool {
		final = rs.clientFrom(t, "127.0.54.1").LoginFlow(p.URL(appHost, "/after-restart"), s.users["vera"], veraOTP, nil).Final
		return final.StatusCode != 503
	})
	t.Logf("Redis restarted: logins answered again after %v", back.Sub(restarted).Round(time.Millisecond))
	wantLocked(t, "vera's login after the restart", final, vera.Ref)
	l = rs.clientFrom(t, "127.0.54.2").LoginFlow(p.URL(appHost, "/after-restart"), s.users["walt"], waltOTP, nil)
	wantLocked(t, "walt's login after the restart", l.Final, walt.Ref)

	after := p.Locks(t)
	for _, login := range []string{"vera", "walt"} {
		if _, ok := harness.FindLock(after, rs.subject(login)); !ok {
			t.Errorf("%s's lock is gone after the Redis restart; before: %+v, after: %+v", login, locksBefore, after)
		}
	}
	// Not everything is refused: xena's session is served again once the
	// gateway's store pinger (every second) has seen Redis back, and she
	// can log in anew.
	served := eventually(t, "xena's session served again after the restart", func() bool {
		r, err := anon.Try(withCookie(p.URL(appHost, "/after-restart"), xenaCookie))
		return err == nil && r.StatusCode == 200
	})
	t.Logf("xena's established session served again %v after the restart", served.Sub(restarted).Round(time.Millisecond))
	rs.login(t, p, "127.0.55.1", "xena", xenaOTP)
}
