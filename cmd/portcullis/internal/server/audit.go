package server

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// auditWatchInterval is how often the trail's health is looked at for the
// alert below (the gateway and bastion check it themselves per login).
const auditWatchInterval = time.Second

// openAudit opens the audit trail, starts one shipper per configured sink
// (each tails the trail and delivers it, at least once, with its own
// durable cursor; bg stops them, Close waits for them) and a watcher that
// raises the alarm when the trail cannot be written.
func (in *Instance) openAudit(bg context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger.With("component", "audit")
	if cfg.Audit.SigningKey == nil {
		base := filepath.Join(cfg.Audit.Dir, "audit-"+cfg.Audit.Instance)
		log.Warn("audit: no audit.signing_key_file / signing_key_env configured: the checkpoint signing key is generated and kept beside the trail, "+
			"where whoever can edit the trail can also re-sign it. Copy the public key somewhere the trail's writers cannot reach "+
			"and verify with it: portcullis audit verify --pubkey COPY DIR",
			"private_key", base+".key", "public_key", base+".pub")
	}
	var err error
	if in.Audit, err = audit.OpenFile(cfg.Audit, audit.Options{Now: opts.Now, Logger: log}); err != nil {
		return err
	}
	in.emit = in.Audit
	instance := cfg.Audit.Instance
	if instance == "" {
		instance = "default" // as OpenFile names it
	}
	for _, sc := range cfg.AuditSinks {
		slog := log.With("sink", sc.Name)
		sink, err := audit.NewSink(sc, audit.SinkOptions{Logger: slog})
		if err != nil {
			return err
		}
		sh, err := audit.NewShipper(sc.ShipConfig(cfg.Audit.Dir, instance), sink, audit.ShipOptions{Now: opts.Now, Logger: slog})
		if err != nil {
			sink.Close()
			return err
		}
		in.shippers = append(in.shippers, sh)
		in.auditBG.Add(1)
		go func() {
			defer in.auditBG.Done()
			sh.Run(bg)
		}()
		log.Info("audit sink started", "sink", sc.Name, "kind", sc.Kind, "cursor", sh.CursorPath())
	}
	in.auditBG.Add(1)
	go func() {
		defer in.auditBG.Done()
		in.watchAudit(bg, log, time.NewTicker(auditWatchInterval))
	}()
	return nil
}

// watchAudit logs, at error level, when the trail stops being writable
// (new logins and SSH connections are refused from then on) and when it
// recovers. The FileLog logs the write error itself; this line is the
// alert an operator's log alerting keys on.
func (in *Instance) watchAudit(ctx context.Context, log *slog.Logger, t *time.Ticker) {
	defer t.Stop()
	var down error
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := in.Audit.Healthy()
		switch {
		case err != nil && down == nil:
			log.Error("ALERT: the audit trail cannot be written: new logins, sessions and SSH connections are refused until it recovers",
				"err", err, "path", in.Audit.Path())
		case err == nil && down != nil:
			log.Info("the audit trail can be written again: logins and SSH connections are accepted", "path", in.Audit.Path())
		}
		down = err
	}
}

// auditHealthNotes are /healthz lines for sinks in trouble (failing, or
// with records not shipped after a failure).
func (in *Instance) auditHealthNotes() []string {
	var out []string
	for _, sh := range in.shippers {
		if st := sh.Status(); st.Failing || len(st.Gaps) > 0 {
			out = append(out, "degraded: "+st.PublicString()) // /healthz is public
		}
	}
	return out
}

// SinkStatus reports every audit sink's position and health.
func (in *Instance) SinkStatus() []audit.SinkStatus {
	out := make([]audit.SinkStatus, 0, len(in.shippers))
	for _, sh := range in.shippers {
		out = append(out, sh.Status())
	}
	return out
}

// sinkView is a sink's configuration with the *tls.Config (rebuilt on
// every load, so never equal by pointer) reduced to what the file says.
type sinkView struct {
	audit.SinkConfig
	TLS        bool
	ServerName string
	Roots      bool
	ClientCert int
}

// sinksView makes sink configurations comparable for restartSections.
func sinksView(sinks []audit.SinkConfig) []sinkView {
	out := make([]sinkView, 0, len(sinks))
	for _, s := range sinks {
		v := sinkView{SinkConfig: s}
		if s.TLS != nil {
			v.TLS, v.ServerName, v.Roots, v.ClientCert = true, s.TLS.ServerName, s.TLS.RootCAs != nil, len(s.TLS.Certificates)
		}
		v.SinkConfig.TLS = nil
		out = append(out, v)
	}
	return out
}
