package bastion

import (
	"net"
	"sync"
)

// readAhead is the read buffer a busy connection borrows.
const readAhead = 128 << 10

var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAhead); return &b }}

// readConn serves x/crypto/ssh's reads from a large buffer while data is
// flowing. x/crypto reads through a 4 KiB bufio.Reader, so a bulk
// transfer costs several read syscalls per 32 KiB packet; here one
// syscall fetches up to readAhead bytes.
//
// Idle connections must stay cheap, so the buffer is borrowed from a pool
// only for a read that is expected not to block: after a read that
// filled its buffer (more data is likely waiting). Otherwise the read
// goes straight into the caller's buffer. The borrowed buffer goes back
// as soon as its bytes are consumed.
//
// Read is called by one goroutine only (x/crypto's reader loop), so the
// buffer state needs no lock. Close, deadlines and writes are the
// embedded conn's: a Close during Read makes the Read fail as usual; a
// buffer borrowed by that Read is returned by it, never by Close.
type readConn struct {
	net.Conn
	big     *[]byte
	r, w    int  // unread bytes are (*big)[r:w]
	flowing bool // the last read filled its buffer
}

func newReadConn(c net.Conn) *readConn { return &readConn{Conn: c} }

func (c *readConn) Read(p []byte) (int, error) {
	if c.big != nil {
		n := copy(p, (*c.big)[c.r:c.w])
		if c.r += n; c.r == c.w {
			c.release()
		}
		return n, nil
	}
	if !c.flowing || len(p) >= readAhead {
		n, err := c.Conn.Read(p)
		c.flowing = n == len(p) && err == nil
		return n, err
	}
	c.big = readAheadPool.Get().(*[]byte)
	n, err := c.Conn.Read(*c.big)
	c.flowing = n == readAhead && err == nil
	if n <= len(p) {
		copy(p, (*c.big)[:n])
		c.release()
		return n, err
	}
	// More than p holds: keep the rest. A read error is reported again
	// by the next read of the conn, after the buffered bytes.
	c.r, c.w = copy(p, (*c.big)[:n]), n
	return c.r, nil
}

func (c *readConn) release() {
	readAheadPool.Put(c.big)
	c.big, c.r, c.w = nil, 0, 0
}
