package bastion

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/authz/audit"
)

// Fail closed on the audit trail. Every SSH session must be on record:
// while the trail cannot be written (a full disk, an I/O error, a
// directory made read-only), new connections are refused before the key
// exchange is used for anything (admit, with the message as the
// authentication banner), and a connection that authenticated just before
// the trail broke gets no session (setup). Live sessions go on: what they
// do is held in memory by the audit log's bounded backlog and written once
// the disk recovers. The check is one mutex-guarded read per connection.

// AuditHealth reports whether the audit trail can be written
// (*audit.FileLog). Healthy returns nil while writes succeed.
type AuditHealth interface {
	Healthy() error
}

var _ AuditHealth = (*audit.FileLog)(nil)

// ReasonAuditUnavailable is the refusal reason while the trail cannot be
// written.
const ReasonAuditUnavailable = "audit-unavailable"

// auditDownMessage is what the client is told.
const auditDownMessage = "the audit trail cannot be written, so new connections are refused; try again later."

// auditRefused refuses the connection at admission when the trail cannot
// be written; it reports whether it did. The refusal goes to the process
// log at error level (the trail may not hold it) and to the emitter.
func (a *authConn) auditRefused() bool {
	err := a.b.auditHealth.Healthy()
	if err == nil {
		return false
	}
	a.b.log.Error("audit trail cannot be written: refusing a new SSH connection", "source_ip", addrString(a.src), "err", err)
	a.admission = auditDownMessage
	a.auditRefusal(nil, "", ReasonAuditUnavailable, "")
	return true
}

// auditDown refuses a session at setup (the trail broke after the
// connection was admitted); it reports whether it did.
func (c *conn) auditDown() bool {
	err := c.b.auditHealth.Healthy()
	if err == nil {
		return false
	}
	ref := audit.NewRef(c.b.rand)
	ev := c.event(audit.TypeDecision)
	ev.Decision, ev.Reason, ev.Ref = audit.Deny, ReasonAuditUnavailable, ref
	c.b.audit.Emit(context.Background(), ev)
	c.b.log.Error("audit trail cannot be written: session refused", "session", c.id, "ref", ref, "err", err)
	c.mode = modeDenied
	c.userMsg = fmt.Sprintf("the audit trail cannot be written, so the session is refused (%s)", ref)
	return true
}
