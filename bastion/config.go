package bastion

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/bastion/recording"
)

// Defaults applied to zero Config fields.
const (
	DefaultListen              = ":2222"
	DefaultMaxAuthTries        = 3
	DefaultHandshakeTimeout    = 20 * time.Second
	DefaultUpstreamDialTimeout = 10 * time.Second
	DefaultKeepaliveInterval   = 30 * time.Second
	DefaultKeepaliveMax        = 3
	// MaxUpstreamCertTTL caps the per-session upstream certificate: it is
	// only used for the one authentication right after it is made.
	MaxUpstreamCertTTL = 5 * time.Minute
)

// DefaultEnvAllowlist is what clients may set in a session's environment
// when Config.EnvAllowlist is empty. Anything else (LD_PRELOAD, PATH,
// BASH_ENV…) could change what the remote login runs.
var DefaultEnvAllowlist = []string{"LANG", "LC_*", "TERM"}

// Config is the bastion's part of the configuration. cmd builds it from the
// config file; Validate reports *authz.FieldError with paths relative to it.
type Config struct {
	// Listen is the SSH address; zero value DefaultListen.
	Listen string
	// HostKeys are the bastion's own host keys (at least one).
	HostKeys []ssh.Signer
	// UserCAKeys are the trusted user CA public keys: a client
	// authenticates only with a certificate signed by one of them.
	UserCAKeys []ssh.PublicKey
	// UpstreamCA signs the per-session certificates the bastion presents
	// to targets (their sshd lists its public key in TrustedUserCAKeys).
	UpstreamCA ssh.Signer
	// Targets the bastion can reach. Policy decides who may reach which.
	Targets []Target
	// EnvAllowlist names the environment variables a client may pass
	// ("NAME" or "PREFIX*"); empty means DefaultEnvAllowlist.
	EnvAllowlist []string
	// IdleTimeout ends a connection with no data in either direction for
	// this long; zero disables it.
	IdleTimeout time.Duration
	// KeepaliveInterval is how often the bastion probes a silent client;
	// after KeepaliveMax unanswered probes the connection ends. Zero
	// values: DefaultKeepaliveInterval, DefaultKeepaliveMax.
	KeepaliveInterval time.Duration
	KeepaliveMax      int
	// MaxAuthTries is the number of failed authentication attempts per
	// connection; zero value DefaultMaxAuthTries.
	MaxAuthTries int
	// HandshakeTimeout bounds key exchange plus authentication; zero value
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// UpstreamDialTimeout bounds dialling a target and its SSH handshake;
	// zero value DefaultUpstreamDialTimeout.
	UpstreamDialTimeout time.Duration
	// RecordingDir receives one recording per connection (required).
	RecordingDir string
	// RecordingKey is the key-encryption key that wraps each recording's
	// data key (required: recordings are encrypted at rest).
	RecordingKey *recording.Key
	// RecordInput records what users type. Off by default: input carries
	// passwords typed at prompts.
	RecordInput bool
	// Instance names this instance in audit events and recordings.
	Instance string
	// ApprovalURL is the gateway's access URL (https://access.example.com).
	// When set, clients without an acceptable certificate may log in by
	// keyboard-interactive: they are shown ApprovalURL/ssh/approve?c=CODE
	// to approve the connection in a browser (approval.go); Deps.Approvals
	// is then required. Empty: certificates only.
	ApprovalURL string
	// ApprovalTimeout bounds the wait for that approval (it replaces the
	// handshake deadline for that step only); zero value
	// DefaultApprovalTimeout, at most MaxApprovalTimeout.
	ApprovalTimeout time.Duration
}

// Target is an SSH host the bastion relays to.
type Target struct {
	Name   string // as used in "login@name"; must match a policy target
	Addr   string // host:port
	Labels map[string]string
	// Exactly one of HostKey (the target's host public key) and HostCA (a
	// CA that signs its host certificates), in authorized_keys format.
	HostKey string
	HostCA  string
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.MaxAuthTries = cmp.Or(c.MaxAuthTries, DefaultMaxAuthTries)
	c.HandshakeTimeout = cmp.Or(c.HandshakeTimeout, DefaultHandshakeTimeout)
	c.UpstreamDialTimeout = cmp.Or(c.UpstreamDialTimeout, DefaultUpstreamDialTimeout)
	c.KeepaliveInterval = cmp.Or(c.KeepaliveInterval, DefaultKeepaliveInterval)
	c.KeepaliveMax = cmp.Or(c.KeepaliveMax, DefaultKeepaliveMax)
	if len(c.EnvAllowlist) == 0 {
		c.EnvAllowlist = DefaultEnvAllowlist
	}
	c.ApprovalTimeout = cmp.Or(c.ApprovalTimeout, DefaultApprovalTimeout)
	return c
}

// Validate checks c after applying defaults. Errors are *authz.FieldError
// joined with errors.Join; paths use the config file's key names (cmd
// prefixes them with "bastion").
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if err := checkListen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if len(c.HostKeys) == 0 {
		bad("host_keys", "at least one host key is required")
	}
	for i, k := range c.HostKeys {
		if k == nil || k.PublicKey() == nil {
			bad(fmt.Sprintf("host_keys[%d]", i), "missing key")
		}
	}
	if len(c.UserCAKeys) == 0 {
		bad("user_ca_keys", "at least one trusted user CA key is required")
	}
	for i, k := range c.UserCAKeys {
		switch {
		case k == nil:
			bad(fmt.Sprintf("user_ca_keys[%d]", i), "missing key")
		case isCert(k):
			bad(fmt.Sprintf("user_ca_keys[%d]", i), "a CA key must not be a certificate")
		}
	}
	switch {
	case c.UpstreamCA == nil || c.UpstreamCA.PublicKey() == nil:
		bad("upstream_ca", "the upstream CA key is required")
	case isCert(c.UpstreamCA.PublicKey()):
		bad("upstream_ca", "the upstream CA key must not be a certificate")
	}
	names := map[string]bool{}
	for i, t := range c.Targets {
		p := fmt.Sprintf("targets[%d]", i)
		switch {
		case !validTargetName(t.Name):
			bad(p+".name", "must be non-empty, without '@', spaces or control characters")
		case names[t.Name]:
			bad(p+".name", "duplicate target %q", t.Name)
		}
		names[t.Name] = true
		if err := checkHostPort(t.Addr); err != nil {
			bad(p+".addr", "%v", err)
		}
		if (t.HostKey == "") == (t.HostCA == "") {
			bad(p, "exactly one of host_key and host_ca is required")
		}
		if t.HostKey != "" {
			if _, err := parseAuthorizedKey(t.HostKey); err != nil {
				bad(p+".host_key", "%v", err)
			}
		}
		if t.HostCA != "" {
			if _, err := parseAuthorizedKey(t.HostCA); err != nil {
				bad(p+".host_ca", "%v", err)
			}
		}
	}
	for i, e := range c.EnvAllowlist {
		if !validEnvPattern(e) {
			bad(fmt.Sprintf("env_allowlist[%d]", i), "%q is not a variable name or NAME* prefix", e)
		}
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{
		{"idle_timeout", c.IdleTimeout},
		{"keepalive_interval", c.KeepaliveInterval},
		{"handshake_timeout", c.HandshakeTimeout},
		{"upstream_dial_timeout", c.UpstreamDialTimeout},
	} {
		if d.v < 0 {
			bad(d.path, "must not be negative")
		}
	}
	if c.KeepaliveMax < 0 {
		bad("keepalive_max", "must not be negative")
	}
	if c.MaxAuthTries < 0 {
		bad("max_auth_tries", "must not be negative")
	}
	if c.RecordingDir == "" {
		bad("recording_dir", "required: every session is recorded")
	}
	if c.RecordingKey == nil {
		bad("recording_key", "required: recordings are encrypted (a 32-byte key file, e.g. openssl rand -hex 32)")
	}
	// Keyboard-interactive approval settings (approval.go).
	errs = append(errs, validateApproval(c)...)
	return errors.Join(errs...)
}

func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("host is required")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("invalid port %q", port)
	}
	return nil
}

// parseAuthorizedKey parses exactly one authorized_keys line (options and
// comment allowed) and refuses certificates: a pinned key or CA must be a
// plain key.
func parseAuthorizedKey(s string) (ssh.PublicKey, error) {
	k, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, errors.New("not an authorized_keys line")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, errors.New("more than one key")
	}
	if isCert(k) {
		return nil, errors.New("must be a plain public key, not a certificate")
	}
	return k, nil
}

func validTargetName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '@'
	})
}

func validEnvPattern(s string) bool {
	s = strings.TrimSuffix(s, "*")
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// envAllowed reports whether name matches one of the allowlist patterns.
func envAllowed(patterns []string, name string) bool {
	if !validEnvPattern(name) || strings.HasSuffix(name, "*") {
		return false
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

func isCert(k ssh.PublicKey) bool {
	_, ok := k.(*ssh.Certificate)
	return ok
}
