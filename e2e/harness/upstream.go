package harness

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Echo is what the upstream app received for one request.
type Echo struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	RawPath    string              `json:"raw_path"`
	RawQuery   string              `json:"raw_query"`
	Host       string              `json:"host"`
	RemoteAddr string              `json:"remote_addr"`
	Headers    map[string][]string `json:"headers"`
}

// Header returns the values of a header by its exact received name.
func (e Echo) Header(name string) []string { return e.Headers[name] }

// Upstream is the application behind the gateway in tests: it echoes the
// request it received (headers included) as JSON, or as an HTML page with
// the same JSON in <pre id="echo"> for browsers; /ws is a WebSocket echo
// and /sse a Server-Sent Events stream. With ?hsts=weak it answers with
// its own "Strict-Transport-Security: max-age=0".
type Upstream struct {
	URL string
	srv *httptest.Server

	mu   sync.Mutex
	seen []Echo
}

// SSEFirstEvent is the first event /sse sends; the stream then stays open
// (without sending more) until the client goes away, so a client only
// sees the event if every hop flushes it immediately.
const SSEFirstEvent = "data: portcullis-sse-hello\n\n"

// StartUpstream starts the app on 127.0.0.1.
func StartUpstream(t TB) *Upstream {
	t.Helper()
	u := &Upstream{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", u.websocket)
	mux.HandleFunc("/sse", u.sse)
	mux.HandleFunc("/", u.echo)
	u.srv = httptest.NewServer(mux)
	u.URL = u.srv.URL
	t.Cleanup(u.srv.Close)
	return u
}

func (u *Upstream) record(r *http.Request) Echo {
	e := Echo{
		Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery,
		Host: r.Host, RemoteAddr: r.RemoteAddr, Headers: map[string][]string(r.Header.Clone()),
	}
	u.mu.Lock()
	u.seen = append(u.seen, e)
	u.mu.Unlock()
	return e
}

func (u *Upstream) echo(w http.ResponseWriter, r *http.Request) {
	e := u.record(r)
	body, _ := json.MarshalIndent(e, "", "  ")
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Query().Get("hsts") == "weak" {
		// An upstream trying to switch HSTS off for the gateway's host.
		w.Header().Set("Strict-Transport-Security", "max-age=0")
	}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<!doctype html><title>e2e dashboard</title><h1 id=\"dashboard\">e2e dashboard</h1><pre id=\"echo\">" +
			html.EscapeString(string(body)) + "</pre>"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

var upgrader = websocket.Upgrader{
	// The gateway has already decided who may connect; the origin is
	// the route host, which this test app does not know.
	CheckOrigin: func(*http.Request) bool { return true },
}

func (u *Upstream) websocket(w http.ResponseWriter, r *http.Request) {
	u.record(r)
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(typ, append([]byte("echo:"), msg...)); err != nil {
			return
		}
	}
}

func (u *Upstream) sse(w http.ResponseWriter, r *http.Request) {
	u.record(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(SSEFirstEvent))
	http.NewResponseController(w).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(time.Minute):
	}
}

// Requests returns every request received so far.
func (u *Upstream) Requests() []Echo {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Echo(nil), u.seen...)
}

// Received returns the requests whose path contains marker; tests use
// unique path markers to find their own requests.
func (u *Upstream) Received(marker string) []Echo {
	var out []Echo
	for _, e := range u.Requests() {
		if strings.Contains(e.Path, marker) || strings.Contains(e.RawPath, marker) || strings.Contains(e.RawQuery, marker) {
			out = append(out, e)
		}
	}
	return out
}
