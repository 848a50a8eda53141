package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// idleResult is the bastion's memory per idle session.
type idleResult struct {
	sessions   int
	rss0, rss1 int64
	kib        float64 // RSS delta per session, settled (see idleMemory)
	// immediateKiB is the RSS delta per session read 3 s after the last
	// session opened, before any GC: it includes the garbage of the
	// thousand logins, not only what the idle sessions hold.
	immediateKiB float64
	heapKiB      float64 // Go heap in use + stacks delta per session, after GC
	note         string  // why fewer sessions than asked were measured
}

// idleOpeners is how many sessions are being opened at once.
const idleOpeners = 16

// idleMemory starts a fresh bastion (so the big relay buffers of the
// throughput runs are not in its baseline), opens n concurrent idle
// sessions — a pty and `sleep 600`, nothing typed — from x/crypto/ssh
// clients, and measures the bastion process's RSS before and after. A
// login shell per session would be the same to the bastion, but root's
// shell start-up here (pyenv) put the shared machine at a load of 400+ for
// a thousand of them. If the machine cannot hold n (the target's sshd
// forks two processes per session), it measures as many as opened, and
// says so.
func (sb *sshBench) idleMemory(ctx context.Context, n int) (idleResult, error) {
	spec := sb.spec
	spec.CPUProfile = ""
	if *sshProfile != "" {
		spec.HeapProfile = filepath.Join(*sshProfile, "bastion-heap-idle.pprof")
	}
	b, err := sb.startBastion(spec)
	if err != nil {
		return idleResult{}, err
	}
	defer b.stop()
	signer := sb.certKey.CertSigner(sb.r, sb.cert)
	cfg := &ssh.ClientConfig{
		User:            sb.login + "@" + benchTarget,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(sb.hostKey),
		Config:          ssh.Config{Ciphers: []string{sshCipher}, KeyExchanges: []string{sshKex}},
		Timeout:         30 * time.Second,
	}
	open := func() (*ssh.Client, error) {
		c, err := ssh.Dial("tcp", b.addr, cfg)
		if err != nil {
			return nil, err
		}
		s, err := c.NewSession()
		if err == nil {
			err = s.RequestPty("xterm", 24, 80, ssh.TerminalModes{})
		}
		if err == nil {
			err = s.Start("sleep 600")
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}

	// Warm up the code paths (and the first recording file), then let
	// those sessions end before the baseline.
	for range 4 {
		c, err := open()
		if err != nil {
			return idleResult{}, fmt.Errorf("idle session: %w", err)
		}
		c.Close()
	}
	time.Sleep(2 * time.Second)
	var res idleResult
	rssNow0, err := b.rss()
	if err != nil {
		return res, err
	}
	// memstats has the child collect garbage and return freed memory to
	// the OS (debug.FreeOSMemory): the state an idle process reaches by
	// itself within minutes (a GC at least every 2 min, the background
	// scavenger). Both readings are taken the same way.
	ms0, err := b.memstats()
	if err != nil {
		return res, err
	}
	if res.rss0, err = b.rss(); err != nil {
		return res, err
	}

	clients, openErr := openConcurrently(ctx, n, open)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	res.sessions = len(clients)
	if res.sessions < n {
		if res.sessions < 200 {
			return res, fmt.Errorf("only %d of %d idle sessions opened: %v", res.sessions, n, openErr)
		}
		res.note = fmt.Sprintf("note: %d of %d sessions opened on this machine (%v); the figure is over %d", res.sessions, n, openErr, res.sessions)
	}
	// Let the last sessions settle (recording headers flushed, buffers
	// returned) before reading.
	time.Sleep(3 * time.Second)
	rssNow1, err := b.rss()
	if err != nil {
		return res, err
	}
	ms1, err := b.memstats()
	if err != nil {
		return res, err
	}
	if res.rss1, err = b.rss(); err != nil {
		return res, err
	}
	res.immediateKiB = float64(rssNow1-rssNow0) / 1024 / float64(res.sessions)
	res.kib = float64(res.rss1-res.rss0) / 1024 / float64(res.sessions)
	res.heapKiB = float64(heapStack(ms1)-heapStack(ms0)) / 1024 / float64(res.sessions)
	fmt.Printf("  bastion before: %s\n  bastion after:  %s\n", ms0, ms1)
	return res, nil
}

// openConcurrently opens up to n sessions, idleOpeners at a time, and stops
// opening at the first failure.
func openConcurrently(ctx context.Context, n int, open func() (*ssh.Client, error)) ([]*ssh.Client, error) {
	var (
		mu       sync.Mutex
		clients  []*ssh.Client
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range idleOpeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := open()
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					cancel()
				} else {
					clients = append(clients, c)
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
			break feed
		}
		if (i+1)%200 == 0 {
			fmt.Printf("  %d sessions opened (%v)\n", i+1, time.Since(start).Round(time.Second))
		}
	}
	close(next)
	wg.Wait()
	return clients, firstErr
}

// heapStack sums heap_inuse and stack_inuse from a memstats line.
func heapStack(line string) int64 {
	var total int64
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		if k == "heap_inuse" || k == "stack_inuse" {
			n, _ := strconv.ParseInt(v, 10, 64)
			total += n
		}
	}
	return total
}
