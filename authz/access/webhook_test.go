package access

import (
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/internal/webhook"
)

type hookCall struct {
	sig, id string
	body    []byte
}

// hookServer answers with statuses[i] for the i-th call (200 after the
// list) and reports every call.
func hookServer(t *testing.T, statuses ...int) (*httptest.Server, <-chan hookCall) {
	calls := make(chan hookCall, 100)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		status := http.StatusOK
		if n < len(statuses) {
			status = statuses[n]
		}
		n++
		mu.Unlock()
		calls <- hookCall{sig: r.Header.Get(SignatureHeader), id: r.Header.Get("X-Portcullis-Notification-ID"), body: body}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, calls
}

func next(t *testing.T, calls <-chan hookCall) hookCall {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-time.After(20 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("webhook not called")
		return hookCall{}
	}
}

// hookEnv runs a manager with webhooks and a backoff timer that fires at
// once and records the waits asked for.
func hookEnv(t *testing.T, hooks []WebhookConfig) (*env, *Manager, func() []time.Duration) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.Webhooks = hooks
	var mu sync.Mutex
	var waits []time.Duration
	after := func(d time.Duration) <-chan time.Time {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	m, err := New(cfg, Deps{Store: e.st, Feed: e.feed, Audit: e.audit, Now: e.clk.Now, After: after, Instance: "i1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel(t)
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, m, func() []time.Duration { mu.Lock(); defer mu.Unlock(); return append([]time.Duration(nil), waits...) }
}

func TestWebhookSignedAndRetried(t *testing.T) {
	secret := []byte("s3cret-for-hmac")
	srv, calls := hookServer(t, 500, 503, 200)
	_, m, waits := hookEnv(t, []WebhookConfig{{Name: "chat", URL: srv.URL + "/hook", Secret: secret}})
	r := must[Request](t)(m.Submit(t.Context(), alice, "prod-root", 2*time.Hour, "INC-9 db down"))
	var first hookCall
	for i := range 3 {
		c := next(t, calls)
		if i == 0 {
			first = c
		}
		if c.id != first.id || string(c.body) != string(first.body) {
			t.Fatalf("attempt %d differs from the first (id %q vs %q)", i, c.id, first.id)
		}
		if !hmac.Equal([]byte(c.sig), []byte(Sign(secret, c.body))) {
			t.Fatalf("bad signature %q", c.sig)
		}
		if c.sig == Sign([]byte("other"), c.body) {
			t.Fatal("signature does not depend on the secret")
		}
	}
	var n Notification
	if err := json.Unmarshal(first.body, &n); err != nil {
		t.Fatal(err)
	}
	if n.Kind != NotifyRequest || n.RequestID != r.ID || n.UserID != alice.UserID || n.Role != "prod-root" ||
		n.Reason != "INC-9 db down" || n.Approvals != "0/2" || len(n.ApproverRoles) != 2 || n.Instance != "i1" || n.ID != first.id {
		t.Fatalf("notification %+v", n)
	}
	if w := waits(); len(w) != 2 || w[0] != time.Second || w[1] != 2*time.Second {
		t.Fatalf("backoff %v", w)
	}
	select {
	case c := <-calls:
		t.Fatalf("called again after success: %s", c.body)
	default:
	}
}

func TestWebhookClientErrorNotRetried(t *testing.T) {
	srv, calls := hookServer(t, 400)
	_, m, _ := hookEnv(t, []WebhookConfig{{URL: srv.URL}})
	r := must[Request](t)(m.Submit(t.Context(), alice, "db-admin", time.Hour, "x"))
	c1 := next(t, calls)
	must[Request](t)(m.Deny(t.Context(), bob, r.ID, "no"))
	c2 := next(t, calls) // the queue is FIFO: a retry of c1 would come first
	var n Notification
	if err := json.Unmarshal(c2.body, &n); err != nil || n.Kind != NotifyDenied || c2.id == c1.id {
		t.Fatalf("second call %+v (%v), first id %s", n, err, c1.id)
	}
	if c1.sig != "" {
		t.Fatal("signed without a secret")
	}
}

func TestWebhookNeverBlocksSubmit(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	_, m, _ := hookEnv(t, []WebhookConfig{{URL: srv.URL}})
	// The receiver never answers; Submit still returns, and notifying far
	// more than the queue holds drops the excess instead of waiting.
	for i := range 3 {
		who := Person{UserID: "user-" + string(rune('a'+i))}
		if _, err := m.Submit(t.Context(), who, "db-admin", time.Hour, "x"); err != nil {
			t.Fatal(err)
		}
	}
	for range webhook.QueueSize + 10 {
		m.notify(NotifyRequest, Request{ID: "rq-x"}, "", nil)
	}
}
