package session

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// flakyApprovalStore fails every call with ErrUnavailable while down.
type flakyApprovalStore struct {
	ApprovalStore
	down atomic.Bool
}

func (f *flakyApprovalStore) err() error {
	if f.down.Load() {
		return errors.Join(store.ErrUnavailable, errFakeDown)
	}
	return nil
}

func (f *flakyApprovalStore) PutEphemeral(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.ApprovalStore.PutEphemeral(ctx, k, v, ttl)
}

func (f *flakyApprovalStore) GetEphemeral(ctx context.Context, k string) ([]byte, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.ApprovalStore.GetEphemeral(ctx, k)
}

func (f *flakyApprovalStore) TakeEphemeral(ctx context.Context, k string) ([]byte, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.ApprovalStore.TakeEphemeral(ctx, k)
}

func (f *flakyApprovalStore) Incr(ctx context.Context, k string, d int64, w time.Duration) (int64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.ApprovalStore.Incr(ctx, k, d, w)
}

type approvalEnv struct {
	clock *revTestClock
	st    *flakyApprovalStore
	a     *SSHApprovals
}

func newApprovalEnv(t *testing.T) *approvalEnv {
	t.Helper()
	re := newRevTestEnv(t)
	fs := &flakyApprovalStore{ApprovalStore: re.st}
	a, err := NewSSHApprovals(fs, SSHCAOptions{Now: re.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &approvalEnv{clock: re.clock, st: fs, a: a}
}

var testApprovalReq = SSHApproval{SourceIP: "192.0.2.7", Target: "db-1", Login: "root", Instance: "b-1"}

func (e *approvalEnv) create(t *testing.T) (string, SSHApproval) {
	t.Helper()
	code, rec, err := e.a.Create(context.Background(), testApprovalReq, DefaultApprovalTTL)
	if err != nil {
		t.Fatal(err)
	}
	return code, rec
}

var approvedBy = SSHApprovalDecision{Approved: true, UserID: "https://idp#alice", Roles: []string{"eng"}, WebSessionID: "sess-1"}

func TestSSHApprovalLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	code, rec := e.create(t)
	if !ValidApprovalCode(code) || len(code) != 22 {
		t.Fatalf("code %q", code)
	}
	if !regexp.MustCompile(`^[A-Z2-9]{4}-[A-Z2-9]{4}$`).MatchString(rec.Display) || strings.ContainsAny(rec.Display, "01IO") {
		t.Fatalf("display code %q", rec.Display)
	}
	if !rec.Created.Equal(caTestNow) || !rec.Expires.Equal(caTestNow.Add(DefaultApprovalTTL)) || rec.SourceIP != "192.0.2.7" {
		t.Fatalf("record %+v", rec)
	}
	if ref := ApprovalRef(code); len(ref) != 16 || strings.Contains(ref, code) {
		t.Fatalf("ref %q", ref)
	}
	got, err := e.a.Pending(ctx, code)
	if err != nil || got != rec {
		t.Fatalf("Pending = %+v, %v; want %+v", got, err, rec)
	}
	// Nothing decided yet.
	if _, ok, err := e.a.Outcome(ctx, code); ok || err != nil {
		t.Fatalf("Outcome before decision: ok=%v err=%v", ok, err)
	}
	e.clock.Advance(time.Minute)
	decided, err := e.a.Decide(ctx, code, approvedBy)
	if err != nil || decided != rec {
		t.Fatalf("Decide = %+v, %v", decided, err)
	}
	// Single use: the page and a second decision see nothing.
	if _, err := e.a.Pending(ctx, code); !errors.Is(err, ErrApprovalUnknown) {
		t.Fatalf("Pending after decision: %v", err)
	}
	if _, err := e.a.Decide(ctx, code, SSHApprovalDecision{}); !errors.Is(err, ErrApprovalUnknown) {
		t.Fatalf("second Decide: %v", err)
	}
	d, ok, err := e.a.Outcome(ctx, code)
	if err != nil || !ok || !d.Approved || d.UserID != approvedBy.UserID || d.WebSessionID != "sess-1" ||
		!d.At.Equal(caTestNow.Add(time.Minute)) || !d.Same(rec) {
		t.Fatalf("Outcome = %+v ok=%v err=%v", d, ok, err)
	}
	if _, ok, _ := e.a.Outcome(ctx, code); ok {
		t.Fatal("decision collected twice")
	}
}

func TestSSHApprovalDeny(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	code, rec := e.create(t)
	if _, err := e.a.Decide(ctx, code, SSHApprovalDecision{Approved: false, UserID: "https://idp#alice"}); err != nil {
		t.Fatal(err)
	}
	d, ok, err := e.a.Outcome(ctx, code)
	if err != nil || !ok || d.Approved || !d.Same(rec) {
		t.Fatalf("Outcome = %+v ok=%v err=%v", d, ok, err)
	}
}

func TestSSHApprovalExpiry(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	code, _ := e.create(t)
	e.clock.Advance(DefaultApprovalTTL)
	if _, err := e.a.Pending(ctx, code); !errors.Is(err, ErrApprovalUnknown) {
		t.Fatalf("Pending after expiry: %v", err)
	}
	if _, err := e.a.Decide(ctx, code, approvedBy); !errors.Is(err, ErrApprovalUnknown) {
		t.Fatalf("Decide after expiry: %v", err)
	}
	if _, ok, err := e.a.Outcome(ctx, code); ok || err != nil {
		t.Fatalf("Outcome after expiry: ok=%v err=%v", ok, err)
	}
}

func TestSSHApprovalCancel(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	code, _ := e.create(t)
	if err := e.a.Cancel(ctx, code); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.Decide(ctx, code, approvedBy); !errors.Is(err, ErrApprovalUnknown) {
		t.Fatalf("Decide after Cancel: %v", err)
	}
	// A decision made just before the connection gave up is dropped.
	code, _ = e.create(t)
	if _, err := e.a.Decide(ctx, code, approvedBy); err != nil {
		t.Fatal(err)
	}
	if err := e.a.Cancel(ctx, code); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := e.a.Outcome(ctx, code); ok {
		t.Fatal("decision survived Cancel")
	}
}

func TestSSHApprovalCreateInvalid(t *testing.T) {
	e := newApprovalEnv(t)
	tests := []struct {
		name string
		mod  func(*SSHApproval)
		ttl  time.Duration
	}{
		{"no source", func(r *SSHApproval) { r.SourceIP = "" }, time.Minute},
		{"source not an address", func(r *SSHApproval) { r.SourceIP = "db-1" }, time.Minute},
		{"source with zone", func(r *SSHApproval) { r.SourceIP = "fe80::1%eth0" }, time.Minute},
		{"empty login", func(r *SSHApproval) { r.Login = "" }, time.Minute},
		{"login with comma", func(r *SSHApproval) { r.Login = "root,admin" }, time.Minute},
		{"login with newline", func(r *SSHApproval) { r.Login = "root\nadmin" }, time.Minute},
		{"target with control", func(r *SSHApproval) { r.Target = "db\x00" }, time.Minute},
		{"huge login", func(r *SSHApproval) { r.Login = strings.Repeat("a", 2000) }, time.Minute},
		{"huge instance", func(r *SSHApproval) { r.Instance = strings.Repeat("a", 2000) }, time.Minute},
		{"zero TTL", func(*SSHApproval) {}, 0},
		{"negative TTL", func(*SSHApproval) {}, -time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := testApprovalReq
			tc.mod(&req)
			if _, _, err := e.a.Create(context.Background(), req, tc.ttl); !errors.Is(err, ErrApprovalRequest) {
				t.Fatalf("Create = %v, want ErrApprovalRequest", err)
			}
		})
	}
}

func TestSSHApprovalCreateNormalises(t *testing.T) {
	e := newApprovalEnv(t)
	req := testApprovalReq
	req.SourceIP, req.Target = "::ffff:192.0.2.9", ""
	_, rec, err := e.a.Create(context.Background(), req, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rec.SourceIP != "192.0.2.9" || rec.Target != "" || rec.Expires.Sub(rec.Created) != MaxApprovalTTL {
		t.Fatalf("record %+v", rec)
	}
}

func TestSSHApprovalRateLimit(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	for i := range DefaultApprovalsPerSource {
		if _, _, err := e.a.Create(ctx, testApprovalReq, time.Minute); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if _, _, err := e.a.Create(ctx, testApprovalReq, time.Minute); !errors.Is(err, ErrApprovalRate) {
		t.Fatalf("over the limit: %v", err)
	}
	// The mapped form of the same address is the same source.
	mapped := testApprovalReq
	mapped.SourceIP = "::ffff:" + testApprovalReq.SourceIP
	if _, _, err := e.a.Create(ctx, mapped, time.Minute); !errors.Is(err, ErrApprovalRate) {
		t.Fatalf("mapped address escaped the limit: %v", err)
	}
	other := testApprovalReq
	other.SourceIP = "198.51.100.1"
	if _, _, err := e.a.Create(ctx, other, time.Minute); err != nil {
		t.Fatalf("another source: %v", err)
	}
	e.clock.Advance(DefaultApprovalTTL)
	if _, _, err := e.a.Create(ctx, testApprovalReq, time.Minute); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestSSHApprovalDecideInvalid(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	code, _ := e.create(t)
	tests := []struct {
		name string
		d    SSHApprovalDecision
	}{
		{"approval without user", SSHApprovalDecision{Approved: true}},
		{"user with control character", SSHApprovalDecision{Approved: true, UserID: "alice\n"}},
		{"role with comma", SSHApprovalDecision{Approved: true, UserID: "alice", Roles: []string{"a,b"}}},
		{"empty role", SSHApprovalDecision{Approved: true, UserID: "alice", Roles: []string{""}}},
		{"bad web session", SSHApprovalDecision{Approved: true, UserID: "alice", WebSessionID: "x\x00"}},
		{"too many roles", SSHApprovalDecision{Approved: true, UserID: "alice", Roles: make([]string, 300)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.a.Decide(ctx, code, tc.d); !errors.Is(err, ErrApprovalRequest) {
				t.Fatalf("Decide = %v", err)
			}
		})
	}
	// A refused decision did not use the code up.
	if _, err := e.a.Pending(ctx, code); err != nil {
		t.Fatalf("pending lost by refused decisions: %v", err)
	}
}

func TestSSHApprovalMalformedCodes(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	for _, code := range []string{
		"", "x", strings.Repeat("A", 21), strings.Repeat("A", 23), strings.Repeat("A", 4096),
		"AAAAAAAAAAAAAAAAAAAA+/", "AAAAAAAAAAAAAAAAAAAA==", "../../../../etc/passwd", "AAAAAAAAAAAAAAAAAAAAA\x00",
		"ÄAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAB", // last: non-canonical trailing bits
	} {
		if ValidApprovalCode(code) {
			t.Errorf("ValidApprovalCode(%q) = true", code)
		}
		if _, err := e.a.Pending(ctx, code); !errors.Is(err, ErrApprovalUnknown) {
			t.Errorf("Pending(%q) = %v", code, err)
		}
		if _, err := e.a.Decide(ctx, code, approvedBy); !errors.Is(err, ErrApprovalUnknown) {
			t.Errorf("Decide(%q) = %v", code, err)
		}
		if _, _, err := e.a.Outcome(ctx, code); !errors.Is(err, ErrApprovalUnknown) {
			t.Errorf("Outcome(%q) = %v", code, err)
		}
		if err := e.a.Cancel(ctx, code); !errors.Is(err, ErrApprovalUnknown) {
			t.Errorf("Cancel(%q) = %v", code, err)
		}
	}
	// Well formed but never created.
	if _, err := e.a.Pending(ctx, "AAAAAAAAAAAAAAAAAAAAAA"); !errors.Is(err, ErrApprovalUnknown) {
		t.Fatalf("unknown code: %v", err)
	}
}

func TestSSHApprovalStoreDown(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	code, _ := e.create(t)
	e.st.down.Store(true)
	if _, _, err := e.a.Create(ctx, testApprovalReq, time.Minute); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Create: %v", err)
	}
	if _, err := e.a.Pending(ctx, code); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Pending: %v", err)
	}
	if _, err := e.a.Decide(ctx, code, approvedBy); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Decide: %v", err)
	}
	if _, ok, err := e.a.Outcome(ctx, code); ok || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Outcome: ok=%v %v", ok, err)
	}
}

// TestSSHApprovalDecideRace: of many concurrent decisions on one code,
// exactly one wins.
func TestSSHApprovalDecideRace(t *testing.T) {
	ctx := context.Background()
	e := newApprovalEnv(t)
	code, _ := e.create(t)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := approvedBy
			d.Approved = i%2 == 0
			if _, err := e.a.Decide(ctx, code, d); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ErrApprovalUnknown) {
				t.Errorf("Decide: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d decisions won", wins.Load())
	}
}

// FuzzSSHApprovalCode: any string is refused before it reaches the store
// unless it has the shape of a code (the store here is down, so reaching
// it shows as ErrUnavailable).
func FuzzSSHApprovalCode(f *testing.F) {
	for _, s := range []string{"", "AAAAAAAAAAAAAAAAAAAAAA", "_-_-_-_-_-_-_-_-_-_-_-", "%00", strings.Repeat("z", 100)} {
		f.Add(s)
	}
	fs := &flakyApprovalStore{}
	fs.down.Store(true)
	a, err := NewSSHApprovals(fs, SSHCAOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code string) {
		_, err := a.Pending(context.Background(), code)
		reached := errors.Is(err, store.ErrUnavailable)
		if reached != ValidApprovalCode(code) || (!reached && !errors.Is(err, ErrApprovalUnknown)) {
			t.Fatalf("Pending(%q) = %v (valid shape %v)", code, err, ValidApprovalCode(code))
		}
	})
}
