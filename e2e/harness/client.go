package harness

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

// LoopbackDialer dials every host name at 127.0.0.1 (same port): test host
// names like access.localhost exist only in the certificates.
func LoopbackDialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return LoopbackDialerFrom("")
}

// LoopbackDialerFrom is LoopbackDialer with the connection's source address
// set to localIP (e.g. 127.0.0.2, a configured trusted proxy); "" lets the
// kernel choose.
func LoopbackDialerFrom(localIP string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", port))
	}
}

// Client is a scripted, browser-less HTTP client: a cookie jar, every host
// dialled at 127.0.0.1, only ca trusted, and redirects never followed by
// itself (Follow does that step by step, so tests can stop anywhere).
type Client struct {
	HTTP *http.Client
	Jar  *cookiejar.Jar
	t    TB
}

// NewClient makes a Client trusting ca.
func NewClient(t TB, ca *CA) *Client {
	return NewClientTLS(t, ca.ClientTLS())
}

// NewClientFrom makes a Client trusting ca whose connections come from
// localIP.
func NewClientFrom(t TB, ca *CA, localIP string) *Client {
	c := NewClientTLS(t, ca.ClientTLS())
	c.HTTP.Transport.(*http.Transport).DialContext = LoopbackDialerFrom(localIP)
	return c
}

// NewClientTLS makes a Client with its own TLS settings.
func NewClientTLS(t TB, tc *tls.Config) *Client {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{
		DialContext:         LoopbackDialer(),
		TLSClientConfig:     tc,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &Client{
		HTTP: &http.Client{
			Jar:           jar,
			Transport:     tr,
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Jar: jar,
		t:   t,
	}
}

// Response is a response with its body read.
type Response struct {
	*http.Response
	Body string
}

// Location is the absolute redirect target, or nil.
func (r *Response) Location() *url.URL {
	loc := r.Header.Get("Location")
	if loc == "" {
		return nil
	}
	u, err := r.Request.URL.Parse(loc)
	if err != nil {
		return nil
	}
	return u
}

// IsRedirect reports a 3xx with a Location.
func (r *Response) IsRedirect() bool {
	return r.StatusCode >= 300 && r.StatusCode < 400 && r.Header.Get("Location") != ""
}

// Do sends req and reads the whole body. Transport errors fail the test.
func (c *Client) Do(req *http.Request) *Response {
	c.t.Helper()
	res, err := c.Try(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return res
}

// Try is Do that returns transport errors.
func (c *Client) Try(req *http.Request) (*Response, error) {
	res, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	recordResponseSecrets(res)
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	return &Response{Response: res, Body: string(b)}, nil
}

// Get fetches rawURL; hdr are "Name: value" pairs.
func (c *Client) Get(rawURL string, hdr ...string) *Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		c.t.Fatalf("GET %s: %v", rawURL, err)
	}
	addHeaders(req, hdr)
	return c.Do(req)
}

// PostForm posts vals to rawURL as a form.
func (c *Client) PostForm(rawURL string, vals url.Values, hdr ...string) *Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(vals.Encode()))
	if err != nil {
		c.t.Fatalf("POST %s: %v", rawURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	addHeaders(req, hdr)
	return c.Do(req)
}

func addHeaders(req *http.Request, hdr []string) {
	for _, h := range hdr {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
}

// Follow follows redirects from res (GET, as browsers do after 302/303)
// until a response is not a redirect, or stop returns true for the next
// target: then the redirect response itself is returned, its target not
// requested. stop may be nil.
func (c *Client) Follow(res *Response, stop func(*url.URL) bool) *Response {
	c.t.Helper()
	for i := 0; res.IsRedirect(); i++ {
		if i == 20 {
			c.t.Fatalf("more than 20 redirects, last to %s", res.Header.Get("Location"))
		}
		next := res.Location()
		if next == nil {
			c.t.Fatalf("bad Location %q", res.Header.Get("Location"))
		}
		if stop != nil && stop(next) {
			return res
		}
		res = c.Get(next.String())
	}
	return res
}

// Cookie returns the value of the named cookie the jar would send to
// rawURL, or "".
func (c *Client) Cookie(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}
