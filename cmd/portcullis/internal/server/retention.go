package server

import (
	"context"
	"errors"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
)

// Retention: serve purges what has expired once a day (the first time
// shortly after start, so a server restarted daily still purges), and
// `portcullis admin purge` does the same on demand over the admin socket.
// Both go through Instance.Purge, which audit.FileLog.Purge serializes.

const (
	// retentionFirstRun is how long after start the first purge runs:
	// late enough to stay out of start-up, early enough that a server
	// restarted often still purges.
	retentionFirstRun = 2 * time.Minute
	// retentionEvery is the period of the purge after the first one.
	retentionEvery = 24 * time.Hour
	// retentionActor is the actor of the daily purge's records.
	retentionActor = "retention"
)

// Purge deletes the trail files and recordings older than the configured
// retention, after recording a signed purge record in the trail (see
// audit.FileLog.Purge); dryRun lists them only. actor is recorded.
//
// With a recording bucket the objects older than the recordings'
// retention go too (purgeObjects), listed in res.Recordings as
// s3://bucket/key.
func (in *Instance) Purge(ctx context.Context, actor string, dryRun bool) (audit.PurgeResult, error) {
	opts := audit.PurgeOptions{Retention: in.Config.Retention, DryRun: dryRun, Actor: actor}
	if in.Config.Bastion != nil {
		opts.RecordingDir = in.Config.Bastion.RecordingDir
		opts.RecordingExts = []string{recording.FileExt}
	}
	res, err := in.Audit.Purge(ctx, opts)
	if in.recStore == nil || res.RecordingCutoff.IsZero() {
		return res, err
	}
	// The bucket is purged even when the trail files could not be: its
	// objects have their own purge records.
	objs, oerr := in.purgeObjects(ctx, actor, dryRun, res.RecordingCutoff)
	res.Recordings = append(res.Recordings, objs...)
	return res, errors.Join(err, oerr)
}

// runRetention purges after retentionFirstRun and then every
// retentionEvery until ctx ends. after is time.After outside tests.
func (in *Instance) runRetention(ctx context.Context, after func(time.Duration) <-chan time.Time) {
	wait := retentionFirstRun
	for {
		select {
		case <-ctx.Done():
			return
		case <-after(wait):
		}
		wait = retentionEvery
		res, err := in.Purge(ctx, retentionActor, false)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			// The next run retries; nothing was deleted that the trail does
			// not account for.
			in.log.Error("retention: purge failed", "err", err, "trail_files", len(res.Files), "recordings", len(res.Recordings))
		case len(res.Files) > 0 || len(res.Recordings) > 0:
			in.log.Info("retention: purged expired data", "trail_files", len(res.Files), "records", res.Records,
				"through_seq", res.ThroughSeq, "recordings", len(res.Recordings), "purge_record_seq", res.RecordSeq)
		}
	}
}
