package gateway

import (
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// CSRF protection for every POST on the access host has two independent
// parts, both required:
//
//  1. A token in the form field "csrf" equal to HMAC-SHA256(key, purpose |
//     cookie value), where the cookie is the one that authorises the POST
//     (the pending-MFA cookie or the session cookie). A cross-site attacker
//     can make the browser send the cookie but can neither read it nor
//     compute the MAC, and a token minted for one cookie is worthless for
//     another.
//  2. An origin check: when the browser says where the request comes from
//     (Sec-Fetch-Site, Origin, else Referer), it must be the access host
//     itself.
//
// The key is derived from the JWT assertion signing key so that every
// instance sharing that key accepts tokens minted by any other instance
// (a form rendered by gw-1 may be posted to gw-2 behind a load balancer).

const csrfField = "csrf"

var errCSRF = errors.New("csrf check failed")

type csrfGuard struct {
	key    []byte
	origin string // "https://access.example.com[:port]"
}

// newCSRFKey derives the CSRF MAC key. With no signing key (only possible in
// tests that build the handler by hand) it falls back to a random
// per-instance key, which is still secure, merely not shared.
func newCSRFKey(signing *ecdsa.PrivateKey, rnd io.Reader) ([]byte, error) {
	if signing != nil {
		if d, err := signing.Bytes(); err == nil {
			return hkdf.Key(sha256.New, d, nil, "portcullis-csrf-v1", 32)
		}
	}
	k := make([]byte, 32)
	if _, err := io.ReadFull(rnd, k); err != nil {
		return nil, fmt.Errorf("csrf key: %w", err)
	}
	return k, nil
}

// token returns the CSRF token for a cookie value and a purpose (so a token
// minted for one form cannot be replayed against another kind of form).
func (c *csrfGuard) token(purpose, cookieValue string) string {
	if cookieValue == "" {
		return ""
	}
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(cookieValue))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// check validates a POST that has already had its form parsed.
func (c *csrfGuard) check(r *http.Request, purpose, cookieValue string) error {
	if err := c.checkOrigin(r); err != nil {
		return err
	}
	want := c.token(purpose, cookieValue)
	got := r.PostFormValue(csrfField)
	if want == "" || got == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
		return fmt.Errorf("%w: token missing or wrong", errCSRF)
	}
	return nil
}

// checkOrigin refuses requests the browser labels as coming from elsewhere.
// Portcullis pages are served with Referrer-Policy: no-referrer, under
// which browsers send "Origin: null" even for same-origin form posts; such
// a request is accepted only when Sec-Fetch-Site vouches for it.
func (c *csrfGuard) checkOrigin(r *http.Request) error {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" {
		return fmt.Errorf("%w: Sec-Fetch-Site %.32q", errCSRF, site)
	}
	switch o := r.Header.Get("Origin"); {
	case o == "null":
		if site != "same-origin" {
			return fmt.Errorf("%w: opaque origin", errCSRF)
		}
	case o != "":
		if !strings.EqualFold(o, c.origin) {
			return fmt.Errorf("%w: foreign origin", errCSRF)
		}
	default:
		if ref := r.Header.Get("Referer"); ref != "" {
			u, err := url.Parse(ref)
			if err != nil || !strings.EqualFold(u.Scheme+"://"+u.Host, c.origin) {
				return fmt.Errorf("%w: foreign referer", errCSRF)
			}
		}
		// Neither header: old clients and privacy tools strip them; the
		// token alone still proves the form came from our page.
	}
	return nil
}

// randomToken returns n random bytes, base64url encoded.
func randomToken(rnd io.Reader, n int) (string, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// sha256Hex is the storage key form of a browser secret: the store never
// holds a value that could be replayed as a cookie.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
