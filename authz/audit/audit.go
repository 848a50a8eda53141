// Package audit is the audit trail: typed events with stable keys, a
// one-method Emitter, and the tamper-evident file log that is the system
// of record.
//
// FileLog appends each event as one JSON line to Dir/audit-<instance>.jsonl
// with a sequence number and the SHA-256 of the previous line (a hash
// chain), adds an Ed25519-signed checkpoint every N records or T seconds,
// and rewrites a signed head marker (audit-<instance>.head) after every
// group commit, so that editing, deleting, inserting, reordering or
// cutting off records is detected by Verify, offline, with only the public
// key. Writes are group-committed with fsync; Sync is a durability
// barrier; after a crash the chain continues from the last complete
// record. The formats are described in chain.go and head.go.
//
// Directory layout (one chain per instance; several instances may share a
// directory): audit-<instance>.jsonl (the trail), .head (head marker),
// .pub (public keys, a convenience copy for verify), and, only when no
// signing key is configured, .key (the private key). Verify groups files
// by the instance inside their records and orders them by first seq, so
// retention can later split the trail into several files and delete the
// oldest, recording a signed purge record (TypePurge) that Verify already
// accepts.
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
	Time      time.Time `json:"time"`
	Instance  string    `json:"instance,omitempty"`
	Type      string    `json:"type"`
	UserID    string    `json:"user_id,omitempty"`
	SourceIP  string    `json:"source_ip,omitempty"`
	SessionID string    `json:"session_id,omitempty"` // public session ID, never the cookie
	App       string    `json:"app,omitempty"`
	Target    string    `json:"target,omitempty"`
	Method    string    `json:"method,omitempty"`
	Path      string    `json:"path,omitempty"` // normalised path, no query string
	Decision  string    `json:"decision,omitempty"`
	// Role is the policy role that allowed a decision (access reviews
	// attribute use to grants with it); empty on denials and other events.
	Role   string            `json:"role,omitempty"`
	Reason string            `json:"reason,omitempty"` // stable reason code
	Ref    string            `json:"ref,omitempty"`    // reference ID shown to the user
	Actor  string            `json:"actor,omitempty"`  // admin who acted
	Attrs  map[string]string `json:"attrs,omitempty"`  // extra non-secret details
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
