package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// AuditSinkSection maps to audit.SinkConfig: one place the trail is
// shipped to, besides the local chain files (the system of record).
//
//	kind: syslog   address (host:port), transport tls (default) | tcp,
//	               ca_file, server_name, cert_file + key_file (client
//	               certificate), hostname (the HOSTNAME field)
//	kind: webhook  url (or url_file / url_env when the URL is a
//	               credential), secret_file / secret_env (HMAC signing)
//	kind: stdout   nothing more
//
// batch_records, batch_wait and timeout apply to every kind.
type AuditSinkSection struct {
	Name       string    `yaml:"name,required"`
	Kind       string    `yaml:"kind,required"`
	Address    string    `yaml:"address"`
	Transport  string    `yaml:"transport"`
	CAFile     string    `yaml:"ca_file"`
	ServerName string    `yaml:"server_name"`
	CertFile   string    `yaml:"cert_file"`
	KeyFile    string    `yaml:"key_file"`
	Hostname   string    `yaml:"hostname"`
	URL        string    `yaml:"url"`
	URLSecret  SecretRef `yaml:"url"`
	Secret     SecretRef `yaml:"secret"`
	// Pointers: an explicit 0 is refused rather than read as the default.
	BatchRecords *int      `yaml:"batch_records"`
	BatchWait    *Duration `yaml:"batch_wait"`
	Timeout      *Duration `yaml:"timeout"`
}

// Syslog transports.
const (
	transportTLS = "tls"
	transportTCP = "tcp"
)

// auditSection builds the trail's audit.FileConfig and the sinks from the
// audit section.
//
// The signing key (signing_key_file or signing_key_env: an Ed25519
// private key, PEM PKCS #8 as `openssl genpkey -algorithm ed25519`
// writes it) is optional: without it the FileLog generates one beside the
// trail, and serve logs a warning (a key stored beside the trail lets
// whoever can edit the trail re-sign it).
func (b *builder) auditSection(s AuditSection, c *Config) (audit.FileConfig, []audit.SinkConfig) {
	fc := audit.FileConfig{
		Dir:           b.abs(s.Dir),
		Instance:      c.Instance,
		FlushInterval: time.Duration(s.FlushInterval),
		Buffer:        s.Buffer,
		IncludeEmail:  s.IncludeEmail,
		IncludeName:   s.IncludeName,
		SigningKey:    b.auditKey(s.SigningKey),
	}
	if s.Dir == "" {
		fc.Dir = filepath.Join(c.DataDir, "audit")
	}
	if s.Buffer < 0 {
		b.errAt("audit.buffer", "must not be negative")
	}
	if n := s.CheckpointEvery; n != nil {
		if (*n < 1 || *n > 1_000_000) && !b.d.hasPath("audit.checkpoint_every") {
			b.errAt("audit.checkpoint_every", "must be 1..1000000 records (leave it out for the default, %d)", audit.DefaultCheckpointEvery)
		}
		fc.CheckpointEvery = *n
	}
	if d := s.CheckpointInterval; d != nil {
		if (*d < Duration(10*time.Millisecond) || *d > Duration(time.Hour)) && !b.d.hasPath("audit.checkpoint_interval") {
			b.errAt("audit.checkpoint_interval", "must be between 10ms and 1h (leave it out for the default, %s)", audit.DefaultCheckpointInterval)
		}
		fc.CheckpointInterval = time.Duration(*d)
	}

	var sinks []audit.SinkConfig
	seen := map[string]int{}
	for i, ss := range s.Sinks {
		path := fmt.Sprintf("audit.sinks[%d]", i)
		if j, dup := seen[ss.Name]; dup && ss.Name != "" {
			b.errAt(path+".name", "duplicate of audit.sinks[%d].name (the name names the sink's cursor file)", j)
		}
		seen[ss.Name] = i
		sinks = append(sinks, b.auditSink(path, i, ss))
	}
	return fc, sinks
}

// auditKey resolves the Ed25519 checkpoint signing key.
func (b *builder) auditKey(ref SecretRef) ed25519.PrivateKey {
	if !ref.IsSet() {
		return nil
	}
	if b.opts.FakeSecrets {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			b.errAt(ref.Path, "%v", err)
		}
		return k
	}
	raw, ok := b.secret(ref)
	if !ok {
		return nil
	}
	k, err := audit.ParsePrivateKey(raw)
	if err != nil {
		b.errAt(ref.Path+sourceSuffix(ref), "%s (make one with: openssl genpkey -algorithm ed25519)", strings.TrimPrefix(err.Error(), "audit: "))
		return nil
	}
	return k
}

// auditSink builds one sink and maps its Validate messages ("field:
// message") onto the file.
func (b *builder) auditSink(path string, i int, s AuditSinkSection) audit.SinkConfig {
	sc := audit.SinkConfig{Name: s.Name, Kind: s.Kind, Address: s.Address, Hostname: s.Hostname, URL: s.URL}
	if s.BatchRecords != nil {
		if *s.BatchRecords == 0 && !b.d.hasPath(path+".batch_records") {
			b.errAt(path+".batch_records", "must not be 0 (leave it out for the default, %d)", audit.DefaultSinkBatch)
		}
		sc.BatchRecords = *s.BatchRecords
	}
	if s.BatchWait != nil {
		sc.BatchWait = time.Duration(*s.BatchWait)
	}
	if s.Timeout != nil {
		if *s.Timeout == 0 && !b.d.hasPath(path+".timeout") {
			b.errAt(path+".timeout", "must not be 0 (leave it out for the default, %s)", audit.DefaultSinkTimeout)
		}
		sc.Timeout = time.Duration(*s.Timeout)
	}
	syslogOnly := map[string]bool{"transport": s.Transport != "", "ca_file": s.CAFile != "", "server_name": s.ServerName != "",
		"cert_file": s.CertFile != "", "key_file": s.KeyFile != "", "hostname": s.Hostname != ""}
	webhookOnly := map[string]bool{}
	if s.Secret.IsSet() {
		webhookOnly["secret"+sourceSuffix(s.Secret)] = true
	}
	only := func(keys map[string]bool, kind string) {
		for k, set := range keys {
			if set && s.Kind != kind {
				b.errAt(path+"."+k, "only for kind %s", kind)
			}
		}
	}
	only(syslogOnly, audit.SinkSyslog)
	only(webhookOnly, audit.SinkWebhook)

	switch s.Kind {
	case audit.SinkSyslog:
		sc.TLS = b.syslogTLS(path, s)
	case audit.SinkWebhook:
		switch {
		case s.URL != "" && s.URLSecret.IsSet():
			b.errAt(path+".url", "give only one of url, url_file and url_env")
		case s.URLSecret.IsSet():
			if b.opts.FakeSecrets {
				sc.URL = fmt.Sprintf("https://audit-sink.invalid/%d", i)
			} else {
				sc.URL = b.textSecret(s.URLSecret)
			}
		}
		if s.Secret.IsSet() {
			if v := b.textSecret(s.Secret); v != "" {
				sc.Secret = []byte(v)
			}
		}
	}
	if s.Kind != audit.SinkWebhook && s.URLSecret.IsSet() {
		b.errAt(path+".url", "only for kind webhook")
	}
	for _, e := range flattenJoined(sc.Validate()) {
		field, msg, ok := strings.Cut(e, ": ")
		if !ok {
			b.errAt(path, "%s", e)
			continue
		}
		p := path + "." + field
		if field == "url" && s.URLSecret.IsSet() {
			p += sourceSuffix(s.URLSecret)
		}
		if b.d.hasPath(p) || b.d.hasPath(path+"."+field) {
			continue
		}
		if field == "url" && s.URL == "" && !s.URLSecret.IsSet() && s.Kind == audit.SinkWebhook {
			msg = "missing: give url, or url_file / url_env when the URL itself is a credential"
		}
		b.errAt(p, "%s", msg)
	}
	return sc
}

// syslogTLS builds the client TLS configuration of a syslog sink (nil
// for transport tcp, which is worth a warning unless the receiver is on
// this machine: records name users and addresses).
func (b *builder) syslogTLS(path string, s AuditSinkSection) *tls.Config {
	switch s.Transport {
	case "", transportTLS:
	case transportTCP:
		for _, k := range []struct {
			key string
			set bool
		}{{"ca_file", s.CAFile != ""}, {"server_name", s.ServerName != ""}, {"cert_file", s.CertFile != ""}, {"key_file", s.KeyFile != ""}} {
			if k.set {
				b.errAt(path+"."+k.key, "only with transport tls")
			}
		}
		if host, _, err := net.SplitHostPort(s.Address); err == nil && !isLoopbackHost(host) {
			b.warnAt(path+".transport", "syslog over plain TCP to %s: records (user IDs, addresses) cross the network unencrypted; use transport tls", host)
		}
		return nil
	default:
		b.errAt(path+".transport", "must be tls or tcp")
		return nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
	tc.RootCAs, _ = b.certPool(path+".ca_file", s.CAFile)
	if (s.CertFile == "") != (s.KeyFile == "") {
		b.errAt(path, "cert_file and key_file go together (client certificate)")
	} else if s.CertFile != "" {
		if cert, key := b.keyPair(path, s.CertFile, s.KeyFile); !b.opts.FakeSecrets {
			if pair, err := tls.LoadX509KeyPair(cert, key); err == nil {
				tc.Certificates = []tls.Certificate{pair}
			}
		}
	}
	return tc
}

func isLoopbackHost(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.IsLoopback()
	}
	return h == "localhost"
}

// flattenJoined splits an errors.Join result into its messages.
func flattenJoined(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, flattenJoined(e)...)
		}
		return out
	}
	return []string{err.Error()}
}
