package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// hopCode mints a hop for returnTo and returns the URL's host and code.
func (e *coreEnv) hopCode(returnTo, cookie string) (host, code string) {
	e.t.Helper()
	u, err := e.g.hopURL(context.Background(), returnTo, cookie)
	if err != nil {
		e.t.Fatalf("hopURL: %v", err)
	}
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Path != hopPath {
		e.t.Fatalf("hopURL = %q", u)
	}
	return p.Host, p.Query().Get("code")
}

func TestHopURLLocalTargets(t *testing.T) {
	e, _ := newCoreEnv(t)
	for in, want := range map[string]string{
		"/":                           "/",
		"/mfa?x=1":                    "/mfa?x=1",
		"//evil.com":                  "/",
		"https://evil.com/":           "/",
		"https://access.example.com/": "/",
	} {
		got, err := e.g.hopURL(context.Background(), in, "cookie")
		if err != nil || got != want {
			t.Errorf("hopURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestHopSetsRouteHostCookie(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	host, code := e.hopCode("https://grafana.example.com/d/1?orgId=2#panel", cookie)
	if host != coreGrafana || len(code) != 43 {
		t.Fatalf("host %q code %q", host, code)
	}
	// The store holds neither the code nor the cookie in the clear.
	key, _ := hopKeys(code)
	raw, err := e.st.GetEphemeral(context.Background(), key)
	if err != nil {
		t.Fatalf("hop record: %v", err)
	}
	if strings.Contains(string(raw), cookie) || strings.Contains(key, code) {
		t.Fatal("hop record exposes the cookie or the code")
	}

	w := e.get(coreGrafana, hopPath+"?code="+code, "", nil)
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/d/1?orgId=2" {
		t.Fatalf("hop: %d Location %q", w.Code, w.Header().Get("Location"))
	}
	if w.Header().Get("Referrer-Policy") != "no-referrer" {
		t.Fatal("hop response may leak the code through Referer")
	}
	resp := http.Response{Header: w.Header()}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies = %v", cs)
	}
	c := cs[0]
	if c.Name != e.sess.CookieName() || c.Value != cookie || !c.Secure || !c.HttpOnly || c.Path != "/" ||
		c.Domain != "" || c.SameSite != http.SameSiteLaxMode || c.MaxAge <= 0 {
		t.Fatalf("cookie = %+v", c)
	}
	// The new cookie works on the route host.
	if w := e.get(coreGrafana, "/d/1", c.Value, nil); w.Code != http.StatusOK {
		t.Fatalf("with hop cookie: %d", w.Code)
	}
	if evs := e.audit.Find(audit.TypeSessionStart, ""); len(evs) != 1 || evs[0].Attrs["host"] != coreGrafana {
		t.Fatalf("events = %+v", e.audit.Events())
	}
	// Single use.
	if w := e.get(coreGrafana, hopPath+"?code="+code, "", nil); w.Code != http.StatusForbidden {
		t.Fatalf("replayed code: %d, want 403", w.Code)
	}
}

func TestHopRefusals(t *testing.T) {
	e, _ := newCoreEnv(t)
	cookie := e.login(session.Record{})
	tests := []struct {
		name   string
		setup  func() (host, target string)
		status int
		reason string
	}{
		{"garbage code", func() (string, string) { return coreGrafana, hopPath + "?code=garbage" }, http.StatusForbidden, reasonInvalidHop},
		{"missing code", func() (string, string) { return coreGrafana, hopPath }, http.StatusForbidden, reasonInvalidHop},
		{"unknown well-formed code", func() (string, string) {
			return coreGrafana, hopPath + "?code=" + strings.Repeat("A", 43)
		}, http.StatusForbidden, reasonInvalidHop},
		{"code for another host", func() (string, string) {
			_, code := e.hopCode("https://grafana.example.com/", cookie)
			return coreOffice, hopPath + "?code=" + code
		}, http.StatusForbidden, reasonInvalidHop},
		{"expired code", func() (string, string) {
			_, code := e.hopCode("https://grafana.example.com/", cookie)
			e.clock.Advance(hopTTL + time.Second)
			return coreGrafana, hopPath + "?code=" + code
		}, http.StatusForbidden, reasonInvalidHop},
		{"revoked session", func() (string, string) {
			c := e.login(session.Record{})
			_, code := e.hopCode("https://grafana.example.com/", c)
			rec, _ := e.sess.Lookup(context.Background(), c)
			if err := e.sess.Revoke(context.Background(), rec.ID, "test"); err != nil {
				t.Fatal(err)
			}
			return coreGrafana, hopPath + "?code=" + code
		}, http.StatusForbidden, reasonInvalidSession},
		{"store down", func() (string, string) {
			_, code := e.hopCode("https://grafana.example.com/", cookie)
			e.st.down.Store(true)
			return coreGrafana, hopPath + "?code=" + code
		}, http.StatusServiceUnavailable, reasonStoreDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer e.st.down.Store(false)
			e.audit.Reset()
			host, target := tc.setup()
			w := e.get(host, target, "", nil)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d", w.Code, tc.status)
			}
			if len(w.Header().Values("Set-Cookie")) != 0 {
				t.Fatal("a refused hop set a cookie")
			}
			if evs := e.audit.Find(audit.TypeRequestRejected, tc.reason); len(evs) != 1 {
				t.Fatalf("want one %s event, got %+v", tc.reason, e.audit.Events())
			}
		})
	}
	t.Run("code used on the wrong host is spent", func(t *testing.T) {
		_, code := e.hopCode("https://grafana.example.com/", cookie)
		e.get(coreOffice, hopPath+"?code="+code, "", nil)
		if w := e.get(coreGrafana, hopPath+"?code="+code, "", nil); w.Code != http.StatusForbidden {
			t.Fatalf("status = %d, want 403", w.Code)
		}
	})
	t.Run("POST refused", func(t *testing.T) {
		_, code := e.hopCode("https://grafana.example.com/", cookie)
		w := e.serve(e.request(http.MethodPost, coreGrafana, hopPath+"?code="+code, "", nil))
		if w.Code != http.StatusMethodNotAllowed {
			t.Fatalf("status = %d", w.Code)
		}
	})
}

func TestTakeHopTampered(t *testing.T) {
	e, _ := newCoreEnv(t)
	_, code := e.hopCode("https://grafana.example.com/", "cookie")
	key, _ := hopKeys(code)
	if err := e.st.PutEphemeral(context.Background(), key, []byte("not a sealed record"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.g.takeHop(context.Background(), code); err == nil || !strings.Contains(err.Error(), store.ErrNotFound.Error()) {
		t.Fatalf("tampered record: %v", err)
	}
}
