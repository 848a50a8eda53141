package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// waitFor polls cond (no fixed sleeps standing in for synchronisation: the
// loop ends as soon as the condition holds).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func auditTrail(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		b.Write(data)
	}
	return b.String()
}

// TestServe runs `serve` in-process against the fixture's configuration:
// the admin socket answers, SIGHUP reloads (a good file swaps the policy, a
// bad one is refused and audited), and cancellation stops it cleanly.
func TestServe(t *testing.T) {
	f := testfixture.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- runContext(ctx, []string{"serve", "--config", f.ConfigPath}, &bytes.Buffer{}, &stderr) }()

	adminOK := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"admin", "--socket", f.AdminSocket}, args...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	waitFor(t, "the admin socket", func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d: %s", code, stderr.String())
		default:
		}
		code, _ := adminOK("sessions")
		return code == 0
	})
	if info, err := os.Stat(f.AdminSocket); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode: %v %v", info, err)
	}
	explainViewer := func() string {
		_, out := adminOK("explain", "--user", "v", "--groups", "viewers", "--app", "app", "--path", "/", "--ip", "127.0.0.1")
		return out
	}
	if out := explainViewer(); !strings.Contains(out, "no-roles") {
		t.Fatalf("viewer role exists before reload: %s", out)
	}

	// A valid change: SIGHUP swaps the policy.
	f.WriteConfig(t, "    - {name: viewer, groups: [viewers], allow: [{apps: [app]}]}\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reloaded policy", func() bool { return strings.Contains(explainViewer(), "ALLOW") })
	waitFor(t, "the reload audit event", func() bool {
		return strings.Contains(auditTrail(t, f.AuditDir), `"type":"config.reload","decision":"allow","reason":"policy-reloaded"`)
	})

	// A broken file: the policy stays, the failure is audited.
	if err := os.WriteFile(f.ConfigPath, []byte("policy: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused reload", func() bool {
		return strings.Contains(auditTrail(t, f.AuditDir), `"type":"config.reload","decision":"deny","reason":"invalid-config"`)
	})
	if out := explainViewer(); !strings.Contains(out, "ALLOW") {
		t.Fatalf("a bad reload changed the policy: %s", out)
	}

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := os.Stat(f.AdminSocket); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
}
