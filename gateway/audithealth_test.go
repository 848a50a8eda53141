package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
)

// auditHealthFake stands in for the FileLog's health check.
type auditHealthFake struct {
	mu  sync.Mutex
	err error
}

func (f *auditHealthFake) Healthy() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *auditHealthFake) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// TestAuditUnwritableRefusesLogin: while the trail cannot be written, no
// login starts, no callback or second factor is accepted and no session
// is created (503, the generic page); sessions that exist go on being
// served; /healthz says so; once the trail recovers, logins work again.
func TestAuditUnwritableRefusesLogin(t *testing.T) {
	e := newLoginEnv(t)
	rd := e.appURL("/dash")

	// Logged in before the trouble.
	old := e.browser()
	_, done := old.loginNew("bob", rd)
	old.get(done.location())

	// Half-way through a login when the trail breaks: past the IdP, at
	// the enrolment page.
	mid := e.browser()
	if p := mid.get(mid.idpLogin(rd, "alice")); p.location() != pathEnrol {
		t.Fatalf("callback: %d %q", p.status, p.location())
	}
	enrolPage := mid.get(pathEnrol)
	secret := scrape(t, reSecret, enrolPage.body)
	// Back from the IdP, callback not yet visited.
	back := e.browser()
	callback := back.idpLogin(rd, "carol")

	e.health.set(errors.New("write audit-gw-test.jsonl: no space left on device"))
	sessionsBefore := len(e.audit.Find(audit.TypeSessionStart, ""))

	for name, p := range map[string]page{
		"login start": e.browser().get(pathLogin + "?rd=" + url.QueryEscape(rd)),
		"callback":    back.get(callback),
		"enrol code":  mid.post(pathEnrol, url.Values{"csrf": {scrape(t, reCSRF, enrolPage.body)}, "code": {e.code(secret)}}),
	} {
		if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "Reference") && !strings.Contains(p.body, "<code>") {
			t.Errorf("%s while the trail cannot be written: %d\n%s", name, p.status, p.body)
		}
	}
	if got := len(e.audit.Find(audit.TypeSessionStart, "")); got != sessionsBefore {
		t.Errorf("%d session events while the trail was down", got-sessionsBefore)
	}
	if ev := e.mustAudit(audit.TypeLoginStart, reasonAuditDown, audit.Deny); ev.Ref == "" {
		t.Errorf("refusal without a reference: %+v", ev)
	}
	if p := old.get(rd); p.status != http.StatusOK {
		t.Errorf("an existing session was refused: %d", p.status)
	}
	if p := old.get(e.origin + "/healthz"); p.status != http.StatusOK || !strings.Contains(p.body, "degraded: audit trail cannot be written") {
		t.Errorf("healthz: %d %q", p.status, p.body)
	}

	e.health.set(nil)
	if p := e.browser().get(pathLogin + "?rd=" + url.QueryEscape(rd)); p.status != http.StatusFound {
		t.Errorf("login after the trail recovered: %d", p.status)
	}
	if p := old.get(e.origin + "/healthz"); strings.TrimSpace(p.body) != "ok" {
		t.Errorf("healthz after recovery: %q", p.body)
	}
}
