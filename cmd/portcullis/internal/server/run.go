package server

import (
	"context"
	"net"
	"time"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// Run serves until ctx ends: the gateway's listeners, the bastion (when
// configured), the admin socket on adminLn, and a reload (through load) on
// every value received from reload. The first serving error stops everything and is returned; a
// graceful shutdown returns nil.
func (in *Instance) Run(ctx context.Context, adminLn net.Listener, reload <-chan struct{}, load func() (*config.Config, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	running := 2
	go func() { errc <- in.Gateway.Serve(ctx) }()
	go func() { errc <- ServeAdmin(ctx, adminLn, in.AdminHandler(), in.log) }()
	if in.Bastion != nil {
		running++
		go func() { errc <- in.ServeSSH(ctx) }()
	}
	// The daily purge (retention.go) stops with the rest, before Close.
	purged := make(chan struct{})
	go func() { defer close(purged); in.runRetention(ctx, time.After) }()
	defer func() { cancel(); <-purged }()
	var first error
	for running > 0 {
		select {
		case err := <-errc:
			running--
			if err != nil && first == nil {
				first = err
				in.log.Error("server stopped", "err", err)
			}
			cancel()
		case <-reload:
			_ = in.Reload(ctx, load)
		}
	}
	return first
}
