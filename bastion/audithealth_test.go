package bastion

import (
	"errors"
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

// TestAuditUnwritableRefusesSSH: while the trail cannot be written, a new
// connection is refused with a clear message (a valid certificate or
// not), and nothing it tries is reported to the risk engine; once the
// trail recovers, connections work again.
func TestAuditUnwritableRefusesSSH(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.health.set(errors.New("write audit-test-1.jsonl: no space left on device"))
	d := e.dial("root@db-1", certAuth(t, e.alice()))
	if d.err == nil {
		d.c.Close()
		t.Fatal("authenticated while the audit trail cannot be written")
	}
	if !strings.Contains(d.banner, auditDownMessage) {
		t.Fatalf("banner %q, want %q", d.banner, auditDownMessage)
	}
	if ev := e.waitAudit(TypeSSHAuth, ReasonAuditUnavailable); ev.Decision != audit.Deny {
		t.Fatalf("audit %+v", ev)
	}
	if got := e.spy.reported(); len(got) != 0 {
		t.Fatalf("attempts were reported to the risk engine: %+v", got)
	}
	r := e.ssh(e.alice(), "root@db-1", "echo reached-target")
	if r.code == 0 || strings.Contains(r.stdout, "reached-target") {
		t.Fatalf("OpenSSH got through: %+v", r)
	}

	e.health.set(nil)
	if r := e.ssh(e.alice(), "root@db-1", "echo back"); r.code != 0 || strings.TrimSpace(r.stdout) != "back" {
		t.Fatalf("after the trail recovered: %+v", r)
	}
}
