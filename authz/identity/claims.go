package identity

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Limits on mapped claims. Identity values end up in session records,
// upstream headers (X-Portcullis-*) and audit events, so they are kept
// printable and bounded; a value outside them is dropped, never an error
// the user could learn from.
const (
	maxSubjectLen = 255 // OIDC Core §2: sub is at most 255 ASCII characters
	maxEmailLen   = 320
	maxNameLen    = 256
	maxGroupLen   = 256
	maxGroups     = 1024
)

// mapClaims turns a verified token into an Identity. Only the subject can
// fail the login (an unusable subject means no stable user ID); every
// other claim degrades to empty.
func (p *Provider) mapClaims(idt *oidc.IDToken) (Identity, error) {
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %w", ErrTokenInvalid, err)
	}
	if err := p.checkAuthorizedParty(idt.Audience, claims["azp"]); err != nil {
		return Identity{}, err
	}
	if idt.Subject == "" || len(idt.Subject) > maxSubjectLen || !printable(idt.Subject) {
		return Identity{}, fmt.Errorf("%w: unusable subject", ErrTokenInvalid)
	}
	id := Identity{
		UserID:   idt.Issuer + "#" + idt.Subject,
		Issuer:   idt.Issuer,
		Subject:  idt.Subject,
		Name:     cleanText(stringClaim(claims["name"]), maxNameLen),
		Groups:   groupsClaim(claims[p.cfg.GroupsClaim]),
		AuthTime: timeClaim(claims["auth_time"]),
	}
	if email := stringClaim(claims[p.cfg.EmailClaim]); plausibleEmail(email) && !isFalse(claims["email_verified"]) {
		id.Email = email
	}
	return id, nil
}

// checkAuthorizedParty applies OIDC Core §3.1.3.7 (3)-(5) as a MUST: go-oidc
// only checks that our client ID is among the audiences. A token minted
// for another client that merely lists us as an extra audience is not a
// login to us.
func (p *Provider) checkAuthorizedParty(aud []string, rawAzp json.RawMessage) error {
	azp, present := "", rawAzp != nil
	if present {
		if err := json.Unmarshal(rawAzp, &azp); err != nil {
			return fmt.Errorf("%w: azp is not a string", ErrTokenInvalid)
		}
	}
	if present && azp != p.cfg.ClientID {
		return fmt.Errorf("%w: authorized party is another client", ErrTokenInvalid)
	}
	if len(aud) > 1 && azp != p.cfg.ClientID {
		return fmt.Errorf("%w: multiple audiences without azp naming us", ErrTokenInvalid)
	}
	return nil
}

// stringClaim returns the claim if it is a JSON string, else "".
func stringClaim(raw json.RawMessage) string {
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// isFalse reports whether email_verified says false: the JSON boolean, or
// the string "false" that some IdPs (Cognito, older ADFS) send. Absent
// means "not stated", which is accepted.
func isFalse(raw json.RawMessage) bool {
	if raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return false
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return !b
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return !strings.EqualFold(s, "true")
	}
	return true // a number or object is not a statement of verification
}

// groupsClaim accepts an array of strings or a single string. Any other
// shape (object, number, array with a non-string) yields nil: a malformed
// claim grants nothing rather than part of something. Empty, unprintable
// and oversized names are skipped; duplicates are removed, order kept.
func groupsClaim(raw json.RawMessage) []string {
	if raw == nil {
		return nil
	}
	var list []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		list = []string{one}
	} else if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	var out []string
	for _, g := range list {
		if g == "" || len(g) > maxGroupLen || !printable(g) || slices.Contains(out, g) {
			continue
		}
		if len(out) == maxGroups {
			break
		}
		out = append(out, g)
	}
	return out
}

// timeClaim parses a NumericDate (seconds, possibly fractional); anything
// else, negative or beyond year 9999 yields the zero time.
func timeClaim(raw json.RawMessage) time.Time {
	var f float64
	if raw == nil || json.Unmarshal(raw, &f) != nil || f <= 0 || f > 253402300799 || math.IsNaN(f) {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}

// plausibleEmail accepts local@domain with printable, space-free text.
func plausibleEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return at > 0 && at < len(s)-1 && len(s) <= maxEmailLen && printable(s) && !strings.ContainsRune(s, ' ')
}

// printable reports valid UTF-8 without control or format characters
// (which would break headers, logs and terminal output).
func printable(s string) bool {
	return utf8.ValidString(s) && !hasControl(s)
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
	})
}

// cleanText drops invalid UTF-8 and control characters and truncates to
// max bytes on a rune boundary: display names are cosmetic, so a messy
// one is repaired rather than refused.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}
