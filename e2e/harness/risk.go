package harness

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"
)

// Helpers for the risk (anomaly detection and lockdown) tests: the admin
// CLI's lock commands, SSH certificates through the gateway's API, wrong
// TOTP codes, and a webhook receiver.

// Admin runs `portcullis admin --socket SOCKET args…` against instance p.
// It fails the test unless the command exits 0.
func (p *Portcullis) Admin(t TB, args ...string) Result {
	t.Helper()
	r := RunPortcullis(t, append([]string{"admin", "--socket", p.AdminSocket}, args...)...)
	if r.Code != 0 {
		t.Fatalf("portcullis admin %v on %s: exit %d\n%s%s", args, p.Instance, r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// LockRow is one line of `portcullis admin locks`.
type LockRow struct {
	Subject, Reason, Ref string
	Line                 string // the whole line, for messages
}

// Locks lists the current locks and blocks as instance p reports them
// (`portcullis admin locks`, table SUBJECT REASON REF CREATED EXPIRES
// DETAIL; subjects, reasons and refs contain no spaces).
func (p *Portcullis) Locks(t TB) []LockRow {
	t.Helper()
	return ParseLocks(p.Admin(t, "locks").Stdout)
}

// ParseLocks reads the locks table (the header line and empty lines are
// skipped).
func ParseLocks(out string) []LockRow {
	var rows []LockRow
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] == "SUBJECT" || !strings.Contains(f[0], ":") {
			continue
		}
		rows = append(rows, LockRow{Subject: f[0], Reason: f[1], Ref: f[2], Line: sc.Text()})
	}
	return rows
}

// FindLock returns the row of subject, if listed.
func FindLock(rows []LockRow, subject string) (LockRow, bool) {
	for _, r := range rows {
		if r.Subject == subject {
			return r, true
		}
	}
	return LockRow{}, false
}

// SSHCert obtains a certificate for key through the gateway's API the
// way `portcullis login` does, minus the loopback listener: with the
// client's web session on accessURL (the access host of an instance with
// a bastion), it confirms on /ssh/login, reads the one-time code from the
// redirect to the (unused) loopback port, and exchanges it on
// /api/ssh/cert. The certificate is saved next to the key.
func (c *Client) SSHCert(accessURL string, key *SSHKey) (*ssh.Certificate, error) {
	state := RandomString(12)
	page, err := c.Try(mustGet(accessURL + "/ssh/login?port=40404&state=" + state))
	if err != nil {
		return nil, err
	}
	if page.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/ssh/login: %d %s", page.StatusCode, page.Header.Get("Location"))
	}
	f, ok := FormWith(page.Request.URL, page.Body, "csrf")
	if !ok {
		return nil, fmt.Errorf("/ssh/login has no confirmation form:\n%s", page.Body)
	}
	req, _ := http.NewRequest(http.MethodPost, f.Action, strings.NewReader(f.Fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.Try(req)
	if err != nil {
		return nil, err
	}
	loc := res.Location()
	if !res.IsRedirect() || loc == nil || loc.Query().Get("code") == "" {
		return nil, fmt.Errorf("confirmation answered %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	code := loc.Query().Get("code")
	RecordSecret(KindHopCode, code)
	body, _ := json.Marshal(map[string]string{"code": code, "public_key": string(ssh.MarshalAuthorizedKey(key.Public()))})
	req, _ = http.NewRequest(http.MethodPost, accessURL+"/api/ssh/cert", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err = c.Try(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/api/ssh/cert: %d %s", res.StatusCode, res.Body)
	}
	var out struct {
		Certificate string `json:"certificate"`
	}
	if err := json.Unmarshal([]byte(res.Body), &out); err != nil {
		return nil, fmt.Errorf("/api/ssh/cert: %v", err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out.Certificate))
	if err != nil {
		return nil, fmt.Errorf("/api/ssh/cert certificate: %v", err)
	}
	cert, ok := pk.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("/api/ssh/cert returned a %s, not a certificate", pk.Type())
	}
	k := key.Path + "-cert.pub"
	if err := os.WriteFile(k, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		return nil, err
	}
	key.CertFile = k
	return cert, nil
}

func mustGet(rawURL string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		panic(err)
	}
	return req
}

// WrongCodes returns n distinct six-digit codes that are not valid for
// the authenticator's secret at any step within ±2 of now (so none can
// be accepted by a server allowing ±1 step), each recorded for the
// secrets scan: a submitted code must never be logged, right or wrong.
func (o *TOTP) WrongCodes(n int) []string {
	valid := map[string]bool{}
	now := time.Now()
	for d := -2; d <= 2; d++ {
		if c, err := totp.GenerateCodeCustom(o.Secret, now.Add(time.Duration(d*totpPeriod)*time.Second), totpOpts); err == nil {
			valid[c] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		var b [4]byte
		rand.Read(b[:])
		v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) % 1000000
		// Codes from 100000 up: a leading zero would make the recorded
		// secret match inside longer numbers less reliably.
		if v < 100000 {
			continue
		}
		c := strconv.FormatUint(uint64(v), 10)
		if valid[c] || seen[c] {
			continue
		}
		seen[c] = true
		RecordSecret(KindTOTPCode, c)
		out = append(out, c)
	}
	return out
}

// Delivery is one POST a Webhook received.
type Delivery struct {
	Time    time.Time
	AlertID string // X-Portcullis-Alert-ID
	Status  int    // what the receiver answered
	Alert   map[string]any
}

// Webhook is an alert receiver on 127.0.0.1 that keeps every delivery. It
// answers 500 to the first delivery of an alert ID that failFirst selects
// (a receiver failing once) and 200 to everything else.
type Webhook struct {
	URL string

	failFirst func(alert map[string]any) bool
	mu        sync.Mutex
	seen      map[string]bool
	got       []Delivery
}

// StartWebhook starts the receiver for the test's lifetime; failFirst may
// be nil (never fail).
func StartWebhook(t TB, failFirst func(alert map[string]any) bool) *Webhook {
	t.Helper()
	w := &Webhook{seen: map[string]bool{}, failFirst: failFirst}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		d := Delivery{Time: time.Now(), AlertID: r.Header.Get("X-Portcullis-Alert-ID"), Status: http.StatusOK}
		json.Unmarshal(b, &d.Alert)
		w.mu.Lock()
		if !w.seen[d.AlertID] && w.failFirst != nil && w.failFirst(d.Alert) {
			w.seen[d.AlertID] = true
			d.Status = http.StatusInternalServerError
		}
		w.got = append(w.got, d)
		w.mu.Unlock()
		rw.WriteHeader(d.Status)
	}))
	t.Cleanup(srv.Close)
	w.URL = srv.URL
	return w
}

// Deliveries returns the deliveries so far whose alert has every given
// field ("kind", "reason", "user_id" …) with the given string value.
func (w *Webhook) Deliveries(match map[string]string) []Delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Delivery
	for _, d := range w.got {
		ok := true
		for k, v := range match {
			if s, _ := d.Alert[k].(string); s != v {
				ok = false
			}
		}
		if ok {
			out = append(out, d)
		}
	}
	return out
}
