package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/e2e/harness"
)

// Crash safety of the audit trail, end to end (issue 5): `portcullis serve`
// is SIGKILLed while admin actions stream in over its admin socket and
// unauthenticated traffic hits its HTTPS door, three times over the same
// data and audit directories. An admin action is acknowledged when its 2xx
// answer arrives, and the admin API answers only after the action's audit
// events are durable; so after the restarts every acknowledged action's
// events are in the trail exactly once, the instance still has one
// unbroken chain (a recovery record for a cut torn line is allowed), and
// `portcullis audit verify` with a copy of the public key kept apart says
// OK. Actions in flight at the kill may or may not be there: nobody was
// told they were done.

const (
	crashRounds  = 3
	crashWorkers = 4
	crashAckKill = 200 // acknowledged actions per round before the kill
)

// crashAction is one acknowledged admin action: the synthetic user ID it
// named and which call it was.
type crashAction struct {
	user string
	kind string // "mfa-reset" or "explain"
}

func TestCrashAuditTrail(t *testing.T) {
	s := newSite(t, 1, map[string][]string{"crashadmin": {"admins"}})
	p := s.start(0, "")
	// The public key, copied apart from the trail before anything could
	// tamper with it, is what the final verify trusts.
	pubs, _ := filepath.Glob(filepath.Join(p.AuditDir, "*.pub"))
	if len(pubs) != 1 {
		t.Fatalf("want one checkpoint public key beside the trail, found %v", pubs)
	}
	pubkey := filepath.Join(t.TempDir(), "audit.pub")
	if data, err := os.ReadFile(pubs[0]); err != nil || os.WriteFile(pubkey, data, 0o600) != nil {
		t.Fatalf("copy the public key: %v", err)
	}

	var acked []crashAction
	for r := range crashRounds {
		got := crashRound(t, s, p, r)
		acked = append(acked, got...)
		t.Logf("round %d: %d actions acknowledged before the kill", r, len(got))
		// The trail as the crash left it verifies (an unsigned tail is a
		// note, not a problem).
		crashVerify(t, pubkey, p.AuditDir)
		p = p.Restart(t)
	}
	// After the last restart: a few more actions, then a clean stop.
	admin := p.AdminClient()
	for i := range 5 {
		a := crashAction{user: fmt.Sprintf("crash-user-final-%d", i), kind: []string{"mfa-reset", "explain"}[i%2]}
		if code, body, err := crashCall(admin, a); err != nil || code != http.StatusOK {
			t.Fatalf("action after the restarts: %d %v %s\n%s", code, err, body, tail(p.Output(), 3000))
		}
		acked = append(acked, a)
	}
	p.Stop()

	rep := crashVerify(t, pubkey, p.AuditDir)
	checkOneChain(t, p.AuditDir, p.Instance, rep)

	// Every acknowledged action is in the trail, exactly once.
	type key struct{ typ, action, user string }
	seen := map[key]int{}
	for _, e := range harness.ReadAudit(t, p.AuditDir) {
		switch e.Type {
		case audit.TypeAdmin:
			seen[key{e.Type, e.Attrs["action"], e.Target}]++
		case audit.TypeMFAReset:
			seen[key{e.Type, "", e.UserID}]++
		}
	}
	missing := 0
	for _, a := range acked {
		want := []key{{audit.TypeAdmin, "explain", a.user}}
		if a.kind == "mfa-reset" {
			want = []key{{audit.TypeAdmin, "mfa.reset", a.user}, {audit.TypeMFAReset, "", a.user}}
		}
		for _, k := range want {
			if n := seen[k]; n != 1 {
				if missing++; missing <= 10 {
					t.Errorf("acknowledged %s of %s: %s event present %d times, want 1", a.kind, a.user, k.typ, n)
				}
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d acknowledged audit events lost or duplicated (of %d actions)", missing, len(acked))
	}
	t.Logf("%d acknowledged actions all in the trail; %s", len(acked), strings.TrimSpace(rep))
}

// crashRound streams admin actions and unauthenticated traffic at p until
// crashAckKill actions were acknowledged, SIGKILLs p mid-stream, and
// returns the acknowledged actions.
func crashRound(t *testing.T, s *site, p *harness.Portcullis, round int) []crashAction {
	t.Helper()
	var (
		mu      sync.Mutex
		acked   []crashAction
		killed  atomic.Bool
		enough  = make(chan struct{})
		once    sync.Once
		wg      sync.WaitGroup
		failure = make(chan string, crashWorkers)
	)
	admin := p.AdminClient()
	for w := range crashWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !killed.Load(); i++ {
				a := crashAction{user: fmt.Sprintf("crash-user-%d-%d-%d", round, w, i), kind: []string{"mfa-reset", "explain"}[(w+i)%2]}
				code, body, err := crashCall(admin, a)
				if err == nil && code == http.StatusOK {
					mu.Lock()
					acked = append(acked, a)
					n := len(acked)
					mu.Unlock()
					if n >= crashAckKill {
						once.Do(func() { close(enough) })
					}
					continue
				}
				if !killed.Load() {
					failure <- fmt.Sprintf("%s %s before the kill: %d %v %s", a.kind, a.user, code, err, body)
				}
				return
			}
		}()
	}
	// Unacknowledged traffic the trail also records: anonymous requests
	// to a route and refused calls of the remote admin API.
	noise := s.client(t).HTTP
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !killed.Load(); i++ {
			target := p.URL(appHost, fmt.Sprintf("/crash-noise-%d-%d", round, i))
			if i%2 == 1 {
				target = p.AccessURL + "/api/admin/locks"
			}
			resp, err := noise.Get(target)
			if err != nil {
				continue // the server died under it
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()

	select {
	case <-enough:
	case msg := <-failure:
		killed.Store(true)
		wg.Wait()
		t.Fatalf("round %d: %s\n%s", round, msg, tail(p.Output(), 3000))
	}
	killed.Store(true)
	p.Kill(t)
	wg.Wait()
	select {
	case msg := <-failure:
		t.Fatalf("round %d: %s\n%s", round, msg, tail(p.Output(), 3000))
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	return acked
}

// crashCall performs one admin action naming a synthetic user: a second
// factor reset (a change, audited as admin action and as mfa.reset;
// idempotent, so users need not exist) or an explain (a read, audited too).
func crashCall(c *http.Client, a crashAction) (int, string, error) {
	var req *http.Request
	var err error
	switch a.kind {
	case "mfa-reset":
		req, err = http.NewRequest(http.MethodPost, harness.AdminURL("/api/admin/users/"+url.PathEscape(a.user)+"/mfa-reset"),
			strings.NewReader(`{"reason":"crash drill"}`))
	default:
		q := url.Values{"user": {a.user}, "app": {"app"}, "ip": {"127.0.0.1"}, "path": {"/x"}}
		req, err = http.NewRequest(http.MethodGet, harness.AdminURL("/api/admin/explain?"+q.Encode()), nil)
	}
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		// The status line arrived but the body did not: not acknowledged.
		return 0, "", err
	}
	return resp.StatusCode, string(body), nil
}

// crashVerify runs `portcullis audit verify --pubkey` on dir and returns
// its report; it fails the test unless the command exits 0 and says OK.
func crashVerify(t *testing.T, pubkey, dir string) string {
	t.Helper()
	r := harness.RunPortcullis(t, "audit", "verify", "--pubkey", pubkey, dir)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "audit trail "+dir+": OK\n") {
		t.Fatalf("audit verify: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// checkOneChain: the report names exactly one chain, the instance's, and
// its records on disk carry seq 1..N with no gap or repeat — every
// restart continued the chain instead of starting a new one.
func checkOneChain(t *testing.T, dir, instance, report string) {
	t.Helper()
	var chains []string
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, "instance ") {
			chains = append(chains, l)
		}
	}
	if len(chains) != 1 || !strings.HasPrefix(chains[0], "instance "+instance+": OK: ") {
		t.Fatalf("want one verified chain of %s, report:\n%s", instance, report)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var seqs []uint64
	recoveries := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 64*1024), 4<<20)
		for sc.Scan() {
			var rec struct {
				Instance string `json:"instance"`
				Type     string `json:"type"`
				Seq      uint64 `json:"seq"`
			}
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("%s: a line that is not JSON after a clean stop: %v", f, err)
			}
			if rec.Instance != instance {
				t.Fatalf("%s: a record of instance %q in the trail of %s", f, rec.Instance, instance)
			}
			if rec.Type == audit.TypeRecovery {
				recoveries++
			}
			seqs = append(seqs, rec.Seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("chain of %s: record %d has seq %d (want 1..%d without gaps or repeats)", instance, i+1, s, len(seqs))
		}
	}
	if want := fmt.Sprintf("OK: %d records (seq 1..%d)", len(seqs), len(seqs)); !strings.Contains(chains[0], want) {
		t.Fatalf("verify saw another chain than the files hold (%d records): %s", len(seqs), chains[0])
	}
	t.Logf("one chain of %d records, %d torn lines cut on recovery", len(seqs), recoveries)
}
