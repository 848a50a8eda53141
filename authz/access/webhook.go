package access

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/authz/internal/webhook"
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
const SignatureHeader = webhook.SignatureHeader

// Sign returns the X-Portcullis-Signature value for body under secret.
func Sign(secret, body []byte) string { return webhook.Sign(secret, body) }

// notify queues a notification about r for every webhook. It never
// blocks: a full queue drops it (logged); the audit trail has the event.
func (m *Manager) notify(kind string, r Request, actor string, approverRoles []string) {
	id, err := m.newID("nt-")
	if err != nil {
		m.log.Error("notification not sent", "request_id", r.ID, "err", err)
		return
	}
	m.hooks.Enqueue(Notification{
		ID: id, Time: m.now().UTC(), Instance: m.inst, Kind: kind,
		RequestID: r.ID, UserID: r.UserID, Role: r.Role, Duration: r.Duration.String(), Reason: r.Reason,
		Approvals:     fmt.Sprintf("%d/%d", len(r.Approvals), r.Needed),
		ApproverRoles: approverRoles, ExpiresAt: r.ExpiresAt.UTC(), Actor: actor,
	})
}

// newNotifier delivers notifications with the conventions of risk's alert
// webhooks (package webhook): per-sink queues, at-least-once delivery
// with backoff, the X-Portcullis-Notification-ID header.
func newNotifier(c *http.Client, after func(time.Duration) <-chan time.Time, log *slog.Logger) *webhook.Sender[Notification] {
	return webhook.New(webhook.Options[Notification]{
		Client: c, After: after, Log: log,
		UserAgent: "portcullis-access",
		IDHeader:  "X-Portcullis-Notification-ID",
		Noun:      "notification",
		ID:        func(n Notification) string { return n.ID },
		Encode:    func(_ string, n Notification) ([]byte, error) { return json.Marshal(n) },
		Attrs:     func(n Notification) []any { return []any{"request_id", n.RequestID} },
	})
}

func webhookSinks(ws []WebhookConfig) []webhook.Sink {
	out := make([]webhook.Sink, len(ws))
	for i, w := range ws {
		out[i] = webhook.Sink{Name: w.Name, URL: w.URL, Secret: w.Secret}
	}
	return out
}
