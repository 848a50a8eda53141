package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
)

// The bastion under test runs in a child process: the bench binary
// re-executed with childEnv naming a spec file. A process of its own gives
// an honest RSS for the idle-session figure and keeps the bench's own SSH
// clients out of the bastion's CPU profile. It is built with bastion.New
// and Serve directly, so the figures do not depend on cmd's wiring.
const childEnv = "PORTCULLIS_BENCH_BASTION_SPEC"

func init() {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runBastionChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "bench bastion:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// bastionSpec is what the child needs, written by the parent as JSON.
type bastionSpec struct {
	Dir        string           // state file, audit log and recordings live here
	HostKey    string           // private key file (OpenSSH format)
	UserCA     string           // authorized_keys line of the user CA
	UpstreamCA string           // private key file of the upstream CA
	Targets    []bastion.Target // one target, named benchTarget
	UserID     string
	Login      string
	// CPUProfile, when set, is written from start to shutdown.
	CPUProfile string
	// HeapProfile, when set, is written on each SIGUSR1 (with a memstats
	// line on stdout, and a goroutine dump next to it).
	HeapProfile string
}

const (
	benchTarget = "target"
	benchRole   = "bench"
)

func (s *bastionSpec) recordingDir() string { return filepath.Join(s.Dir, "recordings") }

// runBastionChild serves until SIGINT/SIGTERM. It prints "listening ADDR"
// once it accepts connections, and "memstats ..." after each SIGUSR1.
func runBastionChild(specFile string) error {
	b, err := os.ReadFile(specFile)
	if err != nil {
		return err
	}
	var spec bastionSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return err
	}
	hostKey, err := readSigner(spec.HostKey)
	if err != nil {
		return err
	}
	upCA, err := readSigner(spec.UpstreamCA)
	if err != nil {
		return err
	}
	userCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(spec.UserCA))
	if err != nil {
		return err
	}
	st, err := store.OpenEmbedded(filepath.Join(spec.Dir, "state.db"), store.EmbeddedOptions{})
	if err != nil {
		return err
	}
	defer st.Close()
	rev, err := session.NewCertRevocations(st, session.SSHCAOptions{})
	if err != nil {
		return err
	}
	al, err := audit.OpenFile(audit.FileConfig{Dir: filepath.Join(spec.Dir, "audit"), Instance: "bench"}, audit.Options{})
	if err != nil {
		return err
	}
	defer al.Close()
	pol, err := authz.Compile(authz.PolicyConfig{
		Targets: []authz.TargetConfig{{Name: benchTarget}},
		Roles: []authz.RoleConfig{{
			Name: benchRole, Users: []string{spec.UserID}, FileTransfer: true,
			Allow: []authz.Rule{{Targets: []string{benchTarget}, Logins: []string{spec.Login}}},
		}},
	})
	if err != nil {
		return err
	}
	var policy atomic.Pointer[authz.Policy]
	policy.Store(pol)
	// The bastion requires a risk engine; the relay reports bytes to it,
	// as in production.
	rk, err := risk.New(risk.Config{}, st, risk.Options{Instance: "bench", Audit: al})
	if err != nil {
		return err
	}
	// Recordings are encrypted as in production; nothing reads them back,
	// so a key made here will do.
	var rawKey [recording.KeySize]byte
	if _, err := rand.Read(rawKey[:]); err != nil {
		return err
	}
	recKey, err := recording.NewKey(rawKey[:])
	if err != nil {
		return err
	}
	bst, err := bastion.New(bastion.Config{
		Listen:       "127.0.0.1:0",
		HostKeys:     []ssh.Signer{hostKey},
		UserCAKeys:   []ssh.PublicKey{userCA},
		UpstreamCA:   upCA,
		Targets:      spec.Targets,
		RecordingDir: spec.recordingDir(),
		RecordingKey: recKey,
		Instance:     "bench",
	}, bastion.Deps{Policy: &policy, Store: st, Audit: al, AuditHealth: al, Revocations: rev, Risk: rk})
	if err != nil {
		return err
	}
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			reportMemory(spec.HeapProfile)
		}
	}()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	return bst.Serve(ctx, ln)
}

// reportMemory prints the Go runtime's view (after a GC, with freed
// memory returned to the OS) and writes a heap profile when asked to.
func reportMemory(heapProfile string) {
	debug.FreeOSMemory() // a GC, then the scavenger's work done at once
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("memstats heap_inuse=%d stack_inuse=%d goroutines=%d\n", ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
	if heapProfile == "" {
		return
	}
	if f, err := os.Create(heapProfile); err == nil {
		pprof.WriteHeapProfile(f)
		f.Close()
	}
	// Goroutines by creation site: what each idle session keeps running.
	if f, err := os.Create(strings.TrimSuffix(heapProfile, ".pprof") + "-goroutines.txt"); err == nil {
		pprof.Lookup("goroutine").WriteTo(f, 1)
		f.Close()
	}
}

func readSigner(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ssh.ParsePrivateKey(b)
}

// child is the running bastion process as the parent sees it.
type child struct {
	cmd   *exec.Cmd
	dir   string // the spec's Dir
	addr  string
	lines chan string
	done  chan struct{}
}

// startBastionChild writes spec and runs the child until it listens.
func startBastionChild(r *runner, spec bastionSpec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	specFile := filepath.Join(spec.Dir, "spec.json")
	if err := os.WriteFile(specFile, b, 0o600); err != nil {
		return nil, err
	}
	c := &child{cmd: exec.Command(exe), dir: spec.Dir, lines: make(chan string, 16), done: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), childEnv+"="+specFile)
	c.cmd.Stderr = os.Stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		io.Copy(io.Discard, out)
		close(c.lines)
	}()
	go func() { c.cmd.Wait(); close(c.done) }()
	r.Cleanup(c.stop)
	line, err := c.next(30 * time.Second)
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("bastion child: %w", err)
	}
	addr, ok := strings.CutPrefix(line, "listening ")
	if !ok {
		c.stop()
		return nil, fmt.Errorf("bastion child said %q", line)
	}
	c.addr = addr
	return c, nil
}

// next returns the child's next stdout line.
func (c *child) next(timeout time.Duration) (string, error) {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return "", errors.New("exited")
		}
		return line, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no output after %v", timeout)
	}
}

// rss is the child's resident set size in bytes (VmRSS).
func (c *child) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// memstats asks the child for its runtime figures (see reportMemory).
func (c *child) memstats() (string, error) {
	if err := c.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return "", err
	}
	line, err := c.next(30 * time.Second)
	if err != nil {
		return "", err
	}
	s, ok := strings.CutPrefix(line, "memstats ")
	if !ok {
		return "", fmt.Errorf("bastion child said %q", line)
	}
	return s, nil
}

// stop shuts the child down gracefully (live sessions end, recordings and
// the CPU profile are finished), killing it after 30 s.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}
