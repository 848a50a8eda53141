package devidp

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// authorizeParams are the request parameters the login form carries
// through as hidden fields; the POST re-validates all of them because the
// browser can change anything.
var authorizeParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method",
}

// challengeRE matches an S256 code challenge: base64url of 32 bytes.
var challengeRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

type authRequest struct {
	client *client
	params map[string]string
	scopes []string
}

// errUntrusted means the client or redirect URI is not registered: the
// error is shown to the user and never sent to the redirect URI (RFC 6749
// §4.1.2.1), otherwise the IdP would be an open redirector.
var errUntrusted = errors.New("unknown client or redirect URI")

// parseAuthorize validates an authorization request. A non-empty oauthErr
// is an RFC 6749 error code for the (already verified) redirect URI.
func (p *IdP) parseAuthorize(form url.Values) (req *authRequest, oauthErr string, err error) {
	params, err := singleValues(form, authorizeParams...)
	if err != nil {
		return nil, "", err
	}
	c := p.clients[params["client_id"]]
	if c == nil || !slices.Contains(c.redirectURIs, params["redirect_uri"]) {
		return nil, "", errUntrusted
	}
	req = &authRequest{client: c, params: params, scopes: strings.Fields(params["scope"])}
	switch {
	case params["response_type"] != "code":
		return req, "unsupported_response_type", nil
	case !slices.Contains(req.scopes, "openid"):
		return req, "invalid_scope", nil
	case params["code_challenge_method"] != "S256" || !challengeRE.MatchString(params["code_challenge"]):
		// PKCE is mandatory and only S256: "plain" gives no protection
		// against a stolen code.
		return req, "invalid_request", nil
	}
	return req, "", nil
}

func (p *IdP) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	var form url.Values
	switch r.Method {
	case http.MethodGet:
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			p.errorPage(w, http.StatusBadRequest, "This sign-in request is malformed.")
			return
		}
		form = q
	case http.MethodPost:
		f, status := readForm(w, r)
		if status != 0 {
			p.errorPage(w, status, "This sign-in request is malformed.")
			return
		}
		form = f
	default:
		w.Header().Set("Allow", "GET, POST")
		p.errorPage(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}

	req, oauthErr, err := p.parseAuthorize(form)
	if err != nil {
		p.log.Info("devidp: authorization request refused", "reason", err.Error())
		p.errorPage(w, http.StatusBadRequest, "This sign-in request is invalid: unknown application or redirect address.")
		return
	}
	if oauthErr != "" {
		p.log.Info("devidp: authorization request refused", "client_id", req.client.id, "error", oauthErr)
		p.redirect(w, r, req, url.Values{"error": {oauthErr}})
		return
	}
	if r.Method == http.MethodGet {
		p.loginPage(w, http.StatusOK, req, "", "")
		return
	}

	creds, err := singleValues(form, "username", "password")
	if err != nil {
		p.loginPage(w, http.StatusBadRequest, req, "", "Invalid username or password.")
		return
	}
	u := p.authenticate(creds["username"], creds["password"])
	if u == nil {
		p.log.Info("devidp: sign-in failed", "client_id", req.client.id)
		p.loginPage(w, http.StatusUnauthorized, req, creds["username"], "Invalid username or password.")
		return
	}
	code, err := p.issueCode(req, u)
	if err != nil {
		p.log.Warn("devidp: cannot issue code", "err", err)
		p.redirect(w, r, req, url.Values{"error": {"temporarily_unavailable"}})
		return
	}
	p.log.Info("devidp: signed in", "user", u.Username, "client_id", req.client.id)
	p.redirect(w, r, req, url.Values{"code": {code}})
}

// readForm parses an urlencoded POST body capped at maxBody. It returns a
// non-zero HTTP status on failure: 413 for an oversized body, 400 for a
// malformed one or another content type.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, int) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return nil, http.StatusBadRequest
	}
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, http.StatusRequestEntityTooLarge
		}
		return nil, http.StatusBadRequest
	}
	return r.PostForm, 0
}

// authenticate checks the credentials against every user without an early
// exit, comparing SHA-256 digests in constant time, so that neither which
// usernames exist nor how much of a password matched shows in the timing.
func (p *IdP) authenticate(username, password string) *user {
	var found *user
	for _, u := range p.users {
		// Both digests are always computed: no short-circuit on the name.
		nameOK := hashEqual(u.usernameHash, username)
		passOK := hashEqual(u.passwordHash, password)
		if nameOK && passOK {
			found = u
		}
	}
	return found
}

// redirect sends the browser back to the verified redirect URI with the
// given parameters plus state and the RFC 9207 issuer identifier.
func (p *IdP) redirect(w http.ResponseWriter, r *http.Request, req *authRequest, extra url.Values) {
	u, err := url.Parse(req.params["redirect_uri"])
	if err != nil { // registered URIs were validated at New
		p.errorPage(w, http.StatusInternalServerError, "Internal error.")
		return
	}
	q := u.Query()
	for k, v := range extra {
		q[k] = v
	}
	if s, ok := req.params["state"]; ok {
		q.Set("state", s)
	}
	q.Set("iss", p.issuer)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

type hiddenField struct{ Name, Value string }

type pageData struct {
	Action   string
	ClientID string
	Hidden   []hiddenField
	Username string
	Error    string
}

func (p *IdP) loginPage(w http.ResponseWriter, status int, req *authRequest, username, msg string) {
	d := pageData{Action: p.basePath + "/authorize", ClientID: req.client.id, Username: username, Error: msg}
	for _, n := range authorizeParams {
		if v, ok := req.params[n]; ok {
			d.Hidden = append(d.Hidden, hiddenField{n, v})
		}
	}
	p.render(w, status, "login", d)
}

func (p *IdP) errorPage(w http.ResponseWriter, status int, msg string) {
	p.render(w, status, "error", pageData{Error: msg})
}

func (p *IdP) render(w http.ResponseWriter, status int, name string, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// No form-action: browsers apply it to the redirect that follows the
	// form POST, which goes to the relying party's origin.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, d); err != nil {
		p.log.Warn("devidp: render page", "err", err)
	}
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Portcullis development IdP</title>
<style>
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f4f6;color:#111827}
.banner{background:#b45309;color:#fff;text-align:center;padding:.5rem 1rem;font-weight:600;letter-spacing:.01em}
main{max-width:22rem;margin:3rem auto;background:#fff;border-radius:12px;padding:2rem;box-shadow:0 4px 24px rgba(0,0,0,.08)}
h1{font-size:1.4rem;margin:0 0 .25rem}
.sub{margin:0 0 1.5rem;color:#6b7280}
label{display:block;font-weight:600;margin:1rem 0 .3rem}
input{width:100%;padding:.6rem .75rem;border:1px solid #d1d5db;border-radius:8px;font:inherit}
input:focus{outline:2px solid #2563eb;border-color:#2563eb}
button{width:100%;margin-top:1.5rem;padding:.7rem;border:0;border-radius:8px;background:#1f2937;color:#fff;font:inherit;font-weight:600;cursor:pointer}
button:hover{background:#111827}
.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;border-radius:8px;padding:.6rem .75rem}
.note{margin:1.5rem 0 0;font-size:.85rem;color:#6b7280}
</style></head>
<body><div class="banner">Portcullis development IdP — demo only</div>{{end}}

{{define "login"}}{{template "head"}}
<main>
<h1>Sign in</h1>
<p class="sub">to continue to <strong>{{.ClientID}}</strong></p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" value="{{.Username}}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="note">Demo accounts only. Never use this identity provider in production.</p>
</main></body></html>
{{end}}

{{define "error"}}{{template "head"}}
<main>
<h1>Cannot sign in</h1>
<p class="error" role="alert">{{.Error}}</p>
<p class="note">Start again from the application you were trying to open.</p>
</main></body></html>
{{end}}
`))
