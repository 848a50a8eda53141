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

// subBuckets is how many fixed buckets a sliding window is made of.
const subBuckets = 8

// hit counts one event for subject/name in a sliding window of w ending
// at now and returns the count in that window.
//
// The window is made of fixed buckets of w/subBuckets: the current
// bucket's exact count (an atomic increment: count first) plus the counts
// of the subBuckets buckets before it. That spans between w and
// w + w/subBuckets, so the window is never shorter than configured: no
// timing of failures around bucket edges gets an attacker extra guesses
// (weighting the oldest bucket, as a two-bucket estimate does, can drop
// it entirely and let through up to twice the threshold). Within one
// bucket the result increases by one per call, so exactly one caller
// sees a threshold crossed.
func (e *Engine) hit(ctx context.Context, subject, name string, w time.Duration, now time.Time) (int64, error) {
	base, err := e.windowKey(ctx, subject, name)
	if err != nil {
		return 0, err
	}
	width := int64(w) / subBuckets
	b := now.UnixNano() / width
	// A bucket is read until subBuckets buckets after its own ends: it
	// must live w + width from its first increment.
	n, err := e.st.Incr(ctx, base+strconv.FormatInt(b, 10), 1, w+time.Duration(width))
	if err != nil {
		return 0, unavailable(err)
	}
	// b+1 too: a failure counted by another instance whose clock is a
	// little ahead, or after the bucket edge passed since our increment,
	// must not make both of us miss the threshold.
	for i := int64(-1); i <= subBuckets; i++ {
		if i == 0 {
			continue
		}
		c, err := e.st.Count(ctx, base+strconv.FormatInt(b-i, 10))
		if err != nil {
			return 0, unavailable(err)
		}
		n += c
	}
	return n, nil
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
