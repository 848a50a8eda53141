// Package webhook delivers signed JSON messages to HTTP receivers for the
// authz packages that notify outsiders: risk's lockdown alerts and
// access's approver notifications. One convention for both, so a receiver
// verifies them the same way:
//
//   - POST, Content-Type application/json, a User-Agent and an ID header
//     per use; the ID is stable across retries (receivers de-duplicate on
//     it).
//   - With a secret, X-Portcullis-Signature: sha256=<hex HMAC-SHA256 of
//     the body>.
//   - Each sink has its own bounded queue and worker, so a slow receiver
//     never delays another, and enqueueing never blocks the caller: a
//     full queue drops the message (logged; the audit trail has the
//     event).
//   - At least once: network errors, 5xx, 408 and 429 are retried with
//     exponential backoff; other statuses are the receiver refusing the
//     payload and are not retried.
//
// A webhook URL is a credential (Slack-style URLs carry their secret in
// the path), so no log line or error this package produces contains it:
// sinks are named by their configured name.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// SignatureHeader carries "sha256=" + hex HMAC-SHA256(secret, body).
const SignatureHeader = "X-Portcullis-Signature"

// Delivery limits, the same for every use.
const (
	QueueSize = 1024 // messages waiting per sink
	Attempts  = 6    // per message, the first included
	Backoff   = time.Second
	MaxWait   = time.Minute
)

// Sign returns the SignatureHeader value for body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Sink is one receiver. URL and Format identify its queue: a reload that
// changes only its name or secret keeps the queue (and what waits in it).
type Sink struct {
	Name   string
	URL    string
	Format string // handed to Options.Encode; opaque here
	Secret []byte
}

func (s Sink) key() string { return s.Format + " " + s.URL }

// Options configure a Sender. Every field is required.
type Options[T any] struct {
	Client    *http.Client
	After     func(time.Duration) <-chan time.Time // backoff timer
	Log       *slog.Logger
	UserAgent string // e.g. "portcullis-alerts"
	IDHeader  string // e.g. "X-Portcullis-Alert-ID"
	// Noun names a message in log lines ("alert": "alert delivered",
	// field "alert_id").
	Noun string
	// ID is the message's ID (the IDHeader value).
	ID func(T) string
	// Encode is the JSON body of m for a sink of format.
	Encode func(format string, m T) ([]byte, error)
	// Attrs are log fields identifying m when it is dropped.
	Attrs func(T) []any
}

// Sender queues messages of type T and delivers them to its sinks.
type Sender[T any] struct {
	o     Options[T]
	idKey string

	mu     sync.Mutex
	sinks  []Sink
	queues map[string]chan T // Sink.key → queue
	ctx    context.Context   // set while Run runs
	wg     sync.WaitGroup    // workers started while Run runs
}

// New returns a Sender with no sinks. Redirects are never followed,
// whatever o.Client says: a signed message goes to the configured address
// or nowhere (a receiver answering 3xx is a failed delivery).
func New[T any](o Options[T]) *Sender[T] {
	if o.Client != nil {
		c := *o.Client
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		o.Client = &c
	}
	return &Sender[T]{o: o, idKey: o.Noun + "_id", queues: map[string]chan T{}}
}

// SetSinks replaces the sinks (reload). A sink new by URL and format gets
// a queue; a removed sink's queue is kept but no longer fed, and what
// waits in it is discarded as its worker reaches it.
func (s *Sender[T]) SetSinks(sinks []Sink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sinks = sinks
	for _, w := range sinks {
		if _, ok := s.queues[w.key()]; !ok {
			q := make(chan T, QueueSize)
			s.queues[w.key()] = q
			if s.ctx != nil {
				ctx, key := s.ctx, w.key()
				s.wg.Go(func() { s.worker(ctx, key, q) })
			}
		}
	}
}

// sink returns the configuration in force for key: a reload may have
// changed its name or secret, or removed it.
func (s *Sender[T]) sink(key string) (Sink, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.sinks {
		if w.key() == key {
			return w, true
		}
	}
	return Sink{}, false
}

// Enqueue queues m for every sink. It never blocks.
func (s *Sender[T]) Enqueue(m T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.sinks {
		select {
		case s.queues[w.key()] <- m:
		default:
			attrs := append([]any{"sink", w.Name, s.idKey, s.o.ID(m)}, s.o.Attrs(m)...)
			s.o.Log.Error(s.o.Noun+" queue full, "+s.o.Noun+" dropped", attrs...)
		}
	}
}

// Run delivers until ctx ends, then waits for the workers. Messages
// queued before Run are delivered once it starts.
func (s *Sender[T]) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	for key, q := range s.queues {
		s.wg.Go(func() { s.worker(ctx, key, q) })
	}
	s.mu.Unlock()
	<-ctx.Done()
	// SetSinks starts workers only while s.ctx is set, so once it is
	// cleared no wg.Go can race with Wait.
	s.mu.Lock()
	s.ctx = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// Queued is how many messages wait, summed over the queues.
func (s *Sender[T]) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, q := range s.queues {
		n += len(q)
	}
	return n
}

// Drain empties the queues and returns what was in them (tests of the
// callers look at what would have gone out, without Run).
func (s *Sender[T]) Drain() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []T
	for _, q := range s.queues {
		for len(q) > 0 {
			out = append(out, <-q)
		}
	}
	return out
}

func (s *Sender[T]) worker(ctx context.Context, key string, q chan T) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-q:
			if w, ok := s.sink(key); ok {
				s.deliver(ctx, w, m)
			}
		}
	}
}

func (s *Sender[T]) deliver(ctx context.Context, w Sink, m T) {
	id := s.o.ID(m)
	body, err := s.o.Encode(w.Format, m)
	if err != nil {
		s.o.Log.Error("encoding "+s.o.Noun, "sink", w.Name, s.idKey, id, "err", err)
		return
	}
	wait := Backoff
	for attempt := 1; ; attempt++ {
		retry, err := s.post(ctx, w, id, body)
		if err == nil {
			s.o.Log.Info(s.o.Noun+" delivered", "sink", w.Name, s.idKey, id, "attempt", attempt)
			return
		}
		if !retry || attempt == Attempts {
			s.o.Log.Error(s.o.Noun+" not delivered", "sink", w.Name, s.idKey, id, "attempts", attempt, "err", err)
			return
		}
		s.o.Log.Warn(s.o.Noun+" delivery failed, retrying", "sink", w.Name, s.idKey, id, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-s.o.After(wait):
		}
		wait = min(2*wait, MaxWait)
	}
}

// post sends body once. Its error never contains w.URL (Redact).
func (s *Sender[T]) post(ctx context.Context, w Sink, id string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, Redact(err, w.URL)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.o.UserAgent)
	req.Header.Set(s.o.IDHeader, id)
	if len(w.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.Secret, body))
	}
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return true, Redact(err, w.URL)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return true, fmt.Errorf("status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("status %d (not retried)", resp.StatusCode)
	}
}

// Redact returns err with a text that does not contain rawURL, for logs
// and status pages. *url.Error (what http.Client and url.Parse return)
// prints the whole URL (or a redirect's), so it is replaced by its
// cause; whatever still spells the URL, its path, query or user info is
// then cut out. errors.Is and errors.As still see the cause.
func Redact(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	msg := cause.Error()
	if ue != nil && ue.Op == "parse" {
		// The parser quotes pieces of the URL it could not read.
		msg = "invalid URL"
	}
	secrets := []string{rawURL}
	if u, perr := url.Parse(rawURL); perr == nil {
		secrets = append(secrets, u.String(), u.EscapedPath(), u.Path, u.RawQuery, u.Fragment)
		if u.User != nil {
			secrets = append(secrets, u.User.String())
		}
	}
	for _, s := range secrets {
		if len(s) > 1 { // "" and "/" name nothing
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return &redacted{msg: msg, cause: cause}
}

type redacted struct {
	msg   string
	cause error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.cause }
