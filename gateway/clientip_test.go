package gateway

import (
	"net/netip"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted := newTrustedProxies([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("::ffff:192.168.0.0/112"), // mapped form of 192.168.0.0/16
	})
	tests := []struct {
		name    string
		trusted trustedProxies
		remote  string
		xff     []string
		want    string // "" = invalid
	}{
		{name: "no proxies configured: socket peer", remote: "203.0.113.7:5555", want: "203.0.113.7"},
		{name: "no proxies configured: XFF ignored", remote: "203.0.113.7:5555", xff: []string{"1.1.1.1"}, want: "203.0.113.7"},
		{name: "untrusted peer spoofing XFF", trusted: trusted, remote: "203.0.113.7:5555", xff: []string{"10.1.1.1, 1.1.1.1"}, want: "203.0.113.7"},
		{name: "trusted peer without XFF", trusted: trusted, remote: "10.0.0.2:80", want: "10.0.0.2"},
		{name: "trusted peer, one hop", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"198.51.100.4"}, want: "198.51.100.4"},
		{name: "chain of trusted hops", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"198.51.100.4, 10.9.9.9, 10.8.8.8"}, want: "198.51.100.4"},
		{name: "client-prepended fakes stay left of the real client", trusted: trusted, remote: "10.0.0.2:80",
			xff: []string{"6.6.6.6, 10.0.0.99, 198.51.100.4"}, want: "198.51.100.4"},
		{name: "multiple header lines are one list", trusted: trusted, remote: "10.0.0.2:80",
			xff: []string{"6.6.6.6", "198.51.100.4, 10.1.1.1", "10.2.2.2"}, want: "198.51.100.4"},
		{name: "garbage right of the client stops at the trusted hop", trusted: trusted, remote: "10.0.0.2:80",
			xff: []string{"198.51.100.4, not-an-ip"}, want: "10.0.0.2"},
		{name: "garbage after a trusted hop keeps that hop", trusted: trusted, remote: "10.0.0.2:80",
			xff: []string{"junk, 10.3.3.3"}, want: "10.3.3.3"},
		{name: "empty element is malformed", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"1.2.3.4, , 10.3.3.3"}, want: "10.3.3.3"},
		{name: "trailing comma is malformed", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"1.2.3.4,"}, want: "10.0.0.2"},
		{name: "blank header line is malformed", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"1.2.3.4", ""}, want: "10.0.0.2"},
		{name: "all hops trusted: left-most", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"10.7.7.7, 10.3.3.3"}, want: "10.7.7.7"},
		{name: "entry with port", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"198.51.100.4:4711"}, want: "198.51.100.4"},
		{name: "IPv6 entry with port", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"[2001:db8::1]:4711"}, want: "2001:db8::1"},
		{name: "IPv6 peer and client", trusted: trusted, remote: "[fd00::1]:443", xff: []string{"2001:db8::5"}, want: "2001:db8::5"},
		{name: "mapped peer matches IPv4 trusted range", trusted: trusted, remote: "[::ffff:10.0.0.2]:80", xff: []string{"198.51.100.4"}, want: "198.51.100.4"},
		{name: "mapped XFF entry is unmapped", trusted: trusted, remote: "10.0.0.2:80", xff: []string{"::ffff:198.51.100.4"}, want: "198.51.100.4"},
		{name: "mapped trusted prefix config matches IPv4 peer", trusted: trusted, remote: "192.168.3.4:80", xff: []string{"198.51.100.4"}, want: "198.51.100.4"},
		{name: "mapped untrusted peer", trusted: trusted, remote: "[::ffff:203.0.113.9]:80", xff: []string{"1.1.1.1"}, want: "203.0.113.9"},
		{name: "zone is dropped", remote: "[fe80::1%eth0]:80", want: "fe80::1"},
		{name: "spaces and tabs trimmed", trusted: trusted, remote: "10.0.0.2:80", xff: []string{" 198.51.100.4 ,\t10.1.1.1 "}, want: "198.51.100.4"},
		{name: "unparsable RemoteAddr", trusted: trusted, remote: "pipe", xff: []string{"1.1.1.1"}, want: ""},
		{name: "RemoteAddr without port", remote: "203.0.113.7", want: ""},
		{name: "empty RemoteAddr", remote: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.trusted.clientIP(tc.remote, tc.xff)
			if tc.want == "" {
				if got.IsValid() {
					t.Fatalf("clientIP = %v, want invalid", got)
				}
				return
			}
			if got != netip.MustParseAddr(tc.want) {
				t.Fatalf("clientIP = %v, want %s", got, tc.want)
			}
		})
	}
}

func TestClientIPNoAllocs(t *testing.T) {
	trusted := newTrustedProxies([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	xff := []string{"198.51.100.4, 10.1.1.1"}
	if n := testing.AllocsPerRun(100, func() { trusted.clientIP("10.0.0.2:80", xff) }); n != 0 {
		t.Fatalf("clientIP allocates %v times per call", n)
	}
}

func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.2:80", "198.51.100.4, 10.1.1.1")
	f.Add("203.0.113.7:1", "1.1.1.1")
	f.Add("[::ffff:10.0.0.2]:80", ",,,")
	f.Add("10.0.0.2:80", "[::1]:80, garbage, 10.0.0.1")
	trusted := newTrustedProxies([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := trusted.clientIP(remote, []string{xff})
		peer := parsePeer(remote)
		if !peer.IsValid() {
			if got.IsValid() {
				t.Fatalf("invalid peer %q gave %v", remote, got)
			}
			return
		}
		if got.Is4In6() || got.Zone() != "" {
			t.Fatalf("result %v is not unmapped", got)
		}
		// An untrusted peer's header is never believed.
		if !trusted.contains(peer) && got != peer {
			t.Fatalf("untrusted peer %v: got %v", peer, got)
		}
	})
}
