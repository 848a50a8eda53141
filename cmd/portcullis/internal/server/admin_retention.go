package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// Retention and deletion on the admin socket (only there: purging the
// trail and erasing a user are operations for root on the server host):
//
//	POST /api/admin/purge                {"dry_run"}  → 200 audit.PurgeResult
//	POST /api/admin/users/{id}/delete    {"reason"}   → 200 adminclient.DeleteUserResult, 404 when nothing is stored
//
// Both are audited with the actor (local-admin) and made durable in the
// trail before they are acknowledged.
const (
	purgePath       = "/api/admin/purge"
	usersPath       = "/api/admin/users/"
	deleteUserSufx  = "/delete"
	maxAdminUserID  = 512
	maxAdminReason  = 200
	userDeletedWhy  = "user-deleted"
	reasonUserDel   = "user-delete"
	reasonPurge     = "purge"
	reasonPurgeDry  = "purge-dry-run"
	maxAdminReqBody = 4096
)

// retentionAdmin serves the purge and delete-user calls and hands
// everything else to next.
func (in *Instance) retentionAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if p == purgePath {
			in.purgeCall(w, r)
			return
		}
		if rest, ok := strings.CutPrefix(p, usersPath); ok {
			if seg, ok := strings.CutSuffix(rest, deleteUserSufx); ok && seg != "" && !strings.Contains(seg, "/") {
				in.deleteUserCall(w, r, seg)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// decodeAdminBody reads a small JSON object into v; an empty body is the
// zero value. Unknown fields are refused.
func decodeAdminBody(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxAdminReqBody+1))
	if err != nil {
		return err
	}
	if len(data) > maxAdminReqBody {
		return errors.New("body too large")
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

func (in *Instance) purgeCall(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Reason: reasonPurge, Method: r.Method, Path: purgePath}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		in.adminFail(w, r, http.StatusMethodNotAllowed, "method not allowed", nil, ev)
		return
	}
	var req adminclient.PurgeRequest
	if err := decodeAdminBody(r, &req); err != nil {
		in.adminFail(w, r, http.StatusBadRequest, "malformed request", err, ev)
		return
	}
	if req.DryRun {
		ev.Reason = reasonPurgeDry
	}
	res, err := in.Purge(r.Context(), localActor, req.DryRun)
	ev.Attrs = purgeAttrs(res)
	if err != nil {
		in.adminFail(w, r, http.StatusInternalServerError, "purge failed", err, ev)
		return
	}
	ev.Decision = audit.Allow
	in.emitAdmin(r, ev)
	if err := audit.Sync(r.Context(), in.emit); err != nil {
		in.adminFail(w, r, http.StatusServiceUnavailable, "audit trail unavailable", err, audit.Event{Reason: ev.Reason, Method: r.Method, Path: purgePath})
		return
	}
	writeAdminJSON(w, http.StatusOK, res)
}

func purgeAttrs(res audit.PurgeResult) map[string]string {
	a := map[string]string{
		"trail_files": strconv.Itoa(len(res.Files)),
		"records":     strconv.FormatUint(res.Records, 10),
		"recordings":  strconv.Itoa(len(res.Recordings)),
	}
	if res.RecordSeq != 0 {
		a["purge_record_seq"] = strconv.FormatUint(res.RecordSeq, 10)
	}
	return a
}

func (in *Instance) deleteUserCall(w http.ResponseWriter, r *http.Request, escaped string) {
	ev := audit.Event{Reason: reasonUserDel, Method: r.Method, Path: r.URL.Path}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		in.adminFail(w, r, http.StatusMethodNotAllowed, "method not allowed", nil, ev)
		return
	}
	user, err := url.PathUnescape(escaped)
	if err != nil || !printable(user, maxAdminUserID) {
		in.adminFail(w, r, http.StatusBadRequest, "invalid user ID", err, ev)
		return
	}
	ev.UserID, ev.Target = user, user
	var req adminclient.DeleteUserRequest
	if err := decodeAdminBody(r, &req); err != nil {
		in.adminFail(w, r, http.StatusBadRequest, "malformed request", err, ev)
		return
	}
	if req.Reason != "" && !printable(req.Reason, maxAdminReason) {
		in.adminFail(w, r, http.StatusBadRequest, "invalid reason", nil, ev)
		return
	}
	res, found, err := in.DeleteUser(r.Context(), user)
	ev.Attrs = deleteAttrs(res, req.Reason)
	switch {
	case errors.Is(err, mfa.ErrInvalidUser), errors.Is(err, access.ErrInvalid):
		in.adminFail(w, r, http.StatusBadRequest, "invalid user ID", err, ev)
		return
	case errors.Is(err, store.ErrUnavailable):
		in.adminFail(w, r, http.StatusServiceUnavailable, store.ErrUnavailable.Error(), err, ev)
		return
	case err != nil:
		in.adminFail(w, r, http.StatusInternalServerError, "delete failed", err, ev)
		return
	case !found:
		in.adminFail(w, r, http.StatusNotFound, "nothing is stored for this user ID", nil, ev)
		return
	}
	ev.Decision = audit.Allow
	in.emitAdmin(r, ev)
	if err := audit.Sync(r.Context(), in.emit); err != nil {
		in.adminFail(w, r, http.StatusServiceUnavailable, "audit trail unavailable", err, audit.Event{Reason: reasonUserDel, UserID: user, Method: r.Method, Path: r.URL.Path})
		return
	}
	writeAdminJSON(w, http.StatusOK, res)
}

func deleteAttrs(res adminclient.DeleteUserResult, reason string) map[string]string {
	a := map[string]string{
		"directory_entry":   strconv.FormatBool(res.DirectoryEntry),
		"mfa_enrolment":     strconv.FormatBool(res.MFAEnrolment),
		"recovery_codes":    strconv.Itoa(res.RecoveryCodes),
		"sessions":          strconv.Itoa(res.Sessions),
		"ssh_certs_revoked": strconv.FormatBool(res.SSHCertsRevoked),
		"risk_profile":      strconv.FormatBool(res.RiskProfile),
		"access_records":    strconv.Itoa(res.AccessRecords),
		"locked":            strconv.FormatBool(res.Locked),
	}
	if reason != "" {
		a["note"] = reason
	}
	return a
}

// printable accepts short UTF-8 without control characters.
func printable(s string, max int) bool {
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}

// riskKeys are the ephemeral records authz/risk keeps per user: the login
// profile (profile.go), the usage baseline (usage.go) and the epoch of
// the user's failure windows (window.go). The delete-user test writes
// them through the risk engine and checks that none survives, so a
// renamed key fails it.
func riskKeys(userID string) []string {
	return []string{"risk-profile:" + userID, "risk-baseline:" + userID, "risk-epoch:" + risk.UserSubject(userID)}
}

// DeleteUser removes what the store holds about userID: web sessions
// (revoked on every instance through the feed), SSH certificates issued
// so far (revoked by key ID; live SSH sessions end), the TOTP secret and
// recovery codes, just-in-time access requests and grants (a grant ends
// at once: its removal is announced like a revocation), the risk engine's
// profile, baseline and window epoch, and the users entry — access first,
// data after, the users entry last so that a retry after a store failure
// still finds the user. An account
// lock is kept (Locked reports it). found is false, and nothing is done,
// when none of these exist.
//
// Short-lived counters keyed by the user ID (failure windows, usage
// counters, used TOTP steps) cannot be deleted through the store's
// interface; they expire by themselves within hours.
func (in *Instance) DeleteUser(ctx context.Context, userID string) (res adminclient.DeleteUserResult, found bool, err error) {
	res.UserID = userID
	st := in.Store
	unavailable := func(what string, err error) error {
		if errors.Is(err, store.ErrUnavailable) || errors.Is(err, mfa.ErrInvalidUser) || errors.Is(err, access.ErrInvalid) {
			return fmt.Errorf("delete user: %s: %w", what, err)
		}
		return fmt.Errorf("delete user: %s: %w: %w", what, store.ErrUnavailable, err)
	}
	notFound := func(err error) bool { return errors.Is(err, store.ErrNotFound) }

	// What there is.
	if _, err := st.GetUser(ctx, userID); err == nil {
		res.DirectoryEntry = true
	} else if !notFound(err) {
		return res, false, unavailable("users entry", err)
	}
	if res.MFAEnrolment, err = in.MFA.Enrolled(ctx, userID); err != nil {
		return res, false, unavailable("enrolment", err)
	}
	if res.RecoveryCodes, err = st.RecoveryCodesLeft(ctx, userID); err != nil {
		return res, false, unavailable("recovery codes", err)
	}
	sessions, err := in.Sessions.List(ctx, userID)
	if err != nil {
		return res, false, unavailable("sessions", err)
	}
	res.Sessions = len(sessions)
	for _, k := range riskKeys(userID)[:2] {
		if _, err := st.GetEphemeral(ctx, k); err == nil {
			res.RiskProfile = true
		} else if !notFound(err) {
			return res, false, unavailable("risk profile", err)
		}
	}
	if _, err := st.GetLock(ctx, risk.UserSubject(userID)); err == nil {
		res.Locked = true
	} else if !notFound(err) {
		return res, false, unavailable("lock", err)
	}
	accessRecords, err := in.countAccess(ctx, userID)
	if err != nil {
		return res, false, unavailable("access requests and grants", err)
	}
	if !res.DirectoryEntry && !res.MFAEnrolment && res.RecoveryCodes == 0 && res.Sessions == 0 && !res.RiskProfile && accessRecords == 0 {
		return res, false, nil
	}

	// Access first.
	if err := in.Sessions.RevokeUser(ctx, userID, userDeletedWhy); err != nil {
		return res, true, unavailable("revoke sessions", err)
	}
	if in.CertRevocations != nil {
		if err := in.CertRevocations.RevokeKeyID(ctx, userID, userDeletedWhy); err != nil {
			return res, true, unavailable("revoke SSH certificates", err)
		}
		res.SSHCertsRevoked = true
	}
	if in.Access != nil {
		// Requests first (inside DeleteUser), so no grant is made from
		// one again; grants after, each audited and announced.
		if res.AccessRecords, err = in.Access.DeleteUser(ctx, userID); err != nil {
			return res, true, unavailable("access requests and grants", err)
		}
	}
	// Then the data.
	if err := in.MFA.Reset(ctx, userID); err != nil {
		return res, true, unavailable("TOTP enrolment", err)
	}
	for _, k := range riskKeys(userID) {
		if err := st.DeleteEphemeral(ctx, k); err != nil && !notFound(err) {
			return res, true, unavailable("risk profile", err)
		}
	}
	if err := st.DeleteUser(ctx, userID); err != nil && !notFound(err) {
		return res, true, unavailable("users entry", err)
	}
	in.log.Info("user deleted", "user_id", userID, "sessions", res.Sessions, "access_records", res.AccessRecords, "locked", res.Locked)
	return res, true, nil
}

// countAccess counts the access requests (any state) and the active
// grants of userID, to tell whether anything is stored about them.
func (in *Instance) countAccess(ctx context.Context, userID string) (int, error) {
	if in.Access == nil {
		return 0, nil
	}
	reqs, err := in.Access.ListRequests(ctx)
	if err != nil {
		return 0, err
	}
	grants, err := in.Access.ListGrants(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range reqs {
		if r.UserID == userID {
			n++
		}
	}
	for _, g := range grants {
		if g.UserID == userID {
			n++
		}
	}
	return n, nil
}
