package harness

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// IdPClient is an OAuth client registered at the test IdP.
type IdPClient struct {
	ID           string   `json:"client_id"`
	Secret       string   `json:"client_secret"`
	RedirectURIs []string `json:"redirect_uris"`
}

// IdPUser is an account at the test IdP; its subject is "sub-" + login.
type IdPUser struct {
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
}

// IdP is a running oidc-provider.
type IdP struct {
	Issuer string
	proc   *proc
}

// StartIdP runs e2e/idp/server.mjs (npm oidc-provider) under Node on a free
// port of 127.0.0.1. Its development login form accepts any password for a
// known login; consent is one click.
func StartIdP(t TB, clients []IdPClient, users map[string]IdPUser) *IdP {
	t.Helper()
	dir := filepath.Join(RepoRoot(), "e2e", "idp")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		t.Fatalf("oidc-provider is not installed: run e2e/setup.sh (make test does)")
	}
	cj, _ := json.Marshal(clients)
	uj, _ := json.Marshal(users)
	cmd := exec.Command("node", "server.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "IDP_PORT=0", "IDP_CLIENTS="+string(cj), "IDP_USERS="+string(uj))
	p, line := startProc(t, "oidc-provider", cmd, 30*time.Second, func(l string) bool { return strings.HasPrefix(l, "READY ") })
	return &IdP{Issuer: strings.TrimPrefix(line, "READY "), proc: p}
}

// Output is what the IdP logged.
func (i *IdP) Output() string { return i.proc.Output() }
