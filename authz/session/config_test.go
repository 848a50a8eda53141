package session

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
)

func TestConfigValidate(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	tests := []struct {
		name      string
		cfg       Config
		wantPaths []string
	}{
		{"defaults", Config{CookieKey: key}, nil},
		{"explicit", Config{CookieKey: key, IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour, CookieName: "__Host-x"}, nil},
		{"idle equals absolute", Config{CookieKey: key, IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}, nil},
		{"no key", Config{}, []string{"cookie_key_file"}},
		{"31-byte key", Config{CookieKey: key[:31]}, []string{"cookie_key_file"}},
		{"no __Host- prefix", Config{CookieKey: key, CookieName: "portcullis"}, []string{"cookie_name"}},
		{"__Secure- is not enough", Config{CookieKey: key, CookieName: "__Secure-portcullis"}, []string{"cookie_name"}},
		{"lower-case prefix", Config{CookieKey: key, CookieName: "__host-portcullis"}, []string{"cookie_name"}},
		{"separator in name", Config{CookieKey: key, CookieName: "__Host-a;b"}, []string{"cookie_name"}},
		{"space in name", Config{CookieKey: key, CookieName: "__Host-a b"}, []string{"cookie_name"}},
		{"negative idle", Config{CookieKey: key, IdleTimeout: -time.Second}, []string{"idle_timeout"}},
		{"negative absolute", Config{CookieKey: key, AbsoluteTimeout: -time.Second}, []string{"absolute_timeout"}},
		{"idle above absolute", Config{CookieKey: key, IdleTimeout: 2 * time.Hour, AbsoluteTimeout: time.Hour}, []string{"idle_timeout"}},
		{"idle above default absolute", Config{CookieKey: key, IdleTimeout: 13 * time.Hour}, []string{"idle_timeout"}},
		{"everything wrong", Config{CookieName: "x", IdleTimeout: -1, AbsoluteTimeout: -1},
			[]string{"absolute_timeout", "cookie_key_file", "cookie_name", "idle_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var paths []string
			for _, e := range authz.Flatten(tt.cfg.Validate()) {
				var fe *authz.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("not a FieldError: %v", e)
				}
				paths = append(paths, fe.Path)
			}
			slices.Sort(paths)
			if !slices.Equal(paths, tt.wantPaths) {
				t.Fatalf("paths = %v, want %v", paths, tt.wantPaths)
			}
		})
	}
}

func TestNewManagerAppliesDefaults(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	m, err := NewManager(Config{CookieKey: key}, newFakeStore(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.IdleTimeout != 30*time.Minute || m.cfg.AbsoluteTimeout != 12*time.Hour || m.CookieName() != "__Host-portcullis" {
		t.Fatalf("defaults: %+v", m.cfg)
	}
	key[0] = 'x' // the Manager keeps its own copy of the key
	if m.cfg.CookieKey[0] != 'k' {
		t.Fatal("Manager aliases the caller's key")
	}
}
