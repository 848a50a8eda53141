package adminclient

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unixServer serves h on a Unix socket in a temp dir and returns its path.
func unixServer(t *testing.T, h http.Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return path
}

// recorder remembers the last request the fake admin API saw.
type recorder struct {
	method, path, rawPath, query, body, auth string
}

func fakeAPI(rec *recorder, status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*rec = recorder{r.Method, r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, string(b), r.Header.Get("Authorization")}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func TestRequests(t *testing.T) {
	tests := []struct {
		name                         string
		req                          Request
		method, rawPath, query, body string
	}{
		{"users", Users(), "GET", "/api/admin/users", "", ""},
		{"sessions all", Sessions(""), "GET", "/api/admin/sessions", "", ""},
		{"sessions of user", Sessions("https://idp#u1"), "GET", "/api/admin/sessions", "user=https%3A%2F%2Fidp%23u1", ""},
		{"revoke", Revoke("abc_DEF-1", "left"), "POST", "/api/admin/sessions/abc_DEF-1/revoke", "", `{"reason":"left"}`},
		{"revoke without reason", Revoke("abc", ""), "POST", "/api/admin/sessions/abc/revoke", "", `{}`},
		// A user ID is issuer#subject: one path segment, escaped.
		{"mfa reset", MFAReset("https://idp.example.com#u/1", "lost phone"), "POST", "/api/admin/users/https:%2F%2Fidp.example.com%23u%2F1/mfa-reset", "", `{"reason":"lost phone"}`},
		{"explain", Explain(ExplainQuery{User: "u", App: "grafana", Path: "/admin", IP: "10.0.0.1", Method: "POST", Groups: []string{"a", "b"}}),
			"GET", "/api/admin/explain", "app=grafana&groups=a%2Cb&ip=10.0.0.1&method=POST&path=%2Fadmin&user=u", ""},
		{"explain without groups", Explain(ExplainQuery{User: "u", App: "a", Path: "/", IP: "::1"}), "GET", "/api/admin/explain", "app=a&ip=%3A%3A1&path=%2F&user=u", ""},
	}
	var rec recorder
	c := NewUnix(unixServer(t, fakeAPI(&rec, 200, `{"ok":true}`)), 5*time.Second)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := c.Call(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != `{"ok":true}` {
				t.Errorf("body %q", body)
			}
			if rec.method != tc.method || rec.rawPath != tc.rawPath || rec.query != tc.query || rec.body != tc.body {
				t.Errorf("sent %s %s ?%s %s\nwant %s %s ?%s %s", rec.method, rec.rawPath, rec.query, rec.body, tc.method, tc.rawPath, tc.query, tc.body)
			}
			if rec.auth != "" {
				t.Errorf("unix client sent Authorization %q", rec.auth)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantMsg string
		ref     string
	}{
		{"json error with ref", 404, `{"error":"no such session","ref":"ref-7KQ2M9XH"}`, "server answered 404 Not Found: no such session (ref ref-7KQ2M9XH)", "ref-7KQ2M9XH"},
		{"store down", 503, `{"error":"state store unavailable","ref":"ref-1"}`, "server answered 503 Service Unavailable: state store unavailable (ref ref-1)", "ref-1"},
		{"plain text", 500, "boom\n", "server answered 500 Internal Server Error: boom", ""},
		{"control characters sanitised", 400, "{\"error\":\"bad\\u001b[31m\",\"ref\":\"r\"}", "server answered 400 Bad Request: bad?[31m (ref r)", "r"},
		{"empty body", 403, "", "server answered 403 Forbidden", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rec recorder
			c := NewUnix(unixServer(t, fakeAPI(&rec, tc.status, tc.body)), 5*time.Second)
			_, err := c.Call(context.Background(), Users())
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err %v is not *APIError", err)
			}
			if ae.Status != tc.status || ae.Ref != tc.ref || err.Error() != tc.wantMsg {
				t.Errorf("got %q (ref %q), want %q", err.Error(), ae.Ref, tc.wantMsg)
			}
		})
	}
}

func TestUnreachableSocket(t *testing.T) {
	c := NewUnix(filepath.Join(t.TempDir(), "nothing.sock"), time.Second)
	_, err := c.Call(context.Background(), Users())
	if err == nil || !strings.Contains(err.Error(), "cannot reach the admin API") {
		t.Fatalf("err %v", err)
	}
}

func TestOversizedAnswer(t *testing.T) {
	big := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 1<<20)
		for range 17 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	c := NewUnix(unixServer(t, big), 10*time.Second)
	if _, err := c.Call(context.Background(), Users()); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("err %v", err)
	}
}

func TestRemote(t *testing.T) {
	var rec recorder
	srv := httptest.NewTLSServer(fakeAPI(&rec, 200, `[]`))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pemCert(t, srv), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewRemote(RemoteOptions{Server: srv.URL, Token: "tok", CAFile: caFile, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(context.Background(), Users()); err != nil {
		t.Fatal(err)
	}
	if rec.auth != "Bearer tok" {
		t.Errorf("Authorization %q", rec.auth)
	}
	// Without the CA the server's certificate is refused.
	c2, _ := NewRemote(RemoteOptions{Server: srv.URL, Token: "tok", Timeout: 5 * time.Second})
	if _, err := c2.Call(context.Background(), Users()); err == nil {
		t.Fatal("untrusted certificate accepted")
	}
}

func TestRemoteRedirectNotFollowed(t *testing.T) {
	srv := httptest.NewTLSServer(http.RedirectHandler("https://evil.example/steal", http.StatusFound))
	defer srv.Close()
	c, err := NewRemote(RemoteOptions{Server: srv.URL, Token: "tok", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.http.Transport = srv.Client().Transport
	_, err = c.Call(context.Background(), Users())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusFound {
		t.Fatalf("redirect followed or not reported: %v", err)
	}
}

func TestNewRemoteRefuses(t *testing.T) {
	tests := []struct{ name, server, token, ca string }{
		{"plain http", "http://access.example.com", "t", ""},
		{"no scheme", "access.example.com", "t", ""},
		{"user info", "https://u:p@access.example.com", "t", ""},
		{"path", "https://access.example.com/api", "t", ""},
		{"empty token", "https://access.example.com", "", ""},
		{"missing CA file", "https://access.example.com", "t", "/nonexistent/ca.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRemote(RemoteOptions{Server: tc.server, Token: tc.token, CAFile: tc.ca}); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestDecodeTypes(t *testing.T) {
	var users []User
	err := json.Unmarshal([]byte(`[{"user_id":"u","roles":["a"],"groups":[],"mfa_enrolled":true,"last_login":"2026-01-02T03:04:05Z","sessions":2}]`), &users)
	if err != nil || len(users) != 1 || users[0].Sessions != 2 || !users[0].MFAEnrolled {
		t.Fatalf("%+v %v", users, err)
	}
}

func pemCert(t *testing.T, srv *httptest.Server) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}
