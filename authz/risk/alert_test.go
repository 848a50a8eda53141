package risk

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// delivery is one request the test webhook received.
type delivery struct {
	id, signature, contentType string
	body                       []byte
	subject                    string // of the alert, from either format
	status                     int    // what the receiver answered
}

// receiver is a webhook endpoint whose answers a test scripts per alert:
// status(subject, attempt) for the attempt-th delivery of an alert ID.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	status func(subject string, attempt int) int
	mu     sync.Mutex
	got    []delivery
	ids    map[string]int
	notify chan delivery
}

func newReceiver(t *testing.T, status func(subject string, attempt int) int) *receiver {
	r := &receiver{t: t, status: status, ids: map[string]int{}, notify: make(chan delivery, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{id: req.Header.Get("X-Portcullis-Alert-ID"), signature: req.Header.Get("X-Portcullis-Signature"),
			contentType: req.Header.Get("Content-Type"), body: body}
		var m map[string]any
		json.Unmarshal(body, &m)
		if s, ok := m["subject"].(string); ok {
			d.subject = s
		} else if text, ok := m["text"].(string); ok {
			// Slack format: "Portcullis <kind>: <subject> (<reason>) …"
			if _, rest, ok := strings.Cut(text, ": "); ok {
				d.subject, _, _ = strings.Cut(rest, " ")
			}
		}
		r.mu.Lock()
		r.ids[d.id]++
		attempt := r.ids[d.id]
		r.mu.Unlock()
		d.status = r.status(d.subject, attempt)
		if d.status == -1 { // drop the connection
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
		} else {
			w.WriteHeader(d.status)
		}
		r.mu.Lock()
		r.got = append(r.got, d)
		r.mu.Unlock()
		r.notify <- d
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// until returns every delivery up to and including the first successful
// one for subject. Alerts of one sink go out in order, one at a time, so
// when a later alert arrives, everything before it (retries included)
// has been delivered or given up.
func (r *receiver) until(subject string) []delivery {
	r.t.Helper()
	var out []delivery
	timeout := time.After(10 * time.Second)
	for {
		select {
		case d := <-r.notify:
			out = append(out, d)
			if d.subject == subject && d.status >= 200 && d.status < 300 {
				return out
			}
		case <-timeout:
			r.t.Fatalf("no successful delivery for %s; got %d deliveries", subject, len(out))
		}
	}
}

// afterRec is an injected backoff timer that fires at once and records
// how long it was asked to wait.
type afterRec struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (a *afterRec) After(d time.Duration) <-chan time.Time {
	a.mu.Lock()
	a.waits = append(a.waits, d)
	a.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func (a *afterRec) Waits() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.waits)
}

// run starts e.Run until the test ends.
func run(t *testing.T, e *Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestAlertDelivery(t *testing.T) {
	const sentinel = "user:sentinel"
	secret := []byte("webhook-signing-secret")
	for _, tc := range []struct {
		name   string
		format string
		secret []byte
		// answers for alice's alert, by attempt (then 200); the sentinel
		// always gets 200.
		answers  []int
		attempts int
		waits    []time.Duration
	}{
		{name: "json", format: "json", secret: secret, attempts: 1},
		{name: "slack", format: "slack", secret: secret, attempts: 1},
		{name: "unsigned", format: "json", attempts: 1},
		{name: "500 then 200", format: "json", secret: secret, answers: []int{500}, attempts: 2, waits: []time.Duration{time.Second}},
		{name: "connection dropped then 200", format: "json", answers: []int{-1}, attempts: 2, waits: []time.Duration{time.Second}},
		{name: "429 and 408 retried", format: "slack", answers: []int{429, 408}, attempts: 3, waits: []time.Duration{time.Second, 2 * time.Second}},
		{name: "400 not retried", format: "json", answers: []int{400}, attempts: 1},
		{name: "404 not retried", format: "json", answers: []int{404}, attempts: 1},
		{name: "gives up after 6 attempts", format: "json", answers: []int{503, 503, 503, 503, 503, 503, 503}, attempts: 6,
			waits: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReceiver(t, func(subject string, attempt int) int {
				if subject != sentinel && attempt <= len(tc.answers) {
					return tc.answers[attempt-1]
				}
				return http.StatusOK
			})
			after := &afterRec{}
			ev := newEnv(t, "embedded", Config{Webhooks: []Webhook{{Name: "ops", URL: r.srv.URL + "/hook", Format: tc.format, Secret: tc.secret}}},
				func(o *Options) { o.After = after.After; o.Client = r.srv.Client() })
			run(t, ev.e)
			l, err := ev.e.Lock(ev.ctx(), "alice", "suspicious", "admin-bob")
			if err != nil {
				t.Fatal(err)
			}
			ev.e.Lock(ev.ctx(), "sentinel", "end of test", "admin-bob")
			got := r.until(sentinel)
			alice := got[:len(got)-1]
			if len(alice) != tc.attempts {
				t.Fatalf("%d deliveries of alice's alert, want %d: %+v", len(alice), tc.attempts, alice)
			}
			for i, d := range alice {
				if d.id == "" || d.id != alice[0].id {
					t.Errorf("attempt %d has alert ID %q, first had %q", i+1, d.id, alice[0].id)
				}
				if d.contentType != "application/json" {
					t.Errorf("Content-Type %q", d.contentType)
				}
				if tc.secret == nil && d.signature != "" {
					t.Errorf("unsigned sink sent signature %q", d.signature)
				}
				if tc.secret != nil && !hmac.Equal([]byte(d.signature), []byte(sign(tc.secret, d.body))) {
					t.Errorf("signature %q does not verify", d.signature)
				}
			}
			if got[len(got)-1].id == alice[0].id {
				t.Error("two alerts share an ID")
			}
			if w := after.Waits(); !slices.Equal(w, tc.waits) {
				t.Errorf("backoff waits %v, want %v", w, tc.waits)
			}
			body := alice[0].body
			switch tc.format {
			case "json":
				var a Alert
				if err := json.Unmarshal(body, &a); err != nil {
					t.Fatal(err)
				}
				want := Alert{ID: alice[0].id, Time: t0, Instance: "i1", Kind: "lock", Subject: "user:alice", Reason: ReasonAdminLock,
					UserID: "alice", Ref: l.Ref, Detail: "locked by admin-bob: suspicious", Actor: "admin-bob"}
				if a != want {
					t.Errorf("alert\n%+v, want\n%+v", a, want)
				}
			case "slack":
				var m map[string]string
				if err := json.Unmarshal(body, &m); err != nil || len(m) != 1 {
					t.Fatalf("slack body %s: %v", body, err)
				}
				for _, s := range []string{"Portcullis lock: user:alice (admin-lock)", "locked by admin-bob: suspicious", l.Ref, "instance i1"} {
					if !strings.Contains(m["text"], s) {
						t.Errorf("slack text %q lacks %q", m["text"], s)
					}
				}
			}
		})
	}
}

// TestAlertDedup: the same anomaly goes out once per AlertDedup window
// (injected clock); locks always go out.
func TestAlertDedup(t *testing.T) {
	ev := newEnv(t, "embedded", Config{Webhooks: alertSink, AlertDedup: 30 * time.Minute})
	ctx := ev.ctx()
	ev.learn("alice", mustAddr("192.0.2.10"), 10)
	ev.clock.Set(at(7, 9, 0))
	for _, tc := range []struct {
		name    string
		advance time.Duration
		ip      string
		want    int
	}{
		{"first", 0, "198.51.100.5", 1},
		{"again at once", 0, "198.51.100.5", 0},
		{"again within the window", 29 * time.Minute, "198.51.100.77", 0},
		{"another new network", 0, "203.0.113.5", 1},
		{"after the window", time.Minute, "198.51.100.5", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev.clock.Advance(tc.advance)
			if _, err := ev.e.Assess(ctx, "alice", mustAddr(tc.ip), "web"); err != nil {
				t.Fatal(err)
			}
			if n := len(drainAlerts(ev.e)); n != tc.want {
				t.Errorf("%d alerts, want %d", n, tc.want)
			}
		})
	}
	t.Run("locks are never de-duplicated", func(t *testing.T) {
		for i := range 3 {
			if _, err := ev.e.Lock(ctx, "bob", "again", "admin"); err != nil {
				t.Fatal(err)
			}
			if _, err := ev.e.Unlock(ctx, "bob", "again", "admin"); err != nil {
				t.Fatal(err)
			}
			if n := len(drainAlerts(ev.e)); n != 2 {
				t.Errorf("round %d: %d alerts, want a lock and an unlock", i+1, n)
			}
		}
	})
}

// TestAlertReload: a reload that changes a sink's secret signs the next
// alerts with the new secret (the sink keeps its queue).
func TestAlertReload(t *testing.T) {
	r := newReceiver(t, func(string, int) int { return http.StatusOK })
	hook := func(secret string) Config {
		return Config{Webhooks: []Webhook{{Name: "ops", URL: r.srv.URL, Secret: []byte(secret)}}}
	}
	ev := newEnv(t, "embedded", hook("old-secret"), func(o *Options) { o.Client = r.srv.Client() })
	run(t, ev.e)
	ev.e.Lock(ev.ctx(), "alice", "x", "admin")
	d := r.until("user:alice")[0]
	if d.signature != sign([]byte("old-secret"), d.body) {
		t.Error("first alert not signed with the first secret")
	}
	if err := ev.e.SetConfig(hook("new-secret")); err != nil {
		t.Fatal(err)
	}
	ev.e.Lock(ev.ctx(), "bob", "x", "admin")
	d = r.until("user:bob")[0]
	if d.signature != sign([]byte("new-secret"), d.body) {
		t.Error("alert after the reload not signed with the new secret")
	}
	if err := ev.e.SetConfig(Config{}); err != nil {
		t.Fatal(err)
	}
	ev.e.Lock(ev.ctx(), "carol", "x", "admin")
	if n := queued(ev.e); n != 0 {
		t.Errorf("%d alerts queued with no sink configured", n)
	}
}
