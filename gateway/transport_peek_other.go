//go:build !linux

package gateway

// peekSupported: without a non-blocking peek an idle connection cannot be
// proven clean, so every request uses the fallback http.Transport.
const peekSupported = false

func (c *leanConn) initPeek() {}
