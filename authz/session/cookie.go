package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"io"
	"net/http"
	"time"
)

// Cookie wire format (version 1):
//
//	"v1." + base64url(token) + "." + base64url(HMAC-SHA256(CookieKey, "portcullis-session-v1|" + token)[:16])
//
// where token is 32 random bytes and base64url is unpadded. The token
// string handed to callers (Create, Cookie, IDFromToken) is
// base64url(token). Hashes take the raw bytes: each hash input then fits
// one SHA-256 block, which keeps a cache hit at three compressions.
//
// The MAC lets an instance refuse forged or tampered cookies without a
// store round trip; the token itself is the bearer secret. The public
// session ID is a one-way hash of the token (IDFromToken), so IDs that
// reach logs, audit events or the admin API cannot be turned back into a
// cookie.
const (
	tokenBytes   = 32                                        // 256-bit secret
	tokenLen     = 43                                        // base64url(32 bytes), unpadded
	macBytes     = 16                                        // truncated HMAC-SHA256
	macLen       = 22                                        // base64url(16 bytes), unpadded
	idLen        = 22                                        // public ID: 132 bits of SHA-256
	cookiePrefix = "v1."                                     // format version
	cookieLen    = len(cookiePrefix) + tokenLen + 1 + macLen // exact; anything else is refused unread
)

// Domain-separation prefixes: the same token never feeds two hash uses
// with the same input.
var (
	macDomain = []byte("portcullis-session-v1|")
	sidDomain = []byte("portcullis-sid|")
)

// b64dec maps a base64url character to its 6-bit value, or -1. Hand-rolled
// (rather than encoding/base64) so that parsing a cookie allocates nothing
// and refuses the characters the standard decoder silently skips (\r, \n).
var b64dec = func() (t [256]int8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// decodeStrict decodes unpadded base64url src into dst. It succeeds only
// if src has exactly the encoded length of len(dst), uses only the
// base64url alphabet and is canonical (unused trailing bits are zero), so
// every accepted string has exactly one decoded value and vice versa.
func decodeStrict(dst []byte, src string) bool {
	if len(src) != base64.RawURLEncoding.EncodedLen(len(dst)) {
		return false
	}
	var acc uint32
	bits, n := 0, 0
	for i := 0; i < len(src); i++ {
		v := b64dec[src[i]]
		if v < 0 {
			return false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst[n] = byte(acc >> bits)
			n++
		}
	}
	return acc&(1<<bits-1) == 0
}

// scratch holds the per-call hashing state for parsing a cookie. Managers
// pool them so that a cache hit allocates nothing.
type scratch struct {
	mac hash.Hash // HMAC-SHA256 keyed with CookieKey
	sid hash.Hash // SHA-256
	tok [tokenBytes]byte
	got [macBytes]byte
	sum [sha256.Size]byte
	id  [base64RawLen32]byte // base64url of a SHA-256 sum; the ID is its first idLen bytes
}

const base64RawLen32 = 43 // base64.RawURLEncoding.EncodedLen(sha256.Size)

func newScratch(key []byte) *scratch {
	return &scratch{mac: hmac.New(sha256.New, key), sid: sha256.New()}
}

// parse verifies cookie value v and, on success, leaves the public ID in
// sc.id[:idLen]. It reads nothing but v and the key: a forged, tampered,
// truncated or oversized cookie costs one length check or one HMAC, never
// a store lookup.
func (sc *scratch) parse(v string) bool {
	if len(v) != cookieLen || v[:len(cookiePrefix)] != cookiePrefix || v[len(cookiePrefix)+tokenLen] != '.' {
		return false
	}
	tok := v[len(cookiePrefix) : len(cookiePrefix)+tokenLen]
	if !decodeStrict(sc.tok[:], tok) || !decodeStrict(sc.got[:], v[len(cookiePrefix)+tokenLen+1:]) {
		return false
	}
	macInto(sc.mac, sc.sum[:0], sc.tok[:])
	// Constant time: the MAC check is the only thing standing between a
	// guessed cookie and the cache.
	if !hmac.Equal(sc.sum[:macBytes], sc.got[:]) {
		return false
	}
	idInto(sc.sid, sc.sum[:0], sc.id[:], sc.tok[:])
	return true
}

// macInto appends HMAC(key, macDomain|token) to dst (h is a keyed HMAC).
func macInto(h hash.Hash, dst, token []byte) []byte {
	h.Reset()
	h.Write(macDomain)
	h.Write(token)
	return h.Sum(dst)
}

// idInto writes base64url(SHA-256(sidDomain|token)) to out (43 bytes),
// using sum as scratch; the public ID is out[:idLen].
func idInto(h hash.Hash, sum, out, token []byte) {
	h.Reset()
	h.Write(sidDomain)
	h.Write(token)
	base64.RawURLEncoding.Encode(out, h.Sum(sum))
}

// IDFromToken returns the public session ID for a token (as returned by
// Create): the first 22 characters of base64url(SHA-256("portcullis-sid|"
// + raw token)). It is what the store, the audit trail and the admin API
// use. A string that is not a well-formed token has no ID ("").
func IDFromToken(token string) string {
	var raw [tokenBytes]byte
	if !decodeStrict(raw[:], token) {
		return ""
	}
	var sum [sha256.Size]byte
	var out [base64RawLen32]byte
	idInto(sha256.New(), sum[:0], out[:], raw[:])
	return string(out[:idLen])
}

// newToken returns base64url of 32 bytes read from r.
func newToken(r io.Reader) (string, error) {
	var b [tokenBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// cookieValue encodes token (as returned by Create) into the cookie
// value; "" for a string that is not a well-formed token.
func (m *Manager) cookieValue(token string) string {
	var raw [tokenBytes]byte
	if !decodeStrict(raw[:], token) {
		return ""
	}
	var sum [sha256.Size]byte
	mac := macInto(hmac.New(sha256.New, m.cfg.CookieKey), sum[:0], raw[:])
	return cookiePrefix + token + "." + base64.RawURLEncoding.EncodeToString(mac[:macBytes])
}

// CookieName returns the session cookie's name ("__Host-" prefixed).
func (m *Manager) CookieName() string { return m.cfg.CookieName }

// Cookie returns the session cookie for token (as returned by Create):
// __Host- prefixed, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain
// (host-only). maxAge ≤ 0 makes it a browser-session cookie; otherwise it
// is rounded down to whole seconds (at least one). A token that is not
// one Create returned yields an empty value, which no Lookup accepts.
func (m *Manager) Cookie(token string, maxAge time.Duration) *http.Cookie {
	c := m.baseCookie()
	c.Value = m.cookieValue(token)
	if maxAge > 0 {
		secs := max(int(maxAge/time.Second), 1)
		c.MaxAge = secs
		c.Expires = m.now().Add(time.Duration(secs) * time.Second).UTC()
	}
	return c
}

// ClearCookie returns a cookie that makes the browser delete the session
// cookie (same attributes, empty value, Max-Age=0 on the wire).
func (m *Manager) ClearCookie() *http.Cookie {
	c := m.baseCookie()
	c.MaxAge = -1
	c.Expires = time.Unix(0, 0).UTC()
	return c
}

func (m *Manager) baseCookie() *http.Cookie {
	return &http.Cookie{
		Name:     m.cfg.CookieName,
		Path:     "/",
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}
