// Package server wires a loaded configuration into running components:
// state store, audit log, session/MFA/identity managers, the compiled
// policy (behind an atomic pointer, swapped on reload) and the gateway,
// plus the local admin socket. `serve` and `demo` both build on it; only
// `demo` adds the development IdP, and it does so outside this package
// (which never imports it), so `serve` has no path to it.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/identity"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/gateway"
)

// Options are the injected dependencies.
type Options struct {
	Logger *slog.Logger // default: discard
	// HTTPClient talks to the OIDC issuer; nil uses identity's default.
	// The demo injects one that trusts its self-signed certificate.
	HTTPClient *http.Client
	Now        func() time.Time // default time.Now
	Rand       io.Reader        // default crypto/rand (by each package)
	// SSHListener, when set, is the bastion's listener instead of one
	// bound to the configured address (the demo and tests bind port 0).
	SSHListener net.Listener
	// RecordingStorageDial, when set, opens the connections to the
	// recording bucket's endpoint (tests dial a Unix socket).
	RecordingStorageDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Instance is one running Portcullis: everything Open built. Close it.
type Instance struct {
	Config   *config.Config
	Policy   *atomic.Pointer[authz.Policy]
	Store    store.Store
	Audit    *audit.FileLog
	Sessions *session.Manager
	MFA      *mfa.Manager
	Identity *identity.Provider
	Risk     *risk.Engine
	Gateway  *gateway.Gateway
	// The SSH side, nil without a bastion section: the user CA the gateway
	// issues certificates with, their revocations, and the bastion.
	SSHCA           *session.SSHCA
	CertRevocations *session.CertRevocations
	Bastion         *bastion.Bastion
	// Access is just-in-time access (always built: access.go); Reviews
	// runs access reviews.
	Access  *access.Manager
	Reviews *review.Manager

	sshLn  net.Listener
	geo    *geoLocator // risk's GeoIP database, replaced on reload
	now    func() time.Time
	rand   io.Reader // nil: crypto/rand (audit.NewRef falls back to it)
	log    *slog.Logger
	emit   audit.Emitter      // = Audit; an interface so reload is testable alone
	cancel context.CancelFunc // stops background work (session feed)

	shippers []*audit.Shipper // audit sinks (audit.go)
	auditBG  sync.WaitGroup   // shippers and the trail's health watcher
	accessBG sync.WaitGroup   // the access manager's Run loop

	// The S3-compatible bucket recordings are uploaded to, and the
	// uploader; nil without bastion.recording_storage (recstorage.go).
	recStore *s3store.Store
	uploader *s3store.Uploader
}

// Open builds every component from cfg. ctx bounds start-up work (OIDC
// discovery, Redis connection); background work lives until Close.
func Open(ctx context.Context, cfg *config.Config, opts Options) (in *Instance, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if cfg.Compiled == nil {
		return nil, errors.New("configuration has no compiled policy")
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	in = &Instance{Config: cfg, log: opts.Logger, now: opts.Now, rand: opts.Rand, cancel: cancel, Policy: new(atomic.Pointer[authz.Policy])}
	in.Policy.Store(cfg.Compiled)
	defer func() {
		if err != nil {
			in.Close()
			in = nil
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return in, fmt.Errorf("data directory: %w", err)
	}
	if in.Store, err = openStore(ctx, cfg.Store, opts); err != nil {
		return in, err
	}
	// The trail, its sinks and the watcher that alerts when it cannot be
	// written (audit.go).
	if err := in.openAudit(bg, cfg, opts); err != nil {
		return in, err
	}
	sopts := session.Options{Now: opts.Now, Rand: opts.Rand, Logger: opts.Logger.With("component", "session"),
		FeedLossGrace: cfg.Gateway.StoreGrace}
	if in.Sessions, err = session.NewManager(cfg.Session, in.Store, sopts); err != nil {
		return in, fmt.Errorf("sessions: %w", err)
	}
	if err := in.Sessions.Start(bg); err != nil {
		return in, fmt.Errorf("sessions: revocation feed: %w", err)
	}
	mopts := mfa.Options{Now: opts.Now, Rand: opts.Rand, Logger: opts.Logger.With("component", "mfa")}
	if in.MFA, err = mfa.New(cfg.MFA, in.Store, mopts); err != nil {
		return in, err
	}
	iopts := identity.Options{HTTPClient: opts.HTTPClient, Now: opts.Now, Rand: opts.Rand, Logger: opts.Logger.With("component", "identity")}
	if in.Identity, err = identity.New(ctx, cfg.Identity, iopts); err != nil {
		return in, err
	}
	if err := in.openSSHCA(cfg, opts); err != nil {
		return in, err
	}
	if err := in.openRisk(bg, cfg, opts); err != nil {
		return in, err
	}
	if err := in.openAccess(bg, cfg, opts); err != nil {
		return in, err
	}
	if err := in.openReviews(cfg, opts); err != nil {
		return in, err
	}
	// The bucket closed recordings are uploaded to (recstorage.go).
	if err := in.openRecordingStorage(bg, cfg, opts); err != nil {
		return in, err
	}
	var recordings gateway.RecordingStore
	if cfg.Bastion != nil {
		recordings = newRecordingStore(cfg.Bastion.RecordingDir, cfg.Bastion.RecordingKey, in.recStore, opts.Logger)
	}
	in.Gateway, err = gateway.New(cfg.Gateway, gateway.Deps{
		Policy:     in.Policy,
		Sessions:   in.Sessions,
		MFA:        in.MFA,
		Identity:   in.Identity,
		Store:      in.Store,
		Audit:      in.Audit,
		SigningKey: cfg.AssertionKey,
		Logger:     opts.Logger,
		Now:        opts.Now,
		Rand:       opts.Rand,
		SSHCA:      in.SSHCA,
		Risk:       in.Risk,
		// Fail closed: no new login while the trail cannot be written.
		AuditHealth: in.Audit,
		HealthNotes: in.healthNotes,
		// Effective roles include active grants; trail searches and
		// recording reads are served from the trail and recordings
		// directories (audited by the gateway, allowed or not).
		Access:     in.Access,
		TrailDir:   cfg.Audit.Dir,
		Recordings: recordings,
		Reviews:    in.Reviews,
	})
	if err != nil {
		return in, err
	}
	if err := in.openBastion(ctx, cfg, opts); err != nil {
		return in, err
	}
	return in, nil
}

func openStore(ctx context.Context, sc config.StoreConfig, opts Options) (store.Store, error) {
	log := opts.Logger.With("component", "store")
	switch sc.Backend {
	case config.BackendRedis:
		return store.OpenRedis(ctx, sc.Redis, store.RedisOptions{Now: opts.Now, Logger: log})
	default:
		if err := os.MkdirAll(filepath.Dir(sc.Path), 0o700); err != nil {
			return nil, fmt.Errorf("state store directory: %w", err)
		}
		return store.OpenEmbedded(sc.Path, store.EmbeddedOptions{Now: opts.Now, Logger: log})
	}
}

// Close stops background work and closes the audit log (flushing it) and
// the store, in that order: the last audit events may describe store
// failures, so the store goes last.
func (in *Instance) Close() error {
	var errs []error
	if in.Gateway != nil {
		errs = append(errs, in.Gateway.Close())
	}
	if in.sshLn != nil {
		in.sshLn.Close() // already closed when the bastion served
	}
	in.cancel()
	in.accessBG.Wait() // its last audit events go to the trail before it closes
	in.auditBG.Wait()  // sinks stop (their cursors are durable) before the trail closes
	if in.geo != nil {
		in.geo.close()
	}
	if in.Audit != nil {
		errs = append(errs, in.Audit.Close())
	}
	if in.Store != nil {
		errs = append(errs, in.Store.Close())
	}
	return errors.Join(errs...)
}

// Reload re-reads the configuration through load and swaps in the new
// policy, risk and access settings. On any error the running ones stay.
// Only the policy and the risk and access sections are reloaded: other
// sections take effect at the next restart, and a warning names the ones
// that changed.
func (in *Instance) Reload(ctx context.Context, load func() (*config.Config, error)) error {
	ev := audit.Event{Type: audit.TypeConfigReload, Attrs: map[string]string{"file": in.Config.Path}}
	cfg, err := load()
	if err != nil {
		ev.Decision, ev.Reason = audit.Deny, "invalid-config"
		in.emit.Emit(ctx, ev)
		in.log.Error("configuration reload failed; keeping the running policy", "err", err)
		return err
	}
	in.Policy.Store(cfg.Compiled)
	ev.Decision, ev.Reason = audit.Allow, "policy-reloaded"
	in.reloadRisk(cfg, &ev)
	in.reloadAccess(cfg, ev.Attrs)
	// Role and rule changes apply to live SSH sessions too: those the new
	// policy no longer allows end now.
	if ended := in.reevaluateSSH(); ended > 0 {
		ev.Attrs["ssh_sessions_ended"] = strconv.Itoa(ended)
	}
	if changed := restartSections(in.Config, cfg); len(changed) > 0 {
		ev.Attrs["restart_needed"] = fmt.Sprint(changed)
		in.log.Warn("configuration sections changed that apply only after a restart", "sections", changed)
	}
	in.emit.Emit(ctx, ev)
	in.log.Info("policy reloaded", "roles", len(cfg.Policy.Roles), "apps", len(cfg.Policy.Apps))
	return nil
}
