package session

import (
	"errors"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz"
)

// Defaults applied to zero Config fields.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	DefaultCookieName      = "__Host-portcullis"
	// MinCookieKeyLen is the shortest accepted HMAC key (256 bits).
	MinCookieKeyLen = 32
)

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.AbsoluteTimeout == 0 {
		c.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if c.CookieName == "" {
		c.CookieName = DefaultCookieName
	}
	return c
}

// Validate checks c after applying defaults. Errors are *authz.FieldError
// joined with errors.Join; paths use the config file's key names
// (cmd prefixes them with "session").
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(path, msg string) { errs = append(errs, &authz.FieldError{Path: path, Msg: msg}) }
	if len(c.CookieKey) < MinCookieKeyLen {
		bad("cookie_key_file", "cookie key must be at least 32 bytes")
	}
	// The __Host- prefix makes browsers refuse the cookie unless it is
	// Secure, host-only (no Domain) and Path=/, so a sibling subdomain can
	// neither set nor shadow it.
	if !strings.HasPrefix(c.CookieName, "__Host-") {
		bad("cookie_name", `cookie name must start with "__Host-"`)
	} else if !validCookieName(c.CookieName) {
		bad("cookie_name", "cookie name contains characters not allowed in a cookie name")
	}
	if c.IdleTimeout < 0 {
		bad("idle_timeout", "must be positive")
	}
	if c.AbsoluteTimeout < 0 {
		bad("absolute_timeout", "must be positive")
	}
	if c.IdleTimeout > 0 && c.AbsoluteTimeout > 0 && c.IdleTimeout > c.AbsoluteTimeout {
		bad("idle_timeout", "must not exceed absolute_timeout")
	}
	return errors.Join(errs...)
}

// validCookieName reports whether name is an RFC 6265 token (what
// net/http accepts as a cookie name).
func validCookieName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return name != ""
}
