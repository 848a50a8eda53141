package devidp

import (
	"errors"
	"testing"
	"time"
)

// TestOutstandingCodesAreBounded: a flood of logins cannot grow the code
// table without limit, and expired codes make room again.
func TestOutstandingCodesAreBounded(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p, err := New(Config{
		Issuer:  "https://idp.localhost",
		Clients: []Client{{ID: "c", Secret: "s", RedirectURIs: []string{"https://app/cb"}}},
		Users:   []User{{Username: "u", Password: "p"}},
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	req := &authRequest{client: p.clients["c"], params: map[string]string{"redirect_uri": "https://app/cb"}}
	for i := range maxCodes {
		if _, err := p.issueCode(req, p.users[0]); err != nil {
			t.Fatalf("code %d: %v", i, err)
		}
	}
	if _, err := p.issueCode(req, p.users[0]); !errors.Is(err, errTooManyCodes) {
		t.Fatalf("code beyond the bound: err %v, want errTooManyCodes", err)
	}
	now = now.Add(codeTTL)
	code, err := p.issueCode(req, p.users[0])
	if err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if len(p.codes) != 1 || p.takeCode(code) == nil || p.takeCode(code) != nil {
		t.Fatalf("expired codes not swept or code not single use (table size %d)", len(p.codes))
	}
}
