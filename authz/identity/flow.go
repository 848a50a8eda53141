package identity

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const (
	// secretBytes is the entropy of state, nonce and PKCE verifier: 256 bits.
	secretBytes = 32
	// maxCodeLen bounds the code we forward to the token endpoint; real
	// codes are well under 1 KiB.
	maxCodeLen = 4096
	// clockSkew tolerated for iat in the future and for a login state whose
	// CreatedAt is slightly ahead of our clock (another instance's clock).
	clockSkew = time.Minute
)

// Begin starts a login: it draws a fresh 256-bit state, nonce and PKCE
// verifier and returns them with the IdP authorization URL to redirect the
// browser to. The caller stores the LoginState server-side, bound to the
// browser, and passes it back to Finish exactly once. returnTo is stored
// verbatim; the caller must sanitise it before use.
func (p *Provider) Begin(returnTo string) (LoginState, string, error) {
	var vals [3]string
	for i := range vals {
		v, err := randomToken(p.rand)
		if err != nil {
			return LoginState{}, "", fmt.Errorf("identity: random source: %w", err)
		}
		vals[i] = v
	}
	st := LoginState{
		State:     vals[0],
		Nonce:     vals[1],
		Verifier:  vals[2],
		ReturnTo:  returnTo,
		CreatedAt: p.now(),
	}
	authURL := p.oauth.AuthCodeURL(st.State,
		oidc.Nonce(st.Nonce),
		oauth2.S256ChallengeOption(st.Verifier),
	)
	return st, authURL, nil
}

// randomToken returns secretBytes from r, base64url without padding (43
// characters, which is also a valid RFC 7636 code verifier).
func randomToken(r io.Reader) (string, error) {
	b := make([]byte, secretBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// FinishCallback completes a login from the callback's query parameters. It
// checks state first (so a forged error redirect is reported as a state
// mismatch), then the RFC 9207 "iss" parameter if the IdP sent one (mix-up
// defence), then turns ?error= into ErrIdPError, and otherwise behaves as
// Finish.
func (p *Provider) FinishCallback(ctx context.Context, st LoginState, q url.Values) (Identity, error) {
	if err := p.checkState(st, q.Get("state")); err != nil {
		return Identity{}, err
	}
	if len(q["state"]) > 1 || len(q["code"]) > 1 {
		return Identity{}, fmt.Errorf("%w: repeated callback parameters", ErrStateMismatch)
	}
	if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != p.cfg.Issuer) {
		return Identity{}, fmt.Errorf("%w: callback iss parameter names another issuer", ErrStateMismatch)
	}
	if q.Has("error") {
		return Identity{}, &CallbackError{Code: sanitizeCode(q.Get("error"))}
	}
	return p.Finish(ctx, st, q.Get("state"), q.Get("code"))
}

// CallbackError is the IdP's ?error= code (sanitised: RFC 6749 error
// characters only, at most 64). It wraps ErrIdPError. The error_description
// is deliberately dropped: it is free text that anyone can put in a link.
type CallbackError struct{ Code string }

var _ error = (*CallbackError)(nil)

func (e *CallbackError) Error() string { return ErrIdPError.Error() + ": " + e.Code }
func (e *CallbackError) Unwrap() error { return ErrIdPError }

// sanitizeCode keeps an OAuth error code printable and short for logs.
func sanitizeCode(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		// RFC 6749 §4.1.2.1: error is %x20-21 / %x23-5B / %x5D-7E.
		if r >= 0x20 && r <= 0x7e && r != '"' && r != '\\' {
			b.WriteRune(r)
		} else {
			b.WriteByte('?')
		}
	}
	if b.Len() == 0 {
		return "unspecified"
	}
	return b.String()
}

// checkState compares the callback state with the stored one in constant
// time and enforces the login age.
func (p *Provider) checkState(st LoginState, gotState string) error {
	if st.State == "" || st.Nonce == "" || st.Verifier == "" {
		return fmt.Errorf("%w: no complete login state", ErrStateMismatch)
	}
	if subtle.ConstantTimeCompare([]byte(st.State), []byte(gotState)) != 1 {
		return ErrStateMismatch
	}
	now := p.now()
	if st.CreatedAt.IsZero() || now.Sub(st.CreatedAt) > MaxLoginAge || st.CreatedAt.Sub(now) > clockSkew {
		return ErrLoginExpired
	}
	return nil
}

// Finish completes a login: constant-time state check, login age, code
// exchange with the PKCE verifier, ID token verification (signature with
// an allowed algorithm, iss, aud, azp, exp), nonce check, claim mapping.
// The caller must delete the LoginState before calling Finish so that a
// callback can never be replayed against it; the IdP enforces that the
// code itself is single use.
func (p *Provider) Finish(ctx context.Context, st LoginState, gotState, code string) (Identity, error) {
	if err := p.checkState(st, gotState); err != nil {
		return Identity{}, err
	}
	if code == "" || len(code) > maxCodeLen {
		return Identity{}, fmt.Errorf("%w: missing or oversized code", ErrExchange)
	}
	ctx = oidc.ClientContext(ctx, p.client)
	tok, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return Identity{}, exchangeError(err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Identity{}, fmt.Errorf("%w: token response has no id_token", ErrTokenInvalid)
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	// go-oidc leaves the nonce to us. Without this check an attacker could
	// inject a code bound to their own login (with their nonce) into the
	// victim's browser.
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return Identity{}, ErrNonceMismatch
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Identity{}, fmt.Errorf("%w: at_hash: %w", ErrTokenInvalid, err)
		}
	}
	if !idt.IssuedAt.IsZero() && idt.IssuedAt.Sub(p.now()) > clockSkew {
		return Identity{}, fmt.Errorf("%w: issued in the future", ErrTokenInvalid)
	}
	id, err := p.mapClaims(idt)
	if err != nil {
		return Identity{}, err
	}
	p.log.Debug("oidc login verified", "user_id", id.UserID, "groups", len(id.Groups))
	return id, nil
}

// exchangeError wraps a token endpoint failure as ErrExchange. Only the
// OAuth error code and HTTP status are kept: the response body and the
// error_description are the IdP's free text and can be large.
func exchangeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		code := "none"
		if re.ErrorCode != "" {
			code = sanitizeCode(re.ErrorCode)
		}
		return fmt.Errorf("%w: token endpoint status %d, error %s", ErrExchange, status, code)
	}
	return fmt.Errorf("%w: %w", ErrExchange, err)
}
