// Package harness starts the real components that Portcullis's end-to-end
// tests and benchmarks run against, each on 127.0.0.1 with its own
// configuration in a temporary directory: the npm oidc-provider under Node,
// headless Chromium (driven with chromedp), redis-server, the portcullis
// binary itself, and a certificate authority for TLS.
//
// Every Start function registers its own cleanup with t.Cleanup, so a test
// never leaks a process.
package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TB is the subset of testing.TB the harness uses, so benchmarks (a plain
// program) can drive it too.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Name() string
}

var _ TB = (testing.TB)(nil)

// RepoRoot is the module root (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// proc is a child process whose output is kept for failure messages.
type proc struct {
	cmd      *exec.Cmd
	mu       sync.Mutex
	out      strings.Builder
	done     chan struct{}
	stopOnce sync.Once
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out.Len() < 1<<20 {
		p.out.Write(b)
	}
	return len(b), nil
}

// Output is everything the process printed so far.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop interrupts the process (a graceful shutdown: servers flush their
// audit trail on SIGINT) and kills it if it has not exited after 10 s.
// Safe to call more than once and after the process exited by itself.
func (p *proc) stop() {
	p.stopOnce.Do(func() {
		if p.cmd.Process == nil {
			return
		}
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProc runs cmd, waits until a line of its stdout satisfies ready (or
// the deadline passes) and returns that line. The process is stopped at
// cleanup.
func startProc(t TB, name string, cmd *exec.Cmd, timeout time.Duration, ready func(line string) bool) (*proc, string) {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	cmd.Stderr = p
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", name, err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p, line)
			select {
			case lines <- line:
			default:
			}
		}
		io.Copy(io.Discard, stdout)
		close(lines)
	}()
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.done
				t.Fatalf("%s exited before it was ready:\n%s", name, p.Output())
			}
			if ready(line) {
				// Keep draining so the child never blocks on a full pipe.
				go func() {
					for range lines {
					}
				}()
				return p, line
			}
		case <-deadline.C:
			t.Fatalf("%s not ready after %v:\n%s", name, timeout, p.Output())
		}
	}
}

// ctxTimeout is a context for one harness step.
func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
