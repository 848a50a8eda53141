package config

import "time"

// The file format. Every struct here is decoded by decode.go, which knows
// these field types and tag options:
//
//	yaml:"key"            the YAML key
//	yaml:"key,required"   missing (or null) is an error
//	yaml:"key,negative"   a Duration that may be negative (flush_interval)
//
// A SecretRef field tagged "name" is written in YAML as name_file or
// name_env (exactly one); a bare "name:" is refused as an inline secret.
// Defaults are applied in build.go, not here, so that a key's absence
// stays visible to the validation step.

// Duration is a Go duration string in the file ("30m", "8760h", "-1ms").
type Duration time.Duration

// CIDR is a network prefix in the file ("10.0.0.0/8", "::/0"); the decoder
// checks it is one.
type CIDR string

// SecretRef says where a secret comes from: a file or an environment
// variable. Path and Line locate it in the file for later messages.
type SecretRef struct {
	File string
	Env  string
	Path string // key path of the secret, e.g. "mfa.key"
	Line int    // line of the *_file or *_env key, 0 when absent
}

// IsSet reports whether the file gave a source for the secret.
func (s SecretRef) IsSet() bool { return s.File != "" || s.Env != "" }

// File is the whole configuration file.
type File struct {
	Instance    string          `yaml:"instance"`
	DataDir     string          `yaml:"data_dir"`
	AdminSocket string          `yaml:"admin_socket"`
	Log         LogSection      `yaml:"log"`
	Gateway     GatewaySection  `yaml:"gateway,required"`
	Identity    IdentitySection `yaml:"identity,required"`
	MFA         MFASection      `yaml:"mfa,required"`
	Session     SessionSection  `yaml:"session,required"`
	Store       StoreSection    `yaml:"store"`
	Audit       AuditSection    `yaml:"audit"`
	Policy      PolicySection   `yaml:"policy,required"`
	// Bastion is optional: absent means no SSH bastion.
	Bastion *BastionSection `yaml:"bastion"`
	// Risk is optional: absent means risk's safe defaults.
	Risk RiskSection `yaml:"risk"`
	// Retention is optional: absent means audit 400 days, recordings 90.
	Retention RetentionSection `yaml:"retention"`
	// Access is optional: absent means nothing is requestable (access.go).
	Access AccessSection `yaml:"access"`
	// Reviews is optional: absent means review's defaults (reviews.go).
	Reviews ReviewsSection `yaml:"reviews"`
}

// LogSection configures the process log (stderr).
type LogSection struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // json (default) | text
}

// GatewaySection maps to gateway.Config.
type GatewaySection struct {
	Listen         string   `yaml:"listen"`
	HTTPListen     string   `yaml:"http_listen"`
	AccessHost     string   `yaml:"access_host,required"`
	PublicPort     int      `yaml:"public_port"`
	TrustedProxies []CIDR   `yaml:"trusted_proxies"`
	HSTSMaxAge     Duration `yaml:"hsts_max_age"`
	AssertionTTL   Duration `yaml:"assertion_ttl"`
	LoginTimeout   Duration `yaml:"login_timeout"`
	// StoreGrace is how long established sessions are still served while
	// the state store is unreachable (default 0: not at all).
	StoreGrace Duration       `yaml:"store_grace"`
	TLS        TLSSection     `yaml:"tls,required"`
	Routes     []RouteSection `yaml:"routes"`
}

// TLSSection maps to gateway.TLSConfig.
type TLSSection struct {
	Mode     string      `yaml:"mode,required"` // acme | files
	CertFile string      `yaml:"cert_file"`
	KeyFile  string      `yaml:"key_file"`
	ACME     ACMESection `yaml:"acme"`
}

// ACMESection maps to gateway.ACMEConfig.
type ACMESection struct {
	Email          string `yaml:"email"`
	DirectoryURL   string `yaml:"directory_url"`
	CARootFile     string `yaml:"ca_root_file"`
	StoragePath    string `yaml:"storage_path"`
	AltHTTPPort    int    `yaml:"alt_http_port"`
	AltTLSALPNPort int    `yaml:"alt_tls_alpn_port"`
	DisableHTTP01  bool   `yaml:"disable_http01"`
	DisableTLSALPN bool   `yaml:"disable_tls_alpn"`
}

// RouteSection maps to gateway.Route.
type RouteSection struct {
	Name           string   `yaml:"name,required"`
	Host           string   `yaml:"host,required"`
	PathPrefix     string   `yaml:"path_prefix"`
	Upstream       string   `yaml:"upstream,required"`
	PreserveHost   bool     `yaml:"preserve_host"`
	FlushInterval  Duration `yaml:"flush_interval,negative"`
	UpstreamCAFile string   `yaml:"upstream_ca_file"`
}

// IdentitySection maps to identity.Config.
type IdentitySection struct {
	Issuer       string    `yaml:"issuer,required"`
	ClientID     string    `yaml:"client_id,required"`
	ClientSecret SecretRef `yaml:"client_secret,required"`
	RedirectURL  string    `yaml:"redirect_url"`
	Scopes       []string  `yaml:"scopes"`
	GroupsClaim  string    `yaml:"groups_claim"`
	EmailClaim   string    `yaml:"email_claim"`
	AllowedAlgs  []string  `yaml:"allowed_algs"`
}

// MFASection maps to mfa.Config.
type MFASection struct {
	Issuer        string    `yaml:"issuer"`
	Key           SecretRef `yaml:"key,required"`
	Skew          int       `yaml:"skew"`
	RecoveryCodes int       `yaml:"recovery_codes"`
}

// SessionSection maps to session.Config, plus the gateway's assertion key.
type SessionSection struct {
	IdleTimeout     Duration  `yaml:"idle_timeout"`
	AbsoluteTimeout Duration  `yaml:"absolute_timeout"`
	CookieName      string    `yaml:"cookie_name"`
	CookieKey       SecretRef `yaml:"cookie_key,required"`
	AssertionKey    SecretRef `yaml:"assertion_key,required"`
}

// StoreSection selects and configures the state store.
type StoreSection struct {
	Backend string       `yaml:"backend"` // embedded (default) | redis
	Path    string       `yaml:"path"`    // embedded: default <data_dir>/state.db
	Redis   RedisSection `yaml:"redis"`
}

// RedisSection maps to store.RedisConfig.
type RedisSection struct {
	Addr         string          `yaml:"addr"`
	Username     string          `yaml:"username"`
	Password     SecretRef       `yaml:"password"`
	DB           int             `yaml:"db"`
	TLS          RedisTLSSection `yaml:"tls"`
	Sentinel     SentinelSection `yaml:"sentinel"`
	KeyPrefix    string          `yaml:"key_prefix"`
	DialTimeout  Duration        `yaml:"dial_timeout"`
	ReadTimeout  Duration        `yaml:"read_timeout"`
	WriteTimeout Duration        `yaml:"write_timeout"`
}

// RedisTLSSection builds the *tls.Config for Redis connections.
type RedisTLSSection struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	CertFile   string `yaml:"cert_file"` // client certificate (mutual TLS)
	KeyFile    string `yaml:"key_file"`
}

// SentinelSection enables Redis Sentinel.
type SentinelSection struct {
	Master   string    `yaml:"master"`
	Addrs    []string  `yaml:"addrs"`
	Password SecretRef `yaml:"password"`
}

// AuditSection maps to audit.FileConfig and the sinks (audit.go).
type AuditSection struct {
	Dir           string   `yaml:"dir"` // default <data_dir>/audit
	FlushInterval Duration `yaml:"flush_interval"`
	Buffer        int      `yaml:"buffer"`
	// SigningKey signs checkpoints (Ed25519, PEM PKCS #8); absent: a key
	// generated beside the trail, with a warning at start-up.
	SigningKey         SecretRef          `yaml:"signing_key"`
	CheckpointEvery    *int               `yaml:"checkpoint_every"`
	CheckpointInterval *Duration          `yaml:"checkpoint_interval"`
	IncludeEmail       bool               `yaml:"include_email"` // personal data: off by default
	IncludeName        bool               `yaml:"include_name"`
	Sinks              []AuditSinkSection `yaml:"sinks"`
}

// PolicySection maps to authz.PolicyConfig.
type PolicySection struct {
	AllowedCIDRs []CIDR          `yaml:"allowed_cidrs"`
	Apps         []AppSection    `yaml:"apps"`
	Targets      []TargetSection `yaml:"targets"`
	Roles        []RoleSection   `yaml:"roles"`
}

// AppSection adds policy settings to the app a route defines.
type AppSection struct {
	Name         string `yaml:"name,required"`
	AllowedCIDRs []CIDR `yaml:"allowed_cidrs"`
	Public       bool   `yaml:"public"`
}

// TargetSection adds policy settings to a target bastion.targets defines
// (as AppSection does for routes). Labels belong to the bastion target;
// the key is accepted only to say so.
type TargetSection struct {
	Name         string            `yaml:"name,required"`
	Labels       map[string]string `yaml:"labels"`
	AllowedCIDRs []CIDR            `yaml:"allowed_cidrs"`
}

// RoleSection maps to authz.RoleConfig.
type RoleSection struct {
	Name          string        `yaml:"name,required"`
	Groups        []string      `yaml:"groups"`
	Users         []string      `yaml:"users"`
	AllowedCIDRs  []CIDR        `yaml:"allowed_cidrs"`
	MaxSessionTTL Duration      `yaml:"max_session_ttl"`
	RequireMFA    *bool         `yaml:"require_mfa"`
	Admin         bool          `yaml:"admin"`
	Allow         []RuleSection `yaml:"allow"`
	Deny          []RuleSection `yaml:"deny"`
	PerSessionMFA bool          `yaml:"per_session_mfa"`
	FileTransfer  bool          `yaml:"file_transfer"`
	PortForwards  []string      `yaml:"port_forwards"`
	AgentForward  bool          `yaml:"agent_forward"`
}

// RuleSection maps to authz.Rule.
type RuleSection struct {
	Apps         []string          `yaml:"apps"`
	PathPrefixes []string          `yaml:"path_prefixes"`
	Methods      []string          `yaml:"methods"`
	Logins       []string          `yaml:"logins"`
	Targets      []string          `yaml:"targets"`
	TargetLabels map[string]string `yaml:"target_labels"`
}

// BastionSection maps to bastion.Config. The user CA key is also the key
// the gateway's SSH certificate authority signs with: one key, so the
// certificates it issues are exactly the ones the bastion trusts.
type BastionSection struct {
	Listen              string                 `yaml:"listen"`
	HostKeyFiles        []string               `yaml:"host_key_files,required"`
	UserCAKey           SecretRef              `yaml:"user_ca_key,required"`
	UpstreamCAKey       SecretRef              `yaml:"upstream_ca_key,required"`
	Targets             []BastionTargetSection `yaml:"targets"`
	EnvAllowlist        []string               `yaml:"env_allowlist"`
	IdleTimeout         Duration               `yaml:"idle_timeout"`
	KeepaliveInterval   Duration               `yaml:"keepalive_interval"`
	KeepaliveMax        int                    `yaml:"keepalive_max"`
	MaxAuthTries        int                    `yaml:"max_auth_tries"`
	HandshakeTimeout    Duration               `yaml:"handshake_timeout"`
	UpstreamDialTimeout Duration               `yaml:"upstream_dial_timeout"`
	RecordingDir        string                 `yaml:"recording_dir"` // default <data_dir>/recordings
	// RecordingKey is the 32-byte key-encryption key that wraps every
	// recording's data key (recording_key_file or recording_key_env).
	RecordingKey SecretRef `yaml:"recording_key,required"`
	RecordInput  bool      `yaml:"record_input"`
	// PublicAddr is the host:port users ssh to (shown by portcullis
	// login); default <gateway.access_host>:<port of listen>.
	PublicAddr string `yaml:"public_addr"`
	// ApprovalLogin lets clients without a certificate log in by
	// keyboard-interactive, approving the connection in the browser on
	// the access host (default true).
	ApprovalLogin   *bool    `yaml:"approval_login"`
	ApprovalTimeout Duration `yaml:"approval_timeout"`
	// CertBindSourceIP binds certificates from portcullis login to the
	// login's IP address (off by default: laptops change networks).
	CertBindSourceIP bool `yaml:"cert_bind_source_ip"`
	// RecordingStorage is optional: absent means recordings stay on
	// local disk only (recording_storage.go).
	RecordingStorage *RecordingStorageSection `yaml:"recording_storage"`
}

// BastionTargetSection maps to bastion.Target, and to the policy target of
// the same name. Exactly one of the four host key settings is given.
type BastionTargetSection struct {
	Name        string            `yaml:"name,required"`
	Addr        string            `yaml:"addr,required"`
	Labels      map[string]string `yaml:"labels"`
	HostKey     string            `yaml:"host_key"`      // the target's public host key (authorized_keys line)
	HostKeyFile string            `yaml:"host_key_file"` // ... read from a .pub file
	HostCA      string            `yaml:"host_ca"`       // a CA signing its host certificates (public key line)
	HostCAFile  string            `yaml:"host_ca_file"`  // ... read from a .pub file
}

// RiskSection maps to risk.Config: anomaly detection and lockdown. Every
// key is optional and takes risk's documented default when absent. Keys
// whose zero value risk reads as "use the default" are pointers, so that
// an explicit 0 can be refused instead of silently meaning the default.
type RiskSection struct {
	Disabled       bool              `yaml:"disabled"`
	User           RiskUserSection   `yaml:"user"`
	SourceIP       *ThresholdSection `yaml:"source_ip"`
	SourceNetwork  *ThresholdSection `yaml:"source_network"`
	SourceBlock    *Duration         `yaml:"source_block"`
	SourceBlockMax *Duration         `yaml:"source_block_max"`
	LearnLogins    *int              `yaml:"learn_logins"`
	HourTolerance  *int              `yaml:"hour_tolerance"`
	// NewNetworkStepUp false maps to risk.Config.NoNewNetworkStepUp.
	NewNetworkStepUp *bool            `yaml:"new_network_step_up"`
	Usage            RiskUsageSection `yaml:"usage"`
	FlushInterval    *Duration        `yaml:"flush_interval"`
	Canary           CanarySection    `yaml:"canary"`
	Alerts           AlertsSection    `yaml:"alerts"`
	// GeoIP is optional: absent means no impossible-travel check.
	GeoIP *GeoIPSection `yaml:"geoip"`
}

// GeoIPSection turns on the impossible-travel check: a login farther
// than min_distance_km from the user's previous one, faster than
// max_speed_kmh. database is a MaxMind DB City file (GeoLite2-City,
// GeoIP2-City), relative to the config file's directory; `config check`
// opens it (except with --no-secrets, which does not touch data files
// either), and a reload reads it again when it changed, so a
// geoipupdate followed by a reload needs no restart.
type GeoIPSection struct {
	Database      string   `yaml:"database,required"`
	MaxSpeedKmh   *float64 `yaml:"max_speed_kmh"`   // default 1000
	MinDistanceKm *float64 `yaml:"min_distance_km"` // default 500
}

// RiskUserSection holds the per-user threshold of each risk.Signal; each
// key is risk.ConfigKey of its signal (a test keeps the two in step).
type RiskUserSection struct {
	TOTPFailures     *ThresholdSection `yaml:"totp_failures"`
	RecoveryFailures *ThresholdSection `yaml:"recovery_failures"`
	OIDCFailures     *ThresholdSection `yaml:"oidc_failures"`
	SSHAuthFailures  *ThresholdSection `yaml:"ssh_auth_failures"`
	ApprovalFailures *ThresholdSection `yaml:"approval_failures"`
	DeniedDecisions  *ThresholdSection `yaml:"denied_decisions"`
}

// ThresholdSection maps to risk.Threshold: count events within window.
type ThresholdSection struct {
	Count  int      `yaml:"count,required"`
	Window Duration `yaml:"window,required"`
}

// RiskUsageSection maps to risk's usage-baseline settings.
type RiskUsageSection struct {
	RateFactor  *float64 `yaml:"rate_factor"`
	RateMin     *int64   `yaml:"rate_min"`
	BytesFactor *float64 `yaml:"bytes_factor"`
	BytesMin    *int64   `yaml:"bytes_min"`
	Lock        bool     `yaml:"lock"`
}

// CanarySection lists honeypot resources: touching one locks at once.
type CanarySection struct {
	Routes  []string `yaml:"routes"` // host/path-prefix
	Targets []string `yaml:"targets"`
	Logins  []string `yaml:"logins"`
}

// AlertsSection configures alert delivery.
type AlertsSection struct {
	Dedup    *Duration        `yaml:"dedup"`
	Webhooks []WebhookSection `yaml:"webhooks"`
}

// WebhookSection maps to risk.Webhook. The URL is given as url, or as
// url_file / url_env when it embeds a credential (a Slack incoming
// webhook URL is one): the second field shares the key, and decode.go
// matches "url" to the first field that declares it, the plain string.
type WebhookSection struct {
	Name      string    `yaml:"name,required"`
	URL       string    `yaml:"url"`
	URLSecret SecretRef `yaml:"url"`
	Format    string    `yaml:"format"` // json (default) | slack
	// Secret signs each delivery (X-Portcullis-Signature: sha256=HMAC).
	Secret SecretRef `yaml:"secret"`
}
