package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion/recording"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
)

// typeRecordingPurge is the trail record of recordings deleted from the
// bucket by retention. Like the local purge records (audit.purge), the
// records name every object and are durable in the trail before
// anything is deleted, so a deletion is never unaccounted for; the
// trail's own type is reserved to the log, hence a type of its own.
const typeRecordingPurge = "recording.purge"

// maxObjectsPerRecord bounds the object keys named in one record (more
// go into further records).
const maxObjectsPerRecord = 200

// purgeObjects deletes the recordings in the bucket last modified
// (uploaded) before cutoff, after recording them in the trail and
// waiting until those records are durable; dryRun only lists them.
func (in *Instance) purgeObjects(ctx context.Context, actor string, dryRun bool, cutoff time.Time) ([]audit.PurgedFile, error) {
	st := in.recStore
	var expired []s3store.Object
	err := st.List(ctx, func(o s3store.Object) error {
		if strings.HasSuffix(o.Name, recording.FileExt) && o.LastModified.Before(cutoff) {
			expired = append(expired, o)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("retention: recording bucket: %w", err)
	}
	out := make([]audit.PurgedFile, 0, len(expired))
	for _, o := range expired {
		out = append(out, audit.PurgedFile{Name: st.URL(o.Name), Newest: o.LastModified.UTC(), Bytes: o.Size})
	}
	if dryRun || len(expired) == 0 {
		return out, nil
	}
	if actor == "" {
		actor = retentionActor
	}
	parts := (len(expired) + maxObjectsPerRecord - 1) / maxObjectsPerRecord
	for p := range parts {
		chunk := expired[p*maxObjectsPerRecord : min((p+1)*maxObjectsPerRecord, len(expired))]
		keys := make([]string, len(chunk))
		for i, o := range chunk {
			keys[i] = o.Key
		}
		in.Audit.Emit(ctx, audit.Event{Type: typeRecordingPurge, Actor: actor, Reason: "retention", Attrs: map[string]string{
			"bucket":              st.Bucket(),
			"recordings":          strconv.Itoa(len(expired)),
			"recording_cutoff":    cutoff.UTC().Format(time.RFC3339Nano),
			"recording_retention": in.Config.Retention.WithDefaults().Recordings.String(),
			"recording_keys":      strings.Join(keys, ","),
			"part":                fmt.Sprintf("%d/%d", p+1, parts),
		}})
	}
	if err := in.Audit.Sync(ctx); err != nil {
		return out, fmt.Errorf("retention: the purge records of the recording bucket are not durable, nothing deleted from it: %w", err)
	}
	var errs []error
	for _, o := range expired {
		if err := st.Delete(ctx, o.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.URL(o.Name), err))
			continue
		}
		s3store.RemoveReceipt(in.Config.Bastion.RecordingDir, o.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("retention: recording bucket: %w", err)
	}
	return out, nil
}
