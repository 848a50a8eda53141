package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// dashboard is the sample upstream behind the "grafana" route. It shows
// what a real upstream receives from Portcullis, and verifies the signed
// assertion the way an upstream should: against the gateway's JWKS, with
// the expected issuer and audience.
type dashboard struct {
	app      string // route name = expected audience
	issuer   string // the gateway's access URL
	jwksURL  string
	client   *http.Client
	now      func() time.Time
	mu       sync.Mutex
	keys     *jose.JSONWebKeySet
	keysTime time.Time
}

// assertionClaims is what the gateway signs (see gateway/assertion.go).
type assertionClaims struct {
	jwt.Claims
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
}

type dashboardPage struct {
	Path         string
	User         string
	Email        string
	Groups       string
	Assertion    string // "verified", "missing" or "invalid: …"
	Verified     bool
	Claims       *assertionClaims
	Expires      string
	HomeURL      string
	OtherHeaders []string
}

var dashboardTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Grafana (sample dashboard)</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.4rem .7rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ok{color:#176c2c;font-weight:600}.bad{color:#b00020;font-weight:600}
.panels{display:flex;gap:1rem}.panel{border:1px solid #ddd;border-radius:6px;padding:.8rem;flex:1}
code{background:#f4f4f4;padding:0 .2rem}
</style></head><body>
<h1>Grafana (sample dashboard)</h1>
<p>This is the demo's stand-in for an internal dashboard. Portcullis only let this request through after
OIDC login, TOTP, and a policy decision; below is exactly what the upstream received.</p>
<h2>Identity headers</h2>
<table>
<tr><th>X-Portcullis-User</th><td><code>{{.User}}</code></td></tr>
<tr><th>X-Portcullis-Email</th><td><code>{{.Email}}</code></td></tr>
<tr><th>X-Portcullis-Groups</th><td><code>{{.Groups}}</code></td></tr>
<tr><th>X-Portcullis-Jwt-Assertion</th><td>{{if .Verified}}<span class="ok">present, signature verified</span> against the gateway JWKS (ES256), audience and issuer checked{{else}}<span class="bad">{{.Assertion}}</span>{{end}}
{{with .Claims}}<br>sub <code>{{.Subject}}</code>, aud <code>{{index .Audience 0}}</code>, iss <code>{{.Issuer}}</code>{{end}}{{if .Expires}}, expires {{.Expires}}{{end}}</td></tr>
</table>
{{if .OtherHeaders}}<p>Other identity-looking headers received (should be none: the gateway strips them):</p>
<ul>{{range .OtherHeaders}}<li><code>{{.}}</code></li>{{end}}</ul>{{end}}
<p>Requested path: <code>{{.Path}}</code></p>
<div class="panels">
<div class="panel"><h3>Requests / s</h3><svg width="220" height="60" viewBox="0 0 220 60" role="img" aria-label="sample chart"><polyline fill="none" stroke="#3274d9" stroke-width="2" points="0,40 20,35 40,38 60,22 80,28 100,18 120,25 140,12 160,20 180,15 200,22 220,10"/></svg></div>
<div class="panel"><h3>Error rate</h3><svg width="220" height="60" viewBox="0 0 220 60" role="img" aria-label="sample chart"><polyline fill="none" stroke="#e02f44" stroke-width="2" points="0,55 20,54 40,50 60,52 80,48 100,53 120,51 140,45 160,50 180,52 200,49 220,51"/></svg></div>
</div>
<p><a href="/admin">/admin</a> (engineers are denied here by a deny rule) ·
<a href="{{.HomeURL}}">Portcullis home and sign out</a></p>
</body></html>
`))

// stripped lists headers a client might inject to impersonate someone; the
// gateway removes them, and the page shows any that arrive anyway.
var stripped = []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "Remote-User", "X-Auth-Request-User", "X-Auth-Request-Email"}

func (d *dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := dashboardPage{
		Path:    r.URL.Path,
		User:    r.Header.Get("X-Portcullis-User"),
		Email:   r.Header.Get("X-Portcullis-Email"),
		Groups:  r.Header.Get("X-Portcullis-Groups"),
		HomeURL: d.issuer + "/",
	}
	for _, h := range stripped {
		if v := r.Header.Get(h); v != "" {
			p.OtherHeaders = append(p.OtherHeaders, h+": "+v)
		}
	}
	if tok := r.Header.Get("X-Portcullis-Jwt-Assertion"); tok == "" {
		p.Assertion = "missing"
	} else if c, err := d.verify(r.Context(), tok); err != nil {
		p.Assertion = "invalid: " + err.Error()
	} else {
		p.Verified, p.Assertion, p.Claims = true, "verified", c
		if c.Expiry != nil {
			p.Expires = c.Expiry.Time().UTC().Format(time.RFC3339)
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := dashboardTmpl.Execute(w, p); err != nil {
		http.Error(w, "render error", http.StatusInternalServerError)
	}
}

// verify checks the assertion's ES256 signature against the JWKS, then
// issuer, audience and expiry.
func (d *dashboard) verify(ctx context.Context, token string) (*assertionClaims, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, errors.New("not a compact ES256 JWS")
	}
	keys, err := d.jwks(ctx, false)
	if err != nil {
		return nil, err
	}
	var c assertionClaims
	if err := tok.Claims(keys, &c); err != nil {
		// The gateway may have a new key (restart): refetch once.
		if keys, err = d.jwks(ctx, true); err != nil {
			return nil, err
		}
		if err := tok.Claims(keys, &c); err != nil {
			return nil, errors.New("signature does not verify against the gateway JWKS")
		}
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: d.issuer, AnyAudience: jwt.Audience{d.app}, Time: d.now()}, 0); err != nil {
		return nil, err
	}
	return &c, nil
}

// jwks returns the gateway's key set, cached for five minutes.
func (d *dashboard) jwks(ctx context.Context, refresh bool) (*jose.JSONWebKeySet, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.keys != nil && !refresh && d.now().Sub(d.keysTime) < 5*time.Minute {
		return d.keys, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.jwksURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&set); err != nil || len(set.Keys) == 0 {
		return nil, errors.New("fetch JWKS: no keys")
	}
	d.keys, d.keysTime = &set, d.now()
	return d.keys, nil
}
