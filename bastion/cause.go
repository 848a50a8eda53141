package bastion

import (
	"context"
	"errors"
)

// EndCause is why a connection ended. It is the cancel cause of the
// connection's context — the single path every bastion-initiated end
// takes (kill, revocation, idle, max duration, keepalive, recording
// failure, shutdown) — and it ends up in the recording trailer and the
// session-end audit event.
type EndCause struct {
	Code    string // stable reason code
	Message string // shown to the user (generic, no secrets)
	Detail  string // for audit/log only (e.g. the admin's kill reason)
	// Ref is the reference the user was shown, when the end has one
	// (it goes into the session-end audit event).
	Ref string
}

func (e *EndCause) Error() string { return "session ended: " + e.Code }

// End cause codes (stable).
const (
	EndClientClosed   = "client-closed"
	EndUpstreamClosed = "upstream-closed"
	EndUpstreamFailed = "upstream-failed"
	EndDenied         = "denied"
	EndListed         = "listed"
	EndIdle           = "idle-timeout"
	EndMaxDuration    = "max-session-duration"
	EndKeepalive      = "keepalive-timeout"
	EndRecording      = "recording-failed"
	EndKilled         = "killed"
	EndCertRevoked    = "cert-revoked"
	EndUserRevoked    = "user-revoked"
	EndShutdown       = "shutdown"
	// EndGrantRevoked: a just-in-time grant the session needed was
	// revoked (or could not be confirmed after a grants-changed event).
	EndGrantRevoked = "grant-revoked"
	// EndGrantExpired: a just-in-time grant the session needed expired.
	EndGrantExpired = "grant-expired"
)

var (
	causeClientClosed   = &EndCause{Code: EndClientClosed}
	causeUpstreamClosed = &EndCause{Code: EndUpstreamClosed, Message: "the connection to the target was lost"}
	causeDenied         = &EndCause{Code: EndDenied}
	causeListed         = &EndCause{Code: EndListed}
	causeIdle           = &EndCause{Code: EndIdle, Message: "idle timeout"}
	causeMaxDuration    = &EndCause{Code: EndMaxDuration, Message: "maximum session duration reached; log in again"}
	causeKeepalive      = &EndCause{Code: EndKeepalive, Message: "the client stopped answering keepalives"}
	causeRecording      = &EndCause{Code: EndRecording, Message: "the session recording could not be written, so the session was closed"}
	causeShutdown       = &EndCause{Code: EndShutdown, Message: "the bastion is shutting down"}
)

// KillCause is the cause for an administrator's kill.
func KillCause(reason string) *EndCause {
	return &EndCause{Code: EndKilled, Message: "terminated by an administrator", Detail: reason}
}

// causeOf returns the EndCause of a finished context (client-closed when
// the cause is something else, e.g. the parent context).
func causeOf(ctx context.Context) *EndCause {
	var ec *EndCause
	if errors.As(context.Cause(ctx), &ec) {
		return ec
	}
	if ctx.Err() != nil {
		return causeShutdown
	}
	return causeClientClosed
}
