package recording

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// TestBatchSizes drives a writer with the default batch size through the
// quiet → flowing → quiet transitions (small batch, overflow into a
// full-size batch, flush timer; the real flush timer may fire at any
// point too, on a slow machine) and checks that every byte arrives in
// order and that a quiet writer keeps no drain goroutine.
func TestBatchSizes(t *testing.T) {
	w, path := newTestWriter(t, Options{})
	var want bytes.Buffer
	write := func(p []byte) {
		t.Helper()
		if err := w.Data(1, StreamStdout, p); err != nil {
			t.Fatal(err)
		}
		want.Write(p)
	}
	pattern := func(n, seed int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*31 + seed)
		}
		return p
	}
	write([]byte("prompt$ "))
	w.mu.Lock()
	if cap(w.buf) >= DefaultBufferSize {
		t.Fatalf("quiet writer took a %d-byte batch", cap(w.buf))
	}
	w.mu.Unlock()
	for i := range 400 { // ~1.2 MiB in terminal-sized chunks: overflows the small batch
		write(pattern(3000, i))
	}
	write(pattern(5000, 1)) // partial batch left for the timer
	w.flushTimer()
	w.drains.Wait()
	if w.draining.Load() {
		t.Fatal("a drain goroutine is still marked running with an empty queue")
	}
	w.mu.Lock()
	if w.flowing || w.buf != nil {
		t.Fatalf("after the flush timer: flowing=%v, batch held=%v", w.flowing, w.buf != nil)
	}
	w.mu.Unlock()
	write(pattern(smallBatch+1, 2)) // a big first frame goes to a full batch
	write([]byte("bye\r\n"))
	if err := w.Close(Trailer{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := NewReader(f, testKEK)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for {
		fr, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if fr.Stream == StreamStdout {
			got.Write(fr.Data)
		}
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("recorded %d bytes, wrote %d (or out of order)", got.Len(), want.Len())
	}
	if _, ok := rd.Trailer(); !ok {
		t.Fatal("no trailer")
	}
}
