package authz

import (
	"fmt"
	"net/netip"
	"strings"
)

// UnmapAddr returns a with an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// turned into plain IPv4 and any IPv6 zone dropped. Allowlists are matched
// only against unmapped addresses: a dual-stack listener reports IPv4
// clients as mapped addresses, and ::ffff:10.1.2.3 must match 10.0.0.0/8
// exactly as 10.1.2.3 does, while an IPv4-only allowlist must never admit a
// real IPv6 client. The zone is local interface information, not part of
// who the client is.
func UnmapAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// allowedBy reports whether a (already unmapped) is inside one of list; an
// empty list means "no restriction at this level".
func allowedBy(list []netip.Prefix, a netip.Addr) bool {
	if len(list) == 0 {
		return true
	}
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// overlapsAny reports whether some prefix of a overlaps some prefix of b.
// An IPv4 and an IPv6 prefix never overlap, matching how addresses are
// matched after unmapping.
func overlapsAny(a, b []netip.Prefix) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Overlaps(y) {
				return true
			}
		}
	}
	return false
}

// parseCIDR parses one allowlist entry strictly: a bare address is refused
// (was a /32 or a /8 meant?), so are host bits (10.1.2.3/8 usually means a
// typo), and an IPv4-mapped IPv6 prefix is turned into its IPv4 form so it
// matches the unmapped addresses Evaluate compares against.
func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.Prefix{}, fmt.Errorf("%q is an address, not a CIDR; write %s/%d for a single host", s, s, a.BitLen())
		}
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: host bits set (did you mean %s?)", s, m)
	}
	// A masked prefix whose address is IPv4-mapped necessarily has a length
	// of at least 96 (bits 80-95 are all ones), so the conversion is exact.
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p, nil
}
