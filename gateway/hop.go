package gateway

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// The login hop. Session cookies are host-only (__Host-), so the cookie
// set on the access host is invisible to route hosts. After a login the
// access host sends the browser to https://<route host>/.portcullis/auth
// with a one-time code; that endpoint swaps the code for the session
// cookie value and sets it as this host's own cookie.
//
// The code is the only capability: 256 random bits, single use (an atomic
// take from the shared store, so a replay fails on every instance), 60 s,
// and bound to the host it was minted for. The store never sees the code
// or the cookie in the clear: the record is keyed by a hash of the code and
// encrypted with a key derived from it, so a store dump yields nothing
// that can be turned into a session.
const (
	hopPath      = "/.portcullis/auth"
	reservedPath = "/.portcullis/"
	hopTTL       = 60 * time.Second
	hopKeyPrefix = "hop:"
	hopCodeBytes = 32
)

type hopRecord struct {
	Cookie string `json:"cookie"`
	Host   string `json:"host"`
	RD     string `json:"rd"`
}

// hopKeys derives the store key and the encryption key from a code.
func hopKeys(code string) (storeKey string, encKey [32]byte) {
	id := sha256.Sum256([]byte("portcullis-hop-id|" + code))
	encKey = sha256.Sum256([]byte("portcullis-hop-key|" + code))
	return hopKeyPrefix + base64.RawURLEncoding.EncodeToString(id[:]), encKey
}

func hopAEAD(key [32]byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// hopURL returns where to send the browser after a successful login:
// for a return URL on a route host, an https URL on that host's
// /.portcullis/auth endpoint carrying a one-time code that sets that host's
// session cookie; for the access host, the path itself.
//
// returnTo is checked with safeRedirect here, so callers may pass the raw
// rd parameter.
func (g *Gateway) hopURL(ctx context.Context, returnTo, cookieValue string) (string, error) {
	target := g.safeRedirect(returnTo)
	if strings.HasPrefix(target, "/") {
		return target, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return "/", nil // unreachable: safeRedirect parsed it
	}
	host := strings.ToLower(u.Hostname())
	rd := u.EscapedPath()
	if rd == "" {
		rd = "/"
	}
	if u.RawQuery != "" {
		rd += "?" + u.RawQuery
	}
	if !isSafeLocalPath(rd) {
		rd = "/"
	}
	var raw [hopCodeBytes]byte
	if _, err := io.ReadFull(g.deps.Rand, raw[:]); err != nil {
		return "", fmt.Errorf("hop code: %w", err)
	}
	code := base64.RawURLEncoding.EncodeToString(raw[:])
	plain, err := json.Marshal(hopRecord{Cookie: cookieValue, Host: host, RD: rd})
	if err != nil {
		return "", err
	}
	key, enc := hopKeys(code)
	aead, err := hopAEAD(enc)
	if err != nil {
		return "", err
	}
	// The key is single-use, so a fixed nonce is safe; the store key is the
	// associated data so a record cannot be moved under another code.
	sealed := aead.Seal(nil, make([]byte, aead.NonceSize()), plain, []byte(key))
	if err := g.deps.Store.PutEphemeral(ctx, key, sealed, hopTTL); err != nil {
		return "", fmt.Errorf("hop code: %w", err)
	}
	return g.externalURL(host, hopPath+"?code="+code), nil
}

// takeHop atomically consumes code and returns its record. Unknown,
// expired, reused and tampered codes all return store.ErrNotFound.
func (g *Gateway) takeHop(ctx context.Context, code string) (hopRecord, error) {
	var rec hopRecord
	if len(code) != base64.RawURLEncoding.EncodedLen(hopCodeBytes) {
		return rec, store.ErrNotFound
	}
	if _, err := base64.RawURLEncoding.DecodeString(code); err != nil {
		return rec, store.ErrNotFound
	}
	key, enc := hopKeys(code)
	sealed, err := g.deps.Store.TakeEphemeral(ctx, key)
	if err != nil {
		return rec, err
	}
	aead, err := hopAEAD(enc)
	if err != nil {
		return rec, err
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), sealed, []byte(key))
	if err != nil {
		return rec, fmt.Errorf("%w: hop record does not decrypt", store.ErrNotFound)
	}
	if err := json.Unmarshal(plain, &rec); err != nil {
		return rec, fmt.Errorf("%w: hop record: %v", store.ErrNotFound, err)
	}
	return rec, nil
}

// serveHop handles /.portcullis/auth on a route host.
func (g *Gateway) serveHop(w http.ResponseWriter, r *http.Request, host string) {
	ev := audit.Event{Type: audit.TypeRequestRejected, Path: hopPath}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		g.fail(w, r, http.StatusMethodNotAllowed, reasonMethod, nil, ev)
		return
	}
	rec, err := g.takeHop(r.Context(), r.URL.Query().Get("code"))
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) || !errors.Is(err, store.ErrNotFound) {
			g.fail(w, r, http.StatusServiceUnavailable, reasonStoreDown, err, ev)
			return
		}
		g.fail(w, r, http.StatusForbidden, reasonInvalidHop, err, ev)
		return
	}
	if rec.Host != host {
		// Minted for another host: whoever holds it is replaying it.
		g.fail(w, r, http.StatusForbidden, reasonInvalidHop,
			fmt.Errorf("hop code for host %q used on %q", rec.Host, host), ev)
		return
	}
	sess, err := g.sessions.Lookup(r.Context(), rec.Cookie)
	if err != nil {
		if errors.Is(err, store.ErrUnavailable) {
			g.fail(w, r, http.StatusServiceUnavailable, reasonStoreDown, err, ev)
			return
		}
		g.fail(w, r, http.StatusForbidden, reasonInvalidSession, err, ev)
		return
	}
	// The cookie carries the same value as on the access host, with the
	// session manager's attributes (__Host-, Secure, HttpOnly, Lax, Path=/):
	// ClearCookie is the attribute template, the value and lifetime are
	// this session's.
	c := g.sessions.ClearCookie()
	c.Value = rec.Cookie
	c.MaxAge, c.Expires = 0, time.Time{}
	if left := sess.ExpiresAt.Sub(g.now()); !sess.ExpiresAt.IsZero() && left > 0 {
		c.MaxAge = max(int(left/time.Second), 1)
		c.Expires = g.now().Add(time.Duration(c.MaxAge) * time.Second).UTC()
	}
	h := w.Header()
	g.setPageHeaders(h)
	h["Cache-Control"] = noStoreValue
	http.SetCookie(w, c)
	rd := rec.RD
	if !isSafeLocalPath(rd) {
		rd = "/"
	}
	ev = audit.Event{
		Type: audit.TypeSessionStart, UserID: sess.UserID, SessionID: sess.ID, Path: hopPath,
		Attrs: map[string]string{"host": host, "step": "hop"},
	}
	g.fillEvent(r, &ev)
	g.deps.Audit.Emit(r.Context(), ev)
	h.Set("Location", rd)
	w.WriteHeader(http.StatusFound)
}

// sessionAPI is what the core needs from the session manager.
type sessionAPI interface {
	Lookup(ctx context.Context, cookieValue string) (session.Record, error)
	ClearCookie() *http.Cookie
	CookieName() string
}

var _ sessionAPI = (*session.Manager)(nil)
