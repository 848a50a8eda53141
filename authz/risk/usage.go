package risk

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
				if err := e.foldIdle(ctx, userID, u, minute, hour); err != nil && firstErr == nil {
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

// foldPeriods folds the user's last minute and hour into the baselines of
// p when they are over, once across all instances (the first to
// increment the period's fold mark), and reports whether p changed.
func (e *Engine) foldPeriods(ctx context.Context, userID string, u *usageEntry, p *profile, minute, hour int64) (bool, error) {
	changed := false
	fold := func(kind string, period int64, key string, ewma *float64, n *int) error {
		first, err := e.st.Incr(ctx, "risk:usage:fold:"+kind+":"+userID+":"+strconv.FormatInt(period, 10), 1, 3*time.Hour)
		if err != nil || first != 1 {
			return err
		}
		total, err := e.st.Count(ctx, key)
		if err != nil || total == 0 {
			return err
		}
		if *n == 0 {
			*ewma = float64(total)
		} else {
			*ewma = (1-ewmaAlpha)*(*ewma) + ewmaAlpha*float64(total)
		}
		*n++
		changed = true
		return nil
	}
	if u.lastMinute != 0 && u.lastMinute != minute {
		if err := fold("req", u.lastMinute, reqKey(userID, u.lastMinute), &p.RateEWMA, &p.Minutes); err != nil {
			return false, unavailable(err)
		}
		u.lastMinute = 0
	}
	if u.lastHour != 0 && u.lastHour != hour {
		if err := fold("bytes", u.lastHour, bytesKey(userID, u.lastHour), &p.BytesEWMA, &p.HoursActive); err != nil {
			return false, unavailable(err)
		}
		u.lastHour = 0
	}
	return changed, nil
}

// foldIdle folds the finished periods of a user with nothing new to flush.
func (e *Engine) foldIdle(ctx context.Context, userID string, u *usageEntry, minute, hour int64) error {
	p, err := e.loadProfile(ctx, userID)
	if err != nil {
		return err
	}
	changed, err := e.foldPeriods(ctx, userID, u, &p, minute, hour)
	if err != nil || !changed {
		return err
	}
	return e.saveProfile(ctx, userID, p)
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

	p, err := e.loadProfile(ctx, userID)
	if err != nil {
		return putBack(req, b, err)
	}
	changed, err := e.foldPeriods(ctx, userID, u, &p, minute, hour)
	if err == nil && changed {
		err = e.saveProfile(ctx, userID, p)
	}
	if err != nil {
		return putBack(req, b, err)
	}
	u.lastMinute, u.lastHour = minute, hour

	var rate, volume int64
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
