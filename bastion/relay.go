package bastion

import (
	"io"
	"sync"
)

// Copy buffers. A relay goroutine blocked in Read holds only a small
// buffer, so idle sessions stay cheap; as soon as a read fills it, data is
// flowing and the goroutine borrows a large buffer from the pool, giving
// it back when a read comes back nearly empty (the channel is drained and
// the next read is likely to block).
const (
	smallBuf = 1 << 10
	bigBuf   = 64 << 10
)

var bigBufPool = sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}

// pump copies src to dst until EOF or an error. observe sees every chunk
// before it is written (recording, parsing); if it fails, the chunk is not
// delivered and pump returns its error. onData runs after each delivered
// chunk (activity tracking, byte counts).
func pump(dst io.Writer, src io.Reader, observe func([]byte) error, onData func(int)) error {
	small := make([]byte, smallBuf)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			bigBufPool.Put(big)
		}
	}()
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			p := buf[:n]
			if observe != nil {
				if err := observe(p); err != nil {
					return err
				}
			}
			if _, err := dst.Write(p); err != nil {
				return err
			}
			if onData != nil {
				onData(n)
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return nil
			}
			return rerr
		}
		switch {
		case big == nil && n == len(buf):
			big = bigBufPool.Get().(*[]byte)
			buf = *big
		case big != nil && n < bigBuf/16:
			bigBufPool.Put(big)
			big, buf = nil, small
		}
	}
}
