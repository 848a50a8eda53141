package authz

import (
	"net/netip"
	"strings"
	"testing"
)

func TestUnmapAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.1.2.3", "10.1.2.3"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"2001:db8::1", "2001:db8::1"},
		{"fe80::1%eth0", "fe80::1"},
		{"::1", "::1"},
	}
	for _, tt := range tests {
		if got := UnmapAddr(netip.MustParseAddr(tt.in)); got != netip.MustParseAddr(tt.want) {
			t.Errorf("UnmapAddr(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := UnmapAddr(netip.Addr{}); got.IsValid() {
		t.Errorf("UnmapAddr(zero) = %v, want invalid", got)
	}
}

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		name, in, want, errHas string
	}{
		{"v4", "10.0.0.0/8", "10.0.0.0/8", ""},
		{"v6", "2001:db8::/32", "2001:db8::/32", ""},
		{"host route", "10.1.2.3/32", "10.1.2.3/32", ""},
		{"mapped becomes v4", "::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"mapped whole v4 space", "::ffff:0.0.0.0/96", "0.0.0.0/0", ""},
		{"host bits", "10.1.2.3/8", "", "host bits set (did you mean 10.0.0.0/8?)"},
		{"bare address", "10.1.2.3", "", "write 10.1.2.3/32"},
		{"bare v6 address", "::1", "", "write ::1/128"},
		{"too long", "10.0.0.0/33", "", "invalid CIDR"},
		{"garbage", "ten/8", "", "invalid CIDR"},
		{"empty", "", "", "invalid CIDR"},
		{"zone", "fe80::/10%eth0", "", "invalid CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCIDR(tt.in)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("parseCIDR(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.errHas)
				}
				return
			}
			if err != nil || got != netip.MustParsePrefix(tt.want) {
				t.Fatalf("parseCIDR(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestMappedAllowlists checks both directions of the IPv4-mapped rule: a
// mapped client matches an IPv4 list (also one written in mapped form), and
// an IPv4-only list never admits a real IPv6 client.
func TestMappedAllowlists(t *testing.T) {
	tests := []struct {
		name  string
		cidrs []string
		ip    string
		want  Reason
	}{
		{"mapped client, v4 list", []string{"10.0.0.0/8"}, "::ffff:10.1.2.3", ReasonAllowed},
		{"v4 client, mapped list", []string{"::ffff:10.0.0.0/104"}, "10.1.2.3", ReasonAllowed},
		{"mapped client, mapped list", []string{"::ffff:10.0.0.0/104"}, "::ffff:10.1.2.3", ReasonAllowed},
		{"mapped client outside v4 list", []string{"10.0.0.0/8"}, "::ffff:11.1.2.3", ReasonSourceIPNotAllowed},
		{"v6 client, v4-only list", []string{"0.0.0.0/0"}, "2001:db8::1", ReasonSourceIPNotAllowed},
		{"v6 client whose low bits look like v4", []string{"10.0.0.0/8"}, "::10.1.2.3", ReasonSourceIPNotAllowed},
		{"v4 client, v6-only list", []string{"::/0"}, "10.1.2.3", ReasonSourceIPNotAllowed},
		{"mapped client, v6-only list", []string{"::/0"}, "::ffff:10.1.2.3", ReasonSourceIPNotAllowed},
		{"zoned link-local", []string{"fe80::/10"}, "fe80::1%eth0", ReasonAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := basePolicy()
			cfg.AllowedCIDRs = tt.cidrs
			p := mustCompile(t, cfg)
			req := httpReq("engineer", "/")
			req.SourceIP = netip.MustParseAddr(tt.ip)
			if d := p.Evaluate(req, testNow); d.Reason != tt.want {
				t.Fatalf("Evaluate from %s with %v = %+v, want %s", tt.ip, tt.cidrs, d, tt.want)
			}
		})
	}
}
