package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync/atomic"
	"syscall"
	"time"
)

// leanConn is one pooled upstream connection. It is used by one request
// at a time: between get and put (or close) nobody else can reach it.
type leanConn struct {
	nc   net.Conn
	lim  limitedReader // between br and nc: bounds a response head
	br   *bufio.Reader
	bw   *bufio.Writer
	pool *connPool

	raw       syscall.RawConn // for the liveness peek; nil when unsupported
	peek      func(uintptr) bool
	peekAlive bool
	abort     func() // unblocks nc's I/O when the request context ends

	reused    bool      // taken from the pool for the current request
	idleSince time.Time // when it was last put back
}

// aLongTimeAgo is a deadline in the past: it fails pending and future I/O
// at once.
var aLongTimeAgo = time.Unix(1, 0)

func newLeanConn(nc net.Conn, p *connPool) *leanConn {
	c := &leanConn{nc: nc, pool: p}
	c.lim = limitedReader{r: nc, n: math.MaxInt64}
	c.br = bufio.NewReaderSize(&c.lim, leanReadBufferSize)
	c.bw = bufio.NewWriterSize(nc, leanWriteBufferSize)
	// Allocated once per connection, not per request.
	c.abort = func() { nc.SetDeadline(aLongTimeAgo) }
	c.initPeek()
	return c
}

// alive reports whether an idle connection is still open and silent.
func (c *leanConn) alive() bool {
	if c.br.Buffered() > 0 || c.raw == nil {
		return false
	}
	c.peekAlive = false
	if err := c.raw.Read(c.peek); err != nil {
		return false
	}
	return c.peekAlive
}

func (c *leanConn) close() {
	c.nc.Close()
	c.pool.closed()
}

// roundTrip writes req and reads the response head. On error it has
// closed c; errStaleConn means a pooled connection turned out to be
// closed by the upstream before answering.
func (c *leanConn) roundTrip(req *http.Request, headerTimeout time.Duration) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, c.abort)
	fail := func(err error) (*http.Response, error) {
		stop()
		c.close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(c.staleOr(err))
	}
	// Each deadline change is followed by a context check: the abort may
	// have run just before and its past deadline been overwritten.
	if headerTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(headerTimeout))
		if ctx.Err() != nil {
			return fail(nil)
		}
	}
	c.lim.n = maxResponseHeaderBytes
	if _, err := c.br.Peek(1); err != nil {
		return fail(c.staleOr(err))
	}
	var resp *http.Response
	for n1xx := 0; ; n1xx++ {
		var err error
		if resp, err = http.ReadResponse(c.br, req); err != nil {
			return fail(err)
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			break
		}
		// 100 Continue, 103 Early Hints…: ReverseProxy forwards them to
		// the client through its trace hook, as with http.Transport.
		if n1xx == max1xxResponses {
			return fail(errNo1xxEnd)
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// We never ask for an upgrade on this path.
		return fail(errSwitch)
	}
	c.lim.n = math.MaxInt64
	if headerTimeout > 0 {
		c.nc.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			return fail(nil) // not resp.Body.Close: it would drain
		}
	}
	b := &leanBody{c: c, body: resp.Body, ctx: ctx, stop: stop,
		keepAlive: !resp.Close && resp.ProtoAtLeast(1, 1)}
	if resp.Body == http.NoBody {
		b.release(true) // nothing to read: reusable now
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// staleOr maps a failure before any response byte on a pooled connection
// to errStaleConn (the upstream had closed it), else returns err.
func (c *leanConn) staleOr(err error) error {
	if c.reused && c.br.Buffered() == 0 &&
		(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		return errStaleConn
	}
	return err
}

// leanBody is the response body. Reading it to EOF returns the connection
// to the pool when the response allowed keep-alive and nothing follows
// it; a Close before EOF, an error, or a cancelled context closes the
// connection instead. released makes that decision happen exactly once,
// so a connection can never be pooled twice (two requests sharing one
// connection would read each other's responses).
type leanBody struct {
	c         *leanConn
	body      io.ReadCloser // from http.ReadResponse
	ctx       context.Context
	stop      func() bool // unregisters the context's abort
	keepAlive bool
	released  atomic.Bool
}

func (b *leanBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err != nil {
		if err == io.EOF {
			b.release(true)
		} else {
			b.release(false)
			if ctxErr := b.ctx.Err(); ctxErr != nil {
				err = ctxErr
			}
		}
	}
	return n, err
}

// Close ends the response. Before EOF it closes the connection rather than
// draining the rest: the body may be endless (a stream) and the client is
// gone.
func (b *leanBody) Close() error {
	b.release(false)
	return nil
}

// release puts the connection back (reusable) or closes it.
func (b *leanBody) release(eof bool) {
	if !b.released.CompareAndSwap(false, true) {
		return
	}
	c := b.c
	// stop reports false when the abort already ran (or is running): the
	// connection has a past deadline and is no good.
	if b.stop() && eof && b.keepAlive && c.br.Buffered() == 0 {
		c.reused = false
		c.pool.put(c)
		return
	}
	c.close()
}

// limitedReader is the connection as the bufio.Reader sees it: reads fail
// once n bytes have been read, so an upstream cannot make us buffer an
// endless response head. n is set for the head and lifted for the body.
type limitedReader struct {
	r io.Reader
	n int64
}

var errHeadTooLarge = errors.New("gateway: upstream response head too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}
