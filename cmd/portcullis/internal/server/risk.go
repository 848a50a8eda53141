package server

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// openRisk builds the risk engine and runs its background work (alert
// delivery, usage flushes) until the instance closes. A lock it raises
// revokes the user's web sessions and, with a bastion, every SSH
// certificate issued to them so far.
func (in *Instance) openRisk(bg context.Context, cfg *config.Config, opts Options) error {
	revokers := []risk.Revoker{in.Sessions}
	if in.CertRevocations != nil {
		revokers = append(revokers, certRevoker{in.CertRevocations})
	}
	e, err := risk.New(cfg.Risk, in.Store, risk.Options{
		Instance: cfg.Instance,
		Now:      opts.Now,
		Rand:     opts.Rand,
		Logger:   opts.Logger,
		Audit:    in.Audit,
		Revokers: revokers,
	})
	if err != nil {
		return err
	}
	in.Risk = e
	go e.Run(bg)
	return nil
}

// certRevoker revokes every SSH certificate issued to a user up to now
// (key ID = user ID); certificates issued after an unlock are valid.
type certRevoker struct{ r *session.CertRevocations }

func (c certRevoker) RevokeUser(ctx context.Context, userID, reason string) error {
	if err := c.r.RevokeKeyID(ctx, userID, reason); err != nil {
		return fmt.Errorf("revoking SSH certificates: %w", err)
	}
	return nil
}
