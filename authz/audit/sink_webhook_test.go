package audit

import (
	"bytes"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWebhookSinkErrorsOmitURL: a Slack-style URL carries its secret in
// the path. However delivery fails, neither the shipper's log nor the
// sink's status spells it; they name the sink and the cause.
func TestWebhookSinkErrorsOmitURL(t *testing.T) {
	const secretPath = "/services/T0123/B0456/xoxAuditSecret789"
	for _, tc := range []struct {
		name    string
		base    func(t *testing.T) string
		timeout time.Duration
		cause   string
	}{
		{name: "connection refused", base: func(t *testing.T) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			return "http://" + addr
		}, cause: "connection refused"},
		{name: "connection dropped", base: func(t *testing.T) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
					c.Close()
				}
			}))
			t.Cleanup(srv.Close)
			return srv.URL
		}, cause: "EOF"},
		{name: "timeout", base: func(t *testing.T) string {
			block := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(block) }) // before Close, which waits for the handler
			return srv.URL
		}, timeout: 100 * time.Millisecond, cause: "deadline exceeded"},
		{name: "untrusted certificate", base: func(t *testing.T) string {
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake error is expected
			srv.StartTLS()
			t.Cleanup(srv.Close)
			return srv.URL
		}, cause: "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSinkTrail(t, dir, "gw", 3)
			raw := tc.base(t) + secretPath
			c := SinkConfig{Name: "slack-archive", Kind: SinkWebhook, URL: raw, BatchWait: time.Millisecond, Timeout: tc.timeout}
			sink, err := NewSink(c, SinkOptions{})
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{wrote: make(chan struct{}, 1)}
			sc := c.ShipConfig(dir, "gw")
			sc.Poll = time.Millisecond
			sh, err := NewShipper(sc, sink, ShipOptions{Now: time.Now, After: fastAfter, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			stop := runShipper(t, sh)
			deadline := time.After(30 * time.Second) // a hang guard, not a timing assertion
			for !bytes.Contains(logs.bytes(), []byte("audit sink failing")) {
				select {
				case <-logs.wrote:
				case <-deadline:
					t.Fatalf("no failure logged:\n%s", logs.bytes())
				}
			}
			stop()
			out := string(logs.bytes())
			status := sh.Status()
			for _, s := range []string{out, status.LastError, status.String()} {
				if strings.Contains(s, "xoxAuditSecret789") || strings.Contains(s, "B0456") {
					t.Errorf("the URL's secret path leaked: %s", s)
				}
			}
			if !strings.Contains(out, "sink=slack-archive") || !strings.Contains(out, tc.cause) || !strings.Contains(status.LastError, tc.cause) {
				t.Errorf("the log or status lacks the sink or the cause %q:\n%s\nstatus: %s", tc.cause, out, status.LastError)
			}
		})
	}
}
