package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/gorilla/websocket"

	"github.com/portcullis/portcullis/e2e/harness"
)

// Helpers that check what an upstream received and what the gateway
// streams, shared by the browser and Redis suites.

// checkIdentity asserts the identity headers the upstream saw for login
// on route: exactly one of each X-Portcullis-* header with the right
// value, and a JWT assertion that verifies against the access host's JWKS
// with aud = route.
func checkIdentity(t *testing.T, s *site, p *harness.Portcullis, e harness.Echo, login, route string) {
	t.Helper()
	want := map[string]string{
		"X-Portcullis-User":   s.userID(login),
		"X-Portcullis-Email":  login + "@example.test",
		"X-Portcullis-Groups": "engineers",
	}
	for h, v := range want {
		if got := e.Header(h); len(got) != 1 || got[0] != v {
			t.Errorf("upstream saw %s = %q, want exactly [%q]", h, got, v)
		}
	}
	tok := e.Header("X-Portcullis-Jwt-Assertion")
	if len(tok) != 1 {
		t.Fatalf("upstream saw %d JWT assertions, want 1", len(tok))
	}
	jwks := fetchJWKS(t, s, p)
	claims, err := verifyAssertion(jwks, tok[0])
	if err != nil {
		t.Fatalf("JWT assertion does not verify against %s/.well-known/portcullis/jwks.json: %v", p.AccessURL, err)
	}
	if claims.Iss != p.AccessURL || claims.Aud != route || claims.Sub != s.userID(login) || claims.Email != login+"@example.test" {
		t.Errorf("assertion claims iss=%q aud=%q sub=%q email=%q; want %q, %q, %q, %q",
			claims.Iss, claims.Aud, claims.Sub, claims.Email, p.AccessURL, route, s.userID(login), login+"@example.test")
	}
	now := time.Now().Unix()
	if claims.Exp <= now || claims.Exp-claims.Iat > 3600 {
		t.Errorf("assertion exp=%d iat=%d (now %d): want short-lived and unexpired", claims.Exp, claims.Iat, now)
	}
	// The check above must be able to fail: a tampered token does not verify.
	forged := tok[0][:len(tok[0])-4] + flip(tok[0][len(tok[0])-4:])
	if _, err := verifyAssertion(jwks, forged); err == nil {
		t.Errorf("a tampered assertion verified: the JWKS check proves nothing")
	}
}

type assertionClaims struct {
	Iss, Aud, Sub, Email string
	Groups               []string
	Iat, Exp             int64
}

func fetchJWKS(t *testing.T, s *site, p *harness.Portcullis) jose.JSONWebKeySet {
	t.Helper()
	r := s.client(t).Get(p.URL(accessHost, "/.well-known/portcullis/jwks.json"))
	var set jose.JSONWebKeySet
	if r.StatusCode != http.StatusOK || json.Unmarshal([]byte(r.Body), &set) != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS: %d %s", r.StatusCode, r.Body)
	}
	return set
}

func verifyAssertion(set jose.JSONWebKeySet, tok string) (assertionClaims, error) {
	var c assertionClaims
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return c, err
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return c, errString("no key with the token's kid in the JWKS")
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(payload, &c)
}

type errString string

func (e errString) Error() string { return string(e) }

// flip changes every character of a short base64url string.
func flip(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

// checkStreaming proves WebSocket and Server-Sent Events pass through the
// gateway with a session (and not without one).
func checkStreaming(t *testing.T, s *site, p *harness.Portcullis, cookie string) {
	t.Helper()
	d := websocket.Dialer{NetDialContext: harness.LoopbackDialer(), TLSClientConfig: s.ca.ClientTLS(), HandshakeTimeout: 10 * time.Second}
	wsURL := "wss://" + hostPort(streamHost, p.Port) + "/ws"
	conn, res, err := d.Dial(wsURL, http.Header{"Cookie": {sessionName + "=" + cookie}})
	if err != nil {
		t.Fatalf("WebSocket through the gateway: %v (response %v)", err, res)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
	if _, msg, err := conn.ReadMessage(); err != nil || string(msg) != "echo:ping" {
		t.Fatalf("WebSocket echo = %q, %v; want echo:ping", msg, err)
	}
	conn.Close()
	if c, res, err := d.Dial(wsURL, nil); err == nil {
		c.Close()
		t.Errorf("WebSocket without a session was accepted")
	} else if res == nil || res.StatusCode == http.StatusSwitchingProtocols {
		t.Errorf("WebSocket without a session: %v, %v", res, err)
	}

	// SSE: the upstream sends one event and then holds the stream open,
	// so the event only arrives if the gateway flushes it at once.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL(streamHost, "/sse"), nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cookie", sessionName+"="+cookie)
	resp, err := s.client(t).HTTP.Do(req)
	if err != nil {
		t.Fatalf("SSE: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	buf := make([]byte, len(harness.SSEFirstEvent))
	got := 0
	for got < len(buf) {
		n, err := resp.Body.Read(buf[got:])
		got += n
		if err != nil {
			t.Fatalf("SSE: first event not delivered while the stream is open (got %q): %v", buf[:got], err)
		}
	}
	if string(buf) != harness.SSEFirstEvent {
		t.Fatalf("SSE first event = %q", buf)
	}
}
