package harness

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"
)

// RawHTTPS sends request bytes exactly as given (so tests can write
// request lines no HTTP library would produce) over a TLS connection to
// addr with SNI serverName, speaking HTTP/1.1, and returns the response
// with its body read.
func RawHTTPS(t TB, addr, serverName string, tc *tls.Config, request string) *Response {
	t.Helper()
	tc = tc.Clone()
	tc.ServerName = serverName
	tc.NextProtos = []string{"http/1.1"}
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, tc)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatalf("write request: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+serverName+"/", nil)
	res, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("read response to %q: %v", request, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return &Response{Response: res, Body: string(b)}
}
