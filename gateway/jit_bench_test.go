package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/access"
)

// BenchmarkProxyJIT is the authenticated hot path with just-in-time
// access off (no manager), on with grants for other users only (the
// common case: the user's roles are the session's, no allocation), and
// on with a grant that adds a role to the user (one sorted union per
// request). The first two must not differ in allocations.
func BenchmarkProxyJIT(b *testing.B) {
	for _, bc := range []struct {
		name   string
		jit    bool
		grants []string // users who get a grant
	}{
		{"off", false, nil},
		{"on-no-grant", true, []string{"https://idp.example.com#bob", "https://idp.example.com#carol"}},
		{"on-granted", true, []string{"https://idp.example.com#alice"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e, r := benchEnv(b)
			if bc.jit {
				m, err := access.New(access.Config{}, access.Deps{Store: e.st, Feed: e.st, Audit: e.audit, Now: e.clock.Now})
				if err != nil {
					b.Fatal(err)
				}
				for _, u := range bc.grants {
					if _, err := m.AddGrant(context.Background(), "local-admin", u, "viewer", e.clock.Now().Add(time.Hour), "bench"); err != nil {
						b.Fatal(err)
					}
				}
				e.g.deps.Access = m
			}
			h := e.g.Handler()
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}
