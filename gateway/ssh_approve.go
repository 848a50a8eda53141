package gateway

// Browser approval of keyboard-interactive SSH connections.
//
//	GET  /ssh/approve?c=CODE  the pending connection (login, target, source, time) with Approve / Deny
//	POST /ssh/approve         c, decision=approve|deny, csrf → the decision is recorded for the bastion
//
// The bastion created the pending record (session.SSHApprovals) and shows
// the URL in the user's terminal. Approving attaches the approver's
// verified identity (user ID, roles, web session ID — from a session with
// MFA) to exactly that connection; the bastion then runs its usual policy
// decision. A code is decided once; unknown, expired, used and malformed
// codes all get the same page.

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
)

const reasonApprovalInvalid = "approval-invalid"

// sshApproveView is the approval page's data.
type sshApproveView struct {
	Code     string
	Login    string
	Target   string // "" when the client asked for its target list
	SourceIP string
	Display  string
	Created  string
	UserID   string
}

// initSSH sets up the SSH pages: their templates and the approvals store.
func (h *loginHandler) initSSH() error {
	if a := h.g.cfg.SSHAddr; a != "" {
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return &authz.FieldError{Path: "ssh_addr", Msg: "must be host:port"}
		}
	}
	for _, name := range []string{pageSSHLogin, pageSSHApprove} {
		t, err := h.pages.tmpl[pageMessage].Clone()
		if err != nil {
			return err
		}
		if t, err = t.ParseFS(templateFS, "templates/"+name+".html"); err != nil {
			return err
		}
		h.pages.tmpl[name] = t
	}
	var err error
	h.approvals, err = session.NewSSHApprovals(h.g.deps.Store, session.SSHCAOptions{Now: h.g.deps.Now, Rand: h.rand})
	return err
}

func (h *loginHandler) approvalEvent(r *http.Request, typ string, code string) audit.Event {
	ev := h.event(r, typ)
	ev.Attrs = map[string]string{}
	if session.ValidApprovalCode(code) {
		ev.Attrs["approval"] = session.ApprovalRef(code)
	}
	return ev
}

// approvalGone answers an unknown, expired, used or malformed code: one
// page for all of them, the cause in the audit trail. Each is an approval
// failure for the risk engine, counted against the signed-in user
// (ev.UserID, "" before sign-in) and the source: codes are unguessable, so
// a stream of bad ones is someone probing.
func (h *loginHandler) approvalGone(w http.ResponseWriter, r *http.Request, ev audit.Event, err error) {
	if !errors.Is(err, session.ErrApprovalUnknown) {
		h.storeFail(w, r, err, ev)
		return
	}
	// Counted against the source only: anyone can send a signed-in user
	// a bad approval link, and that must not lock them out.
	v, ferr := h.g.deps.Risk.Fail(r.Context(), risk.SignalApprovalFailure, "", h.g.clientIP(r))
	if !h.g.obey(w, r, v, ferr, ev) {
		return
	}
	ev.Decision, ev.Reason, ev.Ref = audit.Deny, reasonApprovalInvalid, audit.NewRef(h.rand)
	h.emit(r, ev)
	h.message(w, r, http.StatusNotFound, "SSH approval", messagePage{
		Message: "This approval link is not valid: it is unknown, has expired or was already used. Start the SSH connection again for a new one (" + ev.Ref + ").",
	})
}

// sshApprovePage shows the pending connection with Approve and Deny.
func (h *loginHandler) sshApprovePage(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("c")
	ev := h.approvalEvent(r, TypeSSHApprovalDeny, code)
	if !session.ValidApprovalCode(code) {
		h.approvalGone(w, r, ev, session.ErrApprovalUnknown)
		return
	}
	tok, rec, ok := h.requireSession(w, r, pathSSHApprove+"?c="+url.QueryEscape(code))
	if !ok {
		return
	}
	ev.UserID, ev.SessionID = rec.UserID, rec.ID
	if !h.g.gate(w, r, rec.UserID, ev) {
		return
	}
	p, err := h.approvals.Pending(r.Context(), code)
	if err != nil {
		h.approvalGone(w, r, ev, err)
		return
	}
	h.render(w, r, http.StatusOK, pageSSHApprove, pageData{
		Title: "Approve SSH connection",
		CSRF:  h.csrf.token(csrfSession, tok),
		Page: sshApproveView{
			Code: code, Login: p.Login, Target: p.Target, SourceIP: p.SourceIP, Display: p.Display,
			Created: p.Created.UTC().Format("2006-01-02 15:04:05 UTC"), UserID: rec.UserID,
		},
	})
}

// sshApproveDecide records the signed-in user's decision.
func (h *loginHandler) sshApproveDecide(w http.ResponseWriter, r *http.Request) {
	code := r.PostFormValue("c")
	ev := h.approvalEvent(r, TypeSSHApprovalDeny, code)
	rec, ok := h.sessionForPost(w, r, ev)
	if !ok {
		return
	}
	ev.UserID, ev.SessionID = rec.UserID, rec.ID
	// Before the code is used up: a locked user approves nothing (the
	// bastion checks the lock again, but the code would be spent).
	if !h.g.gate(w, r, rec.UserID, ev) {
		return
	}
	var approve bool
	switch r.PostFormValue("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		h.g.fail(w, r, http.StatusBadRequest, "bad-form", errors.New("decision must be approve or deny"), ev)
		return
	}
	// Base roles, not effective ones: the bastion adds the approver's
	// just-in-time grants from its own cache at every decision, so a
	// grant revoked during the session ends it there. Roles frozen into
	// the approval would outlive the grant.
	p, err := h.approvals.Decide(r.Context(), code, session.SSHApprovalDecision{
		Approved: approve, UserID: rec.UserID, Roles: rec.Roles, WebSessionID: rec.ID,
	})
	if err != nil {
		h.approvalGone(w, r, ev, err)
		return
	}
	ev.Decision, ev.Reason = audit.Deny, "denied-by-user"
	msg := "The SSH connection was denied. It will be closed."
	if approve {
		ev.Type, ev.Decision, ev.Reason = TypeSSHApprovalApprove, audit.Allow, "approved"
		msg = "The SSH connection is approved. Go back to your terminal (press Enter if it still waits)."
	}
	ev.Target = p.Target
	ev.Attrs["login"], ev.Attrs["ssh_source_ip"], ev.Attrs["display_code"] = p.Login, p.SourceIP, p.Display
	h.emit(r, ev)
	h.message(w, r, http.StatusOK, "SSH approval", messagePage{Message: msg})
}
