package store_test

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/authz/store/storetest"
)

func openRedis(t *testing.T, cfg store.RedisConfig, opts store.RedisOptions) *store.Redis {
	t.Helper()
	s, err := store.OpenRedis(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRedisConformance(t *testing.T) {
	admin := store.RedisTestAdmin(t)
	storetest.Run(t, storetest.Harness{
		Backend: func(t *testing.T) storetest.Opener {
			cfg := store.RedisConfig{Addr: store.RedisTestAddr(), KeyPrefix: store.RedisTestPrefix(t, admin)}
			return func(t *testing.T, now func() time.Time) store.Store {
				return openRedis(t, cfg, store.RedisOptions{Now: now})
			}
		},
		MultiInstance: true,
		ServerTTL:     true,
	})
}
