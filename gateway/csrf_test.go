package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func testGuard(t testing.TB) *csrfGuard {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := newCSRFKey(k, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &csrfGuard{key: key, origin: "https://access.example.com:8443"}
}

func csrfRequest(token string, hdr map[string]string) *http.Request {
	form := url.Values{}
	if token != "" {
		form.Set(csrfField, token)
	}
	r := httptest.NewRequest(http.MethodPost, "https://access.example.com:8443/logout", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	_ = r.ParseForm()
	return r
}

func TestCSRFKeyIsSharedAcrossInstances(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a, _ := newCSRFKey(k, rand.Reader)
	b, _ := newCSRFKey(k, rand.Reader)
	if string(a) != string(b) {
		t.Fatal("two instances with the same signing key derive different CSRF keys")
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, _ := newCSRFKey(other, rand.Reader)
	if string(a) == string(c) {
		t.Fatal("different signing keys derive the same CSRF key")
	}
	r1, _ := newCSRFKey(nil, rand.Reader)
	r2, _ := newCSRFKey(nil, rand.Reader)
	if len(r1) != 32 || string(r1) == string(r2) {
		t.Fatal("fallback key is not random")
	}
}

func TestCSRFCheck(t *testing.T) {
	g := testGuard(t)
	const cookie = "v1.cookie-value"
	good := g.token(csrfSession, cookie)
	tests := []struct {
		name   string
		cookie string
		token  string
		hdr    map[string]string
		ok     bool
	}{
		{"same origin", cookie, good, map[string]string{"Origin": "https://access.example.com:8443", "Sec-Fetch-Site": "same-origin"}, true},
		{"origin case-insensitive", cookie, good, map[string]string{"Origin": "https://ACCESS.example.com:8443"}, true},
		{"no headers", cookie, good, nil, true},
		{"same-origin referer", cookie, good, map[string]string{"Referer": "https://access.example.com:8443/logout"}, true},
		{"null origin with fetch metadata", cookie, good, map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}, true},
		{"null origin alone", cookie, good, map[string]string{"Origin": "null"}, false},
		{"foreign origin", cookie, good, map[string]string{"Origin": "https://evil.example.com"}, false},
		{"http origin", cookie, good, map[string]string{"Origin": "http://access.example.com:8443"}, false},
		{"cross-site", cookie, good, map[string]string{"Sec-Fetch-Site": "cross-site"}, false},
		{"same-site", cookie, good, map[string]string{"Sec-Fetch-Site": "same-site"}, false},
		{"fetch none", cookie, good, map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"foreign referer", cookie, good, map[string]string{"Referer": "https://evil.example.com/"}, false},
		{"garbage referer", cookie, good, map[string]string{"Referer": "::%zz"}, false},
		{"missing token", cookie, "", nil, false},
		{"no cookie", "", good, nil, false},
		{"other cookie", "v1.other", good, nil, false},
		{"other purpose", cookie, g.token(csrfPending, cookie), nil, false},
		{"truncated token", cookie, good[:20], nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := g.check(csrfRequest(tc.token, tc.hdr), csrfSession, tc.cookie)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, errCSRF) {
				t.Fatalf("accepted (err %v)", err)
			}
		})
	}
}

func FuzzCSRFCheck(f *testing.F) {
	g := testGuard(f)
	f.Add("v1.x", "tok", "https://access.example.com:8443", "same-origin", "")
	f.Add("", "", "null", "", "https://evil/")
	f.Add("c", g.token(csrfSession, "c"), "", "", "")
	f.Fuzz(func(t *testing.T, cookie, token, origin, site, referer string) {
		r := csrfRequest("", map[string]string{"Origin": origin, "Sec-Fetch-Site": site, "Referer": referer})
		r.PostForm = url.Values{csrfField: {token}}
		err := g.check(r, csrfSession, cookie)
		if err == nil && (cookie == "" || token != g.token(csrfSession, cookie)) {
			t.Fatalf("accepted a wrong token")
		}
	})
}

func TestNormalizeTOTP(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"123456", "123456", true},
		{" 123 456 ", "123456", true},
		{"12345678", "12345678", true},
		{"12345", "", false},
		{"123456789", "", false},
		{"12345a", "", false},
		{"１２３４５６", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := normalizeTOTP(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("normalizeTOTP(%q) = %q, %v", tc.in, got, ok)
		}
	}
}
