package gateway

import (
	"net/http"
	"testing"
	"time"
)

// TestJITTemporaryAdminCannotMintStandingGrants: an admin whose admin
// role is held only through a just-in-time grant must not be able to add
// grants through the admin API: a self-added local grant without expiry
// would keep the admin role (or any other) after the temporary grant
// expires or is revoked.
func TestJITTemporaryAdminCannotMintStandingGrants(t *testing.T) {
	e := newJITEnv(t, false)
	frank := e.token(jitFrank, "engineer")
	dave := e.token(jitDave, "sre-lead")
	id := e.submit(frank, "ops-admin", "1h")
	if st, reason, _ := e.decide(dave, id, "approve"); st != http.StatusOK {
		t.Fatalf("approve: %d %s", st, reason)
	}
	// Frank is admin for an hour; he tries to make it permanent.
	st, m, raw := e.call(http.MethodPost, "/api/admin/grants", frank,
		`{"user_id":"`+jitFrank+`","role":"ops-admin","expires":"","reason":"keep"}`)
	if st == http.StatusCreated {
		t.Errorf("temporary admin added a standing grant: %s", raw)
	}
	// Nor for a friend.
	st, _, raw = e.call(http.MethodPost, "/api/admin/grants", frank,
		`{"user_id":"`+jitGrace+`","role":"ops-admin","expires":"","reason":"keep"}`)
	if st == http.StatusCreated {
		t.Errorf("temporary admin added a standing grant for another user: %s", raw)
	}
	_ = m
	e.clock.Advance(2 * time.Hour)
	if e.g.isAdmin(e.policy.Load(), jitFrank, []string{"engineer"}, e.clock.Now()) {
		t.Error("admin rights outlived the temporary grant")
	}
}

// TestJITStandingAdminCannotSelfGrant: even a standing admin may not add
// a grant to themselves (that would bypass the committee of a requestable
// role).
func TestJITStandingAdminCannotSelfGrant(t *testing.T) {
	e := newJITEnv(t, false)
	b := e.browser()
	secret, _ := b.loginNew("alice", "/")
	adminTok := e.adminToken(b, secret)
	rec, err := e.sessions.Lookup(t.Context(), adminTok)
	if err != nil {
		t.Fatal(err)
	}
	st, _, raw := e.call(http.MethodPost, "/api/admin/grants", adminTok,
		`{"user_id":"`+rec.UserID+`","role":"db-admin","expires":"","reason":"me"}`)
	if st == http.StatusCreated {
		t.Errorf("admin granted themselves a requestable role: %s", raw)
	}
}
