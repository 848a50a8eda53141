package devidp_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/identity/devidp"
)

func TestNewValidation(t *testing.T) {
	good := func() devidp.Config {
		return devidp.Config{
			Issuer:  "https://idp.localhost:9443",
			Clients: []devidp.Client{{ID: "c", Secret: "s", RedirectURIs: []string{"https://app/cb"}}},
			Users:   []devidp.User{{Username: "u", Password: "p"}},
		}
	}
	tests := []struct {
		name  string
		mod   func(*devidp.Config)
		paths []string
	}{
		{"valid", func(*devidp.Config) {}, nil},
		{"empty issuer", func(c *devidp.Config) { c.Issuer = "" }, []string{"issuer"}},
		{"relative issuer", func(c *devidp.Config) { c.Issuer = "/idp" }, []string{"issuer"}},
		{"ftp issuer", func(c *devidp.Config) { c.Issuer = "ftp://idp" }, []string{"issuer"}},
		{"issuer fragment", func(c *devidp.Config) { c.Issuer = "https://idp/#x" }, []string{"issuer"}},
		{"issuer userinfo", func(c *devidp.Config) { c.Issuer = "https://u:p@idp" }, []string{"issuer"}},
		{"no clients", func(c *devidp.Config) { c.Clients = nil }, []string{"clients"}},
		{"duplicate client", func(c *devidp.Config) { c.Clients = append(c.Clients, c.Clients[0]) }, []string{"clients[1].id"}},
		{"empty client id", func(c *devidp.Config) { c.Clients[0].ID = "" }, []string{"clients[0].id"}},
		{"empty secret", func(c *devidp.Config) { c.Clients[0].Secret = "" }, []string{"clients[0].secret"}},
		{"no redirect", func(c *devidp.Config) { c.Clients[0].RedirectURIs = nil }, []string{"clients[0].redirect_uris"}},
		{"bad redirect", func(c *devidp.Config) { c.Clients[0].RedirectURIs = []string{"javascript:alert(1)"} }, []string{"clients[0].redirect_uris[0]"}},
		{"no users", func(c *devidp.Config) { c.Users = nil }, []string{"users"}},
		{"duplicate user", func(c *devidp.Config) { c.Users = append(c.Users, c.Users[0]) }, []string{"users[1].username"}},
		{"empty password", func(c *devidp.Config) { c.Users[0].Password = "" }, []string{"users[0].password"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mod(&cfg)
			_, err := devidp.New(cfg)
			var got []string
			for _, e := range authz.Flatten(err) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("non-field error %v", e)
				}
				got = append(got, fe.Path)
			}
			if strings.Join(got, ",") != strings.Join(tc.paths, ",") {
				t.Fatalf("error paths %v, want %v (err %v)", got, tc.paths, err)
			}
		})
	}
}

func TestDiscoveryAndJWKS(t *testing.T) {
	for _, prefix := range []string{"", "/idp"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			e := newEnv(t, prefix)
			resp, body := e.get(t, e.url("/.well-known/openid-configuration"))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("discovery status %d", resp.StatusCode)
			}
			var d map[string]any
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"issuer":                 e.issuer,
				"authorization_endpoint": e.issuer + "/authorize",
				"token_endpoint":         e.issuer + "/token",
				"jwks_uri":               e.issuer + "/jwks",
			}
			for k, v := range want {
				if d[k] != v {
					t.Errorf("%s = %v, want %v", k, d[k], v)
				}
			}
			resp, body = e.get(t, e.url("/jwks"))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("jwks status %d", resp.StatusCode)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal([]byte(body), &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 1 || set.Keys[0].Algorithm != "ES256" || set.Keys[0].KeyID == "" || !set.Keys[0].IsPublic() {
				t.Fatalf("jwks = %+v, want one public ES256 key with kid", set.Keys)
			}
			if resp, _ := e.get(t, e.url("/nope")); resp.StatusCode != http.StatusNotFound {
				t.Errorf("unknown path status %d, want 404", resp.StatusCode)
			}
			if prefix != "" {
				if resp, _ := e.get(t, strings.TrimSuffix(e.issuer, prefix)+"/jwks"); resp.StatusCode != http.StatusNotFound {
					t.Errorf("jwks outside issuer path status %d, want 404", resp.StatusCode)
				}
			}
			if resp, _ := e.postForm(t, "/jwks", formType, "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("POST /jwks status %d, want 405", resp.StatusCode)
			}
		})
	}
}

func TestAuthorizeGet(t *testing.T) {
	e := newEnv(t, "")
	tests := []struct {
		name     string
		raw      string // raw query; built from mod when empty
		mod      func(url.Values)
		status   int
		oauthErr string // expected ?error= on the redirect (status 303)
		contains []string
	}{
		{name: "valid shows form", mod: func(url.Values) {}, status: 200,
			contains: []string{"Portcullis development IdP — demo only", `name="username"`, `type="password"`, `<label for="password">`, `value="st-123"`}},
		{name: "second registered redirect", mod: func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:9/cb?x=1") }, status: 200},
		{name: "unknown client", mod: func(v url.Values) { v.Set("client_id", "evil") }, status: 400},
		{name: "missing client", mod: func(v url.Values) { v.Del("client_id") }, status: 400},
		{name: "redirect prefix", mod: func(v url.Values) { v.Set("redirect_uri", redirectA+"/x") }, status: 400},
		{name: "redirect trailing slash", mod: func(v url.Values) { v.Set("redirect_uri", redirectA+"/") }, status: 400},
		{name: "redirect case", mod: func(v url.Values) { v.Set("redirect_uri", strings.ToUpper(redirectA)) }, status: 400},
		{name: "redirect of other client", mod: func(v url.Values) { v.Set("redirect_uri", "https://b.example/cb") }, status: 400},
		{name: "redirect with extra query", mod: func(v url.Values) { v.Set("redirect_uri", redirectA+"?next=evil") }, status: 400},
		{name: "repeated client_id", mod: func(v url.Values) { v.Add("client_id", "app-a") }, status: 400},
		{name: "malformed encoding", raw: "client_id=%zz", status: 400},
		{name: "oversized state", mod: func(v url.Values) { v.Set("state", strings.Repeat("s", 2000)) }, status: 400},
		{name: "implicit flow", mod: func(v url.Values) { v.Set("response_type", "token") }, status: 303, oauthErr: "unsupported_response_type"},
		{name: "hybrid flow", mod: func(v url.Values) { v.Set("response_type", "code id_token") }, status: 303, oauthErr: "unsupported_response_type"},
		{name: "no openid scope", mod: func(v url.Values) { v.Set("scope", "email") }, status: 303, oauthErr: "invalid_scope"},
		{name: "no pkce", mod: func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, status: 303, oauthErr: "invalid_request"},
		{name: "plain pkce", mod: func(v url.Values) { v.Set("code_challenge_method", "plain") }, status: 303, oauthErr: "invalid_request"},
		{name: "short challenge", mod: func(v url.Values) { v.Set("code_challenge", "abc") }, status: 303, oauthErr: "invalid_request"},
		{name: "state is escaped", mod: func(v url.Values) { v.Set("state", `"><script>alert(1)</script>`) }, status: 200,
			contains: []string{`&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw
			if raw == "" {
				v := authParams()
				tc.mod(v)
				raw = v.Encode()
			}
			resp, body := e.get(t, e.url("/authorize?"+raw))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %.300s", resp.StatusCode, tc.status, body)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q", s)
				}
			}
			if strings.Contains(body, "<script>") {
				t.Error("body contains an unescaped script tag")
			}
			loc := resp.Header.Get("Location")
			if tc.status != http.StatusSeeOther {
				if loc != "" {
					t.Fatalf("unexpected redirect to %q", loc)
				}
				if tc.status == http.StatusOK && resp.Header.Get("X-Frame-Options") != "DENY" {
					t.Error("login form may be framed")
				}
				return
			}
			u, err := url.Parse(loc)
			if err != nil || u.Scheme+"://"+u.Host+u.Path != redirectA {
				t.Fatalf("redirect to %q, want the registered URI", loc)
			}
			q := u.Query()
			if q.Get("error") != tc.oauthErr || q.Get("state") != "st-123" || q.Get("code") != "" {
				t.Fatalf("redirect query %v, want error=%s with state and no code", q, tc.oauthErr)
			}
		})
	}
}

func TestAuthorizePost(t *testing.T) {
	e := newEnv(t, "")
	tests := []struct {
		name        string
		contentType string
		body        func() string
		status      int
		contains    string
	}{
		{"good credentials", formType, func() string { return withCreds(authParams(), "alice", "alice-pass") }, 303, ""},
		{"wrong password", formType, func() string { return withCreds(authParams(), "alice", "bob-pass") }, 401, "Invalid username or password."},
		{"unknown user", formType, func() string { return withCreds(authParams(), "mallory", "alice-pass") }, 401, "Invalid username or password."},
		{"empty credentials", formType, func() string { return withCreds(authParams(), "", "") }, 401, "Invalid username or password."},
		{"password of other user", formType, func() string { return withCreds(authParams(), "bob", "alice-pass") }, 401, "Invalid username or password."},
		{"repeated username", formType, func() string { return withCreds(authParams(), "alice", "alice-pass") + "&username=bob" }, 400, "Invalid username or password."},
		{"tampered redirect", formType, func() string {
			v := authParams()
			v.Set("redirect_uri", "https://evil.example/cb")
			return withCreds(v, "alice", "alice-pass")
		}, 400, "unknown application"},
		{"tampered pkce method", formType, func() string {
			v := authParams()
			v.Set("code_challenge_method", "plain")
			return withCreds(v, "alice", "alice-pass")
		}, 303, ""},
		{"malformed encoding", formType, func() string { return "client_id=%zz&username=alice" }, 400, "malformed"},
		{"json body", "application/json", func() string { return `{"username":"alice"}` }, 400, "malformed"},
		{"huge body", formType, func() string { return "x=" + strings.Repeat("a", 1<<20) }, 413, "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.postForm(t, "/authorize", tc.contentType, tc.body(), nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %.300s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("body lacks %q", tc.contains)
			}
			if strings.Contains(body, "alice-pass") || strings.Contains(body, "bob-pass") {
				t.Error("a password is echoed in the page")
			}
			if tc.status != http.StatusSeeOther {
				return
			}
			u, _ := url.Parse(resp.Header.Get("Location"))
			q := u.Query()
			if tc.name == "good credentials" {
				if q.Get("code") == "" || q.Get("state") != "st-123" || q.Get("iss") != e.issuer {
					t.Fatalf("redirect query %v, want code, state and iss", q)
				}
			} else if q.Get("code") != "" || q.Get("error") == "" {
				t.Fatalf("redirect query %v, want an error and no code", q)
			}
		})
	}
	t.Run("method not allowed", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, e.url("/authorize"), nil)
		resp, err := e.browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d, want 405", resp.StatusCode)
		}
	})
}

func withCreds(v url.Values, user, pass string) string {
	v.Set("username", user)
	v.Set("password", pass)
	return v.Encode()
}

func TestTokenEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		form    func(code string) url.Values
		auth    func(*http.Request)
		advance time.Duration
		status  int
		errCode string
	}{
		{name: "basic auth", form: tokenForm, auth: basic("app-a", secretA), status: 200},
		{name: "post auth", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("client_id", "app-a")
			f.Set("client_secret", secretA)
			return f
		}, status: 200},
		{name: "code valid at 59s", form: tokenForm, auth: basic("app-a", secretA), advance: 59 * time.Second, status: 200},
		{name: "code expired at 60s", form: tokenForm, auth: basic("app-a", secretA), advance: 60 * time.Second, status: 400, errCode: "invalid_grant"},
		{name: "both auth methods", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("client_secret", secretA)
			return f
		}, auth: basic("app-a", secretA), status: 400, errCode: "invalid_request"},
		{name: "no client auth", form: tokenForm, status: 401, errCode: "invalid_client"},
		{name: "client_id only", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("client_id", "app-a")
			return f
		}, status: 401, errCode: "invalid_client"},
		{name: "wrong secret", form: tokenForm, auth: basic("app-a", "nope"), status: 401, errCode: "invalid_client"},
		{name: "unescaped basic secret", form: tokenForm, auth: func(r *http.Request) { r.SetBasicAuth("app-a", "%zz") }, status: 401, errCode: "invalid_client"},
		{name: "unknown client", form: tokenForm, auth: basic("evil", secretA), status: 401, errCode: "invalid_client"},
		{name: "body client_id differs from basic", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("client_id", "app-b")
			return f
		}, auth: basic("app-a", secretA), status: 401, errCode: "invalid_client"},
		{name: "code of another client", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("redirect_uri", "https://b.example/cb")
			return f
		}, auth: basic("app-b", "secret-b"), status: 400, errCode: "invalid_grant"},
		{name: "wrong grant type", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("grant_type", "password")
			return f
		}, auth: basic("app-a", secretA), status: 400, errCode: "unsupported_grant_type"},
		{name: "wrong verifier", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("code_verifier", strings.Repeat("A", 43))
			return f
		}, auth: basic("app-a", secretA), status: 400, errCode: "invalid_grant"},
		{name: "challenge as verifier", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("code_verifier", challenge(verifier))
			return f
		}, auth: basic("app-a", secretA), status: 400, errCode: "invalid_grant"},
		{name: "missing verifier", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Del("code_verifier")
			return f
		}, auth: basic("app-a", secretA), status: 400, errCode: "invalid_grant"},
		{name: "wrong redirect uri", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Set("redirect_uri", "http://127.0.0.1:9/cb?x=1")
			return f
		}, auth: basic("app-a", secretA), status: 400, errCode: "invalid_grant"},
		{name: "unknown code", form: func(string) url.Values { return tokenForm("forged") }, auth: basic("app-a", secretA), status: 400, errCode: "invalid_grant"},
		{name: "repeated code parameter", form: func(c string) url.Values {
			f := tokenForm(c)
			f.Add("code", c)
			return f
		}, auth: basic("app-a", secretA), status: 400, errCode: "invalid_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			code := e.code(t)
			e.clock.Add(tc.advance)
			status, m := e.token(t, tc.form(code), tc.auth)
			if status != tc.status || (tc.errCode != "" && m["error"] != tc.errCode) {
				t.Fatalf("status %d %v, want %d %s", status, m, tc.status, tc.errCode)
			}
			if status != http.StatusOK {
				if m["id_token"] != nil || m["access_token"] != nil {
					t.Fatal("error response carries tokens")
				}
				return
			}
			checkIDToken(t, e, m)
			// Single use: the same code never works twice.
			status, m = e.token(t, tc.form(code), tc.auth)
			if status != http.StatusBadRequest || m["error"] != "invalid_grant" {
				t.Fatalf("replayed code: status %d %v, want 400 invalid_grant", status, m)
			}
		})
	}
}

// checkIDToken verifies the token's signature against the published JWKS
// and its claims.
func checkIDToken(t *testing.T, e *env, m map[string]any) {
	t.Helper()
	raw, _ := m["id_token"].(string)
	if m["token_type"] != "Bearer" || m["access_token"] == "" || raw == "" {
		t.Fatalf("token response %v", m)
	}
	_, body := e.get(t, e.url("/jwks"))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if kid := jws.Signatures[0].Header.KeyID; kid != set.Keys[0].KeyID {
		t.Fatalf("token kid %q, jwks kid %q", kid, set.Keys[0].KeyID)
	}
	payload, err := jws.Verify(set.Keys[0])
	if err != nil {
		t.Fatalf("signature does not verify with the published key: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now().Unix()
	want := map[string]any{
		"iss": e.issuer, "aud": "app-a", "nonce": "n-456", "email": "alice@example.com",
		"email_verified": true, "name": "Alice A", "exp": float64(now + 300), "iat": float64(now),
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v", k, c[k], v)
		}
	}
	if g, _ := json.Marshal(c["groups"]); string(g) != `["admins","engineers"]` {
		t.Errorf("groups = %s", g)
	}
	if sub, _ := c["sub"].(string); sub == "" || strings.Contains(sub, "alice") {
		t.Errorf("sub = %q, want an opaque stable ID", sub)
	}
}

func TestSubjectIsStablePerUser(t *testing.T) {
	subs := map[string]string{}
	for i := range 2 {
		e := newEnv(t, "") // a fresh IdP (new key) each time, like a demo restart
		for _, u := range []string{"alice", "bob"} {
			resp, q := e.login(t, authParams(), u, u+"-pass")
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("login %s: %d", u, resp.StatusCode)
			}
			_, m := e.token(t, tokenForm(q.Get("code")), basic("app-a", secretA))
			raw, _ := m["id_token"].(string)
			jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			var c struct{ Sub string }
			if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				subs[u] = c.Sub
			} else if subs[u] != c.Sub {
				t.Fatalf("sub for %s changed across restarts: %q then %q", u, subs[u], c.Sub)
			}
		}
	}
	if subs["alice"] == subs["bob"] {
		t.Fatal("two users share a subject")
	}
}

func TestTokenEndpointHostileTransport(t *testing.T) {
	e := newEnv(t, "")
	tests := []struct {
		name, method, contentType, body string
		status                          int
	}{
		{"GET", http.MethodGet, "", "", 405},
		{"malformed encoding", http.MethodPost, formType, "grant_type=%zz", 400},
		{"json body", http.MethodPost, "application/json", `{"grant_type":"authorization_code"}`, 400},
		{"huge body", http.MethodPost, formType, "code=" + strings.Repeat("a", 1<<20), 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, e.url("/token"), strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			basic("app-a", secretA)(req)
			resp, err := e.browser.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tc.status || strings.Contains(body, "id_token") {
				t.Fatalf("status %d body %q, want %d without tokens", resp.StatusCode, body, tc.status)
			}
		})
	}
}

func TestUsersReturnsCopy(t *testing.T) {
	e := newEnv(t, "")
	us := e.idp.Users()
	if len(us) != 2 || us[0].Username != "alice" || us[0].Password != "alice-pass" {
		t.Fatalf("Users() = %+v", us)
	}
	us[0].Groups[0] = "root"
	us[0].Password = "changed"
	if again := e.idp.Users(); again[0].Groups[0] != "admins" || again[0].Password != "alice-pass" {
		t.Fatal("Users() exposes internal state")
	}
	if resp, _ := e.login(t, authParams(), "alice", "changed"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("mutated copy changed credentials: status %d", resp.StatusCode)
	}
}
