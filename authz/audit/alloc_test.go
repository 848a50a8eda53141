//go:build !race

package audit

import "testing"

// Encoding a usual event allocates nothing once the buffer is large
// enough (the race detector changes allocation, hence the build tag).
func TestAppendJSONAllocs(t *testing.T) {
	e := sampleEvent()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], &e) }); n != 0 {
		t.Fatalf("AppendJSON allocates %.1f times per event, want 0", n)
	}
}
