package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/authz/store"
)

// coreClock is a settable clock shared by the gateway, the session manager
// and the store, so expiry is tested without sleeping.
type coreClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *coreClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *coreClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// flakyStore is the real embedded store whose session reads can be made
// to fail as an unreachable backend would, and whose pings (the
// gateway's store pinger) can be made to fail on their own.
type flakyStore struct {
	store.Store
	down     atomic.Bool
	pingDown atomic.Bool
	// riskReads counts the reads and writes the risk engine makes
	// (locks, counters, records), to prove the proxy's allowed path
	// makes none.
	riskReads atomic.Int64
}

func (f *flakyStore) Ping(ctx context.Context) error {
	if f.down.Load() || f.pingDown.Load() {
		return store.ErrUnavailable
	}
	return f.Store.Ping(ctx)
}

func (f *flakyStore) GetLock(ctx context.Context, subject string) (store.Lock, error) {
	f.riskReads.Add(1)
	if f.down.Load() {
		return store.Lock{}, store.ErrUnavailable
	}
	return f.Store.GetLock(ctx, subject)
}

func (f *flakyStore) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error) {
	f.riskReads.Add(1)
	if f.down.Load() {
		return 0, store.ErrUnavailable
	}
	return f.Store.Incr(ctx, key, delta, window)
}

func (f *flakyStore) GetEphemeral(ctx context.Context, key string) ([]byte, error) {
	f.riskReads.Add(1)
	if f.down.Load() {
		return nil, store.ErrUnavailable
	}
	return f.Store.GetEphemeral(ctx, key)
}

func (f *flakyStore) GetSession(ctx context.Context, id string) (store.Session, error) {
	if f.down.Load() {
		return store.Session{}, store.ErrUnavailable
	}
	return f.Store.GetSession(ctx, id)
}

func (f *flakyStore) TakeEphemeral(ctx context.Context, key string) ([]byte, error) {
	if f.down.Load() {
		return nil, store.ErrUnavailable
	}
	return f.Store.TakeEphemeral(ctx, key)
}

// upstreamSeen is what the echo upstream reports about a request.
type upstreamSeen struct {
	Host   string      `json:"host"`
	Path   string      `json:"path"`
	Query  string      `json:"query"`
	Header http.Header `json:"header"`
}

// coreEnv is a gateway wired to real collaborators: the embedded store, a
// real session manager, a compiled policy, the in-memory audit trail, and
// an httptest upstream.
type coreEnv struct {
	t         testing.TB
	g         *Gateway
	st        *flakyStore
	sess      *session.Manager
	audit     *audit.Memory
	clock     *coreClock
	key       *ecdsa.PrivateKey
	risk      *risk.Engine
	tick      chan time.Time // the store pinger's ticks
	upstream  *httptest.Server
	policy    atomic.Pointer[authz.Policy]
	cookieKey []byte
}

const (
	coreAccess  = "access.example.com"
	coreGrafana = "grafana.example.com"
	coreStatus  = "status.example.com"
	coreOffice  = "office.example.com"
	coreStream  = "stream.example.com"
)

func corePolicy(t testing.TB) *authz.Policy {
	t.Helper()
	p, err := authz.Compile(authz.PolicyConfig{
		Apps: []authz.AppConfig{
			{Name: "grafana"}, {Name: "grafana-api"}, {Name: "status", Public: true},
			{Name: "office", AllowedCIDRs: []string{"10.0.0.0/8"}}, {Name: "stream"},
		},
		Roles: []authz.RoleConfig{{
			Name:   "engineer",
			Groups: []string{"eng"},
			Allow:  []authz.Rule{{Apps: []string{"*"}}},
			Deny:   []authz.Rule{{Apps: []string{"grafana"}, PathPrefixes: []string{"/admin"}}},
		}},
	})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return p
}

// echoUpstream reports what it received; /ws is a WebSocket echo, /sse
// and /stream hold the response open after a first flushed event until
// the client has seen it.
func echoUpstream(t testing.TB) (*httptest.Server, chan struct{}) {
	release := make(chan struct{})
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			out := append([]byte("echo "+r.Header.Get("X-Portcullis-User")+": "), msg...)
			if err := c.WriteMessage(mt, out); err != nil {
				return
			}
		}
	})
	stream := func(ct string, length string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			if length != "" {
				// A declared length makes ReverseProxy buffer unless the
				// route's flush_interval says otherwise.
				w.Header().Set("Content-Length", length)
			}
			w.WriteHeader(http.StatusOK)
			// The upstream flushes; the gateway must pass that on at once
			// instead of buffering.
			_, _ = io.WriteString(w, "data: first\n\n")
			_ = http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "data: second\n\n")
		}
	}
	mux.HandleFunc("/sse", stream("text/event-stream", ""))
	mux.HandleFunc("/stream", stream("text/plain", strconv.Itoa(len("data: first\n\ndata: second\n\n"))))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Strict-Transport-Security", "max-age=1")
		w.Header().Add("Set-Cookie", "__Host-portcullis=planted; Path=/; Secure")
		w.Header().Add("Set-Cookie", "app=1")
		_ = json.NewEncoder(w).Encode(upstreamSeen{Host: r.Host, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, release
}

type coreOpt func(*Config)

func newCoreEnv(t testing.TB, opts ...coreOpt) (*coreEnv, chan struct{}) {
	t.Helper()
	return newCoreEnvRisk(t, risk.Config{}, opts...)
}

// newCoreEnvRisk is newCoreEnv with a risk engine configured by rc.
func newCoreEnvRisk(t testing.TB, rc risk.Config, opts ...coreOpt) (*coreEnv, chan struct{}) {
	t.Helper()
	return newCoreEnvWith(t, coreSetup{risk: rc}, opts...)
}

// coreSetup varies what newCoreEnvWith builds.
type coreSetup struct {
	risk risk.Config
	// open opens the store (default: a fresh embedded one); two
	// environments over one Redis prefix are two instances.
	open func(t testing.TB, now func() time.Time) store.Store
	// cookieKey is shared by instances of one deployment (default random).
	cookieKey []byte
	clock     *coreClock
	instance  string
}

func newCoreEnvWith(t testing.TB, cs coreSetup, opts ...coreOpt) (*coreEnv, chan struct{}) {
	t.Helper()
	// Real time as the start: TLS clients in the socket tests check the
	// self-signed certificate against the wall clock.
	clock := cs.clock
	if clock == nil {
		clock = &coreClock{now: time.Now().UTC().Truncate(time.Second)}
	}
	if cs.open == nil {
		cs.open = func(t testing.TB, now func() time.Time) store.Store {
			emb, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"), store.EmbeddedOptions{Now: now})
			if err != nil {
				t.Fatalf("store: %v", err)
			}
			return emb
		}
	}
	inner := cs.open(t, clock.Now)
	t.Cleanup(func() { inner.Close() })
	st := &flakyStore{Store: inner}
	key := cs.cookieKey
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	if cs.instance == "" {
		cs.instance = "gw-test"
	}
	sess, err := session.NewManager(session.Config{CookieKey: key}, st, session.Options{Now: clock.Now})
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := sess.Start(ctx); err != nil {
		t.Fatalf("session start: %v", err)
	}
	up, release := echoUpstream(t)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	sk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		AccessHost: coreAccess,
		TLS:        TLSConfig{Mode: ModeSelfSigned},
		Instance:   cs.instance,
		Routes: []Route{
			{Name: "grafana", Host: coreGrafana, Upstream: up.URL},
			{Name: "grafana-api", Host: coreGrafana, PathPrefix: "/api/v2", Upstream: up.URL + "/base"},
			{Name: "status", Host: coreStatus, Upstream: up.URL},
			{Name: "office", Host: coreOffice, Upstream: up.URL},
			{Name: "stream", Host: coreStream, Upstream: up.URL, FlushInterval: -1},
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	e := &coreEnv{t: t, st: st, sess: sess, audit: &audit.Memory{}, clock: clock, key: sk, upstream: up, cookieKey: key,
		tick: make(chan time.Time)}
	e.policy.Store(corePolicy(t))
	e.risk, err = risk.New(cs.risk, st, risk.Options{Instance: cs.instance, Audit: e.audit, Now: clock.Now, Revokers: []risk.Revoker{sess}})
	if err != nil {
		t.Fatalf("risk: %v", err)
	}
	g, err := New(cfg, Deps{
		Policy: &e.policy, Sessions: sess, Store: st, Audit: e.audit, SigningKey: sk,
		Now: clock.Now, Risk: e.risk, StoreTick: e.tick, AuditHealth: e.audit,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	e.g = g
	return e, release
}

// login creates a real session and returns its cookie value.
func (e *coreEnv) login(rec session.Record) string {
	e.t.Helper()
	if rec.UserID == "" {
		rec.UserID = "https://idp.example.com#alice"
	}
	if rec.Roles == nil {
		rec.Roles = []string{"engineer"}
		rec.Groups = []string{"eng", "ops"}
		rec.MFA = true
		rec.Email = "alice@example.com"
	}
	if rec.AuthTime.IsZero() {
		rec.AuthTime = e.clock.Now()
	}
	tok, _, err := e.sess.Create(context.Background(), rec)
	if err != nil {
		e.t.Fatalf("create session: %v", err)
	}
	return e.sess.Cookie(tok, 0).Value
}

// request builds a request to host+target from remote with the session
// cookie (if any) and extra headers.
func (e *coreEnv) request(method, host, target, cookie string, hdr http.Header) *http.Request {
	r := httptest.NewRequest(method, "https://"+host+target, nil)
	r.RemoteAddr = "198.51.100.20:40000"
	for k, v := range hdr {
		r.Header[k] = v
	}
	if cookie != "" {
		r.Header.Add("Cookie", e.sess.CookieName()+"="+cookie)
	}
	return r
}

func (e *coreEnv) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.g.Handler().ServeHTTP(w, r)
	return w
}

func (e *coreEnv) get(host, target, cookie string, hdr http.Header) *httptest.ResponseRecorder {
	return e.serve(e.request(http.MethodGet, host, target, cookie, hdr))
}

// seen decodes the echo upstream's report (and fails if the request did
// not reach it).
func (e *coreEnv) seen(w *httptest.ResponseRecorder) upstreamSeen {
	e.t.Helper()
	if w.Code != http.StatusOK {
		e.t.Fatalf("status %d, want 200; body %s", w.Code, w.Body.String())
	}
	var s upstreamSeen
	if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
		e.t.Fatalf("upstream body: %v (%s)", err, w.Body.String())
	}
	return s
}

// lastEvent returns the most recent audit event of type typ.
func (e *coreEnv) lastEvent(typ string) audit.Event {
	e.t.Helper()
	evs := e.audit.Find(typ, "")
	if len(evs) == 0 {
		e.t.Fatalf("no %s audit event", typ)
	}
	return evs[len(evs)-1]
}

// errorBody is the JSON body of a refusal.
type errorBody struct {
	Error string `json:"error"`
	Ref   string `json:"ref"`
}

func decodeErrorBody(t *testing.T, w *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("error body is not JSON: %v (%q)", err, w.Body.String())
	}
	return b
}

// pingStore makes the gateway's pinger run one ping now and waits until it
// has: the second send on the unbuffered tick channel is received only
// once the first ping is done.
func (e *coreEnv) pingStore() {
	e.tick <- e.clock.Now()
	e.tick <- e.clock.Now()
}
