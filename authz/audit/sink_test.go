package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Sink tests run real receivers: a TCP and a TLS syslog server that parse
// the octet-counting framing and the RFC 5424 header, and an httptest
// webhook that fails on purpose. The trail is written by a real FileLog.

// fastAfter shortens the shipper's waits (poll, backoff) so tests do not
// idle; it never replaces a clock the tests assert on.
func fastAfter(time.Duration) <-chan time.Time { return time.After(2 * time.Millisecond) }

// writeTrail opens a FileLog in dir and emits n decision events for
// users u<i>; it returns the log (open) after a Flush.
func writeSinkTrail(t *testing.T, dir, instance string, n int) *FileLog {
	t.Helper()
	l, err := OpenFile(FileConfig{Dir: dir, Instance: instance, CheckpointEvery: 7}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	emitN(t, l, 0, n)
	return l
}

func emitN(t *testing.T, l *FileLog, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		l.Emit(context.Background(), Event{Type: TypeDecision, UserID: fmt.Sprintf("u%d", i), Decision: Allow, Reason: "ok"})
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
}

// trailLines returns every chained line of the instance's trail by seq.
func trailLines(t *testing.T, dir, instance string) map[uint64][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, FileName(instance)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64][]byte{}
	var r record
	var p parsed
	for line := range bytes.SplitSeq(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if err := parseRecord(line, &r, &p); err != nil {
			t.Fatalf("trail line %q: %v", line, err)
		}
		out[r.seq] = line
	}
	return out
}

// collector keeps what a receiver got, in arrival order.
type collector struct {
	mu     sync.Mutex
	seqs   []uint64
	lines  map[uint64][]byte
	signal chan struct{}
}

func newCollector() *collector {
	return &collector{lines: map[uint64][]byte{}, signal: make(chan struct{}, 1)}
}

func (c *collector) add(t *testing.T, line []byte) {
	var r record
	var p parsed
	if err := parseRecord(line, &r, &p); err != nil {
		t.Errorf("received line %q: %v", line, err)
		return
	}
	c.mu.Lock()
	c.seqs = append(c.seqs, r.seq)
	c.lines[r.seq] = bytes.Clone(line)
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// waitFor waits until every seq up to last arrived.
func (c *collector) waitFor(t *testing.T, last uint64) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a safety net, not an assertion on speed
	for {
		c.mu.Lock()
		got := uint64(len(c.lines))
		_, have := c.lines[last]
		c.mu.Unlock()
		if have && got >= last {
			return
		}
		select {
		case <-c.signal:
		case <-deadline:
			t.Fatalf("timed out waiting for seq %d (have %d records)", last, got)
		}
	}
}

// check asserts at-least-once, in-order, no-gap delivery of 1..last
// with the exact trail bytes: every record arrived; a record first
// arrives only after every record before it has (redeliveries repeat a
// suffix of what came before, never jump ahead).
func (c *collector) check(t *testing.T, want map[uint64][]byte, last uint64) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var high uint64
	for i, s := range c.seqs {
		if s > high+1 {
			t.Fatalf("arrival %d is seq %d, but only 1..%d had arrived: skipped records", i, s, high)
		}
		high = max(high, s)
	}
	for s := uint64(1); s <= last; s++ {
		got, ok := c.lines[s]
		if !ok {
			t.Fatalf("seq %d never arrived", s)
		}
		if !bytes.Equal(got, want[s]) {
			t.Fatalf("seq %d arrived as %q, trail has %q", s, got, want[s])
		}
	}
}

func (c *collector) arrivals() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.seqs...)
}

// runShipper runs a shipper until the test ends (or stop is called).
func runShipper(t *testing.T, sh *Shipper) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sh.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// ---- syslog receiver ----

type syslogMsg struct {
	pri                        int
	ts, host, app, proc, msgid string
	sdID                       string
	params                     map[string]string
	msg                        []byte
}

// parseSyslog parses one RFC 5424 message with a single SD element and a
// BOM-prefixed UTF-8 MSG, as the sink writes them.
func parseSyslog(b []byte) (syslogMsg, error) {
	var m syslogMsg
	if len(b) < 4 || b[0] != '<' {
		return m, errors.New("no PRI")
	}
	end := bytes.IndexByte(b, '>')
	if end < 2 || end > 4 {
		return m, errors.New("bad PRI")
	}
	pri, err := strconv.Atoi(string(b[1:end]))
	if err != nil || pri > 191 {
		return m, errors.New("bad PRI value")
	}
	m.pri = pri
	rest := b[end+1:]
	if !bytes.HasPrefix(rest, []byte("1 ")) {
		return m, errors.New("not version 1")
	}
	rest = rest[2:]
	fields := make([]string, 5)
	for i := range fields {
		sp := bytes.IndexByte(rest, ' ')
		if sp <= 0 {
			return m, fmt.Errorf("header field %d missing", i)
		}
		fields[i] = string(rest[:sp])
		for _, c := range rest[:sp] {
			if c < 33 || c > 126 {
				return m, fmt.Errorf("header field %d has byte %#x", i, c)
			}
		}
		rest = rest[sp+1:]
	}
	m.ts, m.host, m.app, m.proc, m.msgid = fields[0], fields[1], fields[2], fields[3], fields[4]
	if m.ts != "-" {
		if _, err := time.Parse(time.RFC3339Nano, m.ts); err != nil {
			return m, fmt.Errorf("timestamp %q: %v", m.ts, err)
		}
		if dot := strings.IndexByte(m.ts, '.'); dot >= 0 && len(strings.TrimRight(m.ts[dot+1:], "Z")) > 6 {
			return m, fmt.Errorf("timestamp %q has more than 6 fractional digits", m.ts)
		}
	}
	if len(m.msgid) > 32 || len(m.app) > 48 || len(m.proc) > 128 || len(m.host) > 255 {
		return m, errors.New("header field too long")
	}
	if len(rest) == 0 || rest[0] != '[' {
		return m, errors.New("no structured data")
	}
	// SD-ID, then PARAM="VALUE" pairs with \" \\ \] escapes, then ']'.
	i := 1
	sp := bytes.IndexAny(rest[i:], " ]")
	if sp < 0 {
		return m, errors.New("unterminated SD-ID")
	}
	m.sdID = string(rest[i : i+sp])
	i += sp
	m.params = map[string]string{}
	for rest[i] == ' ' {
		i++
		eq := bytes.IndexByte(rest[i:], '=')
		if eq <= 0 || i+eq+1 >= len(rest) || rest[i+eq+1] != '"' {
			return m, errors.New("bad SD-PARAM")
		}
		name := string(rest[i : i+eq])
		i += eq + 2
		var v []byte
		for {
			if i >= len(rest) {
				return m, errors.New("unterminated PARAM-VALUE")
			}
			c := rest[i]
			if c == '\\' && i+1 < len(rest) && (rest[i+1] == '"' || rest[i+1] == '\\' || rest[i+1] == ']') {
				v = append(v, rest[i+1])
				i += 2
				continue
			}
			if c == '"' {
				i++
				break
			}
			if c == ']' {
				return m, errors.New("unescaped ] in PARAM-VALUE")
			}
			v = append(v, c)
			i++
		}
		m.params[name] = string(v)
	}
	if rest[i] != ']' {
		return m, errors.New("SD element not closed")
	}
	rest = rest[i+1:]
	if !bytes.HasPrefix(rest, []byte(" \xef\xbb\xbf")) {
		return m, errors.New("MSG does not start with SP BOM")
	}
	m.msg = rest[4:]
	return m, nil
}

// syslogReceiver accepts connections (TLS when cfg is set), reads
// octet-counted frames, parses them and hands each MSG to the collector.
type syslogReceiver struct {
	t    *testing.T
	ln   net.Listener
	col  *collector
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn []net.Conn
	msgs []syslogMsg
}

func startSyslog(t *testing.T, addr string, cfg *tls.Config, col *collector) *syslogReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	r := &syslogReceiver{t: t, ln: ln, col: col}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conn = append(r.conn, c)
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.serve(c)
			}()
		}
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *syslogReceiver) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
		if err != nil || n <= 0 || n > 1<<20 || lenStr[0] == '0' {
			r.t.Errorf("bad octet count %q", lenStr)
			return
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(br, frame); err != nil {
			return
		}
		m, err := parseSyslog(frame)
		if err != nil {
			r.t.Errorf("syslog frame %q: %v", frame, err)
			return
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, m)
		r.mu.Unlock()
		r.col.add(r.t, m.msg)
	}
}

// stop closes the listener and every connection, and waits.
func (r *syslogReceiver) stop() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conn {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *syslogReceiver) messages() []syslogMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]syslogMsg(nil), r.msgs...)
}

// testTLS returns a server config with a fresh certificate for 127.0.0.1
// and a client config that trusts only it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "syslog test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool}
	return server, client
}

func newTestShipper(t *testing.T, c SinkConfig, dir, instance string, opts SinkOptions) *Shipper {
	t.Helper()
	sink, err := NewSink(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	sc := c.ShipConfig(dir, instance)
	sc.Poll = time.Millisecond
	sh, err := NewShipper(sc, sink, ShipOptions{Now: time.Now, After: fastAfter})
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func TestSyslogSink(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"tcp", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const inst = `gw "1"]\x`
			l := writeSinkTrail(t, dir, inst, 40)
			col := newCollector()
			var srvTLS, cliTLS *tls.Config
			if tc.tls {
				srvTLS, cliTLS = testTLS(t)
			}
			recv := startSyslog(t, "127.0.0.1:0", srvTLS, col)
			addr := recv.ln.Addr().String()
			c := SinkConfig{Name: "siem", Kind: SinkSyslog, Address: addr, TLS: cliTLS, Hostname: "bastion 1", BatchRecords: 16}
			sh := newTestShipper(t, c, dir, inst, SinkOptions{})
			stop := runShipper(t, sh)
			head := sh.waitHead(t, l)
			col.waitFor(t, head)

			// The receiver goes away; records written meanwhile wait in
			// the trail and arrive once a receiver listens again.
			recv.stop()
			emitN(t, l, 40, 25)
			recv2 := startSyslog(t, addr, srvTLS, col)
			head = sh.waitHead(t, l)
			col.waitFor(t, head)
			stop()
			col.check(t, trailLines(t, dir, inst), head)

			msgs := append(recv.messages(), recv2.messages()...)
			m := msgs[0]
			if m.pri != syslogFacility*8+syslogInfo || m.host != "bastion_1" || m.app != "portcullis" || m.msgid != TypeDecision ||
				m.sdID != SyslogSDID || m.params["instance"] != inst || m.params["seq"] != "1" || m.params["type"] != TypeDecision {
				t.Errorf("first message header: %+v", m)
			}
			if m.ts != "2025-03-04T05:06:07.891011Z" {
				t.Errorf("timestamp %q", m.ts)
			}
			var sawCkpt bool
			for _, m := range msgs {
				var r record
				var p parsed
				parseRecord(m.msg, &r, &p)
				if m.params["seq"] != strconv.FormatUint(r.seq, 10) || m.params["type"] != string(p.typ) || m.msgid != string(p.typ) {
					t.Errorf("structured data %v does not match the record %q", m.params, m.msg)
				}
				sawCkpt = sawCkpt || string(p.typ) == TypeCheckpoint
			}
			if !sawCkpt {
				t.Error("signed checkpoints are not shipped")
			}
			if st := sh.Status(); st.Shipped != head || st.Failing || len(st.Gaps) > 0 {
				t.Errorf("status after catching up: %+v", st)
			}
		})
	}
}

// waitHead flushes l and returns the seq of the last record on disk once
// the head marker names it (the writer updates the marker right after
// the fsync that makes Flush return): what a shipper ships up to.
func (s *Shipper) waitHead(t *testing.T, l *FileLog) uint64 {
	t.Helper()
	return settle(t, l, s.cfg.Dir, s.cfg.Instance)
}

func settle(t *testing.T, l *FileLog, dir, instance string) uint64 {
	t.Helper()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for s := range trailLines(t, dir, instance) {
		last = max(last, s)
	}
	for range 30_000 { // a safety net of ~30 s, not an assertion on speed
		seq, _, err := headBound(dir, fileBase(instance), instance)
		if err != nil {
			t.Fatal(err)
		}
		if seq >= last {
			return last
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("head marker never reached seq %d", last)
	return 0
}

func TestSyslogFrame(t *testing.T) {
	tests := []struct {
		name      string
		rec       Record
		wantPRI   int
		wantTS    string
		wantMsgID string
	}{
		{"info", Record{Instance: "gw", Seq: 7, Type: TypeDecision, Time: "2026-01-02T03:04:05.123456789Z", Line: []byte(`{"a":1}`)},
			syslogFacility*8 + syslogInfo, "2026-01-02T03:04:05.123456Z", TypeDecision},
		{"lock is a warning", Record{Instance: "gw", Seq: 8, Type: TypeRiskLock, Time: "2026-01-02T03:04:05Z", Line: []byte(`{}`)},
			syslogFacility*8 + syslogWarning, "2026-01-02T03:04:05Z", TypeRiskLock},
		{"no time", Record{Instance: "gw", Seq: 9, Type: "x y", Time: "", Line: []byte(`{}`)},
			syslogFacility*8 + syslogInfo, "-", "x_y"},
		{"long type", Record{Instance: "gw", Seq: 9, Type: strings.Repeat("t", 40), Line: []byte(`{}`)},
			syslogFacility*8 + syslogInfo, "-", strings.Repeat("t", 32)},
		{"reserved", Record{Instance: "gw", Seq: 10, Type: ReservedPrefix + TypePurge, Line: []byte(`{}`)},
			syslogFacility*8 + syslogWarning, "-", ReservedPrefix + TypePurge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := appendSyslogFrame(nil, "h", "42", &tc.rec)
			n, rest, _ := strings.Cut(string(f), " ")
			if l, _ := strconv.Atoi(n); l != len(rest) {
				t.Fatalf("octet count %s, message is %d bytes", n, len(rest))
			}
			m, err := parseSyslog([]byte(rest))
			if err != nil {
				t.Fatalf("%q: %v", rest, err)
			}
			if m.pri != tc.wantPRI || m.ts != tc.wantTS || m.msgid != tc.wantMsgID || m.proc != "42" || !bytes.Equal(m.msg, tc.rec.Line) ||
				m.params["seq"] != strconv.FormatUint(tc.rec.Seq, 10) || m.params["type"] != tc.rec.Type {
				t.Errorf("parsed %+v", m)
			}
		})
	}
}

// TestWebhookSink: a receiver that fails its first requests, a shipper
// that is stopped and started again (a restart: a new Shipper reads the
// cursor): every record arrives at least once, in order, none skipped,
// and the restarted shipper resumes right after the cursor.
func TestWebhookSink(t *testing.T) {
	dir := t.TempDir()
	const inst = "gw-1"
	secret := []byte("hook-key")
	l := writeSinkTrail(t, dir, inst, 30)
	col := newCollector()
	var mu sync.Mutex
	failures := 3
	var requests, refused int
	var sinkHdr, seqHdr []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m := hmac.New(sha256.New, secret)
		m.Write(body)
		if got := r.Header.Get("X-Portcullis-Signature"); got != "sha256="+hex.EncodeToString(m.Sum(nil)) {
			t.Errorf("signature %q", got)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" || r.Method != http.MethodPost {
			t.Errorf("%s with content type %q", r.Method, ct)
		}
		mu.Lock()
		requests++
		fail := failures > 0
		if fail {
			failures--
			refused++
		}
		sinkHdr = append(sinkHdr, r.Header.Get("X-Portcullis-Sink")+"/"+r.Header.Get("X-Portcullis-Instance"))
		seqHdr = append(seqHdr, r.Header.Get("X-Portcullis-Seq"))
		mu.Unlock()
		if fail {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		for line := range bytes.SplitSeq(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
			col.add(t, line)
		}
	}))
	defer srv.Close()

	c := SinkConfig{Name: "archive", Kind: SinkWebhook, URL: srv.URL + "/audit", Secret: secret, BatchRecords: 8, BatchWait: time.Millisecond}
	sh := newTestShipper(t, c, dir, inst, SinkOptions{})
	stop := runShipper(t, sh)
	head := sh.waitHead(t, l)
	col.waitFor(t, head)
	stop()
	// Stopping may interrupt the last request after the receiver took it
	// and before the answer arrived: the cursor then lags, and those
	// records are sent again (at least once).
	cur := readCursor(t, sh.CursorPath())
	if cur.Seq == 0 || cur.Seq > head || cur.Instance != inst || cur.Sink != "archive" {
		t.Fatalf("cursor after the first run: %+v (head %d)", cur, head)
	}
	firstRun := len(col.arrivals())

	// Records written while the shipper is stopped, and a receiver that
	// fails again at first.
	emitN(t, l, 30, 21)
	mu.Lock()
	failures = 2
	mu.Unlock()
	sh2 := newTestShipper(t, c, dir, inst, SinkOptions{})
	runShipper(t, sh2)
	head2 := sh2.waitHead(t, l)
	col.waitFor(t, head2)
	col.check(t, trailLines(t, dir, inst), head2)
	if a := col.arrivals(); a[firstRun] != cur.Seq+1 {
		t.Errorf("the restarted shipper began with seq %d, want %d (right after the cursor)", a[firstRun], cur.Seq+1)
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 5 || sinkHdr[0] != "archive/"+inst || !strings.HasPrefix(seqHdr[0], "1-") {
		t.Errorf("refused %d of %d requests; headers %v %v", refused, requests, sinkHdr[:1], seqHdr[:1])
	}
}

func readCursor(t *testing.T, path string) cursor {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c cursor
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestStdoutSink(t *testing.T) {
	dir := t.TempDir()
	l := writeSinkTrail(t, dir, "gw", 12)
	buf := &syncBuffer{wrote: make(chan struct{}, 1)}
	sh := newTestShipper(t, SinkConfig{Name: "console", Kind: SinkStdout}, dir, "gw", SinkOptions{Stdout: buf})
	stop := runShipper(t, sh)
	head := sh.waitHead(t, l)
	col := newCollector()
	for uint64(len(col.lines)) < head {
		<-buf.wrote
		col = newCollector()
		for line := range bytes.SplitSeq(bytes.TrimSuffix(buf.bytes(), []byte("\n")), []byte("\n")) {
			col.add(t, line)
		}
	}
	stop()
	col.check(t, trailLines(t, dir, "gw"), head)
}

// syncBuffer is a bytes.Buffer for one writer and one reader.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return s.b.Write(p)
}

func (s *syncBuffer) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestShipperOnlyDurable: records past the head marker (written, not yet
// covered by a group commit) are not shipped.
func TestShipperOnlyDurable(t *testing.T) {
	dir := t.TempDir()
	l := writeSinkTrail(t, dir, "gw", 5)
	settle(t, l, dir, "gw")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	head, _, _ := headBound(dir, "audit-gw", "gw")
	// A record appended behind the writer's back, as if written and not
	// yet committed.
	f, err := os.OpenFile(filepath.Join(dir, FileName("gw")), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `{"time":"2025-06-01T12:00:00Z","instance":"gw","type":"decision","seq":%d,"prev":"%s"}`+"\n", head+1, zeroHash)
	f.Close()
	var got []Record
	sink := sinkFunc(func(recs []Record) error { got = append(got, recs...); return nil })
	sh, err := NewShipper(ShipConfig{Name: "s", Dir: dir, Instance: "gw"}, sink, ShipOptions{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := sh.read(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch) == 0 || batch[len(batch)-1].Seq != head {
		t.Fatalf("read up to seq %v, head is %d", batch, head)
	}
}

type sinkFunc func([]Record) error

func (f sinkFunc) Send(_ context.Context, recs []Record) error { return f(recs) }
func (f sinkFunc) Close() error                                { return nil }

// TestShipperResumeAfterMove: a cursor whose file no longer holds the
// acknowledged record at its offset (the trail was rolled: the file was
// renamed and a new one took its name) makes the shipper find its record
// by seq, without skipping or repeating.
func TestShipperResumeAfterMove(t *testing.T) {
	dir := t.TempDir()
	l := writeSinkTrail(t, dir, "gw", 10)
	settle(t, l, dir, "gw")
	var got []uint64
	sink := sinkFunc(func(recs []Record) error {
		for _, r := range recs {
			got = append(got, r.Seq)
		}
		return nil
	})
	sh, err := NewShipper(ShipConfig{Name: "s", Dir: dir, Instance: "gw", BatchRecords: 4}, sink, ShipOptions{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := sh.read(nil)
	if err != nil || len(batch) != 4 {
		t.Fatalf("read: %d %v", len(batch), err)
	}
	if !sh.deliver(context.Background(), batch) {
		t.Fatal("deliver")
	}
	l.Close()
	// Move the trail to another name and leave a file with other content
	// under the old one.
	if err := os.Rename(filepath.Join(dir, FileName("gw")), filepath.Join(dir, "audit-gw.20250601T000000Z.00000000000000000001.jsonl")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName("gw")), []byte(strings.Repeat("x", 4096)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sh2, err := NewShipper(ShipConfig{Name: "s", Dir: dir, Instance: "gw", BatchRecords: 100}, sink, ShipOptions{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err = sh2.read(nil)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := headBound(dir, "audit-gw", "gw")
	if len(batch) == 0 || batch[0].Seq != 5 || batch[len(batch)-1].Seq != head || uint64(len(batch)) != head-4 {
		t.Fatalf("resumed batch: first %v, len %d (head %d)", batch[0].Seq, len(batch), head)
	}
	if st := sh2.Status(); len(st.Gaps) > 0 {
		t.Errorf("gaps: %v", st.Gaps)
	}
}

func TestShipperCursorRefused(t *testing.T) {
	tests := []struct {
		name, content string
	}{
		{"garbage", "{not json"},
		{"other sink", `{"sink":"other","instance":"gw","file":"audit-gw.jsonl","offset":0,"seq":0,"hash":""}`},
		{"other instance", `{"sink":"s","instance":"gw2","file":"audit-gw.jsonl","offset":0,"seq":0,"hash":""}`},
		{"path in file", `{"sink":"s","instance":"gw","file":"../x.jsonl","offset":0,"seq":0,"hash":""}`},
		{"seq without hash", `{"sink":"s","instance":"gw","file":"audit-gw.jsonl","offset":10,"seq":3,"hash":""}`},
		{"unknown field", `{"sink":"s","instance":"gw","file":"audit-gw.jsonl","offset":0,"seq":0,"hash":"","x":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, sinkCursorDir), 0o700)
			if err := os.WriteFile(filepath.Join(dir, sinkCursorDir, "audit-gw.s.cursor"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := NewShipper(ShipConfig{Name: "s", Dir: dir, Instance: "gw"}, sinkFunc(nil), ShipOptions{})
			if err == nil {
				t.Fatal("a bad cursor was accepted")
			}
		})
	}
}

func TestSinkConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    SinkConfig
		want string // substring of the error; "" for valid
	}{
		{"syslog ok", SinkConfig{Name: "siem", Kind: SinkSyslog, Address: "siem.example.com:6514"}, ""},
		{"webhook ok", SinkConfig{Name: "w", Kind: SinkWebhook, URL: "https://x.example.com/a"}, ""},
		{"webhook loopback http ok", SinkConfig{Name: "w", Kind: SinkWebhook, URL: "http://127.0.0.1:9/a"}, ""},
		{"stdout ok", SinkConfig{Name: "o", Kind: SinkStdout}, ""},
		{"no name", SinkConfig{Kind: SinkStdout}, "name: required"},
		{"bad name", SinkConfig{Name: "a/b", Kind: SinkStdout}, "name: must be"},
		{"no kind", SinkConfig{Name: "a"}, "kind: required"},
		{"bad kind", SinkConfig{Name: "a", Kind: "kafka"}, "kind: must be"},
		{"syslog no port", SinkConfig{Name: "a", Kind: SinkSyslog, Address: "siem"}, "address: must be host:port"},
		{"webhook http", SinkConfig{Name: "a", Kind: SinkWebhook, URL: "http://hooks.example.com/a"}, "url: http is allowed only"},
		{"webhook credentials", SinkConfig{Name: "a", Kind: SinkWebhook, URL: "https://u:p@hooks.example.com/a"}, "url: must be an absolute"},
		{"webhook no url", SinkConfig{Name: "a", Kind: SinkWebhook}, "url: required"},
		{"batch", SinkConfig{Name: "a", Kind: SinkStdout, BatchRecords: -1}, "batch_records"},
		{"wait", SinkConfig{Name: "a", Kind: SinkStdout, BatchWait: time.Hour}, "batch_wait"},
		{"timeout", SinkConfig{Name: "a", Kind: SinkStdout, Timeout: time.Millisecond}, "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestShipperAcrossRolledFiles: the trail rolls to new files while the
// shipper runs and while it is stopped; every record arrives once per
// delivery, in order, none skipped, across files and a restart.
func TestShipperAcrossRolledFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenFile(FileConfig{Dir: dir, Instance: "gw", CheckpointEvery: 9, RollSize: 2048}, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var got []uint64
	lines := map[uint64][]byte{}
	sink := sinkFunc(func(recs []Record) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			got = append(got, r.Seq)
			lines[r.Seq] = r.Line
		}
		return nil
	})
	newSh := func() *Shipper {
		sh, err := NewShipper(ShipConfig{Name: "s", Dir: dir, Instance: "gw", BatchRecords: 7, Poll: time.Millisecond}, sink, ShipOptions{After: fastAfter})
		if err != nil {
			t.Fatal(err)
		}
		return sh
	}
	waitShipped := func(sh *Shipper, last uint64) {
		t.Helper()
		for range 30_000 {
			if sh.Status().Shipped >= last {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("shipped %d, want %d", sh.Status().Shipped, last)
	}
	// Rolls happen between group commits: commit every 10 events.
	emitChunks := func(from, n int) {
		for i := from; i < from+n; i += 10 {
			emitN(t, l, i, 10)
		}
	}
	emitChunks(0, 40)
	sh := newSh()
	stop := runShipper(t, sh)
	waitShipped(sh, settleAll(t, l, dir))
	stop()
	emitChunks(40, 60)
	sh2 := newSh()
	runShipper(t, sh2)
	last := settleAll(t, l, dir)
	waitShipped(sh2, last)

	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if len(files) < 3 {
		t.Fatalf("the trail did not roll: %v", files)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("delivery %d is seq %d: %v", i, s, got)
		}
	}
	if st := sh2.Status(); len(st.Gaps) > 0 {
		t.Errorf("gaps: %v", st.Gaps)
	}
	// The bytes shipped are the bytes verify checks.
	rep, err := Verify(dir, nil, VerifyOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %s", err, rep)
	}
}

// settleAll is settle over every trail file of instance gw (rolled ones
// included).
func settleAll(t *testing.T, l *FileLog, dir string) uint64 {
	t.Helper()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	var last uint64
	var r record
	var p parsed
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for line := range bytes.SplitSeq(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if parseRecord(line, &r, &p) == nil {
				last = max(last, r.seq)
			}
		}
	}
	for range 30_000 {
		seq, _, _ := headBound(dir, "audit-gw", "gw")
		if seq >= last {
			return last
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("head never reached %d", last)
	return 0
}

// TestSinkStatusPublicString: what /healthz (unauthenticated) shows of a
// failing sink carries no error text and no file details.
func TestSinkStatusPublicString(t *testing.T) {
	st := SinkStatus{Name: "siem", Kind: "webhook", Failing: true, FailingSince: time.Unix(100, 0),
		LastError: "dial tcp 10.1.2.3:443: connection refused", Gaps: []string{"audit-gw-1.jsonl at offset 42"}}
	pub := st.PublicString()
	for _, secret := range []string{"10.1.2.3", "connection refused", "audit-gw-1.jsonl", "42"} {
		if strings.Contains(pub, secret) {
			t.Fatalf("public status %q carries %q", pub, secret)
		}
	}
	if !strings.Contains(pub, "siem") || !strings.Contains(pub, "FAILING since 1970-01-01T00:01:40Z") || !strings.Contains(pub, "1 gaps") {
		t.Fatalf("public status %q lacks the sink, its state or the gap count", pub)
	}
	if full := st.String(); !strings.Contains(full, "connection refused") {
		t.Fatalf("full status %q lost the cause", full)
	}
}
