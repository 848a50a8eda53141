package config

import (
	"crypto/ecdsa"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/identity"
	"github.com/portcullis/portcullis/authz/mfa"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/bastion/recording/s3store"
	"github.com/portcullis/portcullis/gateway"
)

// Config is a loaded, validated configuration: every package's Config with
// secrets resolved, ready for `serve`.
type Config struct {
	Path        string // the file it came from
	Instance    string
	DataDir     string
	AdminSocket string
	Log         LogConfig

	Gateway  gateway.Config
	Identity identity.Config
	MFA      mfa.Config
	Session  session.Config
	Store    StoreConfig
	Audit    audit.FileConfig
	// AuditSinks ship the trail elsewhere (syslog, webhook, stdout).
	AuditSinks []audit.SinkConfig
	Risk       risk.Config
	// Retention says how long the trail and recordings are kept (purge).
	Retention audit.RetentionConfig
	// Access is just-in-time access (requestable roles, audit reads,
	// approver webhooks), validated against Compiled.
	Access access.Config
	// Reviews tunes access reviews (dormancy, look-back, due, cadence).
	Reviews review.Config

	Policy authz.PolicyConfig
	// Compiled is Policy compiled (Load has already run authz.Compile).
	Compiled *authz.Policy
	// AssertionKey signs the JWT assertions sent upstream (ES256).
	AssertionKey *ecdsa.PrivateKey

	// Bastion is the SSH bastion's configuration; nil when the file has
	// no bastion section.
	Bastion *bastion.Config
	// SSHUserCA is the user CA private key (bastion.user_ca_key): the
	// gateway issues user certificates with it and Bastion.UserCAKeys
	// holds its public key. Nil without a bastion.
	SSHUserCA ssh.Signer
	// RecordingStorage is the S3-compatible bucket closed recordings are
	// uploaded to (bastion.recording_storage); nil: local disk only.
	RecordingStorage *s3store.Config
}

// LogConfig configures the process log.
type LogConfig struct {
	Level slog.Level
	JSON  bool
}

// StoreConfig selects the state store backend.
type StoreConfig struct {
	Backend string // BackendEmbedded or BackendRedis
	Path    string // embedded: the bbolt file
	Redis   store.RedisConfig
}

// Store backends.
const (
	BackendEmbedded = "embedded"
	BackendRedis    = "redis"
)

// Options changes how Load treats the outside world.
type Options struct {
	// FakeSecrets validates structure only: secrets, private keys and
	// certificate files are not read; well-formed stand-ins are used.
	// `config check --no-secrets` and the deploy/ example test use it. A
	// Config loaded this way must never be served.
	FakeSecrets bool
	// LookupEnv resolves *_env secrets; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Hostname is the default instance name; default os.Hostname.
	Hostname func() (string, error)
	// Now dates certificate expiry warnings; default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Load reads and validates the configuration file at path. On failure the
// error is an *Error listing every problem; warnings are returned either
// way.
func Load(path string, opts Options) (*Config, []Diagnostic, error) {
	data, err := readConfigFile(path)
	if err != nil {
		d := Diagnostic{File: path, Msg: err.Error()}
		return nil, nil, &Error{Diags: []Diagnostic{d}}
	}
	return Parse(path, data, opts)
}

func readConfigFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, errors.New("configuration file does not exist")
	case err != nil:
		return nil, errors.New("cannot read configuration file: " + cause(err))
	case info.IsDir():
		return nil, errors.New("is a directory, not a configuration file")
	case info.Size() > maxFileSize:
		return nil, errors.New("configuration file is too large")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errors.New("cannot read configuration file: " + cause(err))
	}
	return data, nil
}

// cause drops the path from an *fs.PathError (the message already starts
// with the file name).
func cause(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// Parse validates data as the contents of the file named name; relative
// paths inside are resolved against name's directory.
func Parse(name string, data []byte, opts Options) (*Config, []Diagnostic, error) {
	d := &diags{file: name}
	root := parse(data, d)
	var cfg *Config
	if root != nil {
		var f File
		dc := decoder{d: d}
		dc.mapping(root, reflectValue(&f), "", 1)
		baseDir, err := filepath.Abs(filepath.Dir(name))
		if err != nil {
			baseDir = filepath.Dir(name)
		}
		b := &builder{d: d, root: root, base: baseDir, opts: opts.withDefaults()}
		cfg = b.build(&f)
		cfg.Path = name
	}
	errs, warns := d.split()
	if errs != nil {
		return nil, warns, errs
	}
	return cfg, warns, nil
}
