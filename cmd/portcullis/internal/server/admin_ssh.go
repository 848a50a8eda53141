package server

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// SSH admin API paths on the admin socket, next to the gateway's
// /api/admin/ endpoints:
//
//	GET  /api/admin/ssh/sessions             live SSH sessions of every instance (?local=1: this one)
//	GET  /api/admin/ssh/sessions/{id}        one of them
//	POST /api/admin/ssh/sessions/{id}/kill   {"reason"} → 204, ends it wherever it runs
//	GET  /api/admin/ssh/sessions/{id}/watch  its output, live, until it ends
//	POST /api/admin/ssh/certs/revoke         {"serial"} or {"key_id"}, and "reason"
const (
	sshAdminPrefix = "/api/admin/ssh"
	certRevokePath = sshAdminPrefix + "/certs/revoke"
	// localActor names whoever holds the 0600 admin socket in audit
	// events (the gateway's admin API uses the same name).
	localActor = "local-admin"
)

// AdminHandler is the admin socket's handler: the gateway's admin API,
// plus the bastion's under /api/admin/ssh/ when a bastion is configured.
// It dispatches on the escaped path by prefix rather than through a
// ServeMux, which would redirect the gateway's %2F-escaped user IDs to a
// "cleaned" path.
func (in *Instance) AdminHandler() http.Handler {
	gw := in.retentionAdmin(in.Gateway.AdminHandler()) // purge, delete-user: admin_retention.go
	if in.Bastion == nil {
		return gw // /api/admin/ssh/… answers the gateway's 404: no bastion here
	}
	ssh := http.StripPrefix(sshAdminPrefix, in.Bastion.AdminHandler(func(*http.Request) string { return localActor }))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		switch {
		case p == certRevokePath:
			in.revokeCert(w, r)
		case strings.HasPrefix(p, sshAdminPrefix+"/"):
			if strings.HasSuffix(p, "/watch") {
				// A watch streams for as long as the session lives: lift
				// the admin server's read and write timeouts for it.
				rc := http.NewResponseController(w)
				_ = rc.SetReadDeadline(time.Time{})
				_ = rc.SetWriteDeadline(time.Time{})
			}
			if r.Method == http.MethodGet && p == sshAdminPrefix+"/sessions" {
				in.emitAdmin(r, audit.Event{Reason: "ssh-sessions-list", Decision: audit.Allow})
			}
			ssh.ServeHTTP(w, r)
		default:
			gw.ServeHTTP(w, r)
		}
	})
}

// revokeCertRequest is the body of POST /api/admin/ssh/certs/revoke:
// exactly one of Serial and KeyID.
type revokeCertRequest struct {
	Serial uint64 `json:"serial,omitempty"`
	KeyID  string `json:"key_id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// revokeCert revokes SSH user certificates by serial or key ID (user ID).
// The revocation is checked on every new connection on every instance,
// and its feed event ends the live sessions it covers.
func (in *Instance) revokeCert(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Reason: "ssh-cert-revoke", Method: r.Method, Path: certRevokePath}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		in.adminFail(w, r, http.StatusMethodNotAllowed, "method not allowed", nil, ev)
		return
	}
	var req revokeCertRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		in.adminFail(w, r, http.StatusBadRequest, "malformed request", err, ev)
		return
	}
	switch {
	case (req.Serial == 0) == (req.KeyID == ""):
		in.adminFail(w, r, http.StatusBadRequest, "give exactly one of serial and key_id", nil, ev)
		return
	case len(req.KeyID) > 1024 || !utf8.ValidString(req.KeyID) || len(req.Reason) > 512 || !utf8.ValidString(req.Reason):
		in.adminFail(w, r, http.StatusBadRequest, "key_id or reason too long or not UTF-8", nil, ev)
		return
	}
	ev.Attrs = map[string]string{}
	if req.Reason != "" {
		ev.Attrs["detail"] = req.Reason
	}
	var err error
	if req.Serial != 0 {
		ev.Attrs["serial"] = strconv.FormatUint(req.Serial, 10)
		err = in.CertRevocations.RevokeSerial(r.Context(), req.Serial, req.Reason)
	} else {
		ev.UserID, ev.Attrs["key_id"] = req.KeyID, req.KeyID
		err = in.CertRevocations.RevokeKeyID(r.Context(), req.KeyID, req.Reason)
	}
	if err != nil {
		status, msg := http.StatusBadRequest, "invalid revocation"
		if errors.Is(err, store.ErrUnavailable) {
			status, msg = http.StatusServiceUnavailable, "state store unavailable"
		}
		in.adminFail(w, r, status, msg, err, ev)
		return
	}
	ev.Decision = audit.Allow
	in.emitAdmin(r, ev)
	writeAdminJSON(w, http.StatusOK, map[string]any{"revoked": true, "serial": req.Serial, "key_id": req.KeyID})
}

// adminFail answers a refused admin call with a generic message and a
// reference; the cause goes to the log and the audit event.
func (in *Instance) adminFail(w http.ResponseWriter, r *http.Request, status int, msg string, cause error, ev audit.Event) {
	ref := audit.NewRef(in.rand)
	ev.Decision, ev.Ref = audit.Deny, ref
	if ev.Attrs == nil {
		ev.Attrs = map[string]string{}
	}
	ev.Attrs["status"] = strconv.Itoa(status)
	in.log.LogAttrs(r.Context(), slog.LevelWarn, "admin request refused", slog.String("ref", ref),
		slog.String("path", r.URL.Path), slog.Int("status", status), slog.Any("cause", cause))
	in.emitAdmin(r, ev)
	writeAdminJSON(w, status, map[string]string{"error": msg, "ref": ref})
}

func (in *Instance) emitAdmin(r *http.Request, ev audit.Event) {
	ev.Type, ev.Actor, ev.Instance = audit.TypeAdmin, localActor, in.Config.Instance
	ev.Time = in.now()
	in.emit.Emit(r.Context(), ev)
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
