package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/demo"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", "portcullis demo [--data-dir DIR] [--listen ADDR] [--ssh-listen ADDR] [--no-open]", stderr)
	dataDir := fs.String("data-dir", ".portcullis-demo", "directory for the demo's state, keys, certificate, audit trail and admin socket")
	listen := fs.String("listen", "127.0.0.1:8443", "loopback address to serve on (port 0 picks a free one)")
	sshListen := fs.String("ssh-listen", "127.0.0.1:2222", "loopback address of the SSH bastion (port 0 picks a free one)")
	noOpen := fs.Bool("no-open", false, "do not open the dashboard in a browser")
	verbose := fs.Bool("verbose", false, "log at debug level")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	for _, l := range []struct{ flag, addr, example string }{{"--listen", *listen, "127.0.0.1:8443"}, {"--ssh-listen", *sshListen, "127.0.0.1:2222"}} {
		if host, _, err := net.SplitHostPort(l.addr); err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
			return usageError(fs, stderr, "%s %q: want a loopback address and port such as %s", l.flag, l.addr, l.example)
		}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	opts := demo.Options{
		DataDir:   *dataDir,
		Listen:    *listen,
		SSHListen: *sshListen,
		Out:       stdout,
		Logger:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if !*noOpen {
		opts.OnReady = func(info demo.Info) { openBrowser(info.DashboardURL) }
	}
	if err := demo.Run(ctx, opts); err != nil {
		return fail(stderr, "demo", err)
	}
	return exitOK
}

// openBrowser tries the desktop's URL opener; without one (a server, a
// container) the printed URL is enough, so failures are ignored.
func openBrowser(url string) {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return
	}
	cmd := exec.Command(path, url)
	if cmd.Start() == nil {
		go func() { _ = cmd.Wait() }()
	}
}
