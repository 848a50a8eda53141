package main

// SSH: the stock OpenSSH client against a private stock sshd on 127.0.0.1,
// three ways, with the same client options each time:
//
//	direct     ssh → sshd                         (plain key)
//	proxyjump  ssh -J hop → sshd (hop: a second private sshd, `ssh -W`)
//	bastion    ssh → bastion → sshd               (user certificate; per-session
//	                                               upstream certificate; recording ON)
//
// Every leg uses aes128-gcm@openssh.com (the client's default would be
// chacha20-poly1305, which the bastion does not offer), so the throughput
// comparison is about relaying, not about ciphers. Connection setup is
// measured twice: with the client's default key exchange (OpenSSH 9.2
// picks sntrup761x25519 with OpenSSH servers — ProxyJump pays it twice —
// and curve25519-sha256 with the bastion, as x/crypto/ssh lacks sntrup;
// the headline figure, as users run ssh), and with curve25519-sha256
// pinned on every leg (the relaying cost alone). Connection setup is
// sequential `ssh … true`. Throughput is 1 GiB each way: upload
// `head -c 1G /dev/zero | ssh … 'cat > /dev/null'`, download
// `ssh … 'head -c 1G /dev/zero' > /dev/null` (the recorder sees every
// byte); MB/s are 10^6 bytes per second, connection setup included.
// Memory per idle session is the bastion process's RSS delta over
// concurrent idle sessions (a pty and `sleep 600`) opened by x/crypto/ssh
// clients in the bench process; see ssh_idle.go.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/e2e/harness"
)

var (
	sshMiB     = flag.Int64("ssh-mib", 1024, "MiB moved each way per SSH throughput run")
	sshReps    = flag.Int("ssh-reps", 5, "SSH throughput runs per path and direction (the median is reported)")
	sshSetups  = flag.Int("ssh-setup", 50, "sequential `ssh target true` runs per path")
	sshIdle    = flag.Int("ssh-idle", 1000, "concurrent idle SSH sessions for the bastion's memory figure")
	sshProfile = flag.String("ssh-profile", "", "directory for the bastion's CPU profile (throughput and setup runs) and heap profile (idle sessions)")
)

const (
	sshCipher = "aes128-gcm@openssh.com"
	sshKex    = "curve25519-sha256"
)

// sshPath is one way to reach the target: an alias in the ssh_config.
type sshPath struct{ name, alias string }

var sshPaths = []sshPath{{"direct", "direct"}, {"proxyjump", "jump"}, {"bastion", "bastion"}}

// sshBench is the SSH benchmark environment.
type sshBench struct {
	r    *runner
	home string // HOME of every ssh run
	// cfg pins the cipher only: the stock client as users run it. cfgKex
	// also pins the key exchange to curve25519-sha256 on every leg.
	cfg, cfgKex *harness.SSHConfig
	login       string
	target      *harness.SSHD
	hostKey     ssh.PublicKey // the bastion's
	certKey     *harness.SSHKey
	cert        *ssh.Certificate
	spec        bastionSpec // template; each bastion gets its own Dir
	bastion     *child
}

// benchSSH runs the SSH comparison and fills metrics. A part whose count
// flag is 0 is skipped (and its metrics are left as they were).
func benchSSH(ctx context.Context, r *runner, metrics map[string]float64) error {
	sb, err := newSSHBench(r)
	if err != nil {
		return err
	}
	for _, p := range sshPaths {
		if err := sb.check(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if err := sb.checkRecording(1 << 20); err != nil {
		return fmt.Errorf("bastion check: %w", err)
	}
	fmt.Printf("\nSSH: the stock OpenSSH client with Ciphers %s on every leg; %d MiB each way, median of %d runs; setup median of %d\n",
		sshCipher, *sshMiB, *sshReps, *sshSetups)
	var up, down, setup, setupKex map[string]float64
	if *sshReps > 0 {
		if up, down, err = sb.throughput(ctx); err != nil {
			return err
		}
	}
	if *sshSetups > 0 {
		if setup, err = sb.setupTimes(ctx, sb.cfg); err != nil {
			return err
		}
		if setupKex, err = sb.setupTimes(ctx, sb.cfgKex); err != nil {
			return err
		}
	}
	sb.bastion.stop() // finishes the CPU profile
	tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tupload MB/s\tdownload MB/s\tsetup ms (client's KEX)\tsetup ms ("+sshKex+")\t")
	for _, p := range sshPaths {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t\n", p.name, up[p.name], down[p.name], setup[p.name], setupKex[p.name])
	}
	tw.Flush()
	var ratios []string
	if up != nil {
		for _, p := range sshPaths {
			metrics["ssh_mbps_"+p.name+"_up"] = round(up[p.name], 1)
			metrics["ssh_mbps_"+p.name+"_down"] = round(down[p.name], 1)
		}
		upR, downR := up["bastion"]/up["proxyjump"], down["bastion"]/down["proxyjump"]
		metrics["ssh_throughput_bastion_over_proxyjump_up"] = round(upR, 3)
		metrics["ssh_throughput_bastion_over_proxyjump_down"] = round(downR, 3)
		metrics["ssh_throughput_bastion_over_proxyjump"] = round(min(upR, downR), 3)
		ratios = append(ratios, fmt.Sprintf("throughput ≥ 0.9× ProxyJump each way: up %.2f×, down %.2f×", upR, downR))
	}
	if setup != nil {
		for _, p := range sshPaths {
			metrics["ssh_setup_ms_"+p.name] = round(setup[p.name], 1)
			metrics["ssh_setup_ms_"+p.name+"_curve25519"] = round(setupKex[p.name], 1)
		}
		r, rk := setup["bastion"]/setup["proxyjump"], setupKex["bastion"]/setupKex["proxyjump"]
		metrics["ssh_setup_bastion_over_proxyjump"] = round(r, 3)
		metrics["ssh_setup_bastion_over_proxyjump_curve25519"] = round(rk, 3)
		ratios = append(ratios, fmt.Sprintf("setup ≤ 0.6× ProxyJump: %.2f× (client's default KEX: sntrup761x25519 to OpenSSH, curve25519 to the bastion), %.2f× with %s everywhere", r, rk, sshKex))
	}
	if *sshIdle > 0 {
		idle, err := sb.idleMemory(ctx, *sshIdle)
		if err != nil {
			return err
		}
		fmt.Printf("\nidle sessions: %d concurrent (pty + `sleep 600`); bastion RSS after GC and scavenge %.1f → %.1f MiB: %.1f KiB per session (Go heap+stacks: %.1f KiB; read 3 s after opening, before any GC: %.1f KiB)\n",
			idle.sessions, mib(idle.rss0), mib(idle.rss1), idle.kib, idle.heapKiB, idle.immediateKiB)
		if idle.note != "" {
			fmt.Println(idle.note)
		}
		metrics["ssh_idle_session_kib"] = round(idle.kib, 1)
		metrics["ssh_idle_session_heap_stack_kib"] = round(idle.heapKiB, 1)
		metrics["ssh_idle_session_kib_before_gc"] = round(idle.immediateKiB, 1)
		metrics["ssh_idle_sessions"] = float64(idle.sessions)
		ratios = append(ratios, fmt.Sprintf("≤ 128 KiB per idle session: %.1f KiB", idle.kib))
	}
	fmt.Println("\nSSH targets:")
	for _, r := range ratios {
		fmt.Println("  " + r)
	}
	if *sshProfile != "" {
		fmt.Printf("bastion profiles in %s (go tool pprof -top %s)\n", *sshProfile, filepath.Join(*sshProfile, "bastion-cpu.pprof"))
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// newSSHBench starts the target and hop sshds and the bastion, mints the
// user certificate and writes the client configuration.
func newSSHBench(r *runner) (*sshBench, error) {
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	keys := r.TempDir()
	sb := &sshBench{r: r, home: r.TempDir(), login: u.Username}
	upCA := harness.NewSSHKey(r, keys, "upstream_ca")
	userCA := harness.NewSSHKey(r, keys, "user_ca")
	hostKey := harness.NewSSHKey(r, keys, "bastion_host")
	sb.hostKey = hostKey.Public()
	plain := harness.NewSSHKey(r, keys, "id_plain")
	sb.certKey = harness.NewSSHKey(r, keys, "id_cert")

	// MaxStartups: the idle-session figure opens connections 16 at a time.
	sb.target = harness.StartSSHD(r, harness.SSHDOptions{
		TrustedUserCAKeys: []ssh.PublicKey{upCA.Public()},
		AuthorizedKeys:    []ssh.PublicKey{plain.Public()},
		Extra:             []string{"MaxStartups 2000", "MaxSessions 10"},
	})
	hop := harness.StartSSHD(r, harness.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{plain.Public()}})

	ca, err := session.NewSSHCA(userCA.Signer, session.SSHCAOptions{})
	if err != nil {
		return nil, err
	}
	sb.cert, err = ca.Issue(session.CertRequest{
		PublicKey: sb.certKey.Public(), UserID: "bench-user", Principals: []string{sb.login},
		Roles: []string{benchRole}, TTL: 8 * time.Hour, PermitPTY: true,
	})
	if err != nil {
		return nil, err
	}
	sb.certKey.SaveCert(r, sb.cert)

	sb.spec = bastionSpec{
		HostKey: hostKey.Path, UpstreamCA: upCA.Path,
		UserCA: string(ssh.MarshalAuthorizedKey(userCA.Public())),
		Targets: []bastion.Target{{
			Name: benchTarget, Addr: sb.target.Addr,
			HostKey: string(ssh.MarshalAuthorizedKey(sb.target.HostKey)),
		}},
		UserID: "bench-user", Login: sb.login,
	}
	if *sshProfile != "" {
		if err := os.MkdirAll(*sshProfile, 0o755); err != nil {
			return nil, err
		}
		sb.spec.CPUProfile = filepath.Join(*sshProfile, "bastion-cpu.pprof")
	}
	if sb.bastion, err = sb.startBastion(sb.spec); err != nil {
		return nil, err
	}
	known := []string{sb.target.KnownHostsLine(), hop.KnownHostsLine(), harness.KnownHostsLine(sb.bastion.addr, sb.hostKey)}
	hosts := []harness.SSHHost{
		{Alias: "direct", Addr: sb.target.Addr, User: sb.login, Key: plain},
		{Alias: "hop", Addr: hop.Addr, User: sb.login, Key: plain},
		{Alias: "jump", Addr: sb.target.Addr, User: sb.login, Key: plain, ProxyJump: "hop"},
		{Alias: "bastion", Addr: sb.bastion.addr, User: sb.login + "@" + benchTarget, Key: sb.certKey},
	}
	common := []string{"Ciphers " + sshCipher, "Compression no", "RequestTTY no"}
	sb.cfg = harness.WriteSSHConfig(r, r.TempDir(), known, common, hosts...)
	sb.cfgKex = harness.WriteSSHConfig(r, r.TempDir(), known, append(common, "KexAlgorithms "+sshKex), hosts...)
	return sb, nil
}

// startBastion runs a bastion child with a fresh directory.
func (sb *sshBench) startBastion(spec bastionSpec) (*child, error) {
	spec.Dir = sb.r.TempDir()
	if err := os.MkdirAll(spec.recordingDir(), 0o700); err != nil {
		return nil, err
	}
	return startBastionChild(sb.r, spec)
}

// sshCmd is `ssh -F CONFIG ALIAS REMOTE` with the cipher-only config.
func (sb *sshBench) sshCmd(ctx context.Context, alias, remote string) *exec.Cmd {
	return sb.sshCmdWith(ctx, sb.cfg, alias, remote)
}

func (sb *sshBench) sshCmdWith(ctx context.Context, cfg *harness.SSHConfig, alias, remote string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ssh", "-F", cfg.File, alias, remote)
	cmd.Env = cfg.Env(sb.home)
	return cmd
}

// check proves each path works and moves bytes intact both ways before
// anything is timed.
func (sb *sshBench) check(ctx context.Context, p sshPath) error {
	const n = 1 << 20
	cmd := sb.sshCmd(ctx, p.alias, "wc -c")
	cmd.Stdin = strings.NewReader(strings.Repeat("x", n))
	out, err := combined(cmd)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != strconv.Itoa(n) {
		return fmt.Errorf("upload check: target counted %q bytes, want %d", out, n)
	}
	cmd = sb.sshCmd(ctx, p.alias, fmt.Sprintf("head -c %d /dev/zero", n))
	b, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("download check: %w", err)
	}
	if len(b) != n {
		return fmt.Errorf("download check: got %d bytes, want %d", len(b), n)
	}
	return nil
}

func combined(cmd *exec.Cmd) (string, error) {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out), nil
}

// throughput runs every path in both directions, interleaved so machine
// noise spreads evenly, and returns the median MB/s per path.
func (sb *sshBench) throughput(ctx context.Context) (up, down map[string]float64, err error) {
	size := *sshMiB << 20
	runs := map[string][]float64{}
	for rep := 0; rep < *sshReps; rep++ {
		for _, dir := range []string{"up", "down"} {
			for _, p := range sshPaths {
				d, err := sb.transfer(ctx, p, dir == "up", size)
				if err != nil {
					return nil, nil, fmt.Errorf("%s %s: %w", p.name, dir, err)
				}
				mbps := float64(size) / d.Seconds() / 1e6
				fmt.Printf("  %-9s %-4s %7.1f MB/s (%v)\n", p.name, dir, mbps, d.Round(time.Millisecond))
				runs[p.name+"/"+dir] = append(runs[p.name+"/"+dir], mbps)
			}
		}
	}
	up, down = map[string]float64{}, map[string]float64{}
	for _, p := range sshPaths {
		up[p.name] = median(runs[p.name+"/up"])
		down[p.name] = median(runs[p.name+"/down"])
	}
	return up, down, nil
}

// transfer moves size bytes one way over path p and returns the wall time
// (connection setup included). Through the bastion it then checks that
// the recording holds every downloaded byte, and deletes it.
func (sb *sshBench) transfer(ctx context.Context, p sshPath, upload bool, size int64) (time.Duration, error) {
	var start time.Time
	var err error
	if upload {
		start = time.Now()
		err = sb.upload(ctx, p.alias, size)
	} else {
		cmd := sb.sshCmd(ctx, p.alias, fmt.Sprintf("head -c %d /dev/zero", size))
		devnull, oerr := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if oerr != nil {
			return 0, oerr
		}
		defer devnull.Close()
		var stderr strings.Builder
		cmd.Stdout, cmd.Stderr = devnull, &stderr
		start = time.Now()
		if err = cmd.Run(); err != nil {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
	}
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if p.name == "bastion" {
		want := int64(0)
		if !upload {
			want = size
		}
		if err := sb.checkRecording(want); err != nil {
			return 0, err
		}
	}
	return d, nil
}

// upload pipes `head -c SIZE /dev/zero` into ssh's stdin (a kernel pipe
// between the two processes; the bench copies nothing).
func (sb *sshBench) upload(ctx context.Context, alias string, size int64) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	head := exec.CommandContext(ctx, "head", "-c", strconv.FormatInt(size, 10), "/dev/zero")
	head.Stdout = pw
	cmd := sb.sshCmd(ctx, alias, "cat > /dev/null")
	cmd.Stdin = pr
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := head.Start(); err != nil {
		pr.Close()
		pw.Close()
		return err
	}
	err = cmd.Start()
	pr.Close()
	pw.Close()
	if err != nil {
		head.Process.Kill()
		head.Wait()
		return err
	}
	serr := cmd.Wait()
	herr := head.Wait()
	if serr != nil {
		return fmt.Errorf("ssh: %w: %s", serr, stderr.String())
	}
	return herr
}

// checkRecording waits for a recording in the bastion's directory to hold
// at least minBytes, then deletes every recording there (a 1 GiB download
// is a 1 GiB recording).
func (sb *sshBench) checkRecording(minBytes int64) error {
	dir := sb.bastionDir()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		var largest int64
		for _, e := range ents {
			if info, err := e.Info(); err == nil {
				largest = max(largest, info.Size())
			}
		}
		if len(ents) > 0 && largest >= minBytes {
			for _, e := range ents {
				os.Remove(filepath.Join(dir, e.Name()))
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("largest of %d recordings holds %d bytes, want at least %d", len(ents), largest, minBytes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bastionDir is the running bastion's recording directory.
func (sb *sshBench) bastionDir() string {
	return filepath.Join(sb.bastion.dir, "recordings")
}

// setupTimes runs `ssh ALIAS true` sequentially with cfg, paths
// interleaved, and returns the median milliseconds per path.
func (sb *sshBench) setupTimes(ctx context.Context, cfg *harness.SSHConfig) (map[string]float64, error) {
	const warm = 3
	runs := map[string][]float64{}
	for i := 0; i < warm+*sshSetups; i++ {
		for _, p := range sshPaths {
			cmd := sb.sshCmdWith(ctx, cfg, p.alias, "true")
			start := time.Now()
			if _, err := combined(cmd); err != nil {
				return nil, fmt.Errorf("%s setup: %w", p.name, err)
			}
			if i >= warm {
				runs[p.name] = append(runs[p.name], float64(time.Since(start))/float64(time.Millisecond))
			}
		}
	}
	out := map[string]float64{}
	for _, p := range sshPaths {
		out[p.name] = median(runs[p.name])
	}
	// 50 small recordings; remove them with the rest of the directory.
	ents, _ := os.ReadDir(sb.bastionDir())
	for _, e := range ents {
		os.Remove(filepath.Join(sb.bastionDir(), e.Name()))
	}
	return out, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
