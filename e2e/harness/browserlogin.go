package harness

import (
	"context"
	"strings"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
)

// BrowserLogin is what LoginBrowser went through.
type BrowserLogin struct {
	TOTP          *TOTP
	Enrolled      bool
	RecoveryCodes []string
	URL           string   // where the browser ended
	Pages         []string // the login pages passed: idp-login, idp-consent, enrol, recovery, mfa
}

// pageStateJS tells which page of the login flow the browser shows.
const pageStateJS = `(() => {
  if (document.querySelector('input[name=login]') && document.querySelector('input[name=password]')) return 'idp-login';
  if (document.querySelector('input[name=prompt][value=consent]')) return 'idp-consent';
  if (document.querySelector('#totp-secret')) return 'enrol';
  if (document.querySelector('#recovery-codes')) return 'recovery';
  if (location.pathname === '/mfa' && document.querySelector('input[name=code]')) return 'mfa';
  return 'other';
})()`

// LoginBrowser drives a full login in Chromium (ctx from Browser): open
// start (a route URL), the IdP's login form and consent page, then either
// TOTP enrolment (the secret is read from the page, the code computed and
// typed in, the recovery codes read and acknowledged) or the TOTP page
// with the next code of otp. It returns once the browser is on a page that
// is none of these (the application, or an error page).
func LoginBrowser(t TB, ctx context.Context, start string, acct Account, otp *TOTP) BrowserLogin {
	t.Helper()
	RecordSecret(KindPassword, acct.Password)
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out := BrowserLogin{TOTP: otp}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
			t.Fatalf("browser login (%s) at %s: %s: %v\npage text:\n%s", acct.Login, loc, what, err, body)
		}
	}
	// submit clicks a button and waits for the page it leads to.
	submit := func(sel string) {
		t.Helper()
		_, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
		must("submit "+sel, err)
	}
	must("open "+start, chromedp.Do(ctx, chromedp.Navigate(start)))
	for step := 0; ; step++ {
		if step == 12 {
			must("finish", context.DeadlineExceeded)
		}
		state, err := chromedp.Run(ctx, chromedp.Evaluate[string](pageStateJS))
		must("read page", err)
		if state != "other" {
			out.Pages = append(out.Pages, state)
		}
		switch state {
		case "idp-login":
			must("type login", chromedp.Do(ctx,
				chromedp.SendKeys(chromedp.CSS("input[name=login]"), acct.Login),
				chromedp.SendKeys(chromedp.CSS("input[name=password]"), acct.Password)))
			submit("button[type=submit]")
		case "idp-consent":
			submit("button[type=submit]")
		case "enrol":
			secret, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#totp-secret")))
			must("read secret", err)
			out.TOTP, out.Enrolled = NewTOTP(strings.TrimSpace(secret)), true
			must("type code", chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#code"), out.TOTP.Code(t))))
			submit("#submit")
		case "recovery":
			codes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
				`Array.from(document.querySelectorAll('#recovery-codes li')).map(e => e.textContent.trim())`))
			must("read recovery codes", err)
			out.RecoveryCodes = codes
			for _, c := range codes {
				RecordSecret(KindRecoveryCode, c)
			}
			submit("#continue")
		case "mfa":
			if out.TOTP == nil {
				must("mfa page", errNoAuthenticator)
			}
			must("type code", chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#code"), out.TOTP.Code(t))))
			submit("#submit")
		default:
			loc, err := chromedp.Run(ctx, chromedp.Location())
			must("location", err)
			out.URL = loc
			recordBrowserCookies(ctx)
			return out
		}
	}
}

type harnessError string

func (e harnessError) Error() string { return string(e) }

const errNoAuthenticator = harnessError("TOTP code requested but the test has no authenticator for this user")

// BrowserCookie returns the value of the named cookie the browser holds for
// rawURL, or "".
func BrowserCookie(t TB, ctx context.Context, rawURL, name string) string {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{rawURL}})
	if err != nil {
		t.Fatalf("browser cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			recordCookie(c.Name, c.Value)
			return c.Value
		}
	}
	return ""
}

// recordBrowserCookies records every Portcullis cookie the browser holds.
func recordBrowserCookies(ctx context.Context) {
	res, err := chromedp.CallBrowser(ctx, storage.GetCookies, storage.GetCookiesParams{})
	if err != nil {
		return
	}
	for _, c := range res.Cookies {
		recordCookie(c.Name, c.Value)
	}
}
