package harness

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Ports for child processes are handed out below the kernel's ephemeral
// range. A port taken with Listen("127.0.0.1:0") and closed again can be
// handed by the kernel to anyone else's Listen(":0") (httptest servers in
// the other test binaries running in parallel) before the child binds it;
// the child then fails to bind, or worse, the readiness probe reaches the
// stranger. Ports outside the ephemeral range are never picked by the
// kernel, and a lock file per port (O_EXCL, shared by every test process
// on the machine) keeps two harness users from picking the same one.

const (
	portSpan     = 8000
	portStaleAge = 3 * time.Hour // a lock this old belongs to a run that crashed
)

var portLockDir = filepath.Join(os.TempDir(), "portcullis-test-ports")

// ephemeralLow is the bottom of the kernel's ephemeral port range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo < 2*portSpan {
		return 32768
	}
	return lo
}

// reservePort returns a port that no other harness user holds and that
// is free to bind right now, and a func that gives it back.
func reservePort() (int, func(), error) {
	if err := os.MkdirAll(portLockDir, 0o777); err != nil {
		return 0, nil, err
	}
	hi := ephemeralLow()
	lo := hi - portSpan
	for range 500 {
		port := lo + rand.IntN(portSpan)
		lock := filepath.Join(portLockDir, strconv.Itoa(port))
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, os.ErrExist) {
			if fi, serr := os.Stat(lock); serr == nil && time.Since(fi.ModTime()) > portStaleAge {
				os.Remove(lock)
			}
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil { // in use by something outside the harness
			os.Remove(lock)
			continue
		}
		l.Close()
		return port, func() { os.Remove(lock) }, nil
	}
	return 0, nil, fmt.Errorf("no free port in %d-%d after 500 tries", lo, hi)
}
