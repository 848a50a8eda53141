package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// verifierRE is RFC 7636 §4.1: 43-128 unreserved characters.
var verifierRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

var errTooManyCodes = errors.New("too many outstanding authorization codes")

// issueCode records a grant and returns its single-use code.
func (p *IdP) issueCode(req *authRequest, u *user) (string, error) {
	code, err := p.randomToken()
	if err != nil {
		return "", err
	}
	now := p.now()
	g := &grant{
		clientID:    req.client.id,
		redirectURI: req.params["redirect_uri"],
		user:        u,
		nonce:       req.params["nonce"],
		challenge:   req.params["code_challenge"],
		scopes:      req.scopes,
		authTime:    now,
		expires:     now.Add(codeTTL),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.codes) >= maxCodes {
		for k, old := range p.codes {
			if !now.Before(old.expires) {
				delete(p.codes, k)
			}
		}
		if len(p.codes) >= maxCodes {
			return "", errTooManyCodes
		}
	}
	p.codes[code] = g
	return code, nil
}

// takeCode removes and returns the grant for code: a code is gone after
// its first presentation, whatever the outcome, so it cannot be replayed
// nor its PKCE verifier guessed over several attempts.
func (p *IdP) takeCode(code string) *grant {
	p.mu.Lock()
	defer p.mu.Unlock()
	g := p.codes[code]
	delete(p.codes, code)
	return g
}

type tokenError struct {
	status int
	code   string
	desc   string
}

func (p *IdP) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		tokenJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "POST required"})
		return
	}
	resp, terr := p.token(w, r)
	if terr != nil {
		p.log.Info("devidp: token request refused", "error", terr.code, "reason", terr.desc)
		if terr.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
		}
		tokenJSON(w, terr.status, map[string]string{"error": terr.code, "error_description": terr.desc})
		return
	}
	w.Header().Set("Pragma", "no-cache")
	tokenJSON(w, http.StatusOK, resp)
}

func tokenJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// token handles one token request. Order matters: the client is
// authenticated before the code is consumed, so a party without the
// client secret cannot burn someone else's code.
func (p *IdP) token(w http.ResponseWriter, r *http.Request) (map[string]any, *tokenError) {
	form, status := readForm(w, r)
	if status != 0 {
		return nil, &tokenError{status, "invalid_request", "malformed request body"}
	}
	params, err := singleValues(form, "grant_type", "code", "redirect_uri", "code_verifier", "client_id", "client_secret")
	if err != nil {
		return nil, &tokenError{http.StatusBadRequest, "invalid_request", err.Error()}
	}
	c, terr := p.authenticateClient(r, params)
	if terr != nil {
		return nil, terr
	}
	if params["grant_type"] != "authorization_code" {
		return nil, &tokenError{http.StatusBadRequest, "unsupported_grant_type", "only authorization_code is supported"}
	}
	invalid := &tokenError{http.StatusBadRequest, "invalid_grant", "invalid, expired or already used code"}
	g := p.takeCode(params["code"])
	if g == nil || g.clientID != c.id || !p.now().Before(g.expires) || g.redirectURI != params["redirect_uri"] {
		return nil, invalid
	}
	v := params["code_verifier"]
	sum := sha256.Sum256([]byte(v))
	if !verifierRE.MatchString(v) ||
		subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(g.challenge)) != 1 {
		return nil, invalid
	}
	idToken, err := p.signIDToken(g)
	if err != nil {
		p.log.Warn("devidp: sign ID token", "err", err)
		return nil, &tokenError{http.StatusInternalServerError, "server_error", "cannot sign token"}
	}
	access, err := p.randomToken()
	if err != nil {
		return nil, &tokenError{http.StatusInternalServerError, "server_error", "random source failed"}
	}
	p.log.Info("devidp: token issued", "user", g.user.Username, "client_id", c.id)
	return map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   int(idTokenTTL.Seconds()),
		"id_token":     idToken,
		"scope":        strings.Join(g.scopes, " "),
	}, nil
}

// authenticateClient accepts exactly one of client_secret_basic and
// client_secret_post (RFC 6749 §2.3: a client MUST NOT use more than one
// method per request).
func (p *IdP) authenticateClient(r *http.Request, params map[string]string) (*client, *tokenError) {
	unauthorized := &tokenError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
	id, secret := params["client_id"], params["client_secret"]
	if bu, bp, ok := r.BasicAuth(); ok {
		if _, inBody := params["client_secret"]; inBody {
			return nil, &tokenError{http.StatusBadRequest, "invalid_request", "more than one client authentication method"}
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic.
		uid, err1 := url.QueryUnescape(bu)
		usec, err2 := url.QueryUnescape(bp)
		if err1 != nil || err2 != nil || (id != "" && id != uid) {
			return nil, unauthorized
		}
		id, secret = uid, usec
	} else if _, ok := params["client_secret"]; !ok {
		return nil, unauthorized
	}
	c := p.clients[id]
	if c == nil {
		// Same work as a known client, so unknown IDs do not stand out.
		hashEqual([32]byte{}, secret)
		return nil, unauthorized
	}
	if !hashEqual(c.secretHash, secret) {
		return nil, unauthorized
	}
	return c, nil
}

// signIDToken builds and signs the ID token for a redeemed grant. Claims
// beyond the required ones follow the granted scopes (OIDC Core §5.4).
func (p *IdP) signIDToken(g *grant) (string, error) {
	now := p.now()
	claims := map[string]any{
		"iss":       p.issuer,
		"sub":       g.user.sub,
		"aud":       g.clientID,
		"exp":       now.Add(idTokenTTL).Unix(),
		"iat":       now.Unix(),
		"auth_time": g.authTime.Unix(),
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	if slices.Contains(g.scopes, "email") && g.user.Email != "" {
		claims["email"] = g.user.Email
		claims["email_verified"] = true
	}
	if slices.Contains(g.scopes, "profile") {
		claims["name"] = g.user.Name
		claims["preferred_username"] = g.user.Username
	}
	if slices.Contains(g.scopes, "groups") {
		groups := g.user.Groups
		if groups == nil {
			groups = []string{}
		}
		claims["groups"] = groups
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := p.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
