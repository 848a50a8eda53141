package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Helpers shared by the internal and external Redis tests (exported in
// test builds only).

// RedisTestAddr is the real redis-server the tests use. CI starts one;
// locally run `redis-server --daemonize yes` (or point
// PORTCULLIS_TEST_REDIS elsewhere).
func RedisTestAddr() string {
	if a := os.Getenv("PORTCULLIS_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// RedisTestAdmin returns a plain client to the test server, failing (never
// skipping) the test when nothing answers.
func RedisTestAdmin(t *testing.T) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: RedisTestAddr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("no redis-server answers at %s (%v): start one with `redis-server --daemonize yes` "+
			"or set PORTCULLIS_TEST_REDIS; CI starts one", RedisTestAddr(), err)
	}
	return c
}

// RedisTestPrefix returns a fresh key prefix and deletes its keys after the
// test, so tests share one server without seeing each other.
func RedisTestPrefix(t *testing.T, admin *redis.Client) string {
	t.Helper()
	prefix := "portcullis-test:" + randomHex(8) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := admin.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			admin.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleaning up %s*: %v", prefix, err)
		}
	})
	return prefix
}

// RedisTestName is a unique name for server-side objects (ACL users,
// sentinel masters, client names) a test creates.
func RedisTestName() string { return "portcullis-test-" + randomHex(8) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestMain keeps go-redis's process-wide logger off the test output.
func TestMain(m *testing.M) {
	RouteRedisLogs(nil)
	os.Exit(m.Run())
}
