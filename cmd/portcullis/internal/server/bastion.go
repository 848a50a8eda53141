package server

import (
	"context"
	"fmt"
	"net"

	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// openSSHCA builds the SSH user CA and the certificate revocations when
// the configuration has a bastion. They exist before the gateway (which
// issues certificates with the CA) and the bastion (which checks the
// revocations on every connection).
func (in *Instance) openSSHCA(cfg *config.Config, opts Options) error {
	if cfg.Bastion == nil {
		return nil
	}
	caOpts := session.SSHCAOptions{Now: opts.Now, Rand: opts.Rand, Logger: opts.Logger.With("component", "sshca")}
	var err error
	if in.SSHCA, err = session.NewSSHCA(cfg.SSHUserCA, caOpts); err != nil {
		return fmt.Errorf("SSH user CA: %w", err)
	}
	if in.CertRevocations, err = session.NewCertRevocations(in.Store, caOpts); err != nil {
		return fmt.Errorf("SSH certificate revocations: %w", err)
	}
	return nil
}

// openBastion builds the bastion and binds its listener (so that a busy
// port fails start-up, before anything serves).
func (in *Instance) openBastion(ctx context.Context, cfg *config.Config, opts Options) error {
	if cfg.Bastion == nil {
		return nil
	}
	log := opts.Logger.With("component", "bastion")
	// A recording directory that cannot be written would refuse every
	// session; say so at start-up rather than at the first connection.
	if err := recording.Probe(cfg.Bastion.RecordingDir, recording.Options{}); err != nil {
		return fmt.Errorf("bastion recording directory %s: %w", cfg.Bastion.RecordingDir, err)
	}
	// Keyboard-interactive approvals live in the shared store: the
	// gateway's approval page decides what the bastion waits for.
	var approvals bastion.Approvals
	if cfg.Bastion.ApprovalURL != "" {
		a, err := session.NewSSHApprovals(in.Store, session.SSHCAOptions{Now: opts.Now, Rand: opts.Rand, Logger: log})
		if err != nil {
			return fmt.Errorf("bastion approvals: %w", err)
		}
		approvals = a
	}
	var err error
	in.Bastion, err = bastion.New(*cfg.Bastion, bastion.Deps{
		Approvals:   approvals,
		Policy:      in.Policy,
		Store:       in.Store,
		Audit:       in.Audit,
		Revocations: in.CertRevocations,
		MFA:         in.MFA,
		// Built by openRisk before the bastion: the bastion reports
		// failures and obeys locks through it.
		Risk: in.Risk,
		// Fail closed: no new connection while the trail cannot be written.
		AuditHealth: in.Audit,
		// Roles = certificate roles ∪ active just-in-time grants; a
		// session a grant allowed ends when it expires or is revoked.
		Grants: in.Access,
		// Closed recordings are queued for the bucket (recstorage.go).
		RecordingClosed: in.recordingClosed(),
		Logger:          log,
		Now:             opts.Now,
		Rand:            opts.Rand,
	})
	if err != nil {
		return fmt.Errorf("bastion: %w", err)
	}
	if in.sshLn = opts.SSHListener; in.sshLn == nil {
		if in.sshLn, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Bastion.Listen); err != nil {
			return fmt.Errorf("bastion: %w", err)
		}
	}
	return nil
}

// SSHAddr is the bastion's listening address, nil without a bastion.
func (in *Instance) SSHAddr() net.Addr {
	if in.sshLn == nil {
		return nil
	}
	return in.sshLn.Addr()
}

// ServeSSH runs the bastion on its listener until ctx ends; Serve closes
// the listener and ends live sessions (recordings finished) before it
// returns.
func (in *Instance) ServeSSH(ctx context.Context) error {
	return in.Bastion.Serve(ctx, in.sshLn)
}

// reevaluateSSH ends the live SSH sessions the reloaded policy no longer
// allows.
func (in *Instance) reevaluateSSH() int {
	if in.Bastion == nil {
		return 0
	}
	return in.Bastion.Reevaluate()
}
