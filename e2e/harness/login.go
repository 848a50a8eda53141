package harness

import (
	"net/http"
	"net/url"
	"strings"
)

// Account is a login at the test IdP (its development form takes any
// password; the password is still recorded for the secrets scan).
type Account struct {
	Login, Password string
}

// Login is what a completed (or stopped) login produced.
type Login struct {
	// TOTP is the user's authenticator: the one passed in, or a new one
	// made from the secret on the enrolment page.
	TOTP          *TOTP
	Enrolled      bool     // this login went through TOTP enrolment
	RecoveryCodes []string // shown once after enrolment
	// Final is the response the flow ended on: the page after the last
	// redirect, or the redirect the stop function matched.
	Final *Response
}

// sessionCookiePrefix names Portcullis's cookies (session, login binding,
// pending MFA); their values are secrets.
const sessionCookiePrefix = "__Host-portcullis"

// recordResponseSecrets records the cookie values and one-time hop codes
// a response hands out, for the final secrets scan.
func recordResponseSecrets(res *http.Response) {
	for _, c := range res.Cookies() {
		recordCookie(c.Name, c.Value)
	}
	if loc, err := res.Location(); err == nil && loc.Path == "/.portcullis/auth" {
		RecordSecret(KindHopCode, loc.Query().Get("code"))
	}
}

// recordCookie records the value of a Portcullis cookie, and of a session
// cookie's token part (which must not leak on its own either).
func recordCookie(name, value string) {
	if !strings.HasPrefix(name, sessionCookiePrefix) || value == "" {
		return
	}
	RecordSecret(KindCookie, value)
	if parts := strings.Split(value, "."); len(parts) == 3 {
		RecordSecret(KindCookie, parts[1])
	}
}

// LoginFlow drives a login from start (a route URL, or an access-host URL
// such as /login?rd=…) through the IdP's login and consent forms, TOTP
// enrolment or verification, to wherever it ends. otp may be nil for a
// user not enrolled yet. stop (may be nil) ends the flow before requesting
// a redirect target it matches.
func (c *Client) LoginFlow(start string, acct Account, otp *TOTP, stop func(*url.URL) bool) Login {
	c.t.Helper()
	RecordSecret(KindPassword, acct.Password)
	out := Login{TOTP: otp}
	res := c.Get(start)
	for step := 0; ; step++ {
		if step == 12 {
			c.t.Fatalf("login did not finish after %d pages; last %s:\n%s", step, res.Request.URL, res.Body)
		}
		res = c.Follow(res, stop)
		if res.IsRedirect() {
			out.Final = res
			return out
		}
		page := res.Request.URL
		if f, ok := FormWith(page, res.Body, "login"); ok && f.Fields.Get("prompt") == "login" {
			f.Fields.Set("login", acct.Login)
			f.Fields.Set("password", acct.Password)
			res = c.PostForm(f.Action, f.Fields)
			continue
		}
		if f, ok := FormWith(page, res.Body, "prompt"); ok && f.Fields.Get("prompt") == "consent" {
			res = c.PostForm(f.Action, f.Fields)
			continue
		}
		if secret, ok := TextByID(res.Body, "totp-secret"); ok && secret != "" {
			out.TOTP, out.Enrolled = NewTOTP(secret), true
			res = c.submitCode(res, out.TOTP)
			if res.StatusCode != http.StatusOK {
				out.Final = res
				return out
			}
			out.RecoveryCodes = ListByID(res.Body, "recovery-codes")
			for _, rc := range out.RecoveryCodes {
				RecordSecret(KindRecoveryCode, rc)
			}
			f, ok := FormWith(res.Request.URL, res.Body, "csrf")
			if !ok || len(out.RecoveryCodes) == 0 {
				c.t.Fatalf("no recovery codes page after enrolment:\n%s", res.Body)
			}
			res = c.PostForm(f.Action, f.Fields)
			continue
		}
		if page.Path == "/mfa" {
			if _, ok := FormWith(page, res.Body, "code"); ok {
				if out.TOTP == nil {
					c.t.Fatalf("TOTP code requested for %s but the test has no authenticator", acct.Login)
				}
				res = c.submitCode(res, out.TOTP)
				if res.StatusCode != http.StatusOK && !res.IsRedirect() {
					out.Final = res
					return out
				}
				continue
			}
		}
		out.Final = res
		return out
	}
}

// submitCode posts the next TOTP code into the code form of res.
func (c *Client) submitCode(res *Response, otp *TOTP) *Response {
	c.t.Helper()
	return c.PostCode(res, otp.Code(c.t))
}

// PostCode submits code in the TOTP form of the page res (e.g. /mfa) and
// returns the answer, for tests that submit chosen (wrong, replayed) codes.
func (c *Client) PostCode(res *Response, code string) *Response {
	c.t.Helper()
	f, ok := FormWith(res.Request.URL, res.Body, "code")
	if !ok {
		c.t.Fatalf("no code form on %s:\n%s", res.Request.URL, res.Body)
	}
	f.Fields.Set("code", code)
	return c.PostForm(f.Action, f.Fields)
}
