package bastion

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// chunkConn serves data in reads of at most chunk bytes, then err.
type chunkConn struct {
	net.Conn
	data  []byte
	chunk int
	err   error
	reads int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p, c.data[:min(len(c.data), c.chunk)])
	c.data = c.data[n:]
	return n, nil
}

func TestReadConnDeliversEveryByteInOrder(t *testing.T) {
	data := make([]byte, 3*readAhead+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		chunk   int // the kernel's read size
		readLen int // the caller's buffer
		err     error
	}{
		{"bulk bigger than buffer", readAhead * 2, 4096, io.EOF},
		{"exact buffer", readAhead, 4096, io.EOF},
		{"one byte at a time", 1, 4096, io.EOF},
		{"caller reads one byte", readAhead, 1, io.EOF},
		{"caller buffer larger than read-ahead", readAhead, readAhead + 1, io.EOF},
		{"odd sizes", 5000, 4095, errBoom},
		{"error after buffered data", 3 * readAhead, 100, errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newReadConn(&chunkConn{data: data, chunk: tt.chunk, err: tt.err})
			var got []byte
			buf := make([]byte, tt.readLen)
			var err error
			for {
				var n int
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("got %d bytes, want %d (or different content)", len(got), len(data))
			}
			if c.big != nil {
				t.Fatal("read-ahead buffer still held after the stream ended")
			}
		})
	}
}

func TestReadConnIdleHoldsNoBuffer(t *testing.T) {
	// A short read (the stream drained) must not leave the next, blocking
	// read holding a borrowed buffer.
	under := &chunkConn{data: make([]byte, 3*readAhead+100), chunk: 1 << 30, err: io.EOF}
	c := newReadConn(under)
	buf := make([]byte, 4096)
	for c.big != nil || len(under.data) > 0 {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if c.flowing {
		t.Fatal("still flowing after a short read: the next (blocking) read would borrow a buffer")
	}
}

func TestReadConnFewerSyscallsWhileFlowing(t *testing.T) {
	under := &chunkConn{data: make([]byte, 64*readAhead), chunk: 1 << 30, err: io.EOF}
	c := newReadConn(under)
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 4096))
	if err != nil || n != 64*readAhead {
		t.Fatalf("copied %d, %v", n, err)
	}
	// 4 KiB reads straight from the conn would take 2048.
	if under.reads > 200 {
		t.Fatalf("%d reads of the conn for %d bytes in 4 KiB reads", under.reads, n)
	}
}
