package store_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/store"
)

func TestRedisConfigValidate(t *testing.T) {
	single := store.RedisConfig{Addr: "127.0.0.1:6379"}
	sentinel := store.RedisConfig{SentinelMaster: "mymaster", SentinelAddrs: []string{"10.0.0.1:26379", "[::1]:26379"}}
	with := func(c store.RedisConfig, f func(*store.RedisConfig)) store.RedisConfig { f(&c); return c }
	tests := []struct {
		name  string
		cfg   store.RedisConfig
		paths []string // FieldError paths, sorted; nil = valid
	}{
		{"single server", single, nil},
		{"sentinel", sentinel, nil},
		{"full single", with(single, func(c *store.RedisConfig) {
			c.Username, c.Password, c.DB, c.KeyPrefix = "app", "pw", 3, "prod:"
			c.DialTimeout, c.ReadTimeout, c.WriteTimeout = time.Second, time.Second, time.Minute
		}), nil},
		{"nothing", store.RedisConfig{}, []string{"addr"}},
		{"addr and sentinel", with(sentinel, func(c *store.RedisConfig) { c.Addr = "127.0.0.1:6379" }), []string{"addr"}},
		{"addr without port", store.RedisConfig{Addr: "localhost"}, []string{"addr"}},
		{"addr without host", store.RedisConfig{Addr: ":6379"}, []string{"addr"}},
		{"port zero", store.RedisConfig{Addr: "h:0"}, []string{"addr"}},
		{"port too big", store.RedisConfig{Addr: "h:65536"}, []string{"addr"}},
		{"port not a number", store.RedisConfig{Addr: "h:redis"}, []string{"addr"}},
		{"sentinel without addrs", store.RedisConfig{SentinelMaster: "m"}, []string{"sentinel_addrs"}},
		{"sentinel addrs without master", store.RedisConfig{SentinelAddrs: []string{"h:1"}}, []string{"sentinel_master"}},
		{"bad sentinel addr", with(sentinel, func(c *store.RedisConfig) { c.SentinelAddrs = []string{"h:1", "nope"} }),
			[]string{"sentinel_addrs[1]"}},
		{"sentinel password alone", with(single, func(c *store.RedisConfig) { c.SentinelPassword = "x" }), []string{"sentinel_password"}},
		{"username without password", with(single, func(c *store.RedisConfig) { c.Username = "app" }), []string{"password"}},
		{"negative db", with(single, func(c *store.RedisConfig) { c.DB = -1 }), []string{"db"}},
		{"prefix with space", with(single, func(c *store.RedisConfig) { c.KeyPrefix = "a b:" }), []string{"key_prefix"}},
		{"prefix with control byte", with(single, func(c *store.RedisConfig) { c.KeyPrefix = "a\x00:" }), []string{"key_prefix"}},
		{"prefix too long", with(single, func(c *store.RedisConfig) { c.KeyPrefix = strings.Repeat("p", 200) }), []string{"key_prefix"}},
		{"bad timeouts", with(single, func(c *store.RedisConfig) {
			c.DialTimeout, c.ReadTimeout, c.WriteTimeout = -1, time.Hour, -time.Second
		}), []string{"dial_timeout", "read_timeout", "write_timeout"}},
		{"everything wrong at once", store.RedisConfig{SentinelAddrs: []string{"x"}, Username: "u", DB: -2},
			[]string{"db", "password", "sentinel_addrs[0]", "sentinel_master"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var paths []string
			for _, e := range authz.Flatten(err) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v is not a *authz.FieldError", e)
				}
				paths = append(paths, fe.Path)
			}
			slices.Sort(paths)
			if !slices.Equal(paths, tc.paths) {
				t.Fatalf("Validate paths = %q, want %q (err: %v)", paths, tc.paths, err)
			}
			if tc.paths == nil {
				return
			}
			// OpenRedis refuses an invalid config before dialling: a
			// config error, not an outage.
			_, oerr := store.OpenRedis(t.Context(), tc.cfg, store.RedisOptions{})
			var fe *authz.FieldError
			if !errors.As(oerr, &fe) || errors.Is(oerr, store.ErrUnavailable) {
				t.Fatalf("OpenRedis(invalid) = %v, want the FieldErrors", oerr)
			}
		})
	}
}
