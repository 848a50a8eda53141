package server

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// openRecordingStorage builds the bucket and the uploader when the
// bastion has a recording_storage section, queues what earlier runs left
// to upload (before the bastion accepts sessions: every recording in the
// directory now is closed, or cut by a crash), and runs the uploader in
// the background until Close. A bucket that cannot be reached at
// start-up is logged, not fatal: recordings stay on disk and are
// uploaded once it answers (sessions never wait for the bucket).
func (in *Instance) openRecordingStorage(bg context.Context, cfg *config.Config, opts Options) error {
	if cfg.Bastion == nil || cfg.RecordingStorage == nil {
		return nil
	}
	rs := cfg.RecordingStorage
	log := opts.Logger.With("component", "recording-storage")
	st, err := s3store.New(*rs, s3store.Options{Logger: log, DialContext: opts.RecordingStorageDial})
	if err != nil {
		return fmt.Errorf("recording storage: %w", err)
	}
	up, err := s3store.NewUploader(st, s3store.UploaderOptions{
		Dir: cfg.Bastion.RecordingDir, KeepLocal: rs.KeepLocal, Audit: in.Audit, Logger: log, Now: opts.Now,
	})
	if err != nil {
		return fmt.Errorf("recording storage: %w", err)
	}
	if err := up.Scan(); err != nil {
		return fmt.Errorf("recording storage: %w", err)
	}
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := st.CheckBucket(ctx); err != nil {
		log.Error("recording storage: the bucket cannot be used now; recordings stay on disk and are uploaded when it can",
			"endpoint", rs.Endpoint, "bucket", rs.Bucket, "err", err)
	}
	in.recStore, in.uploader = st, up
	// The uploader emits audit events: it stops before the trail closes.
	in.auditBG.Add(1)
	go func() {
		defer in.auditBG.Done()
		up.Run(bg)
	}()
	return nil
}

// recordingClosed is the bastion's RecordingClosed hook (nil without a
// bucket).
func (in *Instance) recordingClosed() func(string) {
	if in.uploader == nil {
		return nil
	}
	return in.uploader.Closed
}

// healthNotes are the /healthz lines: audit sinks and recording uploads
// in trouble.
func (in *Instance) healthNotes() []string {
	notes := in.auditHealthNotes()
	if in.uploader != nil {
		notes = append(notes, in.uploader.HealthNotes()...)
	}
	return notes
}

// recordingStorageView drops the CA pool (rebuilt on every load, so never
// equal by pointer; CAFile names it) from the comparison.
func recordingStorageView(c *s3store.Config) any {
	if c == nil {
		return nil
	}
	v := *c
	v.RootCAs = nil
	return v
}
