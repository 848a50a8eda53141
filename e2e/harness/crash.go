package harness

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Helpers for crash tests: kill a server the hard way, start it again on
// the same data and audit directories, and talk to its admin socket
// directly (many calls per second, which the CLI cannot do).

// Kill ends the server with SIGKILL — no shutdown, no final flush, no
// closing checkpoint or head marker: a crash — and returns once the process
// is gone. Its output so far is archived for the secrets scan under a name
// of its own (a restarted instance archives under the instance's name).
func (p *Portcullis) Kill(t TB) {
	t.Helper()
	if err := p.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil && !p.proc.exited() {
		t.Fatalf("SIGKILL %s: %v", p.Instance, err)
	}
	<-p.proc.done
	Archive(t.Name()+"/"+p.Instance+"/killed-"+strconv.Itoa(p.proc.cmd.Process.Pid)+"/output", []byte(p.proc.Output()))
}

// Restart starts `portcullis serve` again with p's configuration file (so
// on the same data directory, audit directory and ports) once p has
// stopped, and returns the new process.
func (p *Portcullis) Restart(t TB) *Portcullis {
	t.Helper()
	if !p.Exited() {
		t.Fatalf("restart of %s while it still runs", p.Instance)
	}
	cfg, err := os.ReadFile(p.ConfigFile)
	if err != nil {
		t.Fatalf("read config of %s: %v", p.Instance, err)
	}
	return StartPortcullis(t, string(cfg))
}

// AdminClient is an HTTP client of p's local admin socket: any URL's host
// is ignored (use AdminURL). Its timeout only guards against a hang.
func (p *Portcullis) AdminClient() *http.Client {
	sock := p.AdminSocket
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 16,
		},
	}
}

// AdminURL is the URL of an admin API path (e.g. "/api/admin/locks") for
// AdminClient.
func AdminURL(path string) string { return "http://admin" + path }
