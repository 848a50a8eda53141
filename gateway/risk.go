package gateway

// Lockdown at the HTTPS door. Every decision is the risk engine's
// (authz/risk); the gateway reports what happened (failed factors,
// denied decisions, canary touches, successful logins, usage) and obeys
// the verdicts. Where each call sits:
//
//	/login                      Gate("", ip) before the IdP round trip
//	/oauth2/callback            Gate("", ip) first; Fail(oidc) on every rejection;
//	                            Gate(user, ip) and Assess once the user is known
//	/mfa, /mfa/enrol            Gate(user, ip) before a code is checked; Fail(totp|recovery)
//	                            per wrong code; Gate again right before the session
//	                            is created, Record after
//	route hosts                 CanaryRoute before the route's authz; Fail(denied) per
//	                            denied decision of a signed-in user; Usage per proxied
//	                            request (in memory: no store round trip)
//	/ssh/*, /api/ssh/cert       Gate(user, ip) before a code, certificate or approval;
//	                            Fail(approval) per failed approval
//	/api/admin/*                Locked(admin) per request; the lock endpoints

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/store"
)

// RiskEngine is what the gateway needs of the risk engine.
type RiskEngine interface {
	Gate(ctx context.Context, userID string, ip netip.Addr) (risk.Verdict, error)
	Locked(ctx context.Context, userID string) (risk.Verdict, error)
	Fail(ctx context.Context, sig risk.Signal, userID string, ip netip.Addr) (risk.Verdict, error)
	Canary(ctx context.Context, what, userID string, ip netip.Addr) (risk.Verdict, error)
	CanaryUnattributed(ctx context.Context, what, userID string, ip netip.Addr)
	CanaryRoute(host, normalizedPath string) (string, bool)
	Assess(ctx context.Context, userID string, ip netip.Addr, via string) (risk.LoginRisk, error)
	Record(ctx context.Context, userID string, ip netip.Addr) error
	Usage(userID string, requests, bytes int64)
	Lock(ctx context.Context, userID, why, actor string) (store.Lock, error)
	Unlock(ctx context.Context, subject, why, actor string) (store.Lock, error)
	Locks(ctx context.Context) ([]store.Lock, error)
}

var _ RiskEngine = (*risk.Engine)(nil)

// What a locked user or a blocked source is told: the generic denial page
// (403, title "Access denied") whose one paragraph carries this text
// around the incident reference instead of the generic one.
const (
	lockedLead  = "This account is locked. Contact your administrator with reference"
	blockedLead = "Access from your network is temporarily blocked. Reference"
	genericLead = "If you think this is a mistake, contact your administrator and quote this reference:"
)

// lockedMessage is the full text for a verdict (JSON bodies, SSH-side
// API answers).
func lockedMessage(v risk.Verdict, ref string) string {
	return verdictLead(v) + " " + ref + "."
}

func verdictLead(v risk.Verdict) string {
	if v.Reason == risk.ReasonSourceBlocked {
		return blockedLead
	}
	return lockedLead
}

// denyVerdict answers a request the risk engine refused: the same status
// and page as every other denial, with the lock's incident reference
// (not a fresh one: the user quotes it to the admin who lists the locks).
// ev is audited with the verdict's reason ("account-locked" or
// "source-blocked").
func (g *Gateway) denyVerdict(w http.ResponseWriter, r *http.Request, v risk.Verdict, ev audit.Event) {
	reason := v.Reason
	if reason == "" {
		reason = risk.ReasonAccountLocked
	}
	g.refuse(w, r, http.StatusForbidden, reason, nil, ev, refusal{ref: v.Ref, lead: verdictLead(v), tail: "."})
}

// obey answers the request and returns false unless the engine allowed:
// a store failure is 503 (fail closed), a denial the locked page.
func (g *Gateway) obey(w http.ResponseWriter, r *http.Request, v risk.Verdict, err error, ev audit.Event) bool {
	if err != nil {
		g.storeFail(w, r, err, ev)
		return false
	}
	if !v.Allow {
		g.denyVerdict(w, r, v, ev)
		return false
	}
	return true
}

// gate asks whether userID ("" when not known yet) may authenticate from
// r's client address; see obey.
func (g *Gateway) gate(w http.ResponseWriter, r *http.Request, userID string, ev audit.Event) bool {
	// A trail that cannot be written refuses first (audithealth.go).
	if !g.auditWritable(w, r, ev) {
		return false
	}
	v, err := g.deps.Risk.Gate(r.Context(), userID, g.clientIP(r))
	return g.obey(w, r, v, err, ev)
}

// failed counts one failure of sig (by userID, "" when unknown) from r's
// client address and answers the request: with the locked page when this
// very failure locked the user or blocked the source (the user learns at
// once), else with the usual refusal (status, reason, cause).
func (g *Gateway) failed(w http.ResponseWriter, r *http.Request, sig risk.Signal, userID string, ev audit.Event, status int, reason string, cause error) {
	v, err := g.deps.Risk.Fail(r.Context(), sig, userID, g.clientIP(r))
	switch {
	case err != nil:
		g.storeFail(w, r, joinCause(err, cause), ev)
	case !v.Allow:
		g.denyVerdict(w, r, v, ev)
	default:
		g.fail(w, r, status, reason, cause, ev)
	}
}

// storeFail answers a failed store (or risk engine) call: 503 "state
// store unavailable" when the backend is down (fail closed), 500
// otherwise.
func (g *Gateway) storeFail(w http.ResponseWriter, r *http.Request, err error, ev audit.Event) {
	if isUnavailable(err) {
		g.fail(w, r, http.StatusServiceUnavailable, reasonStoreDown, err, ev)
		return
	}
	g.fail(w, r, http.StatusInternalServerError, reasonInternal, err, ev)
}

// userInitiated reports whether a browser request was made by the user
// on this origin (or typed, bookmarked) rather than caused by another
// site: Sec-Fetch-Site "same-origin" or "none", or no such header (not a
// browser, or an old one). The session cookie is SameSite=Lax, so a link
// or an image on another site — even another host of the same site —
// sends it; signals that lock a user are only counted against the user
// for requests they made themselves, or a link would be enough to lock
// anyone out.
func userInitiated(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return true
	}
	return false
}
