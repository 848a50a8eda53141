package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/portcullis/portcullis"

// pkgInfo is the part of `go list -json` output the rules need.
type pkgInfo struct {
	ImportPath string
	Imports    []string // non-test imports only: tests may use anything
}

// checkDeps enforces ARCHITECTURE.md's dependency direction:
// cmd → {gateway, bastion} → authz/...; gateway and bastion never import
// each other; authz (root) is standard library only; authz/* never imports
// an enforcement point, cmd or e2e; only authz/store imports go-redis;
// nothing imports e2e or cmd.
func checkDeps(pkgs []pkgInfo) []string {
	var bad []string
	rel := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, p := range pkgs {
		from := rel(p.ImportPath)
		for _, imp := range p.Imports {
			internal := imp == module || strings.HasPrefix(imp, module+"/")
			to := rel(imp)
			std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
			switch {
			case from == "authz" && !std:
				bad = append(bad, from+" must import the standard library only, imports "+imp)
			case under(from, "authz") && internal && !under(to, "authz"):
				bad = append(bad, from+" (decision point) must not import "+to)
			case under(from, "gateway") && internal && (under(to, "bastion") || under(to, "cmd") || under(to, "e2e")):
				bad = append(bad, from+" must not import "+to)
			case under(from, "bastion") && internal && (under(to, "gateway") || under(to, "cmd") || under(to, "e2e")):
				bad = append(bad, from+" must not import "+to)
			case !under(from, "cmd") && !under(from, "e2e") && internal && under(to, "cmd"):
				bad = append(bad, from+" must not import "+to)
			case !under(from, "e2e") && internal && under(to, "e2e"):
				bad = append(bad, from+" must not import "+to)
			}
			if strings.HasPrefix(imp, "github.com/redis/go-redis") && from != "authz/store" {
				bad = append(bad, from+" imports go-redis; only authz/store may")
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func TestDependencyDirection(t *testing.T) {
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkgInfo
	for {
		var p pkgInfo
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages; the check would prove nothing", len(pkgs))
	}
	for _, b := range checkDeps(pkgs) {
		t.Error(b)
	}
}

// TestDependencyRules proves the checker catches each kind of violation.
func TestDependencyRules(t *testing.T) {
	m := func(s string) string { return module + "/" + s }
	cases := []struct {
		name string
		pkg  pkgInfo
		bad  bool
	}{
		{"authz root imports a module", pkgInfo{m("authz"), []string{"golang.org/x/crypto/ssh"}}, true},
		{"authz root imports stdlib", pkgInfo{m("authz"), []string{"net/netip", "time"}}, false},
		{"authz sub imports gateway", pkgInfo{m("authz/session"), []string{m("gateway")}}, true},
		{"authz sub imports authz", pkgInfo{m("authz/session"), []string{m("authz/store"), m("authz")}}, false},
		{"gateway imports bastion", pkgInfo{m("gateway"), []string{m("bastion")}}, true},
		{"bastion imports gateway", pkgInfo{m("bastion"), []string{m("gateway")}}, true},
		{"gateway imports authz", pkgInfo{m("gateway"), []string{m("authz/session")}}, false},
		{"gateway imports cmd", pkgInfo{m("gateway"), []string{m("cmd/portcullis/internal/config")}}, true},
		{"cmd imports gateway", pkgInfo{m("cmd/portcullis"), []string{m("gateway"), m("bastion")}}, false},
		{"redis outside store", pkgInfo{m("authz/session"), []string{"github.com/redis/go-redis/v9"}}, true},
		{"redis in store", pkgInfo{m("authz/store"), []string{"github.com/redis/go-redis/v9"}}, false},
		{"anything imports e2e", pkgInfo{m("cmd/portcullis"), []string{m("e2e")}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkDeps([]pkgInfo{tc.pkg})
			if (len(got) > 0) != tc.bad {
				t.Fatalf("checkDeps = %v, want violation: %v", got, tc.bad)
			}
		})
	}
}
