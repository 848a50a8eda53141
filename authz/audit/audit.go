// Package audit is the audit trail: typed events with stable keys, a
// one-method Emitter, and sinks. This first version appends JSON lines to a
// file; a later issue adds hash chaining, signed checkpoints and retention.
//
// No secret, token, TOTP code, password or cookie may ever be put in an
// Event: fields are typed so that there is no place for them.
package audit

import (
	"context"
	"time"
)

// Event types (stable keys).
const (
	TypeLoginStart      = "login.start"       // OIDC redirect issued
	TypeLoginCallback   = "login.callback"    // OIDC callback verified or rejected
	TypeMFAEnrolStart   = "mfa.enrol.start"   //
	TypeMFAEnrolConfirm = "mfa.enrol.confirm" //
	TypeMFAVerify       = "mfa.verify"        // TOTP or recovery code checked
	TypeMFAReset        = "mfa.reset"         // admin reset of an enrolment
	TypeSessionStart    = "session.start"     //
	TypeSessionEnd      = "session.end"       // logout, expiry
	TypeSessionRevoke   = "session.revoke"    // admin revoke
	TypeDecision        = "decision"          // authz allow/deny
	TypeRequestRejected = "request.rejected"  // malformed input refused before authz (bad path, bad cookie…)
	TypeAdmin           = "admin"             // admin API action
	TypeConfigReload    = "config.reload"     //
	TypeRiskLock        = "risk.lock"         // account locked (signal, count and threshold in Attrs)
	TypeRiskBlock       = "risk.block"        // source address or network blocked for a while
	TypeRiskUnlock      = "risk.unlock"       // lock or block lifted by an admin
	TypeRiskAnomaly     = "risk.anomaly"      // new network, unusual hour, usage far above baseline
)

// Event is one audit record. Keys are stable; add fields, never rename.
type Event struct {
	Time      time.Time         `json:"time"`
	Instance  string            `json:"instance,omitempty"`
	Type      string            `json:"type"`
	UserID    string            `json:"user_id,omitempty"`
	SourceIP  string            `json:"source_ip,omitempty"`
	SessionID string            `json:"session_id,omitempty"` // public session ID, never the cookie
	App       string            `json:"app,omitempty"`
	Target    string            `json:"target,omitempty"`
	Method    string            `json:"method,omitempty"`
	Path      string            `json:"path,omitempty"` // normalised path, no query string
	Decision  string            `json:"decision,omitempty"`
	Reason    string            `json:"reason,omitempty"` // stable reason code
	Ref       string            `json:"ref,omitempty"`    // reference ID shown to the user
	Actor     string            `json:"actor,omitempty"`  // admin who acted
	Attrs     map[string]string `json:"attrs,omitempty"`  // extra non-secret details
}

// Decisions for Event.Decision.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Emitter is the only thing producers need. Emit must not block the
// caller for I/O beyond a bounded buffer; it fills Time and Instance when
// they are zero.
type Emitter interface {
	Emit(ctx context.Context, e Event)
}
