package gateway

import (
	"errors"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/mfa"
)

// Bounds on admin API input.
const (
	maxUserIDLen    = 512
	maxSessionIDLen = 128
	maxReasonLen    = 200
	maxExplainArg   = 2048
	maxGroups       = 256
)

type userView struct {
	UserID      string    `json:"user_id"`
	Email       string    `json:"email,omitempty"`
	Name        string    `json:"name,omitempty"`
	Roles       []string  `json:"roles"`
	Groups      []string  `json:"groups"`
	MFAEnrolled bool      `json:"mfa_enrolled"`
	LastLogin   time.Time `json:"last_login"`
	LastIP      string    `json:"last_ip,omitempty"`
	Sessions    int       `json:"sessions"`
}

type sessionView struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Roles     []string  `json:"roles"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
	SourceIP  string    `json:"source_ip,omitempty"`
}

// actionBody is the body of revoke and mfa-reset.
type actionBody struct {
	Reason string `json:"reason"`
}

type actionResult struct {
	OK     bool   `json:"ok"`
	Target string `json:"target"`
}

type explainResult struct {
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

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *adminAPI) users(c *adminCall, _ []string) {
	ctx := c.r.Context()
	ev := a.callEvent(c, "users.list")
	users, err := listUsers(ctx, a.g.deps.Store)
	if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	enrolled, err := a.g.deps.Store.ListEnrolled(ctx)
	if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	sessions, err := a.g.deps.Sessions.List(ctx, "")
	if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	isEnrolled := make(map[string]bool, len(enrolled))
	for _, id := range enrolled {
		isEnrolled[id] = true
	}
	count := map[string]int{}
	for _, s := range sessions {
		count[s.UserID]++
	}
	out := make([]userView, 0, len(users))
	for _, u := range users {
		out = append(out, userView{
			UserID: u.UserID, Email: u.Email, Name: u.Name, Roles: nonNil(u.Roles), Groups: nonNil(u.Groups),
			MFAEnrolled: isEnrolled[u.UserID], LastLogin: u.LastLogin, LastIP: u.LastIP, Sessions: count[u.UserID],
		})
	}
	ev.Decision = audit.Allow
	a.succeed(c, out, ev)
}

// sessions lists live sessions, optionally of one user (?user=).
func (a *adminAPI) sessions(c *adminCall, _ []string) {
	ev := a.callEvent(c, "sessions.list")
	user := c.r.URL.Query().Get("user")
	if user != "" && !validText(user, maxUserIDLen) {
		a.fail(c.w, c.r, http.StatusBadRequest, "invalid user", "bad-request", nil, ev)
		return
	}
	if user != "" {
		ev.Target = user
	}
	recs, err := a.g.deps.Sessions.List(c.r.Context(), user)
	if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	out := make([]sessionView, 0, len(recs))
	for _, s := range recs {
		out = append(out, sessionView{
			ID: s.ID, UserID: s.UserID, Roles: nonNil(s.Roles), CreatedAt: s.CreatedAt,
			LastSeen: s.LastSeen, ExpiresAt: s.ExpiresAt, SourceIP: s.SourceIP,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	ev.Decision = audit.Allow
	a.succeed(c, out, ev)
}

// actionReason decodes and validates the {reason} body of a POST.
func (a *adminAPI) actionReason(c *adminCall, ev audit.Event) (string, bool) {
	var body actionBody
	if err := decodeBody(c.w, c.r, &body); err != nil {
		a.fail(c.w, c.r, http.StatusBadRequest, "malformed request body", "bad-request", err, ev)
		return "", false
	}
	if body.Reason == "" {
		return "admin", true
	}
	if !validText(body.Reason, maxReasonLen) {
		a.fail(c.w, c.r, http.StatusBadRequest, "invalid reason", "bad-request", nil, ev)
		return "", false
	}
	return body.Reason, true
}

// beginAction validates the target of a state-changing action and decodes
// its {reason} body; it answers the request itself when it returns false.
func (a *adminAPI) beginAction(c *adminCall, action, target string, valid bool, what string) (audit.Event, string, bool) {
	ev := a.callEvent(c, action)
	if !valid {
		a.fail(c.w, c.r, http.StatusBadRequest, "invalid "+what, "bad-request", nil, ev)
		return ev, "", false
	}
	ev.Target = target
	reason, ok := a.actionReason(c, ev)
	if !ok {
		return ev, "", false
	}
	ev.Attrs["note"] = reason
	return ev, reason, true
}

// finishAction audits a successful action twice — as an admin action and
// as the domain event (typ, reasonCode) that readers of that event type
// look for — and answers 200.
func (a *adminAPI) finishAction(c *adminCall, ev audit.Event, typ, reasonCode, userID, sessionID string) {
	ev.Decision = audit.Allow
	dom := ev
	dom.Attrs = map[string]string{"action": ev.Attrs["action"], "note": ev.Attrs["note"]}
	dom.Type, dom.UserID, dom.SessionID = typ, userID, sessionID
	dom.Reason = reasonCode
	a.succeed(c, actionResult{OK: true, Target: ev.Target}, ev, dom)
}

func (a *adminAPI) revoke(c *adminCall, seg []string) {
	ctx := c.r.Context()
	id := seg[1]
	ev, reason, ok := a.beginAction(c, "session.revoke", id,
		id != "" && len(id) <= maxSessionIDLen && isTokenChars(id), "session ID")
	if !ok {
		return
	}
	rec, err := a.g.deps.Sessions.Get(ctx, id)
	if isNoSession(err) || isNotFound(err) {
		a.fail(c.w, c.r, http.StatusNotFound, "no such session", "not-found", err, ev)
		return
	} else if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	// Revoke deletes the record and publishes to every instance, whose
	// caches drop the session within the feed's latency.
	if err := a.g.deps.Sessions.Revoke(ctx, id, reason); err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	a.finishAction(c, ev, audit.TypeSessionRevoke, "admin-revoke", rec.UserID, rec.ID)
}

func (a *adminAPI) mfaReset(c *adminCall, seg []string) {
	user := seg[1]
	ev, _, ok := a.beginAction(c, "mfa.reset", user, validText(user, maxUserIDLen), "user ID")
	if !ok {
		return
	}
	// Reset is idempotent: resetting a user without an enrolment succeeds.
	err := a.g.deps.MFA.Reset(c.r.Context(), user)
	if errors.Is(err, mfa.ErrInvalidUser) {
		a.fail(c.w, c.r, http.StatusBadRequest, "invalid user ID", "bad-request", err, ev)
		return
	} else if err != nil {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	a.finishAction(c, ev, audit.TypeMFAReset, "admin-reset", user, "")
}

// explain answers "what would the policy decide?" for a user, app, path,
// method and source IP, with roles mapped by the CURRENT policy from the
// user's last verified groups (or from ?groups= for what-if questions).
// The subject is assumed to have passed MFA just now.
func (a *adminAPI) explain(c *adminCall, _ []string) {
	ctx := c.r.Context()
	q := c.r.URL.Query()
	ev := a.callEvent(c, "explain")
	bad := func(msg string, err error) {
		a.fail(c.w, c.r, http.StatusBadRequest, msg, "bad-request", err, ev)
	}
	user, app := q.Get("user"), q.Get("app")
	if !validText(user, maxUserIDLen) {
		bad("user is required", nil)
		return
	}
	if !validText(app, maxExplainArg) {
		bad("app is required", nil)
		return
	}
	ev.Target, ev.App = user, app
	method := strings.ToUpper(q.Get("method"))
	if method == "" {
		method = http.MethodGet
	}
	if len(method) > 16 || !isMethodToken(method) {
		bad("invalid method", nil)
		return
	}
	ip, err := netip.ParseAddr(q.Get("ip"))
	if err != nil {
		bad("ip must be an IP address", err)
		return
	}
	ip = authz.UnmapAddr(ip)
	rawPath := q.Get("path")
	if rawPath == "" {
		rawPath = "/"
	}
	if len(rawPath) > maxExplainArg {
		bad("path too long", nil)
		return
	}
	pol := a.g.deps.Policy.Load()
	if pol == nil {
		a.fail(c.w, c.r, http.StatusServiceUnavailable, "no policy loaded", "policy-unavailable", nil, ev)
		return
	}
	var email string
	var groups []string
	if u, err := getUser(ctx, a.g.deps.Store, user); err == nil {
		email, groups = u.Email, u.Groups
	} else if !isNotFound(err) {
		a.storeFail(c.w, c.r, err, ev)
		return
	}
	if gs, ok := q["groups"]; ok {
		groups = splitGroups(gs)
		if len(groups) > maxGroups {
			bad("too many groups", nil)
			return
		}
	}
	roles := pol.RolesFor(user, email, groups)
	now := a.g.now()
	res := explainResult{UserID: user, Roles: nonNil(roles), App: app, Method: method, IP: ip.String()}
	path, err := authz.NormalizePath(rawPath)
	var d authz.Decision
	if err != nil {
		d = authz.Decision{Reason: authz.ReasonInvalidPath}
		res.Path = rawPath
	} else {
		res.Path = path
		d = pol.Evaluate(&authz.Request{
			Kind:     authz.KindHTTP,
			Subject:  authz.Subject{UserID: user, Roles: roles, MFA: true, AuthTime: now},
			SourceIP: ip, App: app, Method: method, Path: path,
		}, now)
	}
	res.Allow, res.Reason, res.Role, res.Rule = d.Allow, string(d.Reason), d.Role, d.Rule
	ev.Decision = audit.Allow
	ev.Attrs["result"] = string(d.Reason)
	a.succeed(c, res, ev)
}

// splitGroups accepts ?groups=a,b and ?groups=a&groups=b.
func splitGroups(vals []string) []string {
	out := []string{}
	for _, v := range vals {
		for _, g := range strings.Split(v, ",") {
			if g = strings.TrimSpace(g); g != "" {
				out = append(out, g)
			}
		}
	}
	return out
}

func isMethodToken(m string) bool {
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return m != ""
}
