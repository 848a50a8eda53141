package adminclient

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/gateway"
)

// User is one row of GET /api/admin/users.
type User struct {
	UserID      string    `json:"user_id"`
	Email       string    `json:"email"`
	Name        string    `json:"name"`
	Roles       []string  `json:"roles"`
	Groups      []string  `json:"groups"`
	MFAEnrolled bool      `json:"mfa_enrolled"`
	LastLogin   time.Time `json:"last_login"`
	LastIP      string    `json:"last_ip"`
	Sessions    int       `json:"sessions"`
}

// Session is one row of GET /api/admin/sessions.
type Session struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
	SourceIP  string    `json:"source_ip"`
}

// Explanation is the answer of GET /api/admin/explain.
type Explanation struct {
	Allow  bool     `json:"allow"`
	Reason string   `json:"reason"`
	Role   string   `json:"role"`
	Rule   string   `json:"rule"`
	UserID string   `json:"user_id"`
	Roles  []string `json:"roles"`
	App    string   `json:"app"`
	Method string   `json:"method"`
	Path   string   `json:"path"`
	IP     string   `json:"ip"`
}

// ExplainQuery asks what the policy would decide.
type ExplainQuery struct {
	User, App, Path, IP, Method string
	// Groups, when non-nil, replaces the groups last seen for the user.
	Groups []string
}

const prefix = "/api/admin/"

// Users lists users seen at login.
func Users() Request { return Request{Method: http.MethodGet, Path: prefix + "users"} }

// Sessions lists live sessions; user "" lists all.
func Sessions(user string) Request {
	r := Request{Method: http.MethodGet, Path: prefix + "sessions"}
	if user != "" {
		r.Query = url.Values{"user": {user}}
	}
	return r
}

type actionBody struct {
	Reason string `json:"reason,omitempty"`
}

// Revoke ends a session on every instance.
func Revoke(sessionID, reason string) Request {
	return Request{Method: http.MethodPost, Path: prefix + "sessions/" + url.PathEscape(sessionID) + "/revoke", Body: actionBody{reason}}
}

// MFAReset deletes a user's TOTP enrolment and recovery codes.
func MFAReset(userID, reason string) Request {
	return Request{Method: http.MethodPost, Path: prefix + "users/" + url.PathEscape(userID) + "/mfa-reset", Body: actionBody{reason}}
}

// Explain asks for a policy decision without making a request.
func Explain(q ExplainQuery) Request {
	v := url.Values{"user": {q.User}, "app": {q.App}, "path": {q.Path}, "ip": {q.IP}}
	if q.Method != "" {
		v.Set("method", q.Method)
	}
	if q.Groups != nil {
		v.Set("groups", strings.Join(q.Groups, ","))
	}
	return Request{Method: http.MethodGet, Path: prefix + "explain", Query: v}
}

// SSHSession is one row of GET /api/admin/ssh/sessions.
type SSHSession = bastion.SessionInfo

const sshPrefix = prefix + "ssh/"

// SSHSessions lists the live SSH sessions of the instance. A server
// without a bastion answers 404.
func SSHSessions() Request { return Request{Method: http.MethodGet, Path: sshPrefix + "sessions"} }

// Kill ends a live SSH session wherever it runs.
func Kill(sessionID, reason string) Request {
	return Request{Method: http.MethodPost, Path: sshPrefix + "sessions/" + url.PathEscape(sessionID) + "/kill", Body: actionBody{reason}}
}

// Watch streams a live SSH session's output (raw bytes) until it ends.
func Watch(sessionID string) Request {
	return Request{Method: http.MethodGet, Path: sshPrefix + "sessions/" + url.PathEscape(sessionID) + "/watch"}
}

// RevokeCert revokes SSH user certificates: the one with serial, or every
// one issued so far with key ID keyID (a user ID). Exactly one is set.
func RevokeCert(serial uint64, keyID, reason string) Request {
	return Request{Method: http.MethodPost, Path: sshPrefix + "certs/revoke", Body: struct {
		Serial uint64 `json:"serial,omitempty"`
		KeyID  string `json:"key_id,omitempty"`
		Reason string `json:"reason,omitempty"`
	}{serial, keyID, reason}}
}

// Lock is one account lock or source block, as GET /api/admin/locks
// lists it (the gateway's view type: one definition of the wire format).
// ExpiresAt is zero for account locks: they never expire.
type Lock = gateway.LockView

// LocksResponse is the answer of GET /api/admin/locks.
type LocksResponse = gateway.LocksResponse

// LockResponse is the answer of the lock and unlock calls.
type LockResponse = gateway.LockResponse

// Locks lists current account locks and source blocks.
func Locks() Request { return Request{Method: http.MethodGet, Path: prefix + "locks"} }

// LockUser locks an account on every instance (reason required). A user
// the server has never seen answers 404.
func LockUser(userID, reason string) Request {
	return Request{Method: http.MethodPost, Path: prefix + "locks/lock", Body: gateway.LockRequest{UserID: userID, Reason: reason}}
}

// Unlock lifts a lock or block: subject is a user ID, "user:<id>" or
// "ip:<address or prefix>" (reason required). Not locked answers 404.
func Unlock(subject, reason string) Request {
	return Request{Method: http.MethodPost, Path: prefix + "locks/unlock", Body: gateway.UnlockRequest{Subject: subject, Reason: reason}}
}
