// Package adminclient talks to a running Portcullis's admin API: over the
// local Unix socket (the socket's 0600 mode is the authentication), or over
// HTTPS to the access host with an admin's bearer token (minted at
// /admin/token after a fresh TOTP code). The same client also reaches the
// user API (/api/access, /api/audit) with any user's bearer token (minted
// at /token); RemoteOptions.API names which one in its errors.
package adminclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"
)

// maxResponse caps what is read from the server.
const maxResponse = 16 << 20

// Client is an admin API client. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host, no trailing slash
	token string
	api   string // how errors name the API
	http  *http.Client
}

// NewUnix returns a client for the admin socket at path.
func NewUnix(path string, timeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	// The host name is never resolved; it only fills the Host header.
	return &Client{base: "http://portcullis-admin", api: defaultAPI, http: &http.Client{Transport: tr, Timeout: timeout}}
}

// RemoteOptions configures NewRemote.
type RemoteOptions struct {
	Server string // https://access.example.com
	Token  string
	// CAFile trusts an extra root (a private CA); empty uses the system roots.
	CAFile  string
	Timeout time.Duration
	// API names the API in errors ("cannot reach the access API"); zero
	// value "admin API".
	API string
}

const defaultAPI = "admin API"

// NewRemote returns a client for the admin (or user) API over HTTPS.
// Plain http is refused: the bearer token is a credential.
func NewRemote(o RemoteOptions) (*Client, error) {
	api := o.API
	if api == "" {
		api = defaultAPI
	}
	u, err := url.Parse(o.Server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, errors.New("--server must be an https URL such as https://access.example.com")
	}
	if o.Token == "" {
		if api == defaultAPI {
			return nil, errors.New("the admin token is empty")
		}
		return nil, errors.New("the API token is empty")
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", o.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, Proxy: http.ProxyFromEnvironment}
	return &Client{base: "https://" + u.Host, token: o.Token, api: api, http: &http.Client{
		Transport: tr,
		Timeout:   o.Timeout,
		// A redirect would carry the request elsewhere; the admin API never
		// redirects, so one means something is wrong (e.g. a login page).
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// APIError is a non-2xx answer: the server's generic message, its stable
// reason code when it gives one ("self-approval"), and the reference ID
// that finds the cause in its log and audit trail.
type APIError struct {
	Status  int
	Message string
	Reason  string
	Ref     string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("server answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	var notes []string
	if e.Reason != "" {
		notes = append(notes, "reason "+e.Reason)
	}
	if e.Ref != "" {
		notes = append(notes, "ref "+e.Ref)
	}
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, ", ") + ")"
	}
	return msg
}

// Request is one admin API call.
type Request struct {
	Method string
	Path   string // already escaped, below the server root
	Query  url.Values
	Body   any // JSON-encoded when non-nil
	// Accept is the Accept header; zero value application/json. Reports
	// and recordings are other media types.
	Accept string
}

// Call performs r and returns the raw JSON body of a 2xx answer, an
// *APIError for any other status.
func (c *Client) Call(ctx context.Context, r Request) ([]byte, error) {
	resp, err := c.do(ctx, c.http, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("read %s answer: %w", c.api, err)
	}
	if len(data) > maxResponse {
		return nil, fmt.Errorf("%s answer is too large", c.api)
	}
	return data, nil
}

// Stream performs r and returns the body of a 2xx answer to read for as
// long as the server sends it (a live session), without the client's
// timeout; ctx ends it. The caller closes the body.
func (c *Client) Stream(ctx context.Context, r Request) (io.ReadCloser, error) {
	hc := *c.http
	hc.Timeout = 0
	resp, err := c.do(ctx, &hc, r)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// do sends r; a non-2xx answer is read, closed and returned as an
// *APIError.
func (c *Client) do(ctx context.Context, hc *http.Client, r Request) (*http.Response, error) {
	var body io.Reader
	if r.Body != nil {
		b, err := json.Marshal(r.Body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	target := c.base + r.Path
	if len(r.Query) > 0 {
		target += "?" + r.Query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, body)
	if err != nil {
		return nil, err
	}
	accept := r.Accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the %s: %w", c.api, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
		if err != nil {
			return nil, fmt.Errorf("read %s answer: %w", c.api, err)
		}
		return nil, apiError(resp.StatusCode, data)
	}
	return resp, nil
}

func apiError(status int, data []byte) *APIError {
	e := &APIError{Status: status}
	var body struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
		Ref    string `json:"ref"`
	}
	if json.Unmarshal(data, &body) == nil {
		e.Message, e.Reason, e.Ref = Sanitize(body.Error), Sanitize(body.Reason), Sanitize(body.Ref)
		return e
	}
	text := strings.TrimSpace(string(data))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	e.Message = Sanitize(text)
	return e
}

// Sanitize replaces control characters so that text from the server (user
// names come from the IdP) cannot rewrite the operator's terminal.
func Sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
}
