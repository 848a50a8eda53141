package audit

import "time"

// writer is the state owned by the FileLog's writer goroutine.
type writer struct {
	l       *FileLog
	buf     []byte // taken from the batch, not yet written
	spare   []byte // a written buffer, handed back to Emit at the next take
	taken   uint64 // sequence number of the newest event taken
	failing bool   // the last write or sync failed; retry on the timer
}

// run is the writer goroutine. It sleeps until an Emit, Flush or Close
// wakes it or its interval timer fires, and makes the batch durable every
// interval, at once when woken urgently, and at Close.
func (l *FileLog) run() {
	w := &writer{l: l}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		now := false
		select {
		case <-l.wake:
			l.mu.Lock()
			now = l.urgent || l.closed
			l.mu.Unlock()
		case <-timer.C:
			armed, now = false, true
		}
		if now && w.cycle() {
			w.finish()
			return
		}
		if !armed {
			// Arm the interval while anything is waiting or a retry is due;
			// otherwise sleep until an Emit finds us idle and wakes us.
			l.mu.Lock()
			busy := len(l.batch) > 0 || w.taken > l.durable || w.failing
			l.idle = !busy
			l.mu.Unlock()
			if busy {
				timer.Reset(l.interval)
				armed = true
			}
		}
	}
}

// cycle takes the batch (unless a failing disk has left a full backlog),
// writes and fsyncs. It reports whether Close has started, in which case
// it took everything, including what blocked Emits appended.
func (w *writer) cycle() (closing bool) {
	l := w.l
	l.mu.Lock()
	l.urgent = false
	closing = l.closed
	if closing {
		for l.waiting > 0 {
			l.space.Wait()
		}
	}
	if closing || len(w.buf) < l.backlog {
		w.take()
	}
	if len(w.buf) == 0 && w.taken == l.durable && !w.failing {
		l.mu.Unlock()
		return closing
	}
	l.attempts++
	attempt := l.attempts
	l.mu.Unlock()
	w.sync(attempt)
	return closing
}

// take moves the batch to the writer. Caller holds mu.
func (w *writer) take() {
	l := w.l
	if len(l.batch) == 0 {
		return
	}
	if len(w.buf) == 0 {
		// Swap buffers: no copy in the healthy case.
		w.buf, l.batch, w.spare = l.batch, w.spare[:0], nil
	} else {
		// Unwritten data from a failed attempt comes first.
		w.buf = append(w.buf, l.batch...)
		l.batch = l.batch[:0]
	}
	w.taken = l.emitted
	l.batchEvents = 0
	if l.waiting > 0 {
		l.space.Broadcast()
	}
}

// sync writes what was taken and fsyncs. On success every taken event
// becomes durable (in sequence order) and the log is healthy again; on
// failure the unwritten tail is kept for the next attempt.
//
// A failed fsync may have lost dirty pages that a later fsync will not
// report again; the log stays marked unhealthy until a full write+sync
// succeeds, and the caller-visible error is what Healthy reports.
func (w *writer) sync(attempt uint64) {
	l := w.l
	if len(w.buf) > 0 {
		n, err := l.f.Write(w.buf)
		w.buf = w.buf[:copy(w.buf, w.buf[n:])]
		if err != nil {
			w.fail(err, attempt)
			return
		}
	}
	if err := l.f.Sync(); err != nil {
		w.fail(err, attempt)
		return
	}
	l.mu.Lock()
	l.durable = w.taken
	recovered := l.err != nil
	l.err = nil
	l.cond.Broadcast()
	l.mu.Unlock()
	w.failing = false
	if cap(w.buf) <= maxSpareBuf {
		w.spare = w.buf[:0]
	}
	w.buf = nil
	if recovered {
		l.log.Info("audit: writes recovered", "path", l.path)
	}
}

func (w *writer) fail(err error, attempt uint64) {
	w.failing = true
	l := w.l
	l.mu.Lock()
	first := l.err == nil
	l.err = err
	l.failedAt = attempt
	l.cond.Broadcast()
	pending := w.taken - l.durable
	l.mu.Unlock()
	if first {
		l.log.Error("audit: write failed; retrying, events are held in memory", "path", l.path, "err", err, "pending", pending)
	}
}

// finish records the writer's exit after its last attempt at Close.
func (w *writer) finish() {
	l := w.l
	l.mu.Lock()
	lost := w.taken - l.durable
	l.stopped = true
	l.cond.Broadcast()
	l.mu.Unlock()
	if lost > 0 {
		l.log.Error("audit: events lost at close", "path", l.path, "events", lost)
	}
	close(l.done)
}
