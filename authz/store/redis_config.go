package store

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
	"unicode"

	"github.com/portcullis/portcullis/authz"
)

// RedisConfig configures the Redis backend. Either Addr (a single server)
// or SentinelMaster with SentinelAddrs (Redis Sentinel) is set.
type RedisConfig struct {
	Addr     string `yaml:"addr"`     // host:port of a single server
	Username string `yaml:"username"` // ACL user (Redis 6+); empty = "default"
	Password string `yaml:"password"`
	DB       int    `yaml:"db"`
	// TLS, when set, is used for every connection (servers and
	// sentinels). cmd builds it from the config file's TLS section.
	TLS *tls.Config `yaml:"-"`

	SentinelMaster   string   `yaml:"sentinel_master"`
	SentinelAddrs    []string `yaml:"sentinel_addrs"`
	SentinelPassword string   `yaml:"sentinel_password"`

	// KeyPrefix starts every key and the feed channel, so several
	// deployments can share one server (default "portcullis:").
	KeyPrefix string `yaml:"key_prefix"`

	DialTimeout  time.Duration `yaml:"dial_timeout"`  // default 2s
	ReadTimeout  time.Duration `yaml:"read_timeout"`  // default 1s
	WriteTimeout time.Duration `yaml:"write_timeout"` // default 1s
}

// Defaults applied by withDefaults.
const (
	DefaultKeyPrefix    = "portcullis:"
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = time.Second
	DefaultWriteTimeout = time.Second

	maxTimeout   = time.Minute
	maxKeyPrefix = 128
)

func (c RedisConfig) withDefaults() RedisConfig {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	return c
}

// Validate returns every problem at once, as *authz.FieldError values
// (joined) whose paths are the YAML keys above.
func (c RedisConfig) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, &authz.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	sentinel := c.SentinelMaster != "" || len(c.SentinelAddrs) > 0
	switch {
	case c.Addr == "" && !sentinel:
		add("addr", "is required (or sentinel_master with sentinel_addrs)")
	case c.Addr != "" && sentinel:
		add("addr", "must be empty when sentinel_master is set: the master address comes from the sentinels")
	case c.Addr != "":
		if err := checkHostPort(c.Addr); err != nil {
			add("addr", "%v", err)
		}
	}
	if sentinel {
		if c.SentinelMaster == "" {
			add("sentinel_master", "is required when sentinel_addrs is set")
		}
		if len(c.SentinelAddrs) == 0 {
			add("sentinel_addrs", "needs at least one host:port when sentinel_master is set")
		}
		for i, a := range c.SentinelAddrs {
			if err := checkHostPort(a); err != nil {
				add(fmt.Sprintf("sentinel_addrs[%d]", i), "%v", err)
			}
		}
	} else if c.SentinelPassword != "" {
		add("sentinel_password", "is set but sentinel_master is not")
	}
	if c.Username != "" && c.Password == "" {
		add("password", "is required when username is set")
	}
	if c.DB < 0 {
		add("db", "must not be negative")
	}
	if len(c.KeyPrefix) > maxKeyPrefix {
		add("key_prefix", "is longer than %d bytes", maxKeyPrefix)
	}
	for _, r := range c.KeyPrefix {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			add("key_prefix", "must be printable without spaces")
			break
		}
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{{"dial_timeout", c.DialTimeout}, {"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}} {
		if d.v < 0 || d.v > maxTimeout {
			add(d.path, "must be between 0 (default) and %s", maxTimeout)
		}
	}
	return errors.Join(errs...)
}

func checkHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("must be host:port: %v", err)
	}
	if host == "" {
		return errors.New("has an empty host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("has an invalid port")
	}
	return nil
}
