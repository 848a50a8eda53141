package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/server"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// lockedBuffer is an io.Writer safe for a command goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAdminSSHCommands drives admin sessions, watch, kill and
// revoke-cert through the CLI against a real instance whose bastion
// relays to an in-process target.
func TestAdminSSHCommands(t *testing.T) {
	f := testfixture.New(t)
	f.WithBastion(t)
	cfg, _, err := config.Load(f.ConfigPath, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, err := server.Open(ctx, cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	adminLn, err := server.ListenAdmin(cfg.AdminSocket)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- in.Run(ctx, adminLn, nil, nil) }()
	admin := func(args ...string) (int, string, string) {
		return runCLI(t, append([]string{"admin", "--socket", f.AdminSocket}, args...)...)
	}

	signer, cert := testfixture.Issue(t, in.SSHCA, "https://idp.example#carol")
	c, err := testfixture.Dial(in.SSHAddr().String(), cfg.Bastion.HostKeys[0].PublicKey(), signer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stdin, ended := testfixture.LiveCat(t, c)

	var out string
	waitFor(t, "the SSH session in admin sessions", func() bool {
		_, out, _ = admin("sessions")
		return strings.Contains(out, "root@"+testfixture.TargetName)
	})
	if !strings.Contains(out, "https://idp.example#carol") || !strings.Contains(out, strconv.FormatUint(cert.Serial, 10)) {
		t.Fatalf("admin sessions:\n%s", out)
	}
	var id string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "root@"+testfixture.TargetName) {
			// SSH SESSION USER LOGIN@TARGET SOURCE-IP STARTED LAST-ACTIVE SERIAL INSTANCE RECORDING
			fields := strings.Fields(line)
			id = fields[0]
			if len(fields) != 9 || fields[7] != cfg.Instance {
				t.Fatalf("session row %q does not name instance %q", line, cfg.Instance)
			}
		}
	}
	if !strings.Contains(out, "INSTANCE") {
		t.Fatalf("admin sessions lacks the INSTANCE column:\n%s", out)
	}
	recordingPath := filepath.Join(cfg.Bastion.RecordingDir, id+".pcrec")
	if !strings.Contains(out, recordingPath) {
		t.Fatalf("recording %s not listed:\n%s", recordingPath, out)
	}

	// watch follows the output until the session ends.
	watchOut, watchErr := &lockedBuffer{}, &lockedBuffer{}
	watched := make(chan int, 1)
	go func() {
		watched <- run([]string{"admin", "--socket", f.AdminSocket, "watch", id}, watchOut, watchErr)
	}()
	waitFor(t, "the watcher to see what carol types", func() bool {
		io.WriteString(stdin, "typed-by-carol\n")
		return strings.Contains(watchOut.String(), "typed-by-carol")
	})

	if code, out, errOut := admin("kill", id, "--reason", "incident 7"); code != exitOK || !strings.Contains(out, "killed") {
		t.Fatalf("kill: %d %s %s", code, out, errOut)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the killed SSH session did not end")
	}
	select {
	case code := <-watched:
		if code != exitOK || !strings.Contains(watchErr.String(), "the session ended") {
			t.Fatalf("watch: %d %s", code, watchErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not end with the session")
	}

	if code, out, errOut := admin("revoke-cert", "--key-id", "https://idp.example#carol", "--reason", "offboarding"); code != exitOK || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke-cert: %d %s %s", code, out, errOut)
	}
	if c2, err := testfixture.Dial(in.SSHAddr().String(), cfg.Bastion.HostKeys[0].PublicKey(), signer); err == nil {
		c2.Close()
		t.Fatal("a certificate revoked by key ID still logs in")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// The recording is closed with the kill's reason, and `recording
	// info` shows it.
	if _, err := os.Stat(recordingPath); err != nil {
		t.Fatal(err)
	}
	code, info, errOut := runCLI(t, "recording", "info", "--config", f.ConfigPath, recordingPath)
	if code != exitOK || !strings.Contains(info, "killed") || !strings.Contains(info, "incident 7") {
		t.Fatalf("recording info: %d\n%s%s", code, info, errOut)
	}
}
