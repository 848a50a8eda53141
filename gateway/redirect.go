package gateway

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxRedirectLen bounds return URLs: a real one is a URL the user was on,
// anything much longer is an attack or an accident.
const maxRedirectLen = 4096

// safeRedirect returns target if it is a path on the access host or an
// absolute https URL on a configured route host; otherwise "/".
//
// Trust boundary: target comes from a query parameter anyone can craft
// (/login?rd=...), and browsers are lenient parsers: they strip tabs and
// newlines, treat "\" as "/", and read "//host" and "https:host" as other
// origins. So the rules are an allowlist of shapes whose meaning every
// parser agrees on, and anything else becomes "/".
func (g *Gateway) safeRedirect(target string) string {
	if len(target) == 0 || len(target) > maxRedirectLen {
		return "/"
	}
	if target[0] == '/' {
		if isSafeLocalPath(target) {
			return target
		}
		return "/"
	}
	if g.isRouteURL(target) {
		return target
	}
	return "/"
}

// isSafeLocalPath accepts "/..." paths that cannot be read as a
// scheme-relative URL, now or after any amount of percent-decoding (up to
// three rounds: a target can pass through several decoders on its way).
func isSafeLocalPath(p string) bool {
	if !rawURLBytesOK(p) {
		return false
	}
	for range 4 {
		if !localPathShapeOK(p) {
			return false
		}
		d, err := url.PathUnescape(p)
		if err != nil {
			return false
		}
		if d == p {
			return true
		}
		p = d
	}
	// Still changing after three decodes: nobody legitimate nests that deep.
	return false
}

// localPathShapeOK: starts with exactly one "/" and holds nothing a
// browser would strip or turn into a slash.
func localPathShapeOK(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return false
	}
	return !hasControlOrBackslash(p)
}

// rawURLBytesOK: the undecoded form is plain printable ASCII without
// spaces or backslashes (a legitimate URL has those percent-encoded).
func rawURLBytesOK(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func hasControlOrBackslash(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			return true
		}
	}
	return false
}

// isRouteURL accepts "https://<route host>[:PublicPort]/..." without
// userinfo, whose path and query decode to nothing hostile.
func (g *Gateway) isRouteURL(s string) bool {
	const scheme = "https://"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) || !rawURLBytesOK(s) {
		return false
	}
	rest := s[len(scheme):]
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	// Userinfo ("user@host") and escapes in the host are how
	// "https://good@evil" and friends smuggle another origin.
	if strings.ContainsAny(authority, "@%") {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Opaque != "" || u.User != nil || u.Host != authority {
		return false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if _, ok := g.hosts[host]; !ok {
		return false
	}
	if port != "" && port != strconv.Itoa(g.publicPort()) {
		return false
	}
	if strings.HasSuffix(authority, ":") {
		return false
	}
	// Decode the rest a few times: it must not reveal control characters
	// (header splitting in some upstream's redirect) or backslashes.
	tail := rest[len(authority):]
	for range 4 {
		if hasControlOrBackslash(tail) {
			return false
		}
		d, err := url.PathUnescape(tail)
		if err != nil {
			return false
		}
		if d == tail {
			return true
		}
		tail = d
	}
	return false
}

// publicPort is the port browsers reach us on.
func (g *Gateway) publicPort() int {
	if g.cfg.PublicPort == 0 {
		return 443
	}
	return g.cfg.PublicPort
}

// externalURL is https://host[:PublicPort]path.
func (g *Gateway) externalURL(host, path string) string {
	return "https://" + host + g.portSuffix + path
}

// RedirectHandler answers plain HTTP: ACME challenges or a redirect to HTTPS.
// Only configured hosts are redirected: a plain-HTTP request with a
// foreign Host header gets a 404 instead of a redirect built from it.
func (g *Gateway) RedirectHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.acme != nil && g.acme.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		h := w.Header()
		g.setTransportHeaders(h)
		host := canonicalHost(r.Host)
		if _, ok := g.hosts[host]; !ok && host != g.cfg.AccessHost {
			g.log.Debug("plain HTTP request for unknown host", "host", r.Host)
			h["Content-Type"] = plainTextValue
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("Not found\n"))
			return
		}
		uri := r.URL.RequestURI()
		if !strings.HasPrefix(uri, "/") {
			uri = "/"
		}
		h.Set("Location", g.externalURL(host, uri))
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// canonicalHost lower-cases a Host header value and strips its port and a
// trailing dot. It allocates only when the host has upper-case letters.
func canonicalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
