package devidp_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzTokenEndpoint: no body or Authorization header can obtain a token
// without a code issued by a login, and nothing panics.
func FuzzTokenEndpoint(f *testing.F) {
	f.Add("grant_type=authorization_code&code=x&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier=abc", "app-a:"+secretA)
	f.Add("client_id=app-a&client_secret=x&code=&code=", "")
	f.Add("%zz=%", "::")
	f.Add(strings.Repeat("a=b&", 100), "app-a:")
	e := newEnv(f, "")
	h := e.idp.Handler()
	f.Fuzz(func(t *testing.T, body, auth string) {
		req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", formType)
		if id, sec, ok := strings.Cut(auth, ":"); ok {
			req.SetBasicAuth(id, sec)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK || strings.Contains(rec.Body.String(), "id_token") {
			t.Fatalf("token issued for body %q auth %q", body, auth)
		}
	})
}

// FuzzAuthorize: whatever the query, the IdP only ever redirects to a
// registered redirect URI, never issues a code without credentials, and
// never reflects the query unescaped.
func FuzzAuthorize(f *testing.F) {
	f.Add(authParams().Encode())
	f.Add("client_id=app-a&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=token")
	f.Add("client_id=app-a&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=token&state=%3Cscript%3E")
	f.Add("client_id=%zz")
	e := newEnv(f, "")
	h := e.idp.Handler()
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequest(http.MethodGet, "/authorize", nil)
		req.URL.RawQuery = query
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if loc := rec.Header().Get("Location"); loc != "" {
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatalf("bad Location %q", loc)
			}
			base := u.Scheme + "://" + u.Host + u.Path
			if base != redirectA && base != "http://127.0.0.1:9/cb" {
				t.Fatalf("redirect to unregistered %q", loc)
			}
			if u.Query().Get("code") != "" {
				t.Fatalf("code issued without credentials: %q", loc)
			}
		}
		if strings.Contains(rec.Body.String(), "<script") {
			t.Fatalf("unescaped markup reflected for %q", query)
		}
	})
}
