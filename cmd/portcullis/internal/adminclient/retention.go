package adminclient

import (
	"net/http"
	"net/url"

	"github.com/portcullis/portcullis/authz/audit"
)

// Retention and deletion calls. They are served on the admin socket only
// (the server's own handlers, next to the SSH ones): purging the trail
// and erasing a user are root-on-the-host operations.

// PurgeResult is the answer of POST /api/admin/purge.
type PurgeResult = audit.PurgeResult

// PurgeRequest is the body of POST /api/admin/purge.
type PurgeRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
}

// Purge deletes (dryRun: lists) the trail files and recordings that have
// outlived the configured retention, after a signed purge record.
func Purge(dryRun bool) Request {
	return Request{Method: http.MethodPost, Path: prefix + "purge", Body: PurgeRequest{DryRun: dryRun}}
}

// DeleteUserRequest is the body of POST /api/admin/users/{id}/delete.
type DeleteUserRequest struct {
	Reason string `json:"reason,omitempty"`
}

// DeleteUserResult is the answer of POST /api/admin/users/{id}/delete:
// what was found and removed. The audit trail keeps the user ID.
type DeleteUserResult struct {
	UserID          string `json:"user_id"`
	DirectoryEntry  bool   `json:"directory_entry"`   // the users list entry (email, name, groups, last login)
	MFAEnrolment    bool   `json:"mfa_enrolment"`     // the TOTP secret
	RecoveryCodes   int    `json:"recovery_codes"`    // unused recovery codes removed
	Sessions        int    `json:"sessions"`          // web sessions revoked on every instance
	SSHCertsRevoked bool   `json:"ssh_certs_revoked"` // every certificate issued to the user so far (key ID)
	RiskProfile     bool   `json:"risk_profile"`      // login profile and usage baseline
	// AccessRecords counts the just-in-time access requests (any state:
	// they hold the user's reasons) and grants removed.
	AccessRecords int `json:"access_records"`
	// Locked: an account lock exists. It is kept: a lock is a security
	// record, and lifting it is a separate, audited decision (unlock).
	Locked bool `json:"locked"`
}

// DeleteUser removes everything stored about a user (TOTP secret,
// recovery codes, web sessions, SSH certificates, risk profile,
// just-in-time access requests and grants, users entry) in one call. A user of whom nothing is stored answers 404.
func DeleteUser(userID, reason string) Request {
	return Request{Method: http.MethodPost, Path: prefix + "users/" + url.PathEscape(userID) + "/delete", Body: DeleteUserRequest{Reason: reason}}
}
