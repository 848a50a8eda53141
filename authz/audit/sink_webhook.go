package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/portcullis/portcullis/authz/internal/webhook"
)

// The webhook sink POSTs each batch as JSON lines (Content-Type
// application/x-ndjson): the exact trail lines, in seq order, one per
// line. Headers name the sink, the instance and the seq range (a
// receiver de-duplicates redeliveries with instance + seq), and, when a
// secret is configured, sign the body as risk's alert webhooks do:
//
//	X-Portcullis-Sink: archive
//	X-Portcullis-Instance: gw-1
//	X-Portcullis-Seq: 1001-1500
//	X-Portcullis-Signature: sha256=<hex HMAC-SHA256 of the body>
//
// Any 2xx status acknowledges the batch; anything else (a redirect
// included: none is followed), or no answer within the timeout, is
// retried by the Shipper with backoff, indefinitely: a record is never
// dropped for a receiver that refuses it.
//
// Send's errors never contain the URL: they reach the log and the sink's
// status, and a Slack-style URL carries its secret in the path.

type webhookSink struct {
	cfg    SinkConfig
	client *http.Client
	body   bytes.Buffer
}

func newWebhookSink(c SinkConfig, opts SinkOptions) *webhookSink {
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{
			Timeout: c.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return &webhookSink{cfg: c, client: client}
}

func (s *webhookSink) Send(ctx context.Context, recs []Record) error {
	s.body.Reset()
	for _, r := range recs {
		s.body.Write(r.Line)
		s.body.WriteByte('\n')
	}
	body := s.body.Bytes()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return webhook.Redact(err, s.cfg.URL)
	}
	h := req.Header
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("User-Agent", "portcullis-audit")
	h.Set("X-Portcullis-Sink", s.cfg.Name)
	h.Set("X-Portcullis-Instance", recs[0].Instance)
	h.Set("X-Portcullis-Seq", strconv.FormatUint(recs[0].Seq, 10)+"-"+strconv.FormatUint(recs[len(recs)-1].Seq, 10))
	if len(s.cfg.Secret) > 0 {
		m := hmac.New(sha256.New, s.cfg.Secret)
		m.Write(body)
		h.Set("X-Portcullis-Signature", "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return webhook.Redact(err, s.cfg.URL)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func (s *webhookSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
