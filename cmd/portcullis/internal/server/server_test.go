package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

func load(t *testing.T, f *testfixture.Fixture) *config.Config {
	t.Helper()
	cfg, _, err := config.Load(f.ConfigPath, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestOpenServesAndCloses builds a whole instance from a real file (OIDC
// discovery against the development issuer, embedded store, audit file)
// and asks its gateway for /healthz.
func TestOpenServesAndCloses(t *testing.T) {
	f := testfixture.New(t)
	cfg := load(t, f)
	in, err := Open(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "https://"+testfixture.AccessHost+"/healthz", nil)
	rec := httptest.NewRecorder()
	in.Gateway.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("healthz: %d %s", rec.Code, rec.Body)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	// Close released the store's file lock: a second instance opens.
	in2, err := Open(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	in2.Close()
}

func TestOpenFailsCleanly(t *testing.T) {
	f := testfixture.New(t)
	cfg := load(t, f)
	cfg.Identity.Issuer = "http://127.0.0.1:1" // nothing listens: discovery fails
	if _, err := Open(context.Background(), cfg, Options{}); err == nil {
		t.Fatal("Open succeeded without an issuer")
	}
	// The failed Open closed what it had opened (store lock released).
	cfg = load(t, f)
	in, err := Open(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatalf("Open after a failed Open: %v", err)
	}
	in.Close()
}

func TestReload(t *testing.T) {
	f := testfixture.New(t)
	oldCfg := load(t, f)
	f.WriteConfig(t, "    - {name: viewer, groups: [viewers], allow: [{apps: [app]}]}\n")
	newCfg := load(t, f)
	changed := *newCfg
	changed.Gateway.HSTSMaxAge += time.Hour

	tests := []struct {
		name       string
		load       func() (*config.Config, error)
		wantPolicy *authz.Policy
		decision   string
		reason     string
		restart    bool
	}{
		{"valid file swaps the policy", func() (*config.Config, error) { return newCfg, nil }, newCfg.Compiled, audit.Allow, "policy-reloaded", false},
		{"invalid file keeps the policy", func() (*config.Config, error) { return nil, errors.New("bad file") }, oldCfg.Compiled, audit.Deny, "invalid-config", false},
		{"other sections need a restart", func() (*config.Config, error) { return &changed, nil }, newCfg.Compiled, audit.Allow, "policy-reloaded", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := &audit.Memory{}
			in := &Instance{Config: oldCfg, Policy: new(atomic.Pointer[authz.Policy]), emit: mem, log: slog.New(slog.DiscardHandler)}
			in.Policy.Store(oldCfg.Compiled)
			err := in.Reload(context.Background(), tc.load)
			if (err != nil) != (tc.decision == audit.Deny) {
				t.Fatalf("err %v", err)
			}
			if in.Policy.Load() != tc.wantPolicy {
				t.Error("wrong policy after reload")
			}
			evs := mem.Find(audit.TypeConfigReload, tc.reason)
			if len(evs) != 1 || evs[0].Decision != tc.decision {
				t.Fatalf("audit events %+v", mem.Events())
			}
			if _, ok := evs[0].Attrs["restart_needed"]; ok != tc.restart {
				t.Errorf("restart_needed %v, want %v (%v)", ok, tc.restart, evs[0].Attrs)
			}
		})
	}
}

func TestRestartSections(t *testing.T) {
	f := testfixture.New(t)
	a := load(t, f)
	b := load(t, f) // same file, fresh secrets objects: nothing changed
	if got := restartSections(a, b); len(got) != 0 {
		t.Fatalf("unchanged file reported %v", got)
	}
	b.Gateway.AccessHost = "other.example"
	b.Session.IdleTimeout++
	b.Store.Path = "/elsewhere"
	got := restartSections(a, b)
	if !slices.Equal(got, []string{"gateway", "session", "store"}) {
		t.Fatalf("got %v", got)
	}
}
