package bastion

import (
	"net/netip"
	"testing"
)

func TestForwardPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		name    string // as asked ("" for an IP literal request)
		ip      string
		port    uint16
		ok      bool
	}{
		{"*:*", "anything", "10.0.0.1", 1, true},
		{"*:5432", "db", "10.0.0.1", 5432, true},
		{"*:5432", "db", "10.0.0.1", 5433, false},
		{"db.internal:5432", "db.internal", "10.0.0.1", 5432, true},
		{"db.internal:5432", "DB.internal", "10.0.0.1", 5432, false}, // callers lower-case first
		{"db.internal:5432", "evil-db.internal", "10.0.0.1", 5432, false},
		{"*.internal:*", "db.internal", "10.0.0.1", 22, true},
		{"*.internal:*", "internal", "10.0.0.1", 22, false},
		{"*.internal:*", "db.internal.evil.com", "10.0.0.1", 22, false},
		{"10.0.0.0/8:22", "db", "10.9.9.9", 22, true},
		{"10.0.0.0/8:22", "", "11.0.0.1", 22, false},
		{"127.0.0.1:*", "", "127.0.0.1", 8080, true},
		{"[::1]:*", "", "::1", 80, true},
		{"[fd00::/8]:443", "", "fd12::1", 443, true},
		{"[fd00::/8]:443", "", "fe80::1", 443, false},
	} {
		t.Run(tc.pattern+" "+tc.name+" "+tc.ip, func(t *testing.T) {
			p, err := parseForwardPattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.matches(tc.name, netip.MustParseAddr(tc.ip), tc.port); got != tc.ok {
				t.Fatalf("got %v", got)
			}
		})
	}
	for _, bad := range []string{"", "db", ":22", "db:0", "db:65536", "db:x", "*.:22", "bad host:22", "10.0.0.0/33:22", "[zz]:1"} {
		if _, err := parseForwardPattern(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAlwaysDenied(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		denied bool
	}{
		{"169.254.169.254", true},
		{"169.254.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"fd00:ec2::254", true},
		{"fe80::1", true},
		{"64:ff9b::a9fe:a9fe", true}, // NAT64 169.254.169.254
		{"100.100.100.200", true},
		{"0.0.0.0", true},
		{"::", true},
		{"224.0.0.1", true},
		{"255.255.255.255", true},
		{"10.0.0.1", false},
		{"127.0.0.1", false},
		{"64:ff9b::a00:1", false}, // NAT64 10.0.0.1
		{"2001:db8::1", false},
	} {
		if got := alwaysDenied(netip.MustParseAddr(tc.ip)); got != tc.denied {
			t.Errorf("%s: %v", tc.ip, got)
		}
	}
}

func FuzzForwardPattern(f *testing.F) {
	for _, s := range []string{"*:*", "a.b:1", "*.x:2", "[::1]:3", "10.0.0.0/8:4", "::::", "[:5"} {
		f.Add(s, "host.example", "10.0.0.1", uint16(22))
	}
	f.Fuzz(func(t *testing.T, pattern, name, ip string, port uint16) {
		p, err := parseForwardPattern(pattern)
		if err != nil {
			return
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return
		}
		if p.matches(name, a, port) && !p.anyPort && p.port != port {
			t.Fatal("port ignored")
		}
	})
}
