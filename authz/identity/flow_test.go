package identity

import (
	"bytes"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

func TestBeginAuthURL(t *testing.T) {
	e := newDevEnv(t, nil)
	st, authURL, err := e.p.Begin("/back")
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	want := map[string]string{
		"client_id":             clientID,
		"redirect_uri":          redirectURL,
		"response_type":         "code",
		"scope":                 "openid email profile groups",
		"state":                 st.State,
		"nonce":                 st.Nonce,
		"code_challenge":        s256(st.Verifier),
		"code_challenge_method": "S256",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	if strings.Contains(authURL, st.Verifier) {
		t.Error("the PKCE verifier leaks into the authorization URL")
	}
	for name, v := range map[string]string{"state": st.State, "nonce": st.Nonce, "verifier": st.Verifier} {
		if len(v) != 43 { // 32 bytes base64url
			t.Errorf("%s has %d characters, want 43 (256 bits)", name, len(v))
		}
	}
	if st.ReturnTo != "/back" || !st.CreatedAt.Equal(e.rpClock.Now()) {
		t.Errorf("login state %+v", st)
	}
	st2, _, _ := e.p.Begin("/back")
	if st2.State == st.State || st2.Nonce == st.Nonce || st2.Verifier == st.Verifier {
		t.Error("two logins share a secret")
	}
}

func TestBeginRandomFailure(t *testing.T) {
	e := newDevEnv(t, nil)
	e.p.rand = iotest.ErrReader(errors.New("entropy exhausted"))
	if _, u, err := e.p.Begin("/"); err == nil || u != "" {
		t.Fatalf("Begin with a failing random source: url %q err %v, want an error", u, err)
	}
	e.p.rand = bytes.NewReader(make([]byte, 40)) // runs dry mid-way
	if _, _, err := e.p.Begin("/"); err == nil {
		t.Fatal("Begin with a short random source succeeded")
	}
}

func TestFinishWithDevIdP(t *testing.T) {
	tests := []struct {
		name string
		// act runs the callback; it may alter the state, the query and the
		// clocks before calling Finish.
		act     func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error)
		wantErr error
	}{
		{name: "happy path", act: finish},
		{name: "happy path via callback query", act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			return e.p.FinishCallback(t.Context(), st, q)
		}},
		{name: "state mismatch", wantErr: ErrStateMismatch, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			return e.p.Finish(t.Context(), st, q.Get("state")+"x", q.Get("code"))
		}},
		{name: "empty state", wantErr: ErrStateMismatch, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			return e.p.Finish(t.Context(), st, "", q.Get("code"))
		}},
		{name: "no stored login state", wantErr: ErrStateMismatch, act: func(t *testing.T, e *devEnv, _ LoginState, q url.Values) (Identity, error) {
			return e.p.Finish(t.Context(), LoginState{}, "", q.Get("code"))
		}},
		{name: "callback from another login", wantErr: ErrStateMismatch, act: func(t *testing.T, e *devEnv, _ LoginState, q url.Values) (Identity, error) {
			other, _, _ := e.p.Begin("/")
			return e.p.Finish(t.Context(), other, q.Get("state"), q.Get("code"))
		}},
		{name: "nonce mismatch", wantErr: ErrNonceMismatch, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			st.Nonce = strings.Repeat("n", 43)
			return finish(t, e, st, q)
		}},
		{name: "wrong PKCE verifier", wantErr: ErrExchange, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			st.Verifier = strings.Repeat("v", 43)
			return finish(t, e, st, q)
		}},
		{name: "replayed code", wantErr: ErrExchange, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			if _, err := finish(t, e, st, q); err != nil {
				t.Fatalf("first use: %v", err)
			}
			return finish(t, e, st, q)
		}},
		{name: "forged code", wantErr: ErrExchange, act: func(t *testing.T, e *devEnv, st LoginState, _ url.Values) (Identity, error) {
			return e.p.Finish(t.Context(), st, st.State, "forged")
		}},
		{name: "missing code", wantErr: ErrExchange, act: func(t *testing.T, e *devEnv, st LoginState, _ url.Values) (Identity, error) {
			return e.p.Finish(t.Context(), st, st.State, "")
		}},
		{name: "oversized code", wantErr: ErrExchange, act: func(t *testing.T, e *devEnv, st LoginState, _ url.Values) (Identity, error) {
			return e.p.Finish(t.Context(), st, st.State, strings.Repeat("c", maxCodeLen+1))
		}},
		{name: "login state at max age", act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			// Begin ran exactly MaxLoginAge ago; the user took their time.
			st.CreatedAt = st.CreatedAt.Add(-MaxLoginAge)
			return finish(t, e, st, q)
		}},
		{name: "login state too old", wantErr: ErrLoginExpired, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			e.rpClock.Add(MaxLoginAge + time.Second)
			return finish(t, e, st, q)
		}},
		{name: "login state from the future", wantErr: ErrLoginExpired, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			st.CreatedAt = st.CreatedAt.Add(time.Hour)
			return finish(t, e, st, q)
		}},
		{name: "expired ID token", wantErr: ErrTokenInvalid, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			// devidp tokens live 5 min on the IdP's clock; the RP is 6 min on.
			e.rpClock.Add(6 * time.Minute)
			_, err := finish(t, e, st, q)
			if _, ok := errors.AsType[*oidc.TokenExpiredError](err); !ok {
				t.Errorf("cause is not a TokenExpiredError: %v", err)
			}
			return Identity{}, err
		}},
		{name: "idp error on callback", wantErr: ErrIdPError, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			q.Del("code")
			q.Set("error", "access_denied")
			q.Set("error_description", "<script>")
			_, err := e.p.FinishCallback(t.Context(), st, q)
			if ce, ok := errors.AsType[*CallbackError](err); !ok || ce.Code != "access_denied" {
				t.Errorf("callback error %v, want CallbackError access_denied", err)
			}
			return Identity{}, err
		}},
		{name: "idp error with bad state", wantErr: ErrStateMismatch, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			q.Set("error", "access_denied")
			q.Set("state", "forged")
			return e.p.FinishCallback(t.Context(), st, q)
		}},
		{name: "callback iss of another issuer", wantErr: ErrStateMismatch, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			q.Set("iss", "https://evil.example")
			return e.p.FinishCallback(t.Context(), st, q)
		}},
		{name: "repeated code in callback", wantErr: ErrStateMismatch, act: func(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
			q.Add("code", "second")
			return e.p.FinishCallback(t.Context(), st, q)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDevEnv(t, nil)
			st, q := e.login(t, "alice", "alice-pw")
			code := q.Get("code")
			id, err := tc.act(t, e, st, q)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if id.UserID != "" {
					t.Fatalf("identity %+v returned with an error", id)
				}
				if strings.Contains(err.Error(), code) || strings.Contains(err.Error(), st.Verifier) {
					t.Fatalf("error %q contains the authorization code", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Issuer != e.p.Issuer() || id.Subject == "" || id.UserID != id.Issuer+"#"+id.Subject {
				t.Fatalf("user ID %q from issuer %q subject %q", id.UserID, id.Issuer, id.Subject)
			}
			if id.Email != "alice@example.com" || id.Name != "Alice" || !slices.Equal(id.Groups, []string{"admins", "engineers"}) {
				t.Fatalf("identity %+v", id)
			}
			if !id.AuthTime.Equal(e.idpClock.Now().Truncate(time.Second)) {
				t.Fatalf("auth time %v, want %v", id.AuthTime, e.idpClock.Now())
			}
		})
	}
}

func finish(t *testing.T, e *devEnv, st LoginState, q url.Values) (Identity, error) {
	return e.p.Finish(t.Context(), st, q.Get("state"), q.Get("code"))
}

func TestUserIDIsStableAndNotTheEmail(t *testing.T) {
	e := newDevEnv(t, nil)
	ids := map[string]string{}
	for range 2 {
		for _, u := range []string{"alice", "bob"} {
			st, q := e.login(t, u, u+"-pw")
			id, err := finish(t, e, st, q)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(id.UserID, "@") {
				t.Fatalf("user ID %q looks like an email", id.UserID)
			}
			if prev, ok := ids[u]; ok && prev != id.UserID {
				t.Fatalf("user ID of %s changed: %q then %q", u, prev, id.UserID)
			}
			ids[u] = id.UserID
		}
	}
	if ids["alice"] == ids["bob"] {
		t.Fatal("two users share a user ID")
	}
}

func TestScopesLimitClaims(t *testing.T) {
	e := newDevEnv(t, func(c *Config) { c.Scopes = []string{"openid"} })
	st, q := e.login(t, "alice", "alice-pw")
	id, err := finish(t, e, st, q)
	if err != nil {
		t.Fatal(err)
	}
	if id.Email != "" || id.Name != "" || id.Groups != nil || id.UserID == "" {
		t.Fatalf("identity %+v, want only the subject for scope openid", id)
	}
}
