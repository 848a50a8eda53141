package session

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsCarryNoSecrets drives every logging path (feed loss and
// recovery, failing write-backs, unreadable records) and checks that no
// token, cookie or key reaches the log, while the public ID does.
func TestLogsCarryNoSecrets(t *testing.T) {
	st := newFakeStore()
	clk := newClock()
	logs := &syncBuffer{}
	r := newRecorder()
	m, err := NewManager(Config{CookieKey: testKey}, st, Options{
		Now:     clk.Now,
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnEvent: func(e store.Event) { r.events <- e },
		OnFeed:  func(up bool) { r.feed <- up },
	})
	if err != nil {
		t.Fatal(err)
	}
	m.wb.after = func(id string) { r.writes <- id }
	m.backoffMin, m.backoffMax = time.Millisecond, time.Millisecond
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tok, rec, err := m.Create(t.Context(), testRecord("alice"))
	if err != nil {
		t.Fatal(err)
	}
	cookie := m.Cookie(tok, 0).Value

	st.subscribeDown.Store(true)
	st.dropSubs()
	r.waitFeed(t, false)
	st.subscribeDown.Store(false)
	r.waitFeed(t, true)
	r.waitEvent(t, store.EventResync, "")

	// A write-back that cannot read the store (the lookups are cache hits).
	if _, err := m.Lookup(t.Context(), cookie); err != nil {
		t.Fatal(err)
	}
	st.down.Store(true)
	clk.Add(10 * time.Minute)
	if _, err := m.Lookup(t.Context(), cookie); err != nil {
		t.Fatal(err)
	}
	r.waitWrite(t, rec.ID)
	st.down.Store(false)
	if !strings.Contains(logs.String(), "write-back") {
		t.Fatalf("failed write-back not logged:\n%s", logs.String())
	}
	// An unreadable record in a listing.
	st.set(store.Session{ID: rec.ID, UserID: "alice", ExpiresAt: clk.Now().Add(time.Hour), Data: []byte("garbage")})
	if _, err := m.List(t.Context(), ""); err != nil {
		t.Fatal(err)
	}

	out := logs.String()
	if !strings.Contains(out, rec.ID) {
		t.Fatalf("logs do not name the public session ID:\n%s", out)
	}
	for name, secret := range map[string]string{"token": tok, "cookie": cookie, "key": string(testKey), "MAC": cookie[3+tokenLen+1:]} {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains the %s:\n%s", name, out)
		}
	}
}
