package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Security headers. The values are shared, never-appended slices (cap ==
// len, so an Add on the same key copies instead of writing into them): the
// hot path assigns them into header maps without allocating.
var (
	nosniffValue        = []string{"nosniff"}
	frameDenyValue      = []string{"DENY"}
	noReferrerValue     = []string{"no-referrer"}
	noStoreValue        = []string{"no-store"}
	htmlContentType     = []string{"text/html; charset=utf-8"}
	jsonContentType     = []string{"application/json"}
	plainTextValue      = []string{"text/plain; charset=utf-8"}
	forwardedProtoHTTPS = []string{"https"}
)

// minHSTS is the floor for Strict-Transport-Security max-age: one year,
// the minimum browsers' preload lists accept.
const minHSTS = 365 * 24 * time.Hour

func hstsValue(maxAge time.Duration) []string {
	if maxAge < minHSTS {
		maxAge = minHSTS
	}
	v := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10) + "; includeSubDomains"
	return []string{v}
}

// contentSecurityPolicy is the policy for Portcullis's own pages. Nothing
// inline may run; images may be data: URIs (the TOTP QR code); forms may
// post to ourselves, and — because Chrome applies form-action to the
// redirect that follows a POST — to the route hosts the login flow hops to.
func contentSecurityPolicy(formTargets []string) []string {
	var b strings.Builder
	b.WriteString("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; ")
	b.WriteString("connect-src 'self'; form-action 'self'")
	for _, t := range formTargets {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	b.WriteString("; frame-ancestors 'none'; base-uri 'none'")
	return []string{b.String()}
}

// setTransportHeaders puts the headers every response carries (proxied
// ones included) on h.
func (g *Gateway) setTransportHeaders(h http.Header) {
	h["Strict-Transport-Security"] = g.hsts
	h["X-Content-Type-Options"] = nosniffValue
}

// setPageHeaders adds what Portcullis's own pages (login, errors, hop
// redirects) carry on top of setTransportHeaders: no framing, no referrer
// (URLs carrying one-time codes must not leak), a strict CSP.
func (g *Gateway) setPageHeaders(h http.Header) {
	g.setTransportHeaders(h)
	h["X-Frame-Options"] = frameDenyValue
	h["Referrer-Policy"] = noReferrerValue
	h["Content-Security-Policy"] = g.csp
}

// isIdentityHeader reports whether the header name (in any case, with '_'
// and '-' treated alike) is one that some upstream might take as identity
// or as a client address, and so must never pass from a client to an
// upstream. The comparison folds '_' to '-' because many servers (CGI, PHP,
// nginx with underscores_in_headers, WSGI) map both to the same variable,
// and Go canonicalises "X_Forwarded_User" differently from
// "X-Forwarded-User", so a plain map delete would miss it.
//
// It never allocates: it runs over every header of every proxied request.
func isIdentityHeader(name string) bool {
	for _, p := range identityHeaderPrefixes {
		if len(name) >= len(p) && foldEqual(name[:len(p)], p) {
			return true
		}
	}
	for _, n := range identityHeaderNames {
		if len(name) == len(n) && foldEqual(name, n) {
			return true
		}
	}
	return false
}

// identityHeaderPrefixes cover whole families: our own (a client must not
// forge an assertion), oauth2-proxy's, and every X-Forwarded-* (we set the
// ones we vouch for after stripping).
var identityHeaderPrefixes = []string{
	"x-portcullis-",
	"x-auth-request-",
	"x-forwarded-",
	"x-webauth-",
}

// identityHeaderNames are single headers used by common auth proxies and
// the upstreams that trust them (Authelia, Apache, Grafana, Jenkins…).
var identityHeaderNames = []string{
	"remote-user",
	"remote-email",
	"remote-groups",
	"remote-name",
	"x-remote-user",
	"x-remote-email",
	"x-remote-groups",
	"x-user",
	"x-email",
	"x-real-ip",
	"x-client-ip",
	"true-client-ip",
	"forwarded",
}

// foldEqual compares s to lower (already lower case, '-' separated)
// ignoring ASCII case and treating '_' in s as '-'.
func foldEqual(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// stripIdentityHeaders deletes every identity header from h. Deleting
// during range is allowed for Go maps.
func stripIdentityHeaders(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
}

// stripCookies removes the cookies named name (and any other Portcullis
// cookie) from h's Cookie lines so the session secret never reaches an
// upstream, which could otherwise replay it against us. Lines without such
// a cookie are kept as they are (no allocation in the common case).
//
// h must be a private copy (ReverseProxy's clone of the client's header):
// the lines are filtered in place.
func stripCookies(h http.Header, name string) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	dirty := false
	for _, l := range lines {
		if strings.Contains(l, portcullisCookiePrefix) || strings.Contains(l, name) {
			dirty = true
			break
		}
	}
	if !dirty {
		return
	}
	out := lines[:0]
	for _, l := range lines {
		if kept := filterCookieLine(l, name); kept != "" {
			out = append(out, kept)
		}
	}
	clear(lines[len(out):])
	if len(out) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = out
}

// portcullisCookiePrefix is shared by every cookie Portcullis sets.
const portcullisCookiePrefix = "__Host-portcullis"

func filterCookieLine(line, name string) string {
	var b strings.Builder
	for part := range strings.SplitSeq(line, ";") {
		p := strings.TrimSpace(part)
		if p == "" {
			continue
		}
		n, _, _ := strings.Cut(p, "=")
		n = strings.TrimSpace(n)
		if n == name || strings.HasPrefix(n, portcullisCookiePrefix) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// cookieValue finds the first cookie called name in r's Cookie lines
// without parsing (and allocating) every cookie as r.Cookie does.
func cookieValue(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				part, line = line[:i], line[i+1:]
			} else {
				part, line = line, ""
			}
			part = strings.TrimSpace(part)
			n, v, ok := strings.Cut(part, "=")
			if !ok || strings.TrimSpace(n) != name {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// sanitizeHeaderValue replaces bytes net/http refuses in a header value
// (control characters other than tab) so a strange IdP claim cannot make
// the transport reject — or split — the upstream request.
func sanitizeHeaderValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 && c != '\t' || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}
