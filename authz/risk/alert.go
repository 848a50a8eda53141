package risk

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/authz/internal/webhook"
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
	e.alerts.Enqueue(a)
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

// newAlerter delivers alerts to webhooks (package webhook): each sink
// with its own queue, at least once, with backoff; X-Portcullis-Alert-ID
// is the alert's ID.
func newAlerter(c *http.Client, after func(time.Duration) <-chan time.Time, log *slog.Logger) *webhook.Sender[Alert] {
	return webhook.New(webhook.Options[Alert]{
		Client: c, After: after, Log: log,
		UserAgent: "portcullis-alerts",
		IDHeader:  "X-Portcullis-Alert-ID",
		Noun:      "alert",
		ID:        func(a Alert) string { return a.ID },
		Encode:    payload,
		Attrs:     func(a Alert) []any { return []any{"kind", a.Kind, "subject", a.Subject} },
	})
}

// sinkKey identifies a sink (and its queue): the same URL may take both
// formats, so long as no two sinks share both.
func sinkKey(w Webhook) string { return w.Format + " " + w.URL }

func webhookSinks(ws []Webhook) []webhook.Sink {
	out := make([]webhook.Sink, len(ws))
	for i, w := range ws {
		out[i] = webhook.Sink{Name: w.Name, URL: w.URL, Format: w.Format, Secret: w.Secret}
	}
	return out
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
