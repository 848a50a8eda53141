package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"slices"
	"testing"
)

func TestIPString(t *testing.T) {
	tests := []struct {
		name, ip, remote string
		reused           bool // the RemoteAddr substring is returned
	}{
		{"IPv4 peer", "192.0.2.7", "192.0.2.7:4242", true},
		{"IPv4 from a trusted proxy's XFF", "198.51.100.9", "10.0.0.1:4242", false},
		{"IPv4-mapped peer", "192.0.2.7", "[::ffff:192.0.2.7]:4242", false},
		{"IPv6 peer", "2001:db8::1", "[2001:db8::1]:4242", false},
		{"no port", "192.0.2.7", "192.0.2.7", false},
		{"garbage", "192.0.2.7", ":::", false},
		{"empty", "192.0.2.7", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.ip)
			got := ipString(ip, tc.remote)
			if got != ip.String() {
				t.Fatalf("ipString = %q, want %q", got, ip.String())
			}
			if reused := len(tc.remote) > len(got) && tc.remote[:len(got)] == got && tc.remote[len(got)] == ':'; reused != tc.reused {
				t.Fatalf("substring of RemoteAddr: %v, want %v", reused, tc.reused)
			}
		})
	}
}

// proxyState is the proxied request's context: it answers its own key,
// passes other values through, and carries the client's cancellation to
// everything derived from it (the lean transport's abort included).
func TestProxyStateContext(t *testing.T) {
	type otherKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "v"))
	st := &proxyState{Context: parent}
	derived := context.WithValue(st, struct{ k int }{1}, 2) // as httptrace.WithClientTrace does
	if proxyStateOf(st) != st || proxyStateOf(derived) != st {
		t.Fatal("proxyStateOf does not find the state")
	}
	if proxyStateOf(context.Background()) != nil || proxyStateOf(parent) != nil {
		t.Fatal("proxyStateOf found a state that is not there")
	}
	if derived.Value(otherKey{}) != "v" {
		t.Fatal("values of the client's context are lost")
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(derived, func() { close(fired) })
	defer stop()
	cancel()
	<-fired // hangs (test timeout) if cancellation does not propagate
	if derived.Err() != context.Canceled {
		t.Fatalf("Err = %v", derived.Err())
	}
}

// Rewrite filters the session cookie out of ReverseProxy's private copy
// in place: the client's own request header must stay untouched.
func TestRewriteLeavesInboundHeader(t *testing.T) {
	e, _ := newCoreEnv(t)
	g := e.g
	lines := []string{g.cookieName + "=secret; theme=dark", "lang=en", "__Host-portcullis-csrf=x"}
	in := httptest.NewRequest(http.MethodGet, "https://"+coreGrafana+"/d", nil)
	in.Header["Cookie"] = slices.Clone(lines)
	st := &proxyState{Context: in.Context(), route: g.hosts[coreGrafana].routes[0], path: "/d"}
	in = in.WithContext(st)
	pr := &httputil.ProxyRequest{In: in, Out: in.Clone(st)}
	g.rewrite(pr)
	if !slices.Equal(in.Header["Cookie"], lines) {
		t.Fatalf("inbound Cookie changed to %q", in.Header["Cookie"])
	}
	if got := pr.Out.Header["Cookie"]; !slices.Equal(got, []string{"theme=dark", "lang=en"}) {
		t.Fatalf("upstream Cookie %q", got)
	}
}
