package recording

// Watch is a live, read-only view of a recording's frames as they are
// written (for `admin watch`). A watcher never slows the session down: if
// it falls more than its buffer behind, it is cut off (Lagged reports it)
// rather than making the relay wait.
type Watch struct {
	// C delivers frames (each with its own copy of the data) and is closed
	// when the recording ends, the watcher lags, or Close is called.
	C <-chan Frame

	c      chan Frame
	w      *Writer
	lagged bool
	closed bool
}

// DefaultWatchDepth is the frame buffer of a watcher when none is given.
const DefaultWatchDepth = 256

// Watch starts a live view of w's frames from now on. depth ≤ 0 means
// DefaultWatchDepth. A Watch on a closed Writer is returned already closed.
func (w *Writer) Watch(depth int) *Watch {
	if depth <= 0 {
		depth = DefaultWatchDepth
	}
	c := make(chan Frame, depth)
	wt := &Watch{C: c, c: c, w: w}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		wt.closeLocked()
		return wt
	}
	if w.watches == nil {
		w.watches = map[*Watch]struct{}{}
	}
	w.watches[wt] = struct{}{}
	return wt
}

// Close stops the watch.
func (wt *Watch) Close() {
	wt.w.mu.Lock()
	defer wt.w.mu.Unlock()
	wt.closeLocked()
}

// Lagged reports whether the watch was cut off for falling behind. Read it
// after C is closed.
func (wt *Watch) Lagged() bool {
	wt.w.mu.Lock()
	defer wt.w.mu.Unlock()
	return wt.lagged
}

// closeLocked ends the watch; the writer's mu is held.
func (wt *Watch) closeLocked() {
	if !wt.closed {
		wt.closed = true
		close(wt.c)
		delete(wt.w.watches, wt)
	}
}

// notifyWatchesLocked hands a copy of a frame to every watcher without
// blocking; w.mu is held.
func (w *Writer) notifyWatchesLocked(ch uint32, s Stream, p []byte) {
	if len(w.watches) == 0 {
		return
	}
	f := Frame{Offset: w.last.Sub(w.start), Channel: ch, Stream: s}
	for wt := range w.watches {
		f.Data = append([]byte(nil), p...)
		select {
		case wt.c <- f:
		default:
			wt.lagged = true
			wt.closeLocked()
		}
	}
}
