package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// TestLocksOverAdminSocket: the lock endpoints answer on the admin socket
// (the gateway's admin API behind it, acting as local-admin), with and
// without a bastion (whose SSH endpoints share the socket's handler).
func TestLocksOverAdminSocket(t *testing.T) {
	for _, withBastion := range []bool{false, true} {
		name := "gateway only"
		if withBastion {
			name = "with bastion"
		}
		t.Run(name, func(t *testing.T) {
			f := testfixture.New(t)
			if withBastion {
				f.WithBastion(t)
			}
			r := runInstance(t, f)
			ctx := context.Background()
			const user = "https://idp.example#alice"

			list := func() []adminclient.Lock {
				t.Helper()
				body, err := r.admin.Call(ctx, adminclient.Locks())
				if err != nil {
					t.Fatalf("locks: %v", err)
				}
				var resp adminclient.LocksResponse
				if err := json.Unmarshal(body, &resp); err != nil {
					t.Fatalf("locks answer %s: %v", body, err)
				}
				return resp.Locks
			}
			status := func(err error) int {
				var apiErr *adminclient.APIError
				if errors.As(err, &apiErr) {
					return apiErr.Status
				}
				t.Fatalf("want an API error, got %v", err)
				return 0
			}

			if got := list(); len(got) != 0 {
				t.Fatalf("fresh instance lists locks %+v", got)
			}
			if _, err := r.in.Risk.Lock(ctx, user, "test", "test"); err != nil {
				t.Fatal(err)
			}
			got := list()
			if len(got) != 1 || got[0].Subject != "user:"+user || got[0].Ref == "" || !got[0].ExpiresAt.IsZero() {
				t.Fatalf("locks %+v, want the user lock without expiry", got)
			}
			if _, err := r.admin.Call(ctx, adminclient.Unlock(user, "")); status(err) != http.StatusBadRequest {
				t.Errorf("unlock without reason: %v", err)
			}
			if _, err := r.admin.Call(ctx, adminclient.Unlock(user, "verified")); err != nil {
				t.Fatalf("unlock: %v", err)
			}
			if got := list(); len(got) != 0 {
				t.Fatalf("after unlock: %+v", got)
			}
			if _, err := r.admin.Call(ctx, adminclient.Unlock(user, "again")); status(err) != http.StatusNotFound {
				t.Errorf("unlock of an unlocked user: %v", err)
			}
			if _, err := r.admin.Call(ctx, adminclient.LockUser("https://idp.example#nobody", "x")); status(err) != http.StatusNotFound {
				t.Errorf("lock of an unknown user: %v", err)
			}
		})
	}
}
