package access

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

// Notification kinds.
const (
	NotifyRequest   = "request"   // a request waits for approval
	NotifyApproved  = "approved"  // it got its last approval; the grant starts
	NotifyDenied    = "denied"    //
	NotifyCancelled = "cancelled" // the requester withdrew it
)

// Notification is the JSON body approver webhooks receive.
type Notification struct {
	ID            string    `json:"id"` // stable across retries: receivers de-duplicate on it
	Time          time.Time `json:"time"`
	Instance      string    `json:"instance,omitempty"`
	Kind          string    `json:"kind"`
	RequestID     string    `json:"request_id"`
	UserID        string    `json:"user_id"`
	Role          string    `json:"role"`
	Duration      string    `json:"duration"`
	Reason        string    `json:"reason"`    // the requester's reason (bounded printable text)
	Approvals     string    `json:"approvals"` // "k/n"
	ApproverRoles []string  `json:"approver_roles"`
	ExpiresAt     time.Time `json:"expires_at"` // pending deadline
	Actor         string    `json:"actor,omitempty"`
}

// SignatureHeader carries "sha256=" + hex HMAC-SHA256(secret, body).
const SignatureHeader = "X-Portcullis-Signature"

const (
	hookQueue    = 1024
	hookAttempts = 6
	hookBackoff  = time.Second
	hookMaxWait  = time.Minute
)

// notify queues a notification about r for every webhook. It never
// blocks: a full queue drops it (logged); the audit trail has the event.
func (m *Manager) notify(kind string, r Request, actor string, approverRoles []string) {
	id, err := m.newID("nt-")
	if err != nil {
		m.log.Error("notification not sent", "request_id", r.ID, "err", err)
		return
	}
	m.hooks.enqueue(Notification{
		ID: id, Time: m.now().UTC(), Instance: m.inst, Kind: kind,
		RequestID: r.ID, UserID: r.UserID, Role: r.Role, Duration: r.Duration.String(), Reason: r.Reason,
		Approvals:     fmt.Sprintf("%d/%d", len(r.Approvals), r.Needed),
		ApproverRoles: approverRoles, ExpiresAt: r.ExpiresAt.UTC(), Actor: actor,
	})
}

// notifier delivers notifications, each sink with its own queue and worker
// so one slow receiver never delays another. Delivery is at least once:
// retried with exponential backoff on network errors, 5xx, 408 and 429;
// other 4xx are the receiver refusing the payload and are not retried.
// (The same conventions as risk's alert webhooks.)
type notifier struct {
	client *http.Client
	after  func(time.Duration) <-chan time.Time
	log    *slog.Logger

	mu     sync.Mutex
	sinks  []WebhookConfig
	queues map[string]chan Notification // URL → queue
	ctx    context.Context              // set while run runs
}

func newNotifier(c *http.Client, after func(time.Duration) <-chan time.Time, log *slog.Logger) *notifier {
	return &notifier{client: c, after: after, log: log, queues: map[string]chan Notification{}}
}

func (n *notifier) setSinks(ws []WebhookConfig) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sinks = ws
	for _, w := range ws {
		if _, ok := n.queues[w.URL]; !ok {
			q := make(chan Notification, hookQueue)
			n.queues[w.URL] = q
			if n.ctx != nil {
				go n.worker(n.ctx, w.URL, q)
			}
		}
	}
}

// sink returns the configuration in force for url: a reload may have
// changed its secret (the queue is kept) or removed it.
func (n *notifier) sink(url string) (WebhookConfig, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, w := range n.sinks {
		if w.URL == url {
			return w, true
		}
	}
	return WebhookConfig{}, false
}

func (n *notifier) enqueue(no Notification) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, w := range n.sinks {
		select {
		case n.queues[w.URL] <- no:
		default:
			n.log.Error("notification queue full, notification dropped", "sink", w.Name, "notification_id", no.ID, "request_id", no.RequestID)
		}
	}
}

// run starts the workers and waits for ctx to end. Notifications queued
// before run are delivered once it starts.
func (n *notifier) run(ctx context.Context) {
	var wg sync.WaitGroup
	n.mu.Lock()
	n.ctx = ctx
	for url, q := range n.queues {
		wg.Go(func() { n.worker(ctx, url, q) })
	}
	n.mu.Unlock()
	<-ctx.Done()
	n.mu.Lock()
	n.ctx = nil
	n.mu.Unlock()
	wg.Wait()
}

func (n *notifier) worker(ctx context.Context, url string, q chan Notification) {
	for {
		select {
		case <-ctx.Done():
			return
		case no := <-q:
			if w, ok := n.sink(url); ok {
				n.deliver(ctx, w, no)
			}
		}
	}
}

func (n *notifier) deliver(ctx context.Context, w WebhookConfig, no Notification) {
	body, err := json.Marshal(no)
	if err != nil {
		n.log.Error("encoding notification", "err", err)
		return
	}
	wait := hookBackoff
	for attempt := 1; ; attempt++ {
		retry, err := n.post(ctx, w, no.ID, body)
		if err == nil {
			n.log.Info("notification delivered", "sink", w.Name, "notification_id", no.ID, "attempt", attempt)
			return
		}
		if !retry || attempt == hookAttempts {
			n.log.Error("notification not delivered", "sink", w.Name, "notification_id", no.ID, "attempts", attempt, "err", err)
			return
		}
		n.log.Warn("notification delivery failed, retrying", "sink", w.Name, "notification_id", no.ID, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-n.after(wait):
		}
		wait = min(2*wait, hookMaxWait)
	}
}

// Sign returns the X-Portcullis-Signature value for body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (n *notifier) post(ctx context.Context, w WebhookConfig, id string, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "portcullis-access")
	req.Header.Set("X-Portcullis-Notification-ID", id)
	if len(w.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.Secret, body))
	}
	resp, err := n.client.Do(req)
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
