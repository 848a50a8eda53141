package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// chattr sets or clears the immutable attribute: writes to the file then
// fail even for root, as on a full or failing disk (and even through a
// descriptor opened before). Tests that need it skip where it is not
// available (not root, a file system without attributes).
func chattr(t *testing.T, flag, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", flag, path).CombinedOutput(); err != nil {
		if flag == "+i" {
			t.Skipf("chattr +i %s (needs root and a file system with attributes, like ext4): %v %s", path, err, out)
		}
		t.Fatalf("chattr %s %s: %v %s", flag, path, err, out)
	}
}

// sshBanner connects with signer and returns the error and the
// authentication banners the bastion sent.
func sshBanner(r *running, signer ssh.Signer) (string, error) {
	var mu sync.Mutex
	var banner strings.Builder
	c, err := ssh.Dial("tcp", r.in.SSHAddr().String(), &ssh.ClientConfig{
		User: testfixture.TargetLogin + "@" + testfixture.TargetName, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(r.in.Config.Bastion.HostKeys[0].PublicKey()), Timeout: 10 * time.Second,
		BannerCallback: func(m string) error { mu.Lock(); banner.WriteString(m); mu.Unlock(); return nil },
	})
	if c != nil {
		c.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	return banner.String(), err
}

func loginStatus(r *running) int {
	req := httptest.NewRequest(http.MethodGet, "https://"+testfixture.AccessHost+"/login", nil)
	rec := httptest.NewRecorder()
	r.in.Gateway.Handler().ServeHTTP(rec, req)
	return rec.Code
}

// TestAuditUnwritableFailsClosed runs a whole instance on a real audit
// trail, then makes the trail's file immutable: writes fail as on a full
// disk. New web logins get 503 and new SSH connections are refused with
// a clear message; once the file is writable again, both work, the
// events held meanwhile are written, and the trail verifies.
func TestAuditUnwritableFailsClosed(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	r := runInstance(t, f)
	const alice = "https://idp.example#alice"
	if code := loginStatus(r); code != http.StatusFound {
		t.Fatalf("login while healthy: %d", code)
	}
	trail := filepath.Join(f.AuditDir, audit.FileName(r.in.Config.Instance))
	chattr(t, "+i", trail)
	t.Cleanup(func() { exec.Command("chattr", "-i", trail).Run() })

	r.in.Audit.Emit(context.Background(), audit.Event{Type: audit.TypeAdmin, Reason: "test"})
	if err := r.in.Audit.Flush(); err == nil {
		t.Fatal("a write to an immutable trail succeeded")
	}
	if r.in.Audit.Healthy() == nil {
		t.Fatal("the trail says it is healthy")
	}
	if code := loginStatus(r); code != http.StatusServiceUnavailable {
		t.Errorf("login while the trail cannot be written: %d, want 503", code)
	}
	signer, _ := r.issue(t, alice)
	banner, err := sshBanner(r, signer)
	if err == nil || !strings.Contains(banner, "the audit trail cannot be written") {
		t.Errorf("ssh while the trail cannot be written: err %v, banner %q", err, banner)
	}

	chattr(t, "-i", trail)
	if err := r.in.Audit.Flush(); err != nil {
		t.Fatalf("flush after the file is writable again: %v", err)
	}
	if code := loginStatus(r); code != http.StatusFound {
		t.Errorf("login after recovery: %d", code)
	}
	if banner, err := sshBanner(r, signer); err != nil {
		t.Errorf("ssh after recovery: %v (banner %q)", err, banner)
	}
	r.stop()
	rep, err := audit.Verify(f.AuditDir, nil, audit.VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("the trail does not verify after the outage: %v\n%s", err, rep)
	}
	text := auditText(t, f)
	for _, want := range []string{`"reason":"audit-unavailable"`, `"type":"admin","reason":"test"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the trail lacks %s (events held during the outage)", want)
		}
	}
}

// TestAuditSinkFromConfig: a webhook sink named in the config file ships
// the trail while the instance runs; the cursor survives a restart and
// the next instance ships only what came after.
func TestAuditSinkFromConfig(t *testing.T) {
	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<20)
		mu.Lock()
		for sc.Scan() {
			got = append(got, sc.Text())
		}
		mu.Unlock()
	}))
	defer hook.Close()
	f := testfixture.New(t)
	cfgFile, err := os.OpenFile(f.ConfigPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(cfgFile, "audit:\n  checkpoint_every: 5\n  sinks:\n    - {name: hook, kind: webhook, url: %q, batch_wait: 10ms}\n", hook.URL+"/audit")
	cfgFile.Close()

	shipped := func(marker string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range got {
			if strings.Contains(l, marker) {
				return true
			}
		}
		return false
	}
	r := runInstance(t, f)
	r.in.Audit.Emit(context.Background(), audit.Event{Type: audit.TypeAdmin, Reason: "first-run"})
	// Acknowledged too (the cursor moved past it), not only received.
	waitUntil(t, "the first run's event at the webhook, acknowledged", func() bool {
		st := r.in.SinkStatus()
		return shipped(`"reason":"first-run"`) && len(st) == 1 && st[0].Behind() == 0
	})
	if st := r.in.SinkStatus(); len(st) != 1 || st[0].Name != "hook" || st[0].Failing {
		t.Errorf("sink status %+v", st)
	}
	r.stop()
	mu.Lock()
	before := len(got)
	mu.Unlock()

	r2 := runInstance(t, f)
	r2.in.Audit.Emit(context.Background(), audit.Event{Type: audit.TypeAdmin, Reason: "second-run"})
	waitUntil(t, "the second run's event at the webhook", func() bool { return shipped(`"reason":"second-run"`) })
	mu.Lock()
	defer mu.Unlock()
	for _, l := range got[before:] {
		if strings.Contains(l, `"reason":"first-run"`) {
			t.Errorf("the restarted instance shipped the first run's event again: the cursor was not used")
		}
	}
}

// TestRestartSectionsSinks: a change to the sinks needs a restart and is
// named; the same file loaded twice (fresh TLS objects) is no change.
func TestRestartSectionsSinks(t *testing.T) {
	f := testfixture.New(t)
	cfgFile, err := os.OpenFile(f.ConfigPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(cfgFile, "audit:\n  sinks:\n    - {name: siem, kind: syslog, address: \"siem.example.com:6514\"}\n")
	cfgFile.Close()
	a, b := load(t, f), load(t, f)
	if got := restartSections(a, b); len(got) != 0 {
		t.Fatalf("unchanged file reported %v", got)
	}
	b.AuditSinks[0].Address = "other.example.com:6514"
	if got := restartSections(a, b); len(got) != 1 || got[0] != "audit.sinks" {
		t.Fatalf("got %v", got)
	}
}
