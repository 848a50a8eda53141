package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/keys"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testEnv is the environment the golden files see: every secret the
// testdata refers to with *_env.
func testEnv(t testing.TB) map[string]string {
	t.Helper()
	_, pemBytes, err := keys.GenerateECPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := hex.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	return map[string]string{
		"OIDC_SECRET":       "client-secret",
		"MFA_KEY":           key,
		"COOKIE_KEY":        key,
		"ASSERTION_KEY":     string(pemBytes),
		"SHORT_KEY":         "too-short",
		"NOT_A_PEM":         "hello",
		"EMPTY_VARIABLE":    "",
		"SSH_USER_CA":       string(sshKey(t, "")),
		"SSH_ENCRYPTED_KEY": encryptedSSHKey(t),
		"WEBHOOK_SECRET":    "webhook-hmac-key",
		"SLACK_URL":         "https://hooks.slack.example/services/T0/B0/do-not-echo\n",
	}
}

// encryptedSSHKey is made once: its bcrypt key derivation is slow.
var encryptedSSHKey = func() func(testing.TB) string {
	var once sync.Once
	var key string
	return func(t testing.TB) string {
		once.Do(func() { key = string(sshKey(t, "passphrase")) })
		return key
	}
}()

// sshKey returns a new Ed25519 private key in OpenSSH format.
func sshKey(t testing.TB, passphrase string) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var blk *pem.Block
	if passphrase == "" {
		blk, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(blk)
}

func testOptions(t testing.TB) Options {
	env := testEnv(t)
	return Options{
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Hostname:  func() (string, error) { return "test-host", nil },
		Now:       func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
}

// render is what `config check` prints: warnings, then errors or
// "config OK". Absolute paths into testdata (in messages about files)
// are shown relative, so the golden files do not depend on the checkout's
// location.
func render(warns []Diagnostic, err error) string {
	abs, _ := filepath.Abs("testdata")
	var b strings.Builder
	for _, w := range warns {
		b.WriteString(w.String() + "\n")
	}
	if err != nil {
		b.WriteString(err.Error() + "\n")
	} else {
		b.WriteString("config OK\n")
	}
	return strings.ReplaceAll(b.String(), abs+string(filepath.Separator), "testdata/")
}

// TestGolden loads every testdata/*.yaml and compares what config check
// would print with testdata/*.golden. Regenerate with
// `go test ./cmd/portcullis/internal/config -run TestGolden -update` and
// review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			_, warns, err := Load(f, testOptions(t))
			got := render(warns, err)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run with -update to create it)", rerr)
			}
			if got != string(want) {
				t.Errorf("output differs from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
			checkDiagnostics(t, err, name)
		})
	}
}

// checkDiagnostics asserts properties every error report must have (files
// named valid*.yaml must have none): a line for everything but whole-file
// problems, the file name, and no secret value echoed.
func checkDiagnostics(t *testing.T, err error, name string) {
	t.Helper()
	valid := name == "valid" || strings.HasPrefix(name, "valid_")
	if err == nil {
		if !valid {
			t.Errorf("%s: expected errors, got none", name)
		}
		return
	}
	if valid {
		t.Fatalf("%s.yaml: %v", name, err)
	}
	ce, ok := err.(*Error)
	if !ok {
		t.Fatalf("error is %T, want *Error", err)
	}
	for _, d := range ce.Diags {
		if !strings.HasSuffix(d.File, name+".yaml") {
			t.Errorf("diagnostic without file: %v", d)
		}
		wholeFile := strings.Contains(d.Msg, "empty configuration") || strings.Contains(d.Msg, "more anchors")
		if d.Line <= 0 && !wholeFile {
			t.Errorf("diagnostic without line: %v", d)
		}
		if strings.Contains(d.String(), "do-not-echo") {
			t.Errorf("diagnostic echoes a secret: %v", d)
		}
	}
}
