package audit

import "time"

// writer is the state owned by the FileLog's writer goroutine.
type writer struct {
	l       *FileLog
	buf     []byte // taken from the batch, not yet written
	sealed  int    // buf[:sealed] has its prev hashes filled in
	spare   []byte // a written buffer, handed back to Emit at the next take
	taken   uint64 // sequence number of the newest event taken
	failing bool   // the last attempt failed; retry on the timer

	chain      chain
	ckptSeq    uint64 // seq reserved for a checkpoint to append after sealing; 0: none
	head       *headFile
	headSeq    uint64 // what the head marker on disk says
	headClosed bool
	bufCkpt    uint64 // seq of the newest checkpoint appended to buf

	// The file being written (roll.go).
	curPath     string    // its path: the active path, unless a roll failed half-way
	lastWritten uint64    // seq of the last record written to it
	segStart    time.Time // when it was started (its first record's time)
	segFirst    uint64    // seq of its first record
	segBytes    int64     // its size
	segRecords  bool      // it holds a chain record (only such a file is rolled)
	rollFailing bool      // the last roll failed (logged once)
}

// Timer states of the run loop.
const (
	timerOff = iota
	timerFlush
	timerCheckpoint
)

// run is the writer goroutine. It sleeps until an Emit, Sync or Close
// wakes it or its timer fires, and makes the batch durable every
// interval, at once when woken urgently, and at Close. When the log goes
// quiet with records not yet covered by a checkpoint, it arms a longer
// timer so that a checkpoint follows within the checkpoint interval.
func (l *FileLog) run() {
	w := l.w
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := timerOff
	for {
		now := false
		select {
		case <-l.wake:
			l.mu.Lock()
			now = l.urgent || l.closed
			l.mu.Unlock()
		case <-timer.C:
			armed, now = timerOff, true
		}
		if now && w.cycle() {
			w.finish()
			return
		}
		// Arm the interval while anything is waiting or a retry is due;
		// otherwise sleep until an Emit finds us idle and wakes us.
		l.mu.Lock()
		busy := len(l.batch) > 0 || w.taken > l.durable || w.failing
		l.idle = !busy
		l.mu.Unlock()
		switch {
		case busy && armed != timerFlush:
			timer.Reset(l.interval) // replaces a checkpoint timer
			armed = timerFlush
		case !busy && armed == timerOff && w.chain.since > 0:
			d := l.ckptAfter - l.now().Sub(w.chain.lastCkpt)
			timer.Reset(max(d, l.interval))
			armed = timerCheckpoint
		}
	}
}

// cycle takes the batch (unless a failing disk has left a full backlog),
// seals it, writes and fsyncs, then updates the head marker. It reports
// whether Close has started, in which case it took everything, including
// what blocked Emits appended.
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
	took := 0
	if closing || len(w.buf) < l.backlog {
		took = w.take()
	}
	// A checkpoint is due after `every` records, `ckptAfter` after the
	// last one, or at Close. Its seq is reserved now, right after the
	// records just taken, before any later Emit takes the next one.
	if since := w.chain.since + took; w.ckptSeq == 0 && since > 0 &&
		(since >= l.every || closing || l.forceCkpt || l.now().Sub(w.chain.lastCkpt) >= l.ckptAfter) {
		w.ckptSeq = l.nextSeq
		l.nextSeq++
	}
	l.forceCkpt = false
	if len(w.buf) == 0 && w.ckptSeq == 0 && w.taken == l.durable && !w.failing &&
		w.headSeq == w.chain.seq && w.headClosed == closing {
		l.mu.Unlock()
		return closing
	}
	l.attempts++
	attempt := l.attempts
	l.mu.Unlock()
	w.seal()
	w.sync(attempt, closing)
	return closing
}

// take moves the batch to the writer and returns how many records it
// held. Caller holds mu.
func (w *writer) take() int {
	l := w.l
	if len(l.batch) == 0 {
		return 0
	}
	if len(w.buf) == 0 {
		// Swap buffers: no copy in the healthy case.
		w.buf, l.batch, w.spare = l.batch, w.spare[:0], nil
	} else {
		// Unwritten data from a failed attempt comes first.
		w.buf = append(w.buf, l.batch...)
		l.batch = l.batch[:0]
	}
	n := l.batchEvents
	w.taken = l.emitted
	l.batchEvents = 0
	if l.waiting > 0 {
		l.space.Broadcast()
	}
	return n
}

// seal fills the prev hashes of the records not yet sealed and appends
// the reserved checkpoint, if any.
func (w *writer) seal() {
	if w.sealed < len(w.buf) {
		w.chain.seal(w.buf[w.sealed:])
	}
	if w.ckptSeq != 0 {
		if w.chain.seq+1 != w.ckptSeq {
			panic("audit: checkpoint seq out of step with the chain")
		}
		w.buf = w.chain.appendCheckpoint(w.buf, w.l.now())
		w.bufCkpt = w.ckptSeq
		w.ckptSeq = 0
	}
	w.sealed = len(w.buf)
}

// sync writes what was taken and fsyncs, then rewrites the head marker.
// On success every taken event becomes durable (in sequence order) and
// the log is healthy again; on failure the unwritten tail is kept for the
// next attempt.
//
// The head marker is written only after the trail's fsync, so it never
// covers records that are not durable; events are acknowledged (durable)
// before it, since they are on disk either way.
//
// A failed fsync may have lost dirty pages that a later fsync will not
// report again; the log stays marked unhealthy until a full write+sync
// succeeds, and the caller-visible error is what Healthy reports.
func (w *writer) sync(attempt uint64, closing bool) {
	l := w.l
	if len(w.buf) > 0 {
		if !w.failing {
			// Only between whole batches: after a failed write, the rest
			// of a record may still be pending for this file.
			w.maybeRoll()
		}
		n, err := l.f.Write(w.buf)
		w.buf = w.buf[:copy(w.buf, w.buf[n:])]
		w.sealed -= n
		w.segBytes += int64(n)
		if err != nil {
			w.fail(err, attempt)
			return
		}
		w.lastWritten, w.segRecords = w.chain.seq, true
	}
	if err := l.f.Sync(); err != nil {
		w.fail(err, attempt)
		return
	}
	l.mu.Lock()
	l.ckptSeq = max(l.ckptSeq, w.bufCkpt)
	l.durable = w.taken
	recovered := l.err != nil
	l.err = nil
	l.cond.Broadcast()
	l.mu.Unlock()
	if cap(w.buf) <= maxSpareBuf {
		w.spare = w.buf[:0]
	}
	w.buf, w.sealed = nil, 0

	if w.headSeq != w.chain.seq || w.headClosed != closing || w.failing {
		if err := w.head.write(w.chain.instance, w.chain.seq, w.chain.head, l.now(), closing, closing); err != nil {
			// The events are durable; the trail is unhealthy until the
			// head marker is written again (retried on the timer).
			w.fail(err, attempt)
			return
		}
		w.headSeq, w.headClosed = w.chain.seq, closing
	}
	w.failing = false
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
