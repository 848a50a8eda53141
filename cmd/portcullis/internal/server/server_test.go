package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/store"
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

// TestReloadRisk: a reload swaps the risk engine's settings; settings the
// engine refuses keep the ones in force, and the audit event says which.
func TestReloadRisk(t *testing.T) {
	f := testfixture.New(t)
	base := load(t, f)
	tighter := *base
	tighter.Risk.User = map[risk.Signal]risk.Threshold{risk.SignalTOTPFailure: {Count: 2, Window: time.Minute}}
	refused := tighter
	refused.Risk.SourceBlock = -time.Second // Load would refuse it; the engine must too

	tests := []struct {
		name     string
		cfg      *config.Config
		wantTOTP risk.Threshold
		attr     string // Attrs["risk"] of the reload event; "" absent
	}{
		{"new settings apply", &tighter, risk.Threshold{Count: 2, Window: time.Minute}, "reloaded"},
		{"unchanged settings are not reported", base, risk.Threshold{Count: 5, Window: 15 * time.Minute}, ""},
		{"refused settings keep the old ones", &refused, risk.Threshold{Count: 5, Window: 15 * time.Minute}, "invalid-risk-config-kept-previous"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), store.EmbeddedOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			mem := &audit.Memory{}
			eng, err := risk.New(base.Risk, st, risk.Options{Audit: mem})
			if err != nil {
				t.Fatal(err)
			}
			in := &Instance{Config: base, Policy: new(atomic.Pointer[authz.Policy]), Risk: eng, emit: mem, log: slog.New(slog.DiscardHandler)}
			in.Policy.Store(base.Compiled)
			if err := in.Reload(context.Background(), func() (*config.Config, error) { return tc.cfg, nil }); err != nil {
				t.Fatal(err)
			}
			if got := eng.Config().User[risk.SignalTOTPFailure]; got != tc.wantTOTP {
				t.Errorf("totp threshold %v, want %v", got, tc.wantTOTP)
			}
			evs := mem.Find(audit.TypeConfigReload, "policy-reloaded")
			if len(evs) != 1 {
				t.Fatalf("audit events %+v", mem.Events())
			}
			if got := evs[0].Attrs["risk"]; got != tc.attr {
				t.Errorf("risk attr %q, want %q", got, tc.attr)
			}
			if _, ok := evs[0].Attrs["restart_needed"]; ok {
				t.Errorf("a risk change must not ask for a restart: %v", evs[0].Attrs)
			}
		})
	}
}
