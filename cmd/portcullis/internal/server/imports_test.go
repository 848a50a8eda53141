package server

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestServePathHasNoDevIdP: `serve` is built from internal/config,
// internal/keys and this package; none of them may import the development
// IdP, the demo or its built-in SSH target (which runs commands for any
// certificate from the upstream CA), so no configuration can make serve
// run them.
func TestServePathHasNoDevIdP(t *testing.T) {
	for _, dir := range []string{".", "../config", "../keys"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range parsed.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if strings.HasSuffix(p, "/devidp") || strings.HasSuffix(p, "/internal/demo") || strings.HasSuffix(p, "/testfixture") || strings.HasSuffix(p, "/sshtarget") {
					t.Errorf("%s imports %s", f, p)
				}
			}
		}
	}
}
