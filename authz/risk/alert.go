package risk

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Alert is what webhooks receive (format "json": this object).
type Alert struct {
	ID       string    `json:"id"` // stable across retries: receivers de-duplicate on it
	Time     time.Time `json:"time"`
	Instance string    `json:"instance,omitempty"`
	Kind     string    `json:"kind"` // lock, block, unlock, anomaly
	Subject  string    `json:"subject"`
	Reason   string    `json:"reason"`
	UserID   string    `json:"user_id,omitempty"`
	SourceIP string    `json:"source_ip,omitempty"`
	Ref      string    `json:"ref,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Actor    string    `json:"actor,omitempty"`

	dedupKey string
}

const (
	alertQueue    = 1024
	alertAttempts = 6
	alertBackoff  = time.Second
	alertMaxWait  = time.Minute
)

// alert queues a for every webhook unless the same alert (kind, subject,
// reason, or a.dedupKey) went out within AlertDedup. Locks and unlocks
// are never de-duplicated: each is its own incident (its own Ref), and an
// account locked again soon after an unlock is what an operator must hear.
func (e *Engine) alert(a Alert) {
	key := a.Kind + "|" + a.Subject + "|" + a.Reason + "|" + a.dedupKey
	if a.Kind == "lock" || a.Kind == "unlock" {
		key += "|" + a.Ref
	}
	if !e.firstIn(key) {
		return
	}
	a.Time = e.now().UTC()
	a.Instance = e.opts.Instance
	a.ID = e.newRef()
	e.alerts.enqueue(a)
}

// firstIn reports whether key was not seen within AlertDedup, and marks it.
func (e *Engine) firstIn(key string) bool {
	window := e.cfg.Load().AlertDedup
	now := e.now()
	e.dedup.Lock()
	defer e.dedup.Unlock()
	if t, ok := e.dedup.seen[key]; ok && now.Sub(t) < window {
		return false
	}
	if len(e.dedup.seen) > 10000 {
		for k, t := range e.dedup.seen {
			if now.Sub(t) >= window {
				delete(e.dedup.seen, k)
			}
		}
	}
	e.dedup.seen[key] = now
	return true
}

// alerter delivers alerts to webhooks, each sink with its own queue and
// worker so one slow receiver never delays another. Delivery is at least
// once: retried with exponential backoff on network errors, 5xx, 408 and
// 429; other 4xx are the receiver refusing the payload and are not retried.
type alerter struct {
	client *http.Client
	after  func(time.Duration) <-chan time.Time
	log    *slog.Logger

	mu     sync.Mutex
	sinks  []Webhook
	queues map[string]chan Alert // sink URL+format → queue
	start  chan struct{}         // closed when run starts workers
	ctx    context.Context
}

func newAlerter(c *http.Client, after func(time.Duration) <-chan time.Time, log *slog.Logger) *alerter {
	return &alerter{client: c, after: after, log: log, queues: map[string]chan Alert{}}
}

func sinkKey(w Webhook) string { return w.Format + " " + w.URL }

func (a *alerter) setSinks(ws []Webhook) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sinks = ws
	for _, w := range ws {
		if _, ok := a.queues[sinkKey(w)]; !ok {
			q := make(chan Alert, alertQueue)
			a.queues[sinkKey(w)] = q
			if a.ctx != nil {
				go a.worker(a.ctx, sinkKey(w), q)
			}
		}
	}
}

// sink returns the configuration in force for the sink with key: a
// reload may have changed its name or secret (the queue is kept), or
// removed it.
func (a *alerter) sink(key string) (Webhook, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.sinks {
		if sinkKey(w) == key {
			return w, true
		}
	}
	return Webhook{}, false
}

func (a *alerter) enqueue(al Alert) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.sinks {
		select {
		case a.queues[sinkKey(w)] <- al:
		default:
			// The audit trail has the event; the alert is what is lost.
			a.log.Error("alert queue full, alert dropped", "sink", w.Name, "alert_id", al.ID, "kind", al.Kind, "subject", al.Subject)
		}
	}
}

func (a *alerter) run(ctx context.Context) {
	a.mu.Lock()
	a.ctx = ctx
	for key, q := range a.queues {
		go a.worker(ctx, key, q)
	}
	a.mu.Unlock()
	<-ctx.Done()
}

func (a *alerter) worker(ctx context.Context, key string, q chan Alert) {
	for {
		select {
		case <-ctx.Done():
			return
		case al := <-q:
			if w, ok := a.sink(key); ok {
				a.deliver(ctx, w, al)
			}
		}
	}
}

func (a *alerter) deliver(ctx context.Context, w Webhook, al Alert) {
	body, err := payload(w.Format, al)
	if err != nil {
		a.log.Error("encoding alert", "err", err)
		return
	}
	wait := alertBackoff
	for attempt := 1; ; attempt++ {
		retry, err := a.post(ctx, w, al.ID, body)
		if err == nil {
			a.log.Info("alert delivered", "sink", w.Name, "alert_id", al.ID, "attempt", attempt)
			return
		}
		if !retry || attempt == alertAttempts {
			a.log.Error("alert not delivered", "sink", w.Name, "alert_id", al.ID, "attempts", attempt, "err", err)
			return
		}
		a.log.Warn("alert delivery failed, retrying", "sink", w.Name, "alert_id", al.ID, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-a.after(wait):
		}
		wait = min(2*wait, alertMaxWait)
	}
}

func (a *alerter) post(ctx context.Context, w Webhook, id string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "portcullis-alerts")
	req.Header.Set("X-Portcullis-Alert-ID", id)
	if len(w.Secret) > 0 {
		m := hmac.New(sha256.New, w.Secret)
		m.Write(body)
		req.Header.Set("X-Portcullis-Signature", "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return true, err
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

func payload(format string, al Alert) ([]byte, error) {
	if format != "slack" {
		return json.Marshal(al)
	}
	text := fmt.Sprintf("Portcullis %s: %s (%s)", al.Kind, al.Subject, al.Reason)
	if al.Detail != "" {
		text += " — " + al.Detail
	}
	if al.Ref != "" {
		text += " — ref " + al.Ref
	}
	if al.Instance != "" {
		text += " — instance " + al.Instance
	}
	return json.Marshal(map[string]string{"text": text})
}
