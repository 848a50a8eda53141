package gateway

import (
	"context"
	"io"
	"time"
)

// RecordingStore is what the gateway needs from the SSH session recordings
// (bastion/recording, wired by cmd: the gateway never imports bastion). It
// only reads: listing, one recording's metadata, and an asciicast v2 export
// whose integrity (signature/chain) the store has verified before any byte
// reaches w.
type RecordingStore interface {
	// ListRecordings lists the recordings of userID, or of everyone when
	// userID is "".
	ListRecordings(ctx context.Context, userID string) ([]RecordingInfo, error)
	// RecordingInfo describes one recording; store.ErrNotFound when id is
	// unknown.
	RecordingInfo(ctx context.Context, id string) (RecordingInfo, error)
	// ExportRecording writes recording id as asciicast v2 to w, after
	// verifying it; store.ErrNotFound when id is unknown.
	ExportRecording(ctx context.Context, id string, w io.Writer) error
}

// RecordingInfo is one recording's metadata, as served by
// GET /api/audit/recordings.
type RecordingInfo struct {
	ID     string    `json:"id"`
	UserID string    `json:"user_id"`
	Target string    `json:"target"`
	Login  string    `json:"login"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Bytes  int64     `json:"bytes"`
}
