package harness

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Helpers for the just-in-time access and access-review tests: API tokens
// minted at /token, the user API (/api/access/*, /api/audit/*) with a
// bearer token, the admin API over the admin socket, the CLI with an
// environment of its own, and a receiver for the approvers' signed
// webhook notifications.

// Secret kinds of this file: an API token is a session token (a bearer
// credential), a webhook secret signs notifications. Neither may ever
// reach a log or the trail.
const (
	KindAPIToken      = "api-token"
	KindWebhookSecret = "webhook-secret"
)

// tokenIDs are the element IDs a token page may show the token in: /token
// (any MFA user) and /admin/token.
var tokenIDs = []string{"api-token", "token", "admin-token"}

// recordToken records a bearer token and its token part (the session
// cookie format is three dot-separated parts; the middle one must not
// leak on its own either, see recordCookie).
func recordToken(tok string) {
	RecordSecret(KindAPIToken, tok)
	if parts := strings.Split(tok, "."); len(parts) == 3 {
		RecordSecret(KindAPIToken, parts[1])
	}
}

// MintToken gets an API token on page (accessURL + "/token" for any MFA
// user, "/admin/token" for admins) with the client's web session and the
// next TOTP code of otp: GET the page, POST its form with the code, read
// the token the answer shows once. The token is recorded for the secrets
// scan.
func (c *Client) MintToken(page string, otp *TOTP) (string, error) {
	res, err := c.Try(mustGet(page))
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d %s\n%s", page, res.StatusCode, res.Header.Get("Location"), res.Body)
	}
	f, ok := FormWith(res.Request.URL, res.Body, "code")
	if !ok {
		return "", fmt.Errorf("%s has no code form:\n%s", page, res.Body)
	}
	f.Fields.Set("code", otp.Code(c.t))
	req, _ := http.NewRequest(http.MethodPost, f.Action, strings.NewReader(f.Fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err = c.Try(req)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: %d\n%s", f.Action, res.StatusCode, res.Body)
	}
	for _, id := range tokenIDs {
		if tok, ok := TextByID(res.Body, id); ok && tok != "" {
			recordToken(tok)
			return tok, nil
		}
	}
	return "", fmt.Errorf("no token (element id %v) on the answer of %s:\n%s", tokenIDs, f.Action, res.Body)
}

// WriteToken saves tok in a new 0600 file for --token-file and returns its
// path.
func WriteToken(t TB, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	writeSecret(t, p, []byte(tok+"\n"))
	return p
}

// API calls Portcullis's JSON APIs on one base URL with a bearer token.
type API struct {
	Base  string // e.g. https://access.localhost:PORT
	Token string
	c     *Client
}

// API returns a bearer-token caller using the client's transport (its
// cookies are not sent: the jar is bypassed).
func (c *Client) API(base, token string) *API { return &API{Base: base, Token: token, c: c} }

// Call sends method path (with query) and body as JSON (nil = none) and
// reads the answer. Transport errors fail the test.
func (a *API) Call(method, path string, body any) *Response {
	a.c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.c.t.Fatalf("encode %s %s: %v", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.Base+path, rd)
	if err != nil {
		a.c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	// Without the jar: the token alone must carry the identity.
	hc := *a.c.HTTP
	hc.Jar = nil
	res, err := hc.Do(req)
	if err != nil {
		a.c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	recordResponseSecrets(res)
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		a.c.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return &Response{Response: res, Body: string(b)}
}

// APIError is the JSON error body of the APIs.
type APIError struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
	Ref    string `json:"ref"`
}

// ParseAPIError decodes an error body; a body that is not one yields the
// zero value.
func ParseAPIError(body string) APIError {
	var e APIError
	json.Unmarshal([]byte(body), &e)
	return e
}

// DecodeJSON decodes a response body into v; a body that does not decode
// fails the test.
func DecodeJSON(t TB, r *Response, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Body), v); err != nil {
		t.Fatalf("%s %s answered %d with a body that is not the expected JSON: %v\n%s",
			r.Request.Method, r.Request.URL, r.StatusCode, err, r.Body)
	}
}

// AdminAPI calls the admin API over instance p's admin socket (as the
// local admin, no token).
type AdminAPI struct {
	hc *http.Client
	t  TB
}

// AdminAPI returns a caller of p's admin socket.
func (p *Portcullis) AdminAPI(t TB) *AdminAPI {
	sock := p.AdminSocket
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &AdminAPI{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, t: t}
}

// Call sends method path with body as JSON (nil = none) and returns the
// status and body. Transport errors fail the test.
func (a *AdminAPI) Call(method, path string, body any) (int, string) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatalf("encode %s %s: %v", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://portcullis-admin"+path, rd)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatalf("admin socket %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	return res.StatusCode, string(b)
}

// RunPortcullisEnv is RunPortcullis with the environment env (nothing of
// the test process's environment is inherited): for CLI commands that
// reach the gateway through a proxy (HTTPS_PROXY).
func RunPortcullisEnv(t TB, env []string, args ...string) Result {
	t.Helper()
	bin := BuildPortcullis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("portcullis %v: %v\n%s%s", args, err, res.Stdout, res.Stderr)
	}
	Archive(fmt.Sprintf("%s/run-%v", t.Name(), args), []byte(res.Stdout+res.Stderr))
	return res
}

// Notification is one POST the AccessHook received.
type Notification struct {
	Time      time.Time
	Body      []byte
	Signature string // X-Portcullis-Signature
	Fields    map[string]any
}

// Str is the string value of a top-level field ("" when absent).
func (n Notification) Str(key string) string {
	s, _ := n.Fields[key].(string)
	return s
}

// AccessHook receives the approvers' webhook notifications on 127.0.0.1
// (plain HTTP to loopback, which the webhook URL rules allow) and keeps
// each with its raw body and signature. Its secret is in SecretFile
// (0600), for access.webhooks[].secret_file.
type AccessHook struct {
	URL        string
	Secret     []byte
	SecretFile string

	mu  sync.Mutex
	got []Notification
}

// StartAccessHook starts a receiver with a fresh secret for the test's
// lifetime. It answers 200 to every POST.
func StartAccessHook(t TB) *AccessHook {
	t.Helper()
	secret := RandomString(24)
	RecordSecret(KindWebhookSecret, secret)
	h := &AccessHook{Secret: []byte(secret), SecretFile: filepath.Join(t.TempDir(), "access-hook.secret")}
	writeSecret(t, h.SecretFile, []byte(secret+"\n"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		n := Notification{Time: time.Now(), Body: b, Signature: r.Header.Get("X-Portcullis-Signature")}
		json.Unmarshal(b, &n.Fields)
		h.mu.Lock()
		h.got = append(h.got, n)
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL + "/access-hook"
	return h
}

// Verify reports whether n carries "sha256=" + hex HMAC-SHA256 of its
// body under the hook's secret.
func (h *AccessHook) Verify(n Notification) bool {
	mac := hmac.New(sha256.New, h.Secret)
	mac.Write(n.Body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(want), []byte(n.Signature))
}

// Received returns the notifications so far whose string fields have the
// given values.
func (h *AccessHook) Received(match map[string]string) []Notification {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Notification
	for _, n := range h.got {
		ok := true
		for k, v := range match {
			if n.Str(k) != v {
				ok = false
			}
		}
		if ok {
			out = append(out, n)
		}
	}
	return out
}

// Wait waits up to timeout for a notification matching match and returns
// the first; it fails the test, listing what came, when none does.
func (h *AccessHook) Wait(t TB, match map[string]string, timeout time.Duration) Notification {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := h.Received(match); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			h.mu.Lock()
			var seen []string
			for _, n := range h.got {
				seen = append(seen, string(n.Body))
			}
			h.mu.Unlock()
			t.Fatalf("no access notification matching %v within %v; received:\n%s", match, timeout, strings.Join(seen, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
