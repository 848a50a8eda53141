package store_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/authz/store"
)

// closedAddr returns a 127.0.0.1 address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestRedisOpenFailsClosed: every way of not reaching a usable server is
// an error wrapping ErrUnavailable at open, never a half-working store.
func TestRedisOpenFailsClosed(t *testing.T) {
	admin := store.RedisTestAdmin(t)
	ctx := t.Context()
	prefix := store.RedisTestPrefix(t, admin)
	user := store.RedisTestName()
	// A least-privilege ACL user confined to its key prefix and channel.
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "reset", "on", ">right-password",
		"~"+prefix+"*", "&"+prefix+"*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
	base := store.RedisConfig{Addr: store.RedisTestAddr(), KeyPrefix: prefix}
	with := func(f func(*store.RedisConfig)) store.RedisConfig { c := base; f(&c); return c }

	tests := []struct {
		name string
		cfg  store.RedisConfig
	}{
		{"nothing listening", with(func(c *store.RedisConfig) { c.Addr = closedAddr(t) })},
		{"wrong password", with(func(c *store.RedisConfig) { c.Username, c.Password = user, "wrong-password" })},
		{"unknown user", with(func(c *store.RedisConfig) { c.Username, c.Password = user+"-nobody", "right-password" })},
		{"TLS to a plaintext server", with(func(c *store.RedisConfig) {
			c.TLS = &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}
			c.DialTimeout = 300 * time.Millisecond // the plaintext server never answers the ClientHello
		})},
		{"nonexistent database", with(func(c *store.RedisConfig) { c.DB = 100000 })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.OpenRedis(ctx, tc.cfg, store.RedisOptions{})
			if err == nil {
				_ = s.Close()
				t.Fatal("OpenRedis succeeded")
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("OpenRedis = %v, want ErrUnavailable", err)
			}
			if tc.cfg.Password != "" && strings.Contains(err.Error(), tc.cfg.Password) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}

	t.Run("right password works within its ACL", func(t *testing.T) {
		s := openRedis(t, with(func(c *store.RedisConfig) { c.Username, c.Password = user, "right-password" }), store.RedisOptions{})
		if err := s.PutSession(ctx, store.Session{ID: "s", UserID: "u", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatalf("PutSession: %v", err)
		}
		if _, err := s.GetSession(ctx, "s"); err != nil {
			t.Fatalf("GetSession: %v", err)
		}
		if _, err := s.Subscribe(ctx); err != nil {
			t.Fatalf("Subscribe (channel inside the ACL): %v", err)
		}
		// Outside its prefix the same user is refused: fail closed.
		outside := openRedis(t, store.RedisConfig{Addr: store.RedisTestAddr(), Username: user, Password: "right-password",
			KeyPrefix: "other:"}, store.RedisOptions{})
		if err := outside.PutUser(ctx, "u", nil); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("write outside the ACL = %v, want ErrUnavailable", err)
		}
	})
}

// TestRedisSentinel runs a real Sentinel (redis-server --sentinel)
// monitoring the test server and opens the store through it.
func TestRedisSentinel(t *testing.T) {
	admin := store.RedisTestAdmin(t)
	host, port, err := net.SplitHostPort(store.RedisTestAddr())
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil {
		t.Fatalf("PORTCULLIS_TEST_REDIS host %q must be an IP for the sentinel test", host)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not in PATH (install the redis-server package; CI does): %v", err)
	}
	dir := t.TempDir()
	sentinelAddr := closedAddr(t)
	_, sport, _ := net.SplitHostPort(sentinelAddr)
	master := store.RedisTestName()
	conf := filepath.Join(dir, "sentinel.conf")
	content := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor %s %s %s 1\n", sport, dir, master, host, port)
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sentinel: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinelAddr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = sc.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		addr, err := sc.GetMasterAddrByName(t.Context(), master).Result()
		if err == nil && len(addr) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	prefix := store.RedisTestPrefix(t, admin)
	cfg := store.RedisConfig{SentinelMaster: master, SentinelAddrs: []string{closedAddr(t), sentinelAddr}, KeyPrefix: prefix}
	s := openRedis(t, cfg, store.RedisOptions{})
	ctx := t.Context()
	if err := s.PutEphemeral(ctx, "k", []byte("via sentinel"), time.Minute); err != nil {
		t.Fatalf("PutEphemeral: %v", err)
	}
	// The value landed on the monitored server.
	if v, err := admin.Get(ctx, prefix+"eph:k").Result(); err != nil || v != "via sentinel" {
		t.Fatalf("value on the master = %q, %v", v, err)
	}
	ch, err := s.Subscribe(ctx)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	if ev := <-ch; ev.Kind != store.EventResync {
		t.Fatalf("first event = %+v", ev)
	}

	// An unknown master name is an outage, not a fallback.
	_, err = store.OpenRedis(ctx, store.RedisConfig{SentinelMaster: master + "-unknown", SentinelAddrs: []string{sentinelAddr}, KeyPrefix: prefix},
		store.RedisOptions{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("OpenRedis(unknown master) = %v, want ErrUnavailable", err)
	}
}
