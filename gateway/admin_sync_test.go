package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
)

// syncGate is an audit emitter whose durability barrier (Sync) reports
// that it was entered, with the events it held at that moment, and then
// returns only when the test releases it. It also records whether the
// response had been started before the barrier was entered.
type syncGate struct {
	*audit.Memory
	block   bool
	entered chan []audit.Event
	release chan error
	calls   atomic.Int32
	// returned is set just before Sync returns; early is set when Sync
	// finds the response already started.
	returned atomic.Bool
	early    atomic.Bool
}

func (s *syncGate) Sync(ctx context.Context) error {
	s.calls.Add(1)
	if spy, ok := ctx.Value(writeSpyKey{}).(*writeSpy); ok && spy.started.Load() {
		s.early.Store(true)
	}
	if !s.block {
		s.returned.Store(true)
		return nil
	}
	s.entered <- s.Memory.Events()
	err := <-s.release
	s.returned.Store(true)
	return err
}

type writeSpyKey struct{}

// writeSpy notes whether the response was started and whether the
// barrier had returned by then.
type writeSpy struct {
	http.ResponseWriter
	gate      *syncGate
	started   atomic.Bool
	afterSync atomic.Bool
}

func (w *writeSpy) start() {
	if !w.started.Swap(true) {
		w.afterSync.Store(w.gate.returned.Load())
	}
}

func (w *writeSpy) WriteHeader(code int) {
	w.start()
	w.ResponseWriter.WriteHeader(code)
}

func (w *writeSpy) Write(b []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(b)
}

// TestAdminAnswersAfterAuditSync: an admin API success is an
// acknowledgement, so it is written only after the action's audit events
// were handed to the trail AND the durability barrier returned. A failing
// barrier turns the success into a 503 with a reference; refusals are not
// acknowledgements and do not wait.
func TestAdminAnswersAfterAuditSync(t *testing.T) {
	env, _ := newCoreEnv(t)
	ctx := t.Context()
	const victim = "https://idp.example.com#crash-user"
	if err := putUser(ctx, env.st, userRecord{UserID: victim, Email: "v@example.com"}); err != nil {
		t.Fatal(err)
	}
	cookie := env.login(session.Record{})
	rec, err := env.sess.Lookup(ctx, cookie)
	if err != nil {
		t.Fatal(err)
	}
	lockBody, _ := json.Marshal(LockRequest{UserID: victim, Reason: "crash drill"})

	tests := []struct {
		name, method, path, body string
		syncErr                  error // what the barrier returns (blocking cases)
		block                    bool  // the barrier blocks until released
		want                     int
		wantActions              []string // admin events held when the barrier was entered
		wantTypes                []string // other event types held then
		wantBody                 string
	}{
		{name: "read: locks list", method: http.MethodGet, path: "/api/admin/locks", block: true,
			want: http.StatusOK, wantActions: []string{"locks.list"}, wantBody: `"locks"`},
		{name: "lock", method: http.MethodPost, path: "/api/admin/locks/lock", body: string(lockBody), block: true,
			want: http.StatusOK, wantActions: []string{"lock"}, wantBody: `"subject":"user:` + victim},
		{name: "session revoke: admin and domain event", method: http.MethodPost,
			path: "/api/admin/sessions/" + url.PathEscape(rec.ID) + "/revoke", body: `{"reason":"drill"}`, block: true,
			want: http.StatusOK, wantActions: []string{"session.revoke"}, wantTypes: []string{audit.TypeSessionRevoke}, wantBody: `"ok":true`},
		{name: "barrier fails: not acknowledged", method: http.MethodPost, path: "/api/admin/locks/lock", body: string(lockBody),
			block: true, syncErr: errors.New("disk full"),
			want: http.StatusServiceUnavailable, wantActions: []string{"lock"}, wantBody: `"error":"audit trail unavailable"`},
		{name: "refusal does not wait", method: http.MethodPost, path: "/api/admin/locks/lock", body: `{"user_id":`,
			want: http.StatusBadRequest, wantBody: `"ref"`},
		{name: "unknown endpoint does not wait", method: http.MethodGet, path: "/api/admin/nope",
			want: http.StatusNotFound, wantBody: `"ref"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gate := &syncGate{Memory: &audit.Memory{}, block: tc.block, entered: make(chan []audit.Event, 1), release: make(chan error)}
			deps := env.g.deps
			deps.Audit = gate
			g, err := New(env.g.cfg, deps)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.Close() })
			spy := &writeSpy{gate: gate}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				spy.ResponseWriter = w
				g.AdminHandler().ServeHTTP(spy, r.WithContext(context.WithValue(r.Context(), writeSpyKey{}, spy)))
			}))
			t.Cleanup(srv.Close)

			type answer struct {
				status int
				body   string
				err    error
			}
			got := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
				resp, err := srv.Client().Do(req)
				if err != nil {
					got <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				got <- answer{status: resp.StatusCode, body: string(b), err: err}
			}()

			if tc.block {
				held := <-gate.entered
				// The barrier is in progress: no answer may exist yet.
				select {
				case a := <-got:
					t.Fatalf("answered (%d %s) while the audit barrier had not returned", a.status, a.body)
				default:
				}
				for _, want := range tc.wantActions {
					if !hasEvent(held, audit.TypeAdmin, "action", want) {
						t.Errorf("admin %q event not emitted before the barrier: %+v", want, held)
					}
				}
				for _, typ := range tc.wantTypes {
					if !hasEvent(held, typ, "", "") {
						t.Errorf("%s event not emitted before the barrier: %+v", typ, held)
					}
				}
				gate.release <- tc.syncErr
			}
			a := <-got
			if a.err != nil {
				t.Fatal(a.err)
			}
			if a.status != tc.want || !strings.Contains(a.body, tc.wantBody) {
				t.Fatalf("answer %d %s, want %d with %s", a.status, a.body, tc.want, tc.wantBody)
			}
			if gate.early.Load() {
				t.Error("the response was started before the audit barrier was entered")
			}
			if tc.block && !spy.afterSync.Load() {
				t.Error("the response was started before the audit barrier returned")
			}
			if n := gate.calls.Load(); tc.block != (n > 0) {
				t.Errorf("barrier calls %d (blocking case %v)", n, tc.block)
			}
			if tc.syncErr != nil {
				var e adminError
				if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Ref == "" || strings.Contains(a.body, "disk full") {
					t.Errorf("503 body %s: want a generic message and a reference, no cause", a.body)
				}
				if evs := gate.Find(audit.TypeAdmin, "audit-unavailable"); len(evs) != 1 || evs[0].Decision != audit.Deny || evs[0].Ref != e.Ref {
					t.Errorf("audit-unavailable events %+v", evs)
				}
				if strings.Contains(a.body, `"lock"`) {
					t.Errorf("a success body leaked into the 503: %s", a.body)
				}
			}
		})
	}
}

func hasEvent(evs []audit.Event, typ, attr, val string) bool {
	for _, e := range evs {
		if e.Type == typ && (attr == "" || e.Attrs[attr] == val) {
			return true
		}
	}
	return false
}
