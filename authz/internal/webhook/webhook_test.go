package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type msg struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// afterRec fires at once and records the waits asked for.
type afterRec struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (a *afterRec) after(d time.Duration) <-chan time.Time {
	a.mu.Lock()
	a.waits = append(a.waits, d)
	a.mu.Unlock()
	c := make(chan time.Time, 1)
	c <- time.Time{}
	return c
}

func (a *afterRec) get() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.waits)
}

// syncBuffer is a log destination safe for the workers' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newSender(c *http.Client, a *afterRec, logs io.Writer) *Sender[msg] {
	return New(Options[msg]{
		Client: c, After: a.after, Log: slog.New(slog.NewTextHandler(logs, nil)),
		UserAgent: "portcullis-test", IDHeader: "X-Portcullis-Test-ID", Noun: "message",
		ID: func(m msg) string { return m.ID },
		Encode: func(format string, m msg) ([]byte, error) {
			if format == "broken" {
				return nil, errors.New("cannot encode")
			}
			return json.Marshal(m)
		},
		Attrs: func(m msg) []any { return []any{"text", m.Text} },
	})
}

type call struct {
	id, sig, ua, ct, path string
	body                  []byte
}

// TestDeliver: what one message does against a receiver answering
// statuses in turn (200 after the list).
func TestDeliver(t *testing.T) {
	secret := []byte("hmac-key")
	for _, tc := range []struct {
		name     string
		statuses []int
		secret   []byte
		format   string
		calls    int
		waits    []time.Duration
		wantLog  string
	}{
		{name: "signed, first try", secret: secret, calls: 1, wantLog: "message delivered"},
		{name: "unsigned", calls: 1, wantLog: "message delivered"},
		{name: "5xx, 408 and 429 retried with backoff", statuses: []int{500, 408, 429}, calls: 4,
			waits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, wantLog: "attempt=4"},
		{name: "4xx not retried", statuses: []int{403}, calls: 1, wantLog: "status 403 (not retried)"},
		{name: "redirect not retried", statuses: []int{302}, calls: 1, wantLog: "status 302 (not retried)"},
		{name: "gives up", statuses: slices.Repeat([]int{503}, 10), calls: Attempts,
			waits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}, wantLog: "attempts=6"},
		{name: "encoding fails", format: "broken", calls: 0, wantLog: "cannot encode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var calls []call
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				calls = append(calls, call{r.Header.Get("X-Portcullis-Test-ID"), r.Header.Get(SignatureHeader),
					r.Header.Get("User-Agent"), r.Header.Get("Content-Type"), r.URL.Path, body})
				n := len(calls)
				mu.Unlock()
				if n <= len(tc.statuses) {
					if tc.statuses[n-1] == http.StatusFound {
						w.Header().Set("Location", "/elsewhere")
					}
					w.WriteHeader(tc.statuses[n-1])
				}
			}))
			defer srv.Close()
			a := &afterRec{}
			var logs syncBuffer
			// A default client follows redirects: the Sender must not.
			s := newSender(&http.Client{}, a, &logs)
			s.deliver(t.Context(), Sink{Name: "chat", URL: srv.URL + "/hook", Format: tc.format, Secret: tc.secret}, msg{ID: "m-1", Text: "hello"})
			if len(calls) != tc.calls {
				t.Fatalf("%d calls, want %d", len(calls), tc.calls)
			}
			for i, c := range calls {
				if c.id != "m-1" || c.ua != "portcullis-test" || c.ct != "application/json" || string(c.body) != `{"id":"m-1","text":"hello"}` {
					t.Errorf("call %d: %+v", i, c)
				}
				switch {
				case tc.secret == nil && c.sig != "":
					t.Errorf("call %d signed without a secret: %q", i, c.sig)
				case tc.secret != nil && !hmac.Equal([]byte(c.sig), []byte(Sign(tc.secret, c.body))):
					t.Errorf("call %d: signature %q does not verify", i, c.sig)
				case tc.secret != nil && c.sig == Sign([]byte("other"), c.body):
					t.Errorf("signature does not depend on the secret")
				}
			}
			if w := a.get(); !slices.Equal(w, tc.waits) {
				t.Errorf("waits %v, want %v", w, tc.waits)
			}
			if !strings.Contains(logs.String(), tc.wantLog) || !strings.Contains(logs.String(), "sink=chat") {
				t.Errorf("log lacks %q or the sink name:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

// TestDeliveryErrorsOmitURL: a Slack-style URL carries its secret in the
// path; whatever way delivery fails, the log names the sink and the
// cause, never the URL.
func TestDeliveryErrorsOmitURL(t *testing.T) {
	const secretPath = "/services/T0123/B0456/xoxSecretToken789"
	refused := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}
	serve := func(h http.HandlerFunc) func(t *testing.T) string {
		return func(t *testing.T) string {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			return srv.URL
		}
	}
	for _, tc := range []struct {
		name   string
		base   func(t *testing.T) string
		suffix string // after the secret path
		client *http.Client
		cause  string // in the log
	}{
		{name: "connection refused", base: refused, cause: "connection refused"},
		{name: "connection dropped", base: serve(func(w http.ResponseWriter, r *http.Request) {
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
		}), cause: "EOF"},
		{name: "client timeout", base: func(t *testing.T) string {
			block := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(block) }) // before Close, which waits for the handlers
			return srv.URL
		}, client: &http.Client{Timeout: 50 * time.Millisecond}, cause: "Client.Timeout"},
		{name: "redirect (to the secret path again) not followed", base: serve(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.Path+"?again", http.StatusFound)
		}), client: &http.Client{}, cause: "status 302 (not retried)"},
		{name: "untrusted certificate", base: func(t *testing.T) string {
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake error is expected
			srv.StartTLS()
			t.Cleanup(srv.Close)
			return srv.URL
		}, cause: "certificate"},
		{name: "query secret", base: refused, suffix: "?token=xoxQuerySecret", cause: "connection refused"},
		{name: "unparsable", base: refused, suffix: "%zz", cause: "invalid URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.base(t) + secretPath + tc.suffix
			client := tc.client
			if client == nil {
				client = &http.Client{}
			}
			var logs syncBuffer
			s := newSender(client, &afterRec{}, &logs)
			s.deliver(t.Context(), Sink{Name: "slack-ops", URL: raw}, msg{ID: "m-1"})
			out := logs.String()
			for _, secret := range []string{"xoxSecretToken789", "B0456", "xoxQuerySecret", raw} {
				if strings.Contains(out, secret) {
					t.Errorf("log contains %q:\n%s", secret, out)
				}
			}
			if !strings.Contains(out, "sink=slack-ops") || !strings.Contains(out, tc.cause) || !strings.Contains(out, "message not delivered") {
				t.Errorf("log lacks the sink, the cause %q or the outcome:\n%s", tc.cause, out)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	const raw = "https://user:pw@hooks.example.com/services/SECRETPATH?k=SECRETQUERY"
	netErr := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	for _, tc := range []struct {
		name string
		err  error
		want string
		is   error
	}{
		{name: "url.Error from the client", err: &url.Error{Op: "Post", URL: raw, Err: netErr}, want: "dial tcp: connection refused", is: netErr},
		{name: "url.Error for a redirect target", err: &url.Error{Op: "Post", URL: "https://other.example/x", Err: context.DeadlineExceeded},
			want: "context deadline exceeded", is: context.DeadlineExceeded},
		{name: "parse error", err: &url.Error{Op: "parse", URL: raw, Err: errors.New(`invalid URL escape "%zz"`)}, want: "invalid URL"},
		{name: "cause spelling the URL", err: &url.Error{Op: "Post", URL: raw, Err: errors.New("proxy refused " + raw)}, want: "proxy refused [redacted]"},
		{name: "plain error spelling the path", err: errors.New("no route to /services/SECRETPATH"), want: "no route to [redacted]"},
		{name: "plain error spelling the query", err: errors.New("bad k=SECRETQUERY"), want: "bad [redacted]"},
		{name: "wrapped url.Error", err: errors.Join(errors.New("ctx"), &url.Error{Op: "Post", URL: raw, Err: netErr}), want: "dial tcp: connection refused", is: netErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.err, raw)
			if got.Error() != tc.want {
				t.Errorf("%q, want %q", got.Error(), tc.want)
			}
			if tc.is != nil && !errors.Is(got, tc.is) {
				t.Errorf("the cause %v is lost", tc.is)
			}
		})
	}
	if Redact(nil, raw) != nil {
		t.Error("nil error redacted to non-nil")
	}
}

// TestQueues: a full queue drops (logged) instead of blocking; a reload
// that changes a sink's secret keeps its queue; a removed sink is fed no
// more; Run delivers what was queued before it and to sinks added while
// it runs, and returns after its workers.
func TestQueues(t *testing.T) {
	calls := make(chan call, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		calls <- call{id: r.Header.Get("X-Portcullis-Test-ID"), sig: r.Header.Get(SignatureHeader), path: r.URL.Path, body: body}
	}))
	defer srv.Close()
	next := func() call {
		t.Helper()
		select {
		case c := <-calls:
			return c
		case <-time.After(20 * time.Second): // a hang guard, not a timing assertion
			t.Fatal("no delivery")
			return call{}
		}
	}
	var logs syncBuffer
	s := newSender(srv.Client(), &afterRec{}, &logs)
	a := Sink{Name: "a", URL: srv.URL + "/a", Secret: []byte("old")}
	b := Sink{Name: "b", URL: srv.URL + "/b"}
	s.SetSinks([]Sink{a})
	for range QueueSize + 3 {
		s.Enqueue(msg{ID: "m", Text: "t"})
	}
	if n := s.Queued(); n != QueueSize {
		t.Fatalf("%d queued, want %d", n, QueueSize)
	}
	if n := strings.Count(logs.String(), "message queue full, message dropped"); n != 3 || !strings.Contains(logs.String(), "text=t") {
		t.Fatalf("%d drops logged:\n%s", n, logs.String())
	}
	if n := len(s.Drain()); n != QueueSize || s.Queued() != 0 {
		t.Fatalf("drained %d, %d left", n, s.Queued())
	}

	s.Enqueue(msg{ID: "before-run"})
	a.Secret = []byte("new")
	s.SetSinks([]Sink{a})
	if s.Queued() != 1 {
		t.Fatal("a reload of the secret lost the queue")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	if c := next(); c.id != "before-run" || c.path != "/a" || c.sig != Sign([]byte("new"), c.body) {
		t.Errorf("first delivery %+v: not the queued message signed with the reloaded secret", c)
	}
	s.SetSinks([]Sink{b})
	s.Enqueue(msg{ID: "after-reload"})
	if c := next(); c.id != "after-reload" || c.path != "/b" || c.sig != "" {
		t.Errorf("delivery after the reload %+v, want it at /b unsigned", c)
	}
	cancel()
	<-done
	select {
	case c := <-calls:
		t.Errorf("unexpected delivery %+v (to a removed sink?)", c)
	default:
	}
}
