package server

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// Just-in-time access and access reviews. The access manager always runs,
// with or without an access section: without one nothing is requestable,
// but admins can still add and revoke grants, and audit reads follow
// audit_read's defaults. Its grant cache is what the gateway and the
// bastion consult on every decision (memory only); Run keeps it fresh from
// the store's feed, expires requests and grants, and delivers approver
// webhooks, in the background until Close.

// accessRetry bounds the wait before Run is started again after it failed
// (the feed could not be subscribed: the store is unreachable).
var accessRetry = struct{ min, max time.Duration }{time.Second, 30 * time.Second}

// openAccess builds the access manager and starts its Run loop under bg.
func (in *Instance) openAccess(bg context.Context, cfg *config.Config, opts Options) error {
	var err error
	in.Access, err = access.New(cfg.Access, access.Deps{
		Store:    in.Store,
		Feed:     in.Store,
		Audit:    in.Audit,
		Logger:   opts.Logger,
		Now:      opts.Now,
		Rand:     opts.Rand,
		Instance: cfg.Instance,
		Policy:   in.Policy.Load,
	})
	if err != nil {
		return fmt.Errorf("access: %w", err)
	}
	in.accessBG.Go(func() { in.runAccess(bg) })
	return nil
}

// runAccess runs the manager until ctx ends, starting it again with a
// growing pause when it stops early (a feed that could not be subscribed,
// or that closed). Until it runs, enforcement sees the grants loaded so
// far (none at start-up: fewer roles, never more).
func (in *Instance) runAccess(ctx context.Context) {
	wait := accessRetry.min
	for {
		err := in.Access.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		in.log.Error("just-in-time access stopped; starting it again", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, accessRetry.max)
	}
}

// openReviews builds the access-review manager: campaigns live in the
// store, usage evidence comes from the trail directory.
func (in *Instance) openReviews(cfg *config.Config, opts Options) error {
	var err error
	in.Reviews, err = review.New(cfg.Reviews, review.Deps{
		Store:    in.Store,
		Policy:   in.Policy.Load,
		Grants:   in.Access,
		AuditDir: cfg.Audit.Dir,
		Audit:    in.Audit,
		Now:      opts.Now,
		Rand:     opts.Rand,
		Logger:   opts.Logger.With("component", "review"),
	})
	if err != nil {
		return fmt.Errorf("access reviews: %w", err)
	}
	return nil
}

// reloadAccess swaps in cfg's access settings (requests and grants
// survive; see access.Manager.SetConfig). Load has validated them
// against the new policy. The outcome is noted on the reload's audit
// event as a code.
func (in *Instance) reloadAccess(cfg *config.Config, attrs map[string]string) {
	if in.Access == nil {
		return
	}
	if err := cfg.Access.Validate(cfg.Compiled); err != nil {
		attrs["access"] = "invalid-access-config-kept-previous"
		in.log.Error("access settings refused on reload; keeping the ones in force", "err", err)
		return
	}
	if reflect.DeepEqual(in.Access.Config(), cfg.Access.WithDefaults()) {
		return
	}
	in.Access.SetConfig(cfg.Access)
	attrs["access"] = "reloaded"
	in.log.Info("access settings reloaded")
}
