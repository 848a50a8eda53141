package session

import (
	"context"
	"testing"
	"time"
)

func benchManager(b *testing.B) (*Manager, string) {
	b.Helper()
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	m, err := NewManager(Config{CookieKey: testKey}, newFakeStore(), Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	tok, _, err := m.Create(b.Context(), testRecord("alice"))
	if err != nil {
		b.Fatal(err)
	}
	return m, m.Cookie(tok, 0).Value
}

// BenchmarkLookupHit is the per-request cost of a session check.
func BenchmarkLookupHit(b *testing.B) {
	m, cookie := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Lookup(ctx, cookie); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupHitParallel(b *testing.B) {
	m, cookie := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Lookup(ctx, cookie); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkLookupForged is the cost of refusing a MAC-invalid cookie.
func BenchmarkLookupForged(b *testing.B) {
	m, cookie := benchManager(b)
	forged := cookie[:len(cookie)-1] + "A"
	if forged == cookie {
		forged = cookie[:len(cookie)-1] + "Q"
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Lookup(ctx, forged); err == nil {
			b.Fatal("forged cookie accepted")
		}
	}
}
