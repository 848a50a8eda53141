package gateway

// SSH certificates for `portcullis login`.
//
//	GET  /ssh/login?port=P&state=S  confirmation page (signed-in with MFA, else the login round trip)
//	POST /ssh/login                 → one-time code, 302 to http://127.0.0.1:P/callback?code=C&state=S
//	POST /api/ssh/cert              {code, public_key} → {certificate, valid_before, principals, …}
//
// Trust boundaries: the confirmation is a state-changing POST from our own
// page (CSRF token bound to the session cookie + origin check), so a
// foreign site cannot mint a code for a signed-in browser. The code is the
// only credential of the API call: 256 random bits, stored as its hash,
// bound to the web session that confirmed, usable once (TakeEphemeral) and
// for sshCodeTTL. It travels only to a loopback port chosen by the local
// client (never another host: the redirect target is built here from a
// validated port number), and the state the client chose comes back with
// it, so a code injected into the client's listener by another local page
// is refused there. Identity, principals, lifetime and permissions come
// only from the live web session and the current policy; the client
// supplies nothing but its public key.

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// Paths of the SSH pages and API on the access host.
const (
	pathSSHLogin   = "/ssh/login"
	pathSSHCert    = "/api/ssh/cert"
	pathSSHApprove = "/ssh/approve"
)

// Page names of the SSH templates (templates/ssh_*.html).
const (
	pageSSHLogin   = "ssh_login"
	pageSSHApprove = "ssh_approve"
)

// Audit event types of SSH credential issuance (stable keys).
const (
	TypeSSHCertIssue       = "ssh.cert.issue"       // confirmation (code) and certificate exchange
	TypeSSHApprovalApprove = "ssh.approval.approve" // a keyboard-interactive connection approved
	TypeSSHApprovalDeny    = "ssh.approval.deny"    // denied, or an approval attempt refused
)

// Reason codes of SSH credential issuance (stable).
const (
	reasonSSHDisabled    = "ssh-disabled"
	reasonSSHBadRequest  = "ssh-login-invalid"
	reasonSSHCodeIssued  = "code-issued"
	reasonSSHCodeInvalid = "code-invalid"
	reasonSSHNoLogins    = "no-ssh-logins"
	reasonSSHBadKey      = "bad-public-key"
	reasonSSHExpired     = "session-expired"
	reasonSSHIssued      = "issued"
)

const (
	// sshCodeTTL bounds the one-time code between the confirmation and
	// the client's exchange (a local round trip).
	sshCodeTTL = 60 * time.Second
	// minRSABits is the smallest RSA key certified (NIST: 3072 bits for
	// security beyond 2030).
	minRSABits = 3072
	maxRSABits = 16384
	// maxHintTargets bounds the target list returned to the client.
	maxHintTargets = 100
	sshCodeBytes   = 32
)

// sshCodeRecord is a confirmed certificate request waiting for the
// client's exchange, stored under "ssh-cert-code:"+SHA-256(code).
type sshCodeRecord struct {
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
	Created   time.Time `json:"created"`
}

func sshCodeKey(code string) string { return "ssh-cert-code:" + sha256Hex(code) }

// sshLoginParams are the client's loopback port and state.
type sshLoginParams struct {
	port  int
	state string
}

// parseSSHLoginParams validates port (a decimal unprivileged port, no
// sign or leading zero) and state (16-128 URL-safe characters).
func parseSSHLoginParams(port, state string) (sshLoginParams, error) {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1024 || n > 65535 || strconv.Itoa(n) != port {
		return sshLoginParams{}, errors.New("port must be a loopback port between 1024 and 65535")
	}
	if len(state) < 16 || len(state) > maxStateLen || !isTokenChars(state) {
		return sshLoginParams{}, errors.New("state must be 16-128 URL-safe characters")
	}
	return sshLoginParams{port: n, state: state}, nil
}

// query is the page's own query string (the login's return path).
func (p sshLoginParams) query() string {
	return "port=" + strconv.Itoa(p.port) + "&state=" + p.state
}

// callback is where the client listens. Always the IPv4 loopback literal:
// the port is the only part the request chooses.
func (p sshLoginParams) callback(code string) string {
	return "http://127.0.0.1:" + strconv.Itoa(p.port) + "/callback?code=" + code + "&state=" + p.state
}

// sshGrant is what a certificate for a session would carry.
type sshGrant struct {
	principals []string
	pty        bool
	forwarding bool
	agent      bool
	ttl        time.Duration
}

// sshGrantFor derives a certificate's contents from the session, its
// effective roles (base roles and active just-in-time grants) and the
// policy. Principals are the logins the roles allow; the lifetime is the
// strictest max_session_ttl of the roles, counted from the
// authentication, and never beyond the web session. PTY is granted with
// any SSH login (roles have no separate switch for it); port forwarding
// and agent forwarding only when a role that grants logins allows them.
func sshGrantFor(pol *authz.Policy, rec session.Record, roles []string, now time.Time) sshGrant {
	g := sshGrant{principals: pol.SSHLogins(roles)}
	for _, name := range roles {
		rc, ok := pol.Role(name)
		if !ok || len(pol.SSHLogins([]string{name})) == 0 {
			continue
		}
		g.pty = true
		g.forwarding = g.forwarding || len(rc.PortForwards) > 0
		g.agent = g.agent || rc.AgentForward
	}
	g.ttl = min(pol.MaxSessionTTL(roles), rec.ExpiresAt.Sub(now), rec.AuthTime.Add(pol.MaxSessionTTL(roles)).Sub(now))
	return g
}

func (h *loginHandler) sshEvent(r *http.Request, typ string, rec session.Record, step string) audit.Event {
	ev := h.sessionEvent(r, typ, rec)
	ev.Attrs = map[string]string{"step": step}
	return ev
}

// sshLoginView is the confirmation page's data.
type sshLoginView struct {
	UserID, Name string
	Logins       []string
	ValidUntil   string
	Port         int
	State        string
}

// sshLoginPage shows what the certificate will carry and asks to confirm.
func (h *loginHandler) sshLoginPage(w http.ResponseWriter, r *http.Request) {
	ev := h.event(r, TypeSSHCertIssue)
	if h.g.deps.SSHCA == nil {
		h.g.fail(w, r, http.StatusNotFound, reasonSSHDisabled, nil, ev)
		return
	}
	q := r.URL.Query()
	p, err := parseSSHLoginParams(q.Get("port"), q.Get("state"))
	if err != nil {
		h.g.fail(w, r, http.StatusBadRequest, reasonSSHBadRequest, err, ev)
		return
	}
	tok, rec, ok := h.requireSession(w, r, pathSSHLogin+"?"+p.query())
	if !ok {
		return
	}
	if !h.g.gate(w, r, rec.UserID, h.sshEvent(r, TypeSSHCertIssue, rec, "page")) {
		return
	}
	pol := h.g.deps.Policy.Load()
	now := h.g.now()
	g := sshGrantFor(pol, rec, h.g.effectiveRoles(rec.UserID, rec.Roles, now), now)
	v := sshLoginView{UserID: rec.UserID, Name: rec.Name, Logins: g.principals, Port: p.port, State: p.state}
	d := pageData{Title: "SSH certificate", Page: &v}
	status := http.StatusOK
	if len(g.principals) == 0 {
		ev = h.sshEvent(r, TypeSSHCertIssue, rec, "page")
		ev.Decision, ev.Reason = audit.Deny, reasonSSHNoLogins
		h.emit(r, ev)
		status = http.StatusForbidden
	} else {
		v.ValidUntil = formatTime(now.Add(g.ttl))
		d.CSRF = h.csrf.token(csrfSession, tok)
		// The form's POST is answered with a redirect to the loopback
		// listener, and Chrome applies form-action to that redirect: let
		// this page (and only it) post towards that one port.
		w.Header()["Content-Security-Policy"] = []string{strings.Replace(h.g.csp[0],
			"form-action 'self'", "form-action 'self' http://127.0.0.1:"+strconv.Itoa(p.port), 1)}
	}
	h.render(w, r, status, pageSSHLogin, d)
}

// sessionForPost checks a POST's CSRF token against the session cookie
// and loads that session (with MFA). When either fails it answers the
// request (ev is the refusal's audit event) and returns false.
func (h *loginHandler) sessionForPost(w http.ResponseWriter, r *http.Request, ev audit.Event) (session.Record, bool) {
	tok := pageCookie(r, h.g.deps.Sessions.CookieName())
	if err := h.csrf.check(r, csrfSession, tok); err != nil {
		h.g.fail(w, r, http.StatusForbidden, "csrf-invalid", err, ev)
		return session.Record{}, false
	}
	_, rec, err := h.session(r)
	if isNoSession(err) {
		h.g.fail(w, r, http.StatusUnauthorized, reasonNoSession, err, ev)
		return rec, false
	} else if err != nil {
		h.storeFail(w, r, err, ev)
		return rec, false
	}
	return rec, true
}

// sshLoginConfirm mints the one-time code and sends the browser to the
// client's loopback listener with it.
func (h *loginHandler) sshLoginConfirm(w http.ResponseWriter, r *http.Request) {
	ev := h.event(r, TypeSSHCertIssue)
	if h.g.deps.SSHCA == nil {
		h.g.fail(w, r, http.StatusNotFound, reasonSSHDisabled, nil, ev)
		return
	}
	rec, ok := h.sessionForPost(w, r, ev)
	if !ok {
		return
	}
	ev = h.sshEvent(r, TypeSSHCertIssue, rec, "confirm")
	if !h.g.gate(w, r, rec.UserID, ev) {
		return
	}
	p, err := parseSSHLoginParams(r.PostFormValue("port"), r.PostFormValue("state"))
	if err != nil {
		h.g.fail(w, r, http.StatusBadRequest, reasonSSHBadRequest, err, ev)
		return
	}
	now := h.g.now()
	if g := sshGrantFor(h.g.deps.Policy.Load(), rec, h.g.effectiveRoles(rec.UserID, rec.Roles, now), now); len(g.principals) == 0 {
		h.g.fail(w, r, http.StatusForbidden, reasonSSHNoLogins, nil, ev)
		return
	}
	code, err := randomToken(h.rand, sshCodeBytes)
	if err != nil {
		h.g.fail(w, r, http.StatusInternalServerError, reasonInternal, err, ev)
		return
	}
	b, err := json.Marshal(sshCodeRecord{SessionID: rec.ID, UserID: rec.UserID, Created: now})
	if err != nil {
		h.g.fail(w, r, http.StatusInternalServerError, reasonInternal, err, ev)
		return
	}
	if err := h.g.deps.Store.PutEphemeral(r.Context(), sshCodeKey(code), b, sshCodeTTL); err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	ev.Decision, ev.Reason = audit.Allow, reasonSSHCodeIssued
	ev.Attrs["callback_port"] = strconv.Itoa(p.port)
	h.emit(r, ev)
	http.Redirect(w, r, p.callback(code), http.StatusFound)
}

// sshCertRequest is the client's exchange request.
type sshCertRequest struct {
	Code      string `json:"code"`
	PublicKey string `json:"public_key"`
}

// SSHCertResponse is the answer of POST /api/ssh/cert.
type SSHCertResponse struct {
	// Certificate in authorized_keys format (the -cert.pub file).
	Certificate string    `json:"certificate"`
	ValidBefore time.Time `json:"valid_before"`
	Principals  []string  `json:"principals"`
	UserID      string    `json:"user_id"`
	// Targets are the configured targets and the logins of the
	// certificate that policy allows on each (from this request's source
	// address; the bastion decides again on every connection).
	Targets []SSHTargetHint `json:"targets,omitempty"`
	// SSHAddr is the bastion's public address (Config.SSHAddr), when
	// configured.
	SSHAddr string `json:"ssh_addr,omitempty"`
}

// SSHTargetHint names a target and the logins allowed on it.
type SSHTargetHint struct {
	Name   string   `json:"name"`
	Logins []string `json:"logins"`
}

// sshCert exchanges a one-time code and a public key for a certificate.
func (h *loginHandler) sshCert(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ev := h.event(r, TypeSSHCertIssue)
	ev.Attrs = map[string]string{"step": "exchange"}
	ca := h.g.deps.SSHCA
	if ca == nil {
		h.g.fail(w, r, http.StatusNotFound, reasonSSHDisabled, nil, ev)
		return
	}
	var req sshCertRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.Decode(&struct{}{}) != io.EOF {
		h.g.fail(w, r, http.StatusBadRequest, reasonSSHBadRequest, fmt.Errorf("request body: %v", err), ev)
		return
	}
	if len(req.Code) != 43 || !isTokenChars(req.Code) {
		h.g.fail(w, r, http.StatusForbidden, reasonSSHCodeInvalid, errors.New("malformed code"), ev)
		return
	}
	// Take first: whatever fails below, the code is spent.
	raw, err := h.g.deps.Store.TakeEphemeral(ctx, sshCodeKey(req.Code))
	if isNotFound(err) {
		h.g.fail(w, r, http.StatusForbidden, reasonSSHCodeInvalid, errors.New("unknown, expired or used code"), ev)
		return
	} else if err != nil {
		h.storeFail(w, r, err, ev)
		return
	}
	var cr sshCodeRecord
	now := h.g.now()
	if err := json.Unmarshal(raw, &cr); err != nil || cr.SessionID == "" || now.Sub(cr.Created) > sshCodeTTL {
		h.g.fail(w, r, http.StatusForbidden, reasonSSHCodeInvalid, errors.New("corrupt or expired code record"), ev)
		return
	}
	ev.UserID, ev.SessionID = cr.UserID, cr.SessionID
	rec, err := h.g.deps.Sessions.Get(ctx, cr.SessionID)
	switch {
	case isNoSession(err):
		h.g.fail(w, r, http.StatusForbidden, reasonInvalidSession, err, ev)
		return
	case err != nil:
		h.storeFail(w, r, err, ev)
		return
	case !rec.MFA || rec.UserID != cr.UserID:
		h.g.fail(w, r, http.StatusForbidden, reasonInvalidSession, errors.New("session without MFA or of another user"), ev)
		return
	}
	// The web session may outlive a lock by the feed's latency; the
	// certificate must not: ask the store itself.
	if !h.g.gate(w, r, rec.UserID, ev) {
		return
	}
	key, err := parseUserKey(req.PublicKey)
	if err != nil {
		h.g.fail(w, r, http.StatusBadRequest, reasonSSHBadKey, err, ev)
		return
	}
	ev.Attrs["key_fp"] = ssh.FingerprintSHA256(key)
	pol := h.g.deps.Policy.Load()
	if pol == nil {
		h.g.fail(w, r, http.StatusServiceUnavailable, reasonNoPolicy, errors.New("no policy loaded"), ev)
		return
	}
	roles := h.g.effectiveRoles(rec.UserID, rec.Roles, now)
	g := sshGrantFor(pol, rec, roles, now)
	switch {
	case len(g.principals) == 0:
		h.g.fail(w, r, http.StatusForbidden, reasonSSHNoLogins, nil, ev)
		return
	case g.ttl < time.Minute:
		h.g.fail(w, r, http.StatusForbidden, reasonSSHExpired, fmt.Errorf("%v left", g.ttl), ev)
		return
	}
	// Principals come from the effective roles, but the roles extension
	// carries the BASE roles only: the bastion adds the user's grants
	// from its own cache at every decision, so a grant revoked or expired
	// after issuance stops working at once instead of living on in the
	// certificate.
	creq := session.CertRequest{
		PublicKey: key, UserID: rec.UserID, Principals: g.principals, Roles: rec.Roles, TTL: g.ttl,
		WebSessionID: rec.ID, PermitPTY: g.pty, PermitPortForwarding: g.forwarding, PermitAgentForwarding: g.agent,
	}
	ip := h.g.clientIP(r)
	if h.g.cfg.SSHCertBindSourceIP && ip.IsValid() {
		creq.SourceAddress = ip.String()
	}
	cert, err := ca.Issue(creq)
	if err != nil {
		status, reason := http.StatusInternalServerError, reasonInternal
		if errors.Is(err, session.ErrCertRequest) {
			status, reason = http.StatusBadRequest, reasonSSHBadKey
		}
		h.g.fail(w, r, status, reason, err, ev)
		return
	}
	validBefore := time.Unix(int64(cert.ValidBefore), 0).UTC()
	ev.Decision, ev.Reason = audit.Allow, reasonSSHIssued
	ev.Attrs["cert_serial"] = strconv.FormatUint(cert.Serial, 10)
	ev.Attrs["principals"] = strings.Join(cert.ValidPrincipals, ",")
	ev.Attrs["valid_before"] = validBefore.Format(time.RFC3339)
	ev.Attrs["source_bound"] = strconv.FormatBool(creq.SourceAddress != "")
	h.emit(r, ev)
	resp := SSHCertResponse{
		Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		ValidBefore: validBefore, Principals: cert.ValidPrincipals, UserID: rec.UserID,
		Targets: sshTargetHints(pol, rec.UserID, roles, ip, cert.ValidPrincipals, now), SSHAddr: h.g.cfg.SSHAddr,
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// parseUserKey accepts exactly one plain Ed25519, ECDSA or RSA (3072 to
// 16384 bits) public key in authorized_keys format. Certificates,
// security-key (sk-*) and DSA keys are refused.
func parseUserKey(s string) (ssh.PublicKey, error) {
	if len(s) > 8<<10 {
		return nil, errors.New("public key too long")
	}
	key, _, opts, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, errors.New("not an authorized_keys line")
	}
	if len(opts) > 0 || strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("options or more than one key")
	}
	switch key.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return key, nil
	case ssh.KeyAlgoRSA:
		ck, ok := key.(ssh.CryptoPublicKey)
		if !ok {
			return nil, errors.New("unreadable RSA key")
		}
		pk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok || pk.N.BitLen() < minRSABits || pk.N.BitLen() > maxRSABits {
			return nil, fmt.Errorf("RSA keys must have %d to %d bits", minRSABits, maxRSABits)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("key type %.40q not accepted (certificates, security keys and DSA are refused)", key.Type())
	}
}

// sshTargetHints lists the targets the certificate's logins may reach
// from ip, as the policy sees it now (a hint for the client: the bastion
// decides every connection again).
func sshTargetHints(pol *authz.Policy, userID string, roles []string, ip netip.Addr, principals []string, now time.Time) []SSHTargetHint {
	var out []SSHTargetHint
	sub := authz.Subject{UserID: userID, Roles: roles, MFA: true, AuthTime: now}
	for _, t := range pol.Targets() {
		if len(out) == maxHintTargets {
			break
		}
		var logins []string
		for _, l := range principals {
			req := authz.Request{Kind: authz.KindSSH, Subject: sub, SourceIP: ip, Target: t.Name, Login: l}
			if pol.Evaluate(&req, now).Allow {
				logins = append(logins, l)
			}
		}
		if len(logins) > 0 {
			out = append(out, SSHTargetHint{Name: t.Name, Logins: slices.Clip(logins)})
		}
	}
	return out
}
