package harness

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// The secrets scan. Tests record every secret they handle (TOTP secrets
// and codes, recovery codes, session cookie values, one-time hop codes,
// the OIDC client secret, passwords); every portcullis process archives
// what it wrote (its stdout/stderr, its audit files, its state file) when
// it stops. After the whole suite, ScanSecrets looks for every secret in
// every artefact: Portcullis must never log or audit one.
//
// Artefacts are copied into memory when their process stops because the
// files live in t.TempDir(), which is removed at the end of each test,
// long before the suite ends.

// Secret kinds. KindTOTPCode is matched as a whole number only (six
// digits occur by chance inside longer numbers such as timestamps).
const (
	KindTOTPSecret   = "totp-secret"
	KindTOTPCode     = "totp-code"
	KindRecoveryCode = "recovery-code"
	KindCookie       = "cookie"
	KindHopCode      = "hop-code"
	KindClientSecret = "client-secret"
	KindPassword     = "password"
	KindAdminToken   = "admin-token"
)

// minSecretLen: shorter values would match by accident.
const minSecretLen = 6

type secretEntry struct{ kind, value string }

// Leak is a secret found in an artefact.
type Leak struct {
	Kind, Artefact string
	Context        string // a few bytes around the hit, the secret masked
}

func (l Leak) String() string {
	return fmt.Sprintf("%s found in %s: …%s…", l.Kind, l.Artefact, l.Context)
}

var vault struct {
	mu        sync.Mutex
	secrets   map[secretEntry]bool
	artefacts map[string][]byte
}

// RecordSecret remembers a secret value for the final scan.
func RecordSecret(kind, value string) {
	if len(value) < minSecretLen {
		return
	}
	vault.mu.Lock()
	defer vault.mu.Unlock()
	if vault.secrets == nil {
		vault.secrets = map[secretEntry]bool{}
	}
	vault.secrets[secretEntry{kind, value}] = true
}

// Archive keeps a copy of an artefact (a log, an audit file) for the scan.
// A later archive under the same name replaces the earlier one.
func Archive(name string, data []byte) {
	vault.mu.Lock()
	defer vault.mu.Unlock()
	if vault.artefacts == nil {
		vault.artefacts = map[string][]byte{}
	}
	vault.artefacts[name] = bytes.Clone(data)
}

// ArchiveDir archives every regular file under dir (recursively), named
// prefix/relative-path. Unreadable entries are reported as artefacts of
// their own so a scan never silently skips them.
func ArchiveDir(prefix, dir string) {
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, path)
		name := prefix + "/" + rel
		if err != nil {
			Archive(name, []byte("unreadable: "+err.Error()))
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			Archive(name, []byte("unreadable: "+err.Error()))
			return nil
		}
		Archive(name, data)
		return nil
	})
}

// ScanSecrets searches every archived artefact for every recorded secret.
func ScanSecrets() (leaks []Leak, artefacts, secrets int) {
	vault.mu.Lock()
	defer vault.mu.Unlock()
	names := make([]string, 0, len(vault.artefacts))
	for n := range vault.artefacts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data := vault.artefacts[n]
		for s := range vault.secrets {
			if i := findSecret(data, s); i >= 0 {
				leaks = append(leaks, Leak{Kind: s.kind, Artefact: n, Context: around(data, i, len(s.value))})
			}
		}
	}
	sort.Slice(leaks, func(i, j int) bool {
		if leaks[i].Artefact != leaks[j].Artefact {
			return leaks[i].Artefact < leaks[j].Artefact
		}
		return leaks[i].Kind < leaks[j].Kind
	})
	return leaks, len(vault.artefacts), len(vault.secrets)
}

// findSecret returns the offset of s in data, or -1. TOTP codes count only
// when no letter or digit touches them on either side, and they are not
// the fraction or integer part of a decimal number (asciicast timestamps
// such as 0.116055 carry six digits after the point: with hundreds of
// codes recorded, some match one by chance).
func findSecret(data []byte, s secretEntry) int {
	v := []byte(s.value)
	if s.kind != KindTOTPCode {
		return bytes.Index(data, v)
	}
	for off := 0; ; {
		i := bytes.Index(data[off:], v)
		if i < 0 {
			return -1
		}
		i += off
		end := i + len(v)
		if (i == 0 || !isAlnum(data[i-1])) && (end == len(data) || !isAlnum(data[end])) && !inDecimal(data, i, end) {
			return i
		}
		off = i + 1
	}
}

// inDecimal reports whether data[i:end] is next to a decimal point that
// has a digit on its other side.
func inDecimal(data []byte, i, end int) bool {
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	return (i >= 2 && data[i-1] == '.' && isDigit(data[i-2])) ||
		(end+1 < len(data) && data[end] == '.' && isDigit(data[end+1]))
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// around shows where a hit is without repeating the secret itself.
func around(data []byte, i, n int) string {
	const width = 40
	lo, hi := max(i-width, 0), min(i+n+width, len(data))
	out := append([]byte{}, data[lo:i]...)
	out = append(out, "<SECRET>"...)
	out = append(out, data[i+n:hi]...)
	return string(bytes.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, out))
}
