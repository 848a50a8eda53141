package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

var built struct {
	once sync.Once
	path string
	err  error
}

// BuildPortcullis returns the portcullis binary: $PORTCULLIS_BIN when set,
// otherwise cmd/portcullis built once per test process into a temporary
// directory (RemoveBuild deletes it).
func BuildPortcullis(t TB) string {
	t.Helper()
	built.once.Do(func() {
		if p := os.Getenv("PORTCULLIS_BIN"); p != "" {
			built.path = p
			return
		}
		dir, err := os.MkdirTemp("", "portcullis-e2e-bin-")
		if err != nil {
			built.err = err
			return
		}
		bin := filepath.Join(dir, "portcullis")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/portcullis")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build ./cmd/portcullis: %v\n%s", err, out)
			return
		}
		built.path = bin
	})
	if built.err != nil {
		t.Fatalf("%v", built.err)
	}
	return built.path
}

// RemoveBuild deletes the binary BuildPortcullis made (TestMain calls it).
func RemoveBuild() {
	if built.path != "" && os.Getenv("PORTCULLIS_BIN") == "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
}

// Portcullis is a running `portcullis serve`.
type Portcullis struct {
	Instance    string
	ConfigFile  string
	DataDir     string
	AuditDir    string
	AdminSocket string
	Addr        string // the HTTPS listener, 127.0.0.1:port
	Port        int    // public port (in every URL it redirects to)
	AccessHost  string
	AccessURL   string            // https://access-host:port
	Routes      map[string]string // route name → https://host:port
	proc        *proc
}

// fileView is what the harness reads back from a config file.
type fileView struct {
	Instance    string `yaml:"instance"`
	DataDir     string `yaml:"data_dir"`
	AdminSocket string `yaml:"admin_socket"`
	Gateway     struct {
		Listen     string `yaml:"listen"`
		AccessHost string `yaml:"access_host"`
		PublicPort int    `yaml:"public_port"`
		Routes     []struct {
			Name string `yaml:"name"`
			Host string `yaml:"host"`
		} `yaml:"routes"`
	} `yaml:"gateway"`
	Audit struct {
		Dir string `yaml:"dir"`
	} `yaml:"audit"`
}

// StartPortcullis writes cfgYAML to a file and runs `portcullis serve
// --config FILE` until the test ends (then SIGINT, so it flushes its audit
// trail). It returns once the HTTPS listener accepts connections. When
// the process stops, its output, audit files and state file are archived
// for the final secrets scan.
func StartPortcullis(t TB, cfgYAML string) *Portcullis {
	t.Helper()
	bin := BuildPortcullis(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(file, []byte(cfgYAML), 0o600); err != nil {
		t.Fatalf("write config: %v", err)
	}
	var v fileView
	if err := yaml.Unmarshal([]byte(cfgYAML), &v); err != nil {
		t.Fatalf("config does not parse: %v", err)
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	p := &Portcullis{
		Instance:    v.Instance,
		ConfigFile:  file,
		DataDir:     abs(v.DataDir),
		AuditDir:    abs(v.Audit.Dir),
		AdminSocket: abs(v.AdminSocket),
		AccessHost:  v.Gateway.AccessHost,
		Port:        v.Gateway.PublicPort,
		Routes:      map[string]string{},
	}
	if p.AuditDir == "" {
		p.AuditDir = filepath.Join(p.DataDir, "audit")
	}
	if p.AdminSocket == "" {
		p.AdminSocket = filepath.Join(p.DataDir, "admin.sock")
	}
	host, port, err := net.SplitHostPort(v.Gateway.Listen)
	if err != nil {
		t.Fatalf("gateway.listen %q: %v", v.Gateway.Listen, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	p.Addr = net.JoinHostPort(host, port)
	if p.Port == 0 {
		p.Port, _ = strconv.Atoi(port)
	}
	p.AccessURL = p.URL(p.AccessHost, "")
	for _, r := range v.Gateway.Routes {
		p.Routes[r.Name] = p.URL(r.Host, "")
	}

	// Registered before the process starts, so it runs after the process
	// has stopped (cleanups run last-in first-out) and before t.TempDir()
	// (registered above) is removed.
	name := t.Name() + "/" + p.Instance
	t.Cleanup(func() {
		if p.proc == nil {
			return
		}
		p.Stop()
		Archive(name+"/output", []byte(p.proc.Output()))
		ArchiveDir(name+"/audit", p.AuditDir)
		if _, err := os.Stat(filepath.Join(p.DataDir, "state.db")); err == nil {
			Archive(name+"/state.db", mustRead(filepath.Join(p.DataDir, "state.db")))
		}
	})
	cmd := exec.Command(bin, "serve", "--config", file)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=", "HTTP_PROXY=", "NO_PROXY=*")
	p.proc = startPolled(t, "portcullis serve ("+p.Instance+")", cmd, 60*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return p
}

func mustRead(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return []byte("unreadable: " + err.Error())
	}
	return b
}

// URL is https://host:port path on this instance.
func (p *Portcullis) URL(host, path string) string {
	return "https://" + net.JoinHostPort(host, strconv.Itoa(p.Port)) + path
}

// Output is everything the server printed (its log is on stderr).
func (p *Portcullis) Output() string { return p.proc.Output() }

// Stop shuts the server down gracefully now (idempotent).
func (p *Portcullis) Stop() { p.proc.stop() }

// Exited reports whether the server process has ended.
func (p *Portcullis) Exited() bool { return p.proc.exited() }

// startPolled runs cmd with stdout and stderr kept, and polls ready until
// it returns true; it fails the test when the process exits first.
func startPolled(t TB, name string, cmd *exec.Cmd, timeout time.Duration, ready func() bool) *proc {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start: %v", name, err)
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(timeout)
	for !ready() {
		if p.exited() {
			t.Fatalf("%s exited before it was ready:\n%s", name, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v:\n%s", name, timeout, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// Result is the outcome of a one-shot portcullis command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// RunPortcullis runs the binary with args (config check, admin …) and
// returns its output and exit code. It fails the test only when the
// command cannot be run or does not finish within a minute.
func RunPortcullis(t TB, args ...string) Result {
	t.Helper()
	bin := BuildPortcullis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("portcullis %v: %v\n%s%s", args, err, res.Stdout, res.Stderr)
	}
	Archive(fmt.Sprintf("%s/run-%v", t.Name(), args), []byte(res.Stdout+res.Stderr))
	return res
}
