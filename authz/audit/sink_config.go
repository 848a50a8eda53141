package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"time"
)

// SinkConfig describes one sink: where the trail is shipped to. Validate
// reports problems as "field: message" with the field as the config file
// spells it (under audit.sinks[i]).
type SinkConfig struct {
	Name string // names the cursor file and the logs: letters, digits, '.', '_', '-'
	Kind string // SinkSyslog, SinkWebhook or SinkStdout

	// Syslog (RFC 5424 messages, octet-counting framing of RFC 6587):
	// Address is host:port. TLS nil sends over plain TCP; set, over TLS
	// (RFC 5425) with it as the client configuration (CA pool, server
	// name, client certificate).
	Address string
	TLS     *tls.Config
	// Hostname is the HOSTNAME field of each message; default the
	// machine's host name.
	Hostname string

	// Webhook: URL receives POSTs of JSON lines (https; http only to a
	// loopback address, a local relay). Secret, when set, signs each body:
	// X-Portcullis-Signature: sha256=<hex HMAC-SHA256>.
	URL    string
	Secret []byte

	// BatchRecords is the most records per delivery (default
	// DefaultSinkBatch); BatchWait how long a partial batch waits for more
	// (default 0, webhook DefaultWebhookWait).
	BatchRecords int
	BatchWait    time.Duration
	// Timeout bounds one delivery attempt (connect and write, or the HTTP
	// request); default DefaultSinkTimeout.
	Timeout time.Duration
}

// Sink defaults.
const (
	DefaultSinkTimeout = 10 * time.Second
	DefaultWebhookWait = time.Second
	maxSinkBatchWait   = time.Minute
)

// Validate checks c.
func (c SinkConfig) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Name == "" {
		bad("name", "required")
	} else if !validSinkName(c.Name) {
		bad("name", "must be 1-64 letters, digits, '.', '_' or '-' (it names the sink's cursor file)")
	}
	switch c.Kind {
	case SinkSyslog:
		if c.Address == "" {
			bad("address", "required for kind syslog (host:port)")
		} else if _, port, err := net.SplitHostPort(c.Address); err != nil || port == "" {
			bad("address", "must be host:port")
		}
		if c.URL != "" || c.Secret != nil {
			bad("url", "only for kind webhook")
		}
	case SinkWebhook:
		if err := checkSinkURL(c.URL); err != nil {
			bad("url", "%v", err)
		}
		if c.Address != "" || c.TLS != nil {
			bad("address", "only for kind syslog")
		}
	case SinkStdout:
		if c.Address != "" || c.TLS != nil {
			bad("address", "only for kind syslog")
		}
		if c.URL != "" || c.Secret != nil {
			bad("url", "only for kind webhook")
		}
	case "":
		bad("kind", "required: syslog, webhook or stdout")
	default:
		bad("kind", "must be syslog, webhook or stdout")
	}
	if c.BatchRecords < 0 || c.BatchRecords > maxSinkBatchRecord {
		bad("batch_records", "must be 1..%d", maxSinkBatchRecord)
	}
	if c.BatchWait < 0 || c.BatchWait > maxSinkBatchWait {
		bad("batch_wait", "must be between 0 and %s", maxSinkBatchWait)
	}
	if c.Timeout < 0 || (c.Timeout > 0 && c.Timeout < 100*time.Millisecond) || c.Timeout > 5*time.Minute {
		bad("timeout", "must be between 100ms and 5m")
	}
	return errors.Join(errs...)
}

// checkSinkURL accepts https URLs, and http only to a loopback address:
// records name users and addresses.
func checkSinkURL(raw string) error {
	if raw == "" {
		return errors.New("required for kind webhook")
	}
	return CheckWebhookURL(raw)
}

// CheckWebhookURL accepts absolute https URLs without credentials, and
// http only to a loopback address (a local relay): what is posted names
// users and addresses, so it never crosses a network in the clear.
// Audit sinks and risk alert webhooks both use it.
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return errors.New("must be an absolute https URL without credentials")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if a, err := netip.ParseAddr(u.Hostname()); (err == nil && a.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
		return errors.New("http is allowed only to a loopback address; use https")
	}
	return errors.New("must be an https URL")
}

// SinkOptions are a sink's injected dependencies.
type SinkOptions struct {
	Logger *slog.Logger
	// Dial opens syslog connections; default a net.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// HTTPClient posts to webhooks; default a client with the sink's
	// timeout that follows no redirects.
	HTTPClient *http.Client
	// Stdout is where the stdout sink writes; default os.Stdout.
	Stdout io.Writer
}

// NewSink builds the sink c describes (Validate it first). It does not
// connect: the first Send does, and retries are the Shipper's.
func NewSink(c SinkConfig, opts SinkOptions) (Sink, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("audit: sink %s: %w", c.Name, err)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultSinkTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch c.Kind {
	case SinkSyslog:
		return newSyslogSink(c, opts), nil
	case SinkWebhook:
		return newWebhookSink(c, opts), nil
	default:
		w := opts.Stdout
		if w == nil {
			w = os.Stdout
		}
		return &stdoutSink{w: w}, nil
	}
}

// ShipConfig returns the Shipper settings for c over the trail of
// instance in dir.
func (c SinkConfig) ShipConfig(dir, instance string) ShipConfig {
	wait := c.BatchWait
	if wait == 0 && c.Kind == SinkWebhook {
		wait = DefaultWebhookWait
	}
	return ShipConfig{Name: c.Name, Kind: c.Kind, Dir: dir, Instance: instance, BatchRecords: c.BatchRecords, BatchWait: wait}
}

// stdoutSink writes each record as a JSON line.
type stdoutSink struct {
	w   io.Writer
	buf []byte
}

func (s *stdoutSink) Send(_ context.Context, recs []Record) error {
	s.buf = s.buf[:0]
	for _, r := range recs {
		s.buf = append(s.buf, r.Line...)
		s.buf = append(s.buf, '\n')
	}
	_, err := s.w.Write(s.buf)
	return err
}

func (s *stdoutSink) Close() error { return nil }
