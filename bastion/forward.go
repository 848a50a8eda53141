package bastion

// Local port forwarding (direct-tcpip). The destination is resolved by the
// bastion, every resolved address is checked, and the connection is opened
// through the target's sshd to the checked IP — never to the name, which
// the target could resolve differently (DNS rebinding). Link-local and
// cloud metadata addresses are always refused, whatever the role says.
// Forwarded connections start at the target (as with ProxyJump), so the
// bastion's own network (its loopback, the state store) is never reachable.

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/bastion/recording"
)

// Port-forward reason codes (audit, recording).
const (
	ReasonForwardNotPermitted = "port-forwarding-not-permitted"
	ReasonForwardNotAllowed   = "forward-destination-not-allowed"
	ReasonForwardDeniedAddr   = "forward-destination-always-denied"
	ReasonForwardResolve      = "forward-resolution-failed"
	ReasonForwardBadRequest   = "forward-bad-request"
)

const resolveTimeout = 5 * time.Second

// fwdPattern is one role port_forwards entry, "host:port".
type fwdPattern struct {
	anyHost bool
	suffix  string       // "*.example.com" → ".example.com"
	name    string       // exact host name, lower case, no trailing dot
	prefix  netip.Prefix // IP address or CIDR
	anyPort bool
	port    uint16
}

// parseForwardPattern parses "host:port" where host is "*", a name, a
// "*.suffix" wildcard, an IP address (IPv6 in brackets) or a CIDR prefix,
// and port is "*" or 1-65535.
func parseForwardPattern(s string) (fwdPattern, error) {
	var p fwdPattern
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return p, fmt.Errorf("port forward %q: want host:port", s)
	}
	host, port := s[:i], s[i+1:]
	if port == "*" {
		p.anyPort = true
	} else {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return p, fmt.Errorf("port forward %q: bad port", s)
		}
		p.port = uint16(n)
	}
	if b, ok := strings.CutPrefix(host, "["); ok {
		// Brackets only ever hold an IPv6 address or prefix.
		b, ok = strings.CutSuffix(b, "]")
		if !ok || !strings.Contains(b, ":") {
			return p, fmt.Errorf("port forward %q: bad host", s)
		}
		host = b
	}
	switch {
	case host == "*":
		p.anyHost = true
	case strings.HasPrefix(host, "*."):
		rest := strings.TrimSuffix(host[2:], ".")
		if !validHostName(rest) {
			return p, fmt.Errorf("port forward %q: bad host", s)
		}
		p.suffix = "." + strings.ToLower(rest)
	case strings.Contains(host, "/"):
		pr, err := netip.ParsePrefix(host)
		if err != nil {
			return p, fmt.Errorf("port forward %q: bad prefix", s)
		}
		p.prefix = pr.Masked()
	default:
		if a, err := netip.ParseAddr(host); err == nil {
			a = a.Unmap().WithZone("")
			p.prefix = netip.PrefixFrom(a, a.BitLen())
		} else if validHostName(host) {
			p.name = strings.ToLower(strings.TrimSuffix(host, "."))
		} else {
			return p, fmt.Errorf("port forward %q: bad host", s)
		}
	}
	return p, nil
}

// matches reports whether the pattern allows the requested name (as the
// client asked for it) resolved to ip, on port.
func (p fwdPattern) matches(name string, ip netip.Addr, port uint16) bool {
	if !p.anyPort && p.port != port {
		return false
	}
	switch {
	case p.anyHost:
		return true
	case p.prefix.IsValid():
		return p.prefix.Contains(ip)
	case p.suffix != "":
		return strings.HasSuffix(name, p.suffix)
	default:
		return name == p.name
	}
}

// Always-denied destinations: cloud metadata services and link-local
// ranges (where they live), plus addresses that are never a real peer.
var (
	metadataAddrs = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack…
		netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6
		netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	}
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
)

// alwaysDenied reports whether no role may forward to a.
func alwaysDenied(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if nat64.Contains(a) {
		// The IPv4 address embedded by NAT64 is where it really goes.
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	for _, m := range metadataAddrs {
		if a == m {
			return true
		}
	}
	return !a.IsValid() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// validHostName accepts DNS names (letters, digits, '-', '_', dots).
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		switch {
		case r == '.', r == '-', r == '_', r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		default:
			return false
		}
	}
	return true
}

type directTCPIPMsg struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// handleDirectTCPIP decides and relays one local port forward.
func (c *conn) handleDirectTCPIP(nc ssh.NewChannel) {
	var m directTCPIPMsg
	if ssh.Unmarshal(nc.ExtraData(), &m) != nil || m.Port == 0 || m.Port > 65535 {
		c.denyForward(nc, "", ReasonForwardBadRequest)
		return
	}
	dest := netJoin(m.Host, m.Port)
	if len(c.granted().forwards) == 0 {
		c.denyForward(nc, dest, ReasonForwardNotPermitted)
		return
	}
	ip, reason := c.resolveForward(m.Host, uint16(m.Port))
	if reason != "" {
		c.denyForward(nc, dest, reason)
		return
	}
	up, err := c.upstream()
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, c.upstreamMessage())
		c.endSoon(&EndCause{Code: EndUpstreamFailed})
		return
	}
	resolved := netJoin(ip.String(), m.Port)
	upCh, upReqs, err := up.OpenChannel("direct-tcpip", ssh.Marshal(directTCPIPMsg{
		Host: ip.String(), Port: m.Port, OrigHost: m.OrigHost, OrigPort: m.OrigPort,
	}))
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "the target could not connect to the destination")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		upCh.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	go ssh.DiscardRequests(upReqs)
	id := c.chanSeq.Add(1)
	if c.recordEvent(id, recording.Event{Type: recording.EventForwardOpen, Dest: dest, Resolved: resolved}) != nil {
		ch.Close()
		upCh.Close()
		return
	}
	var in, out atomic.Int64
	relayBoth(c.ctx, ch, upCh, func(toClient bool, n int) {
		if toClient {
			in.Add(int64(n))
			c.sent(n)
		} else {
			out.Add(int64(n))
		}
		c.touch()
	})
	c.recordEvent(id, recording.Event{
		Type: recording.EventForwardClose, Dest: dest, Resolved: resolved, BytesIn: in.Load(), BytesOut: out.Load(),
	})
}

// resolveForward returns the first resolved address of host that is not
// always denied and that a granted pattern allows, or a reason.
func (c *conn) resolveForward(host string, port uint16) (netip.Addr, string) {
	name := strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), "."))
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(name); err == nil {
		addrs = []netip.Addr{a}
		name = ""
	} else {
		if !validHostName(name) {
			return netip.Addr{}, ReasonForwardBadRequest
		}
		ctx, cancel := context.WithTimeout(c.ctx, resolveTimeout)
		defer cancel()
		addrs, err = c.b.resolver.LookupNetIP(ctx, "ip", name)
		if err != nil || len(addrs) == 0 {
			return netip.Addr{}, ReasonForwardResolve
		}
	}
	reason := ReasonForwardNotAllowed
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if alwaysDenied(a) {
			reason = ReasonForwardDeniedAddr
			continue
		}
		for _, p := range c.granted().forwards {
			if p.matches(name, a, port) {
				return a, ""
			}
		}
	}
	return netip.Addr{}, reason
}

// denyForward refuses a port forward. A policy refusal (not a malformed
// request, not a name that does not resolve) is a denied decision for the
// risk engine.
func (c *conn) denyForward(nc ssh.NewChannel, dest, reason string) {
	c.auditChannel("direct-tcpip", reason, map[string]string{"dest": dest})
	c.recordEvent(0, recording.Event{Type: recording.EventDenied, Kind: "direct-tcpip", Dest: dest, Reason: reason})
	nc.Reject(ssh.Prohibited, "port forwarding to this destination is not allowed")
	switch reason {
	case ReasonForwardNotPermitted, ReasonForwardNotAllowed, ReasonForwardDeniedAddr:
		if locked := c.denied(); locked != nil {
			c.cancel(locked)
		}
	}
}

func netJoin(host string, port uint32) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// relayBoth copies between two channels in both directions; EOF in one
// direction is passed on as EOF, and both are closed when both directions
// are done or ctx ends. count (optional) sees every chunk's size and
// direction.
func relayBoth(ctx context.Context, client, upstream ssh.Channel, count func(toClient bool, n int)) {
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		upstream.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	dir := func(dst, src ssh.Channel, toClient bool) {
		defer wg.Done()
		var onData func(int)
		if count != nil {
			onData = func(n int) { count(toClient, n) }
		}
		if pump(dst, src, nil, onData) == nil {
			dst.CloseWrite()
		} else {
			dst.Close()
			src.Close()
		}
	}
	go dir(client, upstream, true)
	go dir(upstream, client, false)
	wg.Wait()
	client.Close()
	upstream.Close()
}
