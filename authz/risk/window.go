package risk

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// hit counts one event for subject/name in a sliding window of w ending
// at now and returns the count in that window.
//
// The window is approximated with two fixed buckets of width w: the
// current bucket's exact count (an atomic increment: count first) plus the
// previous bucket's count weighted by how much of it still overlaps the
// window. Within one bucket the result is exact and increases by one per
// call, so exactly one caller sees a threshold crossed.
func (e *Engine) hit(ctx context.Context, subject, name string, w time.Duration, now time.Time) (int64, error) {
	base, err := e.windowKey(ctx, subject, name)
	if err != nil {
		return 0, err
	}
	b := now.UnixNano() / int64(w)
	cur, err := e.st.Incr(ctx, base+strconv.FormatInt(b, 10), 1, 2*w)
	if err != nil {
		return 0, unavailable(err)
	}
	prev, err := e.st.Count(ctx, base+strconv.FormatInt(b-1, 10))
	if err != nil {
		return 0, unavailable(err)
	}
	overlap := 1 - float64(now.UnixNano()%int64(w))/float64(w)
	return cur + int64(float64(prev)*overlap), nil
}

// windowKey is the key prefix of subject's counter name. It includes the
// subject's epoch, which an unlock renews: counts from before the unlock
// no longer apply.
func (e *Engine) windowKey(ctx context.Context, subject, name string) (string, error) {
	epoch, err := e.st.GetEphemeral(ctx, epochKey(subject))
	switch {
	case errors.Is(err, store.ErrNotFound):
		epoch = []byte("0")
	case err != nil:
		return "", unavailable(err)
	}
	return "risk:w:" + name + ":" + subject + ":" + string(epoch) + ":", nil
}

func epochKey(subject string) string { return "risk-epoch:" + subject }

func (e *Engine) newEpoch(ctx context.Context, subject string) error {
	var b [8]byte
	if _, err := io.ReadFull(e.opts.Rand, b[:]); err != nil {
		return err
	}
	// The epoch must outlive every window (2 × maxWindow).
	if err := e.st.PutEphemeral(ctx, epochKey(subject), []byte(hex.EncodeToString(b[:])), 2*maxWindow); err != nil {
		return unavailable(err)
	}
	return nil
}
