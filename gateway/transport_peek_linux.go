package gateway

import (
	"syscall"
	"unsafe"
)

// peekSupported: Linux can peek at a socket without blocking.
const peekSupported = true

// initPeek prepares the liveness check once per connection (SyscallConn
// and the callback would otherwise allocate per request).
func (c *leanConn) initPeek() {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var b [1]byte
	c.raw = raw
	c.peek = func(fd uintptr) bool {
		// recv(MSG_PEEK|MSG_DONTWAIT): EAGAIN means open and silent; 0 is
		// the upstream's FIN; a byte is something it sent unasked (a
		// stray response that must never be read as the next one). The
		// raw syscall avoids syscall.Recvfrom's sockaddr allocation.
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		c.peekAlive = errno == syscall.EAGAIN && n == ^uintptr(0)
		return true // never wait for readability
	}
}
