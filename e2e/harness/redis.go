package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SharedRedis is the address of the redis-server the suite shares
// (PORTCULLIS_TEST_REDIS, default 127.0.0.1:6379; e2e/setup.sh starts one).
// Tests isolate themselves with a unique key prefix (KeyPrefix). It fails
// the test when nothing answers: Redis is a real component, not optional.
func SharedRedis(t TB) string {
	t.Helper()
	addr := os.Getenv("PORTCULLIS_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("redis-server not reachable at %s (run e2e/setup.sh, which starts one): %v", addr, err)
	}
	c.Close()
	return addr
}

// KeyPrefix is unique per test so parallel runs never share state.
func KeyPrefix(t TB) string {
	return fmt.Sprintf("pc-e2e:%d:%s:", time.Now().UnixNano(), strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
}

// PrivateRedis is a redis-server of the test's own on a free port, for
// tests that stop and restart it. With appendonly it persists to its dir.
type PrivateRedis struct {
	Addr string
	dir  string
	port int
	cmd  *exec.Cmd
	t    TB
}

// StartPrivateRedis starts a redis-server that only this test uses.
func StartPrivateRedis(t TB, persist bool) *PrivateRedis {
	t.Helper()
	port := FreePort(t)
	r := &PrivateRedis{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: t.TempDir(), port: port, t: t}
	r.Start(persist)
	t.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on the same port and directory.
func (r *PrivateRedis) Start(persist bool) {
	r.t.Helper()
	aof := "no"
	if persist {
		aof = "yes"
	}
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", aof, "--appendfsync", "always", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	WaitTCP(r.t, r.Addr, 10*time.Second)
}

// Stop kills the server (as a crash would).
func (r *PrivateRedis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort(t TB) int {
	t.Helper()
	port, release, err := reservePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	t.Cleanup(release)
	return port
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(t TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after %v: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
