package risk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// usageEntry is one user's counts since the last flush. Only atomics are
// touched on the request path.
type usageEntry struct {
	requests atomic.Int64
	bytes    atomic.Int64
	// Owned by the flusher.
	idleFlushes int
	lastMinute  int64
	lastHour    int64
	// base is the user's baseline as last read or written; it is read
	// afresh from the store whenever a period is folded (at most once a
	// minute), so other instances' folds show within a minute.
	base       baseline
	baseLoaded bool
}

// baseline is a user's usage baselines, one JSON record in the store.
// RateEWMA is requests per active minute, BytesEWMA bytes per active
// hour; Minutes and HoursActive count how many periods went into them.
// Instances fold periods read-modify-write: a rare lost update makes a
// baseline slightly less precise, never grants anything.
type baseline struct {
	RateEWMA    float64 `json:"rate_ewma,omitempty"`
	Minutes     int     `json:"minutes,omitempty"`
	BytesEWMA   float64 `json:"bytes_ewma,omitempty"`
	HoursActive int     `json:"hours_active,omitempty"`
}

func baselineKey(userID string) string { return "risk-baseline:" + userID }

func (e *Engine) loadBaseline(ctx context.Context, userID string) (baseline, error) {
	var b baseline
	raw, err := e.st.GetEphemeral(ctx, baselineKey(userID))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return b, nil
	case err != nil:
		return b, unavailable(err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		// Relearned from the next periods; meanwhile only the absolute
		// minimums apply.
		e.log.ErrorContext(ctx, "corrupt usage baseline, starting afresh", "user_id", userID, "err", err)
		return baseline{}, nil
	}
	return b, nil
}

func (e *Engine) saveBaseline(ctx context.Context, userID string, b baseline) error {
	raw, err := json.Marshal(b)
	if err != nil {
		return err
	}
	if err := e.st.PutEphemeral(ctx, baselineKey(userID), raw, profileTTL); err != nil {
		return unavailable(err)
	}
	return nil
}

type usageTable struct {
	m sync.Map // user ID → *usageEntry
	// flushing serialises FlushUsage (Run's loop, a final flush at
	// shutdown, tests): the entries' flusher-owned fields need one owner.
	flushing sync.Mutex
}

// Usage adds requests and bytes (sent to the user) to userID's counts. It
// is called per request or per relayed chunk: no store access, no
// allocation once the user has an entry.
func (e *Engine) Usage(userID string, requests, bytes int64) {
	if userID == "" || e.cfg.Load().Disabled {
		return
	}
	v, ok := e.usage.m.Load(userID)
	if !ok {
		v, _ = e.usage.m.LoadOrStore(userID, &usageEntry{})
	}
	u := v.(*usageEntry)
	if requests != 0 {
		u.requests.Add(requests)
	}
	if bytes != 0 {
		u.bytes.Add(bytes)
	}
}

// runUsage flushes every FlushInterval of real time. It does not use
// Options.After, the alert backoff timer: a test that makes backoff
// instant must not turn this loop into a busy one. Tests drive
// FlushUsage directly, with the injected clock.
func (e *Engine) runUsage(ctx context.Context) {
	for {
		t := time.NewTimer(e.cfg.Load().FlushInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			// Best effort: what was counted since the last flush.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			e.FlushUsage(fctx)
			cancel()
			return
		case <-t.C:
			if err := e.FlushUsage(ctx); err != nil {
				e.log.ErrorContext(ctx, "flushing usage counts", "err", err)
			}
		}
	}
}

const (
	ewmaAlpha       = 0.1
	baselineMinutes = 30 // active minutes before a rate baseline is trusted
	baselineHours   = 3  // active hours before a bytes baseline is trusted
)

// FlushUsage adds the counts gathered since the last flush to the store's
// per-minute (requests) and per-hour (bytes) totals of each user, folds
// finished periods into the user's baselines, and reports usage far above
// the baseline. Engine.Run calls it every FlushInterval.
func (e *Engine) FlushUsage(ctx context.Context) error {
	e.usage.flushing.Lock()
	defer e.usage.flushing.Unlock()
	var firstErr error
	now := e.now()
	minute, hour := now.Unix()/60, now.Unix()/3600
	e.usage.m.Range(func(k, v any) bool {
		userID, u := k.(string), v.(*usageEntry)
		req, b := u.requests.Swap(0), u.bytes.Swap(0)
		if req == 0 && b == 0 {
			// An idle user's last active minute and hour still go into
			// the baselines once they are over; without this, the end of
			// every burst of activity (and every hour not followed at
			// once by more activity) would never count.
			if (u.lastMinute != 0 && u.lastMinute != minute) || (u.lastHour != 0 && u.lastHour != hour) {
				if err := e.foldPeriods(ctx, userID, u, minute, hour); err != nil && firstErr == nil {
					firstErr = err
				}
			}
			if u.idleFlushes++; u.idleFlushes > 6 && u.lastMinute == 0 && u.lastHour == 0 {
				e.usage.m.Delete(userID) // a racing Usage may lose a few counts; harmless
			}
			return true
		}
		u.idleFlushes = 0
		if err := e.flushUser(ctx, userID, u, req, b); err != nil && firstErr == nil {
			firstErr = err
		}
		return true
	})
	return firstErr
}

func reqKey(userID string, minute int64) string {
	return "risk:usage:req:" + userID + ":" + strconv.FormatInt(minute, 10)
}

func bytesKey(userID string, hour int64) string {
	return "risk:usage:bytes:" + userID + ":" + strconv.FormatInt(hour, 10)
}

// foldPeriods folds the user's last minute and hour into the baselines
// when they are over, once across all instances (the first to increment
// the period's fold mark), and leaves the current baseline in u.base.
// An instance that did not fold keeps its cached baseline, at most a
// minute old: store calls per active user stay at a handful a minute.
func (e *Engine) foldPeriods(ctx context.Context, userID string, u *usageEntry, minute, hour int64) error {
	type due struct {
		key  string
		ewma *float64
		n    *int
	}
	var b baseline
	var folds []due
	mark := func(kind string, period int64, key string, ewma *float64, n *int) error {
		first, err := e.st.Incr(ctx, "risk:usage:fold:"+kind+":"+userID+":"+strconv.FormatInt(period, 10), 1, 3*time.Hour)
		if err != nil {
			return unavailable(err)
		}
		if first == 1 {
			folds = append(folds, due{key, ewma, n})
		}
		return nil
	}
	if u.lastMinute != 0 && u.lastMinute != minute {
		if err := mark("req", u.lastMinute, reqKey(userID, u.lastMinute), &b.RateEWMA, &b.Minutes); err != nil {
			return err
		}
		u.lastMinute = 0
	}
	if u.lastHour != 0 && u.lastHour != hour {
		if err := mark("bytes", u.lastHour, bytesKey(userID, u.lastHour), &b.BytesEWMA, &b.HoursActive); err != nil {
			return err
		}
		u.lastHour = 0
	}
	if len(folds) == 0 && u.baseLoaded {
		return nil
	}
	loaded, err := e.loadBaseline(ctx, userID)
	if err != nil {
		return err
	}
	b = loaded
	changed := false
	for _, f := range folds {
		total, err := e.st.Count(ctx, f.key)
		if err != nil {
			return unavailable(err)
		}
		if total == 0 {
			continue
		}
		if *f.n == 0 {
			*f.ewma = float64(total)
		} else {
			*f.ewma = (1-ewmaAlpha)*(*f.ewma) + ewmaAlpha*float64(total)
		}
		*f.n++
		changed = true
	}
	if changed {
		if err := e.saveBaseline(ctx, userID, b); err != nil {
			return err
		}
	}
	u.base, u.baseLoaded = b, true
	return nil
}

// flushUser adds req and b to the user's totals in the store and checks
// them against the baselines. What it could not add is put back into u,
// to be flushed next time.
func (e *Engine) flushUser(ctx context.Context, userID string, u *usageEntry, req, b int64) error {
	c := e.cfg.Load()
	now := e.now()
	minute, hour := now.Unix()/60, now.Unix()/3600
	putBack := func(req, b int64, err error) error {
		u.requests.Add(req)
		u.bytes.Add(b)
		return err
	}
	if err := e.foldPeriods(ctx, userID, u, minute, hour); err != nil {
		return putBack(req, b, err)
	}
	u.lastMinute, u.lastHour = minute, hour

	var rate, volume int64
	var err error
	if req > 0 {
		if rate, err = e.st.Incr(ctx, reqKey(userID, minute), req, 3*time.Hour); err != nil {
			return putBack(req, b, unavailable(err))
		}
	}
	if b > 0 {
		if volume, err = e.st.Incr(ctx, bytesKey(userID, hour), b, 3*time.Hour); err != nil {
			return putBack(0, b, unavailable(err))
		}
	}
	p := u.base
	if limit := usageLimit(c.RateMin, c.RateFactor, p.RateEWMA, p.Minutes >= baselineMinutes); rate > limit {
		e.usageAnomaly(ctx, c, userID, ReasonRequestRate,
			fmt.Sprintf("%d requests this minute, limit %d (baseline %.0f/min over %d minutes)", rate, limit, p.RateEWMA, p.Minutes))
	}
	if limit := usageLimit(c.BytesMin, c.BytesFactor, p.BytesEWMA, p.HoursActive >= baselineHours); volume > limit {
		e.usageAnomaly(ctx, c, userID, ReasonDownload,
			fmt.Sprintf("%d bytes this hour, limit %d (baseline %.0f/h over %d hours)", volume, limit, p.BytesEWMA, p.HoursActive))
	}
	return nil
}

// usageLimit is factor × baseline, never below min; without a trusted
// baseline only min applies.
func usageLimit(minimum int64, factor, ewma float64, trusted bool) int64 {
	if !trusted {
		return minimum
	}
	return max(minimum, int64(factor*ewma))
}

func (e *Engine) usageAnomaly(ctx context.Context, c *compiled, userID, reason, detail string) {
	// Reported once per dedup window, not at every flush while it lasts.
	if !e.firstIn("usage|" + userID + "|" + reason) {
		return
	}
	if c.UsageLocks {
		if _, err := e.lock(ctx, userID, netip.Addr{}, reason, detail, "", map[string]string{}); err != nil {
			e.log.ErrorContext(ctx, "locking on usage", "user_id", userID, "err", err)
		}
		return
	}
	e.anomaly(ctx, userID, netip.Addr{}, reason, detail, map[string]string{})
}
