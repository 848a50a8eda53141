package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/server"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "portcullis serve --config FILE", stderr)
	path := fs.String("config", "", "configuration file (YAML) `FILE`")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	if *path == "" {
		return usageError(fs, stderr, "--config is required")
	}
	cfg, err := loadConfig(*path, config.Options{}, stderr)
	if err != nil {
		return exitFail
	}
	log := newLogger(cfg.Log, stderr)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading configuration", "file", *path)
				select {
				case reload <- struct{}{}:
				default: // a reload is already pending
				}
			}
		}
	}()

	in, err := server.Open(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		return fail(stderr, "serve", err)
	}
	defer func() {
		if err := in.Close(); err != nil {
			log.Error("shutdown", "err", err)
		}
	}()
	adminLn, err := server.ListenAdmin(cfg.AdminSocket)
	if err != nil {
		return fail(stderr, "serve", err)
	}
	log.Info("portcullis serving", "instance", cfg.Instance, "listen", cfg.Gateway.Listen,
		"access_host", cfg.Gateway.AccessHost, "routes", len(cfg.Gateway.Routes), "admin_socket", cfg.AdminSocket,
		"store", cfg.Store.Backend, "ssh_listen", in.SSHAddr())
	load := func() (*config.Config, error) {
		c, warns, err := config.Load(*path, config.Options{})
		for _, w := range warns {
			log.Warn("configuration", "warning", w.String())
		}
		return c, err
	}
	if err := in.Run(ctx, adminLn, reload, load); err != nil {
		return fail(stderr, "serve", err)
	}
	log.Info("portcullis stopped")
	return exitOK
}

// loadConfig loads path, printing warnings and errors (one
// "FILE:LINE: key.path: message" per line) to stderr.
func loadConfig(path string, opts config.Options, stderr io.Writer) (*config.Config, error) {
	cfg, warns, err := config.Load(path, opts)
	for _, w := range warns {
		fmt.Fprintln(stderr, w.String())
	}
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			fmt.Fprintln(stderr, ce.Error())
		} else {
			fmt.Fprintf(stderr, "portcullis: %v\n", err)
		}
		return nil, err
	}
	return cfg, nil
}

func newLogger(lc config.LogConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lc.Level}
	if lc.JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
