package gateway

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/portcullis/portcullis/authz"
)

// trustedProxies is the set of peers whose X-Forwarded-For is believed.
// Prefixes are unmapped (an IPv4-mapped prefix is stored as its IPv4 form)
// and masked at construction, and addresses are unmapped before matching, so
// a dual-stack listener reporting ::ffff:10.0.0.1 matches 10.0.0.0/8.
type trustedProxies []netip.Prefix

func newTrustedProxies(in []netip.Prefix) trustedProxies {
	out := make(trustedProxies, 0, len(in))
	for _, p := range in {
		out = append(out, canonicalPrefix(p))
	}
	return out
}

// canonicalPrefix masks p and turns an IPv4-mapped IPv6 prefix
// (::ffff:10.0.0.0/104) into its IPv4 form (10.0.0.0/8).
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

func (t trustedProxies) contains(a netip.Addr) bool {
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is the socket peer, or the right-most untrusted X-Forwarded-For
// hop when the peer is a trusted proxy. Always unmapped (IPv4-mapped → IPv4).
//
// Trust boundary: X-Forwarded-For is attacker-controlled text except for
// the entries appended by proxies we trust. Walking from the right, every
// entry is vouched for by the hop to its right only while that hop is
// trusted; the first untrusted entry is the client. A client that prepends
// fake entries only adds to the left of what our proxies append, so it can
// never move the answer. A malformed entry ends the walk at the last hop
// whose claim we could still verify (a trusted proxy), never at a guess.
//
// An unparsable RemoteAddr yields the zero Addr, which authz denies with
// "invalid-source-ip".
func (g *Gateway) clientIP(r *http.Request) netip.Addr {
	return g.trusted.clientIP(r.RemoteAddr, r.Header["X-Forwarded-For"])
}

func (t trustedProxies) clientIP(remoteAddr string, xff []string) netip.Addr {
	peer := parsePeer(remoteAddr)
	if !peer.IsValid() || len(t) == 0 || !t.contains(peer) {
		return peer
	}
	cur := peer
	// Header lines are in arrival order; each line's entries are appended
	// left to right, so the right-most entry of the last line is nearest.
	for i := len(xff) - 1; i >= 0; i-- {
		line := xff[i]
		for {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			// An empty element (",," or a blank line) is as malformed
			// as garbage: it carries no verifiable address.
			a, ok := parseForwardedAddr(strings.TrimSpace(entry))
			if !ok {
				return cur
			}
			if !t.contains(a) {
				return a
			}
			cur = a
			if line == "" {
				break
			}
		}
	}
	// Every hop was trusted: the left-most one is the best we know.
	return cur
}

// parsePeer parses the socket peer "ip:port" (the form net/http always
// fills in for TCP connections).
func parsePeer(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return authz.UnmapAddr(ap.Addr())
}

// parseForwardedAddr accepts the forms proxies write into X-Forwarded-For:
// a bare address, or an address with a port ("1.2.3.4:80", "[::1]:80").
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return authz.UnmapAddr(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return authz.UnmapAddr(ap.Addr()), true
	}
	return netip.Addr{}, false
}
