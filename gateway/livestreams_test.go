package gateway

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/portcullis/portcullis/authz/session"
)

// TestLiveStreamsEnd: an open WebSocket outlives the session check that
// admitted it; a lock, a revocation of the session or of the user must
// end it too, and an unrelated revocation must not.
func TestLiveStreamsEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, e *coreEnv, sessionID string)
	}{
		{"user locked", func(t *testing.T, e *coreEnv, _ string) {
			if _, err := e.risk.Lock(context.Background(), coreAlice, "test", "admin"); err != nil {
				t.Fatal(err)
			}
		}},
		{"session revoked", func(t *testing.T, e *coreEnv, id string) {
			if err := e.sess.Revoke(context.Background(), id, "admin"); err != nil {
				t.Fatal(err)
			}
		}},
		{"user revoked", func(t *testing.T, e *coreEnv, _ string) {
			if err := e.sess.RevokeUser(context.Background(), coreAlice, "admin"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newCoreEnv(t)
			s := e.start(t)
			d := websocket.Dialer{
				TLSClientConfig: &tls.Config{RootCAs: s.roots},
				NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, s.tlsAddr)
				},
				HandshakeTimeout: 10 * time.Second,
			}
			dial := func(cookie string) *websocket.Conn {
				conn, resp, err := d.Dial("wss://grafana.example.com/ws", http.Header{"Cookie": {session.DefaultCookieName + "=" + cookie}})
				if err != nil {
					t.Fatalf("dial: %v (%v)", err, resp)
				}
				t.Cleanup(func() { conn.Close() })
				return conn
			}
			cookie := e.login(session.Record{})
			rec, err := e.sess.Lookup(context.Background(), cookie)
			if err != nil {
				t.Fatal(err)
			}
			conn := dial(cookie)
			other := dial(e.login(session.Record{UserID: "https://idp.example.com#bob"}))
			echo := func(c *websocket.Conn) error {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
					return err
				}
				_, _, err := c.ReadMessage()
				return err
			}
			if err := echo(conn); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			tc.end(t, e, rec.ID)
			// The connection is closed by the gateway: the next read fails
			// (well before the 10 s deadline).
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := conn.ReadMessage(); err == nil {
				t.Fatal("the WebSocket is still open after its access ended")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the WebSocket was not closed (read timed out)")
			}
			t.Logf("closed %v after the revocation", time.Since(start))
			if err := echo(other); err != nil {
				t.Fatalf("another user's WebSocket ended too: %v", err)
			}
		})
	}
}
