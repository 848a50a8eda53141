package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/portcullis/portcullis/e2e/harness"
)

// TestMain runs the suites, then the secrets scan: every TOTP secret and
// code, recovery code, cookie value, hop code, client secret and password
// the tests handled is searched for in everything the portcullis processes
// wrote (stdout/stderr, audit files, state file). A hit fails the run.
func TestMain(m *testing.M) {
	code := m.Run()
	leaks, artefacts, secrets := harness.ScanSecrets()
	if artefacts > 0 {
		fmt.Printf("secrets scan: %d secrets searched in %d artefacts: %d found\n", secrets, artefacts, len(leaks))
	}
	for _, l := range leaks {
		fmt.Printf("SECRET LEAK: %s\n", l)
	}
	if len(leaks) > 0 {
		code = 1
	}
	if artefacts > 0 && secrets == 0 {
		fmt.Println("secrets scan: servers ran but no secret was recorded: the scan would prove nothing")
		code = 1
	}
	harness.RemoveBuild()
	os.Exit(code)
}
