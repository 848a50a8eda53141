package gateway

import (
	"net/http"

	"github.com/portcullis/portcullis/authz/audit"
)

// Fail closed on the audit trail. Every login and every credential the
// gateway issues must be on record; when the trail cannot be written (a
// full disk, an I/O error, a directory made read-only), new logins,
// sessions, SSH certificates and SSH approvals are refused with 503 until
// it recovers. The check sits in gate (risk.go), which every such path
// already passes before it verifies a factor or issues anything; requests
// of sessions that already exist are still served (what they do is held
// in memory by the audit log's bounded backlog, and written once the disk
// recovers). It costs one mutex-guarded read per login step, nothing per
// proxied request.

// AuditHealth reports whether the audit trail can be written
// (*audit.FileLog). Healthy returns nil while writes succeed, else the
// error that stops them.
type AuditHealth interface {
	Healthy() error
}

var _ AuditHealth = (*audit.FileLog)(nil)

// reasonAuditDown is the refusal reason while the trail cannot be written.
const reasonAuditDown = "audit-unavailable"

// auditWritable answers r with 503 and returns false when the trail
// cannot be written. The refusal goes to the process log at error level
// (the trail itself may not hold it) and, as every refusal, to the audit
// emitter, which keeps it for when the disk recovers.
func (g *Gateway) auditWritable(w http.ResponseWriter, r *http.Request, ev audit.Event) bool {
	err := g.deps.AuditHealth.Healthy()
	if err == nil {
		return true
	}
	g.fail(w, r, http.StatusServiceUnavailable, reasonAuditDown, err, ev)
	return false
}

// auditHealthNote is the /healthz line while the trail cannot be written.
func (g *Gateway) auditHealthNote() string {
	if err := g.deps.AuditHealth.Healthy(); err != nil {
		return "degraded: audit trail cannot be written, new logins are refused: " + err.Error() + "\n"
	}
	return ""
}
