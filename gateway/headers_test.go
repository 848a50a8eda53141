package gateway

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

func TestIsIdentityHeader(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"X-Forwarded-User", true},
		{"x-forwarded-user", true},
		{"X_Forwarded_User", true},
		{"X_forwarded_user", true}, // what Go's server makes of "x_forwarded_user"
		{"X-FORWARDED-EMAIL", true},
		{"X-Forwarded-Groups", true},
		{"X-Forwarded-Preferred-Username", true},
		{"X-Forwarded-For", true},
		{"X_Forwarded_For", true},
		{"X-Forwarded-Host", true},
		{"X-Auth-Request-User", true},
		{"X-Auth-Request-Anything-Else", true},
		{"X_Auth_Request_Email", true},
		{"Remote-User", true},
		{"Remote_User", true},
		{"REMOTE_USER", true},
		{"X-Remote-User", true},
		{"X-Portcullis-User", true},
		{"X-Portcullis-Jwt-Assertion", true},
		{"X_Portcullis_Jwt_Assertion", true},
		{"X-Webauth-User", true},
		{"X-Real-Ip", true},
		{"Forwarded", true},
		{"Authorization", false}, // upstreams may use their own credentials
		{"Cookie", false},
		{"Accept", false},
		{"X-Forwarded", false},
		{"Remote-Users", false},
		{"X-Portcullis", false},
		{"X-Request-Id", false},
		{"", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isIdentityHeader(tc.name); got != tc.want {
				t.Fatalf("isIdentityHeader(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { isIdentityHeader("X_Forwarded_User") }); n != 0 {
		t.Fatalf("isIdentityHeader allocates %v", n)
	}
}

func TestStripCookies(t *testing.T) {
	const name = "__Host-portcullis"
	tests := []struct {
		name string
		in   []string
		want []string // nil = header removed
	}{
		{name: "only ours", in: []string{"__Host-portcullis=v1.secret.mac"}, want: nil},
		{name: "ours among others", in: []string{"a=1; __Host-portcullis=v1.x.y; b=2"}, want: []string{"a=1; b=2"}},
		{name: "login-flow cookies too", in: []string{"__Host-portcullis-mfa=z; theme=dark"}, want: []string{"theme=dark"}},
		{name: "split lines (HTTP/2)", in: []string{"a=1", "__Host-portcullis=s", "b=2"}, want: []string{"a=1", "b=2"}},
		{name: "untouched when absent", in: []string{"a=1; b=2"}, want: []string{"a=1; b=2"}},
		{name: "similar name kept", in: []string{"x__Host-portcullisy=1"}, want: []string{"x__Host-portcullisy=1"}},
		{name: "spaces around name", in: []string{"a=1;   __Host-portcullis =v"}, want: []string{"a=1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Cookie": slices.Clone(tc.in)}
			stripCookies(h, name)
			got, ok := h["Cookie"]
			if tc.want == nil {
				if ok {
					t.Fatalf("Cookie = %q, want removed", got)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Cookie = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		name   string
		lines  []string
		want   string
		wantOK bool
	}{
		{"single", []string{"__Host-portcullis=abc"}, "abc", true},
		{"among others", []string{"a=1; __Host-portcullis=abc; b=2"}, "abc", true},
		{"second line", []string{"a=1", "__Host-portcullis=abc"}, "abc", true},
		{"quoted", []string{`__Host-portcullis="abc"`}, "abc", true},
		{"prefix name does not match", []string{"__Host-portcullis-mfa=abc"}, "", false},
		{"absent", []string{"a=1"}, "", false},
		{"no header", nil, "", false},
		{"first wins", []string{"__Host-portcullis=one; __Host-portcullis=two"}, "one", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}}
			if tc.lines != nil {
				r.Header["Cookie"] = tc.lines
			}
			got, ok := cookieValue(r, "__Host-portcullis")
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("cookieValue = %q, %v; want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestSanitizeHeaderValue(t *testing.T) {
	for in, want := range map[string]string{
		"alice":               "alice",
		"a\r\nX-Evil: 1":      "a??X-Evil: 1",
		"tab\tok":             "tab\tok",
		"del\x7f":             "del?",
		"ünïcode@example.com": "ünïcode@example.com",
	} {
		if got := sanitizeHeaderValue(in); got != want {
			t.Errorf("sanitizeHeaderValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHSTSValueFloor(t *testing.T) {
	for _, d := range []time.Duration{0, time.Hour, minHSTS} {
		if got := hstsValue(d)[0]; got != "max-age=31536000; includeSubDomains" {
			t.Errorf("hstsValue(%v) = %q", d, got)
		}
	}
	if got := hstsValue(2 * minHSTS)[0]; got != "max-age=63072000; includeSubDomains" {
		t.Errorf("hstsValue(2y) = %q", got)
	}
}
