package bastion

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/bastion/recording"
)

// connMode is what a connection is allowed to do after authentication.
type connMode int

const (
	modeDenied connMode = iota // every channel gets the deny message
	modeList                   // no target: print the reachable targets
	modeRelay                  // allowed: relay to the target
)

// conn is one authenticated client connection.
type conn struct {
	b      *Bastion
	id     string
	sconn  *ssh.ServerConn
	cert   *ssh.Certificate
	userID string
	roles  []string
	login  string
	tname  string
	tgt    *target
	src    netip.Addr
	start  time.Time

	ctx    context.Context
	cancel context.CancelCauseFunc

	// sessionMFA: a per-session TOTP code was verified during
	// authentication (keyboard-interactive after the certificate).
	sessionMFA bool

	mode    connMode
	userMsg string // deny / failure message for the user (with reference)
	// perm is what the connection may do, set by setup and replaced
	// (never widened) when a grant change makes it decide again
	// (grants.go); redecideMu serialises those re-decisions.
	perm       atomic.Pointer[grant]
	redecideMu sync.Mutex
	rec        *recording.Writer
	up         upstreamFuture

	lastActive  atomic.Int64 // unix nanos of the last relayed byte (injected clock)
	chanSeq     atomic.Uint32
	noMoreSess  atomic.Bool
	channels    sync.WaitGroup
	sessionsMu  sync.Mutex
	sessions    map[*sessionChan]struct{} // live session channels (kill message)
	recFailOnce sync.Once
	agentOn     atomic.Bool // agent forwarding requested and granted
	ka          keepaliveState
	// download is bytes sent to the client not yet reported to the
	// risk engine (risk.go: sent).
	download atomic.Int64
}

// keepaliveState tracks the client keepalive probe.
type keepaliveState struct {
	mu       sync.Mutex
	last     time.Time // wall time of the last probe (or of the start)
	inFlight bool
	missed   int
}

// newSessionID returns a random 128-bit hex ID.
func newSessionID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(b[:]), nil
}

// newConn builds the connection state from a finished authentication. It
// refuses (and audits) Permissions that are not verified for the
// certificate they carry: identity comes only from the key that signed.
func (b *Bastion) newConn(parent context.Context, sconn *ssh.ServerConn) (*conn, error) {
	src := sourceAddr(sconn.RemoteAddr())
	cert := verifiedCert(sconn.Permissions)
	login, tname, ok := splitUser(sconn.User())
	if cert == nil || !ok {
		b.audit.Emit(context.Background(), audit.Event{
			Type: TypeSSHAuth, SourceIP: addrString(src), Decision: audit.Deny, Reason: ReasonBindingMismatch,
		})
		return nil, errors.New("bastion: connection permissions not bound to a verified certificate")
	}
	id, err := newSessionID(b.rand)
	if err != nil {
		return nil, err
	}
	c := &conn{
		b: b, id: id, sconn: sconn, cert: cert,
		userID: cert.KeyId, roles: session.RolesFromCert(cert),
		login: login, tname: tname, tgt: b.targets[tname], src: src,
		start:      b.now(),
		sessionMFA: sessionMFAVerified(sconn.Permissions, cert),
		sessions:   map[*sessionChan]struct{}{},
		up:         upstreamFuture{done: make(chan struct{})},
	}
	c.ctx, c.cancel = context.WithCancelCause(parent)
	c.touch()
	return c, nil
}

func (c *conn) touch() { c.lastActive.Store(c.b.now().UnixNano()) }

// noGrant is what a connection that was not allowed may do: nothing.
var noGrant = &grant{}

// granted returns what the connection may do now.
func (c *conn) granted() *grant {
	if g := c.perm.Load(); g != nil {
		return g
	}
	return noGrant
}

// access is the connection's question to the policy.
func (c *conn) access() access {
	a := c.b.accessFor(c.cert, c.src, c.tname, c.login)
	a.sessionMFA = c.sessionMFA
	return a
}

// run decides what the connection may do, serves its channels and global
// requests until it ends, and then finishes it (recording, audit).
func (c *conn) run(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	defer c.finish()
	c.setup()
	stop := context.AfterFunc(c.ctx, c.teardown)
	defer stop()
	if c.mode != modeRelay {
		// A denied or listing connection is only kept open long enough
		// to deliver its message.
		t := time.AfterFunc(c.b.denyLinger, func() { c.cancel(c.lingerCause()) })
		defer t.Stop()
	}
	// The client's channels and global requests and, once the target is
	// connected, the target's, in one loop (no extra goroutine per
	// connection). The client's close when the connection does; when the
	// target's both close, the target is gone and the connection ends.
	var upReady <-chan struct{}
	if c.mode == modeRelay {
		upReady = c.up.done
	}
	var upChans <-chan ssh.NewChannel
	var upReqs <-chan *ssh.Request
	for chans != nil {
		select {
		case <-upReady:
			upReady = nil
			upChans, upReqs = c.up.chans, c.up.reqs
		case nc, ok := <-upChans:
			if !ok {
				upChans = nil
				c.upstreamGone(upChans, upReqs)
				continue
			}
			c.upstreamChannel(nc)
		case req, ok := <-upReqs:
			if !ok {
				upReqs = nil
				c.upstreamGone(upChans, upReqs)
				continue
			}
			if req.WantReply {
				// The target asks nothing of the bastion.
				req.Reply(false, nil)
			}
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			c.dispatch(nc)
		case req, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			c.globalRequest(req)
		}
	}
	c.cancel(causeClientClosed)
}

// upstreamGone ends the connection when the target's channels and
// requests have both closed (the target connection is gone).
func (c *conn) upstreamGone(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	if chans == nil && reqs == nil {
		c.cancel(causeUpstreamClosed)
	}
}

// endSoon ends the connection after the linger time: long enough for the
// client to read a message and disconnect by itself.
func (c *conn) endSoon(cause *EndCause) {
	t := time.AfterFunc(c.b.denyLinger, func() { c.cancel(cause) })
	context.AfterFunc(c.ctx, func() { t.Stop() })
}

func (c *conn) lingerCause() *EndCause {
	if c.mode == modeList {
		return causeListed
	}
	return causeDenied
}

// setup runs the decision and, when allowed, opens the recording and
// starts dialling the target.
func (c *conn) setup() {
	if c.tname == "" {
		c.mode = modeList
		return
	}
	// A grant change followed while the session is not registered yet
	// is caught by comparing generations once it is (below).
	gen := c.b.grantGen.Load()
	// Likewise a policy swapped meanwhile (Reevaluate runs over the
	// registered sessions only): compared once registered.
	pol := c.b.policy.Load()
	dec, g := c.b.decide(pol, c.access())
	ev := c.event(audit.TypeDecision)
	ev.Reason = string(dec.Reason)
	ev.Attrs["role"], ev.Attrs["rule"] = dec.Role, dec.Rule
	if !dec.Allow || c.tgt == nil {
		if dec.Allow {
			// Allowed by policy but not configured here.
			ev.Reason = string(authz.ReasonUnknownTarget)
		}
		ref := audit.NewRef(c.b.rand)
		ev.Decision, ev.Ref = audit.Deny, ref
		c.b.audit.Emit(context.Background(), ev)
		c.mode = modeDenied
		c.userMsg = fmt.Sprintf("access denied (%s)", ref)
		if locked := c.denied(); locked != nil {
			c.userMsg = locked.Message
		}
		return
	}
	if c.auditDown() { // the trail broke since admission (audithealth.go)
		return
	}
	ev.Decision, ev.Role = audit.Allow, dec.Role
	if len(g.viaGrant) > 0 {
		ev.Attrs["granted_roles"] = strings.Join(g.viaGrant, ",")
	}
	c.b.audit.Emit(context.Background(), ev)
	c.perm.Store(&g)
	if err := c.openRecording(); err != nil {
		ref := audit.NewRef(c.b.rand)
		alert := c.event(TypeSSHAlert)
		alert.Reason, alert.Ref = EndRecording, ref
		c.b.audit.Emit(context.Background(), alert)
		c.b.log.Error("recording unavailable: session refused", "session", c.id, "ref", ref, "err", err)
		c.mode = modeDenied
		c.userMsg = fmt.Sprintf("session recording is unavailable, so the session is refused (%s)", ref)
		return
	}
	c.mode = modeRelay
	c.b.registry.add(c)
	start := c.event(TypeSSHSessionStart)
	start.Attrs["recording"] = c.rec.Path()
	c.b.audit.Emit(context.Background(), start)
	// A lock raised since authentication, whose event came before the
	// session was registered, ends it now.
	c.recheckLock()
	if c.b.grants != nil && c.b.grantGen.Load() != gen && !c.redecide(EndGrantRevoked, !c.b.grantsUnknown.Load()) {
		return
	}
	if c.b.policy.Load() != pol && !c.reevaluate() {
		return
	}
	go c.dialUpstream()
}

// openRecording creates the connection's recording. After a recording
// failure a probe write must succeed first.
func (c *conn) openRecording() error {
	b, g := c.b, c.granted()
	if b.recBroken.Load() {
		if err := recording.Probe(b.cfg.RecordingDir, b.recOpts); err != nil {
			return err
		}
		b.recBroken.Store(false)
		b.log.Info("recording works again: accepting sessions")
	}
	w, err := recording.Create(b.cfg.RecordingDir, recording.Meta{
		SessionID:   c.id,
		Instance:    b.cfg.Instance,
		UserID:      c.userID,
		SourceIP:    addrString(c.src),
		Target:      c.tname,
		TargetAddr:  c.tgt.Addr,
		Login:       c.login,
		Roles:       g.roles,
		CertSerial:  c.cert.Serial,
		Start:       c.start,
		RecordInput: b.cfg.RecordInput,
	}, b.recOpts)
	if err != nil {
		b.recBroken.Store(true)
		return err
	}
	c.rec = w
	return nil
}

// event returns an audit event pre-filled with the connection's identity.
func (c *conn) event(typ string) audit.Event {
	return audit.Event{
		Type:      typ,
		UserID:    c.userID,
		SourceIP:  addrString(c.src),
		SessionID: c.id,
		Target:    c.tname,
		Attrs: map[string]string{
			"login":       c.login,
			"cert_serial": strconv.FormatUint(c.cert.Serial, 10),
		},
	}
}

func (c *conn) dispatch(nc ssh.NewChannel) {
	if nc.ChannelType() == "direct-tcpip" && c.canaryChannel(nc) {
		return
	}
	switch c.mode {
	case modeList:
		c.channels.Add(1)
		go func() {
			defer c.channels.Done()
			c.listChannel(nc)
		}()
		return
	case modeDenied:
		c.channels.Add(1)
		go func() {
			defer c.channels.Done()
			c.refuseChannel(nc, c.userMsg, 1)
		}()
		return
	}
	switch nc.ChannelType() {
	case "session":
		if c.noMoreSess.Load() {
			nc.Reject(ssh.Prohibited, "no more sessions")
			return
		}
		c.channels.Add(1)
		go func() {
			defer c.channels.Done()
			c.handleSession(nc)
		}()
	case "direct-tcpip":
		c.channels.Add(1)
		go func() {
			defer c.channels.Done()
			c.handleDirectTCPIP(nc)
		}()
	default:
		c.auditChannel(nc.ChannelType(), "channel-type-not-allowed", nil)
		nc.Reject(ssh.Prohibited, "channel type not allowed")
	}
}

// refuseChannel delivers msg: on a session channel as text on stderr with
// an exit status (what a user of a stock client sees), otherwise as the
// rejection reason.
func (c *conn) refuseChannel(nc ssh.NewChannel, msg string, status uint32) {
	if nc.ChannelType() != "session" {
		nc.Reject(ssh.Prohibited, msg)
		return
	}
	answerSession(nc, func(ch ssh.Channel) uint32 {
		fmt.Fprintf(ch.Stderr(), "portcullis: %s\r\n", msg)
		return status
	})
}

// answerSession accepts a session channel, waits for the client's
// shell/exec/subsystem (after pty-req, env…, so the answer arrives where
// the client is looking), lets write produce the answer and its exit
// status, and closes the channel.
func answerSession(nc ssh.NewChannel, write func(ssh.Channel) uint32) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "shell", "exec", "subsystem":
			req.Reply(true, nil)
			status := write(ch)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			return
		default:
			req.Reply(req.Type == "pty-req" || req.Type == "env", nil)
		}
	}
}

// globalRequest answers a connection-level request. Remote forwarding is
// never allowed: the bastion does not open listeners for clients.
func (c *conn) globalRequest(req *ssh.Request) {
	switch req.Type {
	case "tcpip-forward", "streamlocal-forward@openssh.com":
		if c.mode == modeRelay {
			c.auditChannel(req.Type, "remote-forwarding-not-allowed", nil)
			c.recordEvent(0, recording.Event{Type: recording.EventDenied, Kind: req.Type, Reason: "remote-forwarding-not-allowed"})
		}
		req.Reply(false, nil)
	case "no-more-sessions@openssh.com":
		c.noMoreSess.Store(true)
		req.Reply(true, nil)
	default:
		req.Reply(false, nil)
	}
}

// auditChannel records a refused channel or request.
func (c *conn) auditChannel(kind, reason string, attrs map[string]string) {
	ev := c.event(TypeSSHChannel)
	ev.Decision, ev.Reason = audit.Deny, reason
	ev.Attrs["kind"] = kind
	for k, v := range attrs {
		ev.Attrs[k] = v
	}
	c.b.audit.Emit(context.Background(), ev)
}

// recordEvent writes an event to the recording; a failure ends the
// session (the recording path of the single kill path).
func (c *conn) recordEvent(ch uint32, e recording.Event) error {
	if c.rec == nil {
		return nil
	}
	if err := c.rec.Event(ch, e); err != nil {
		c.recordingFailed(err)
		return err
	}
	return nil
}

// recordingFailed ends the session because its recording cannot be
// written, raises one alert, and makes new sessions wait for a probe
// write.
func (c *conn) recordingFailed(err error) {
	c.recFailOnce.Do(func() {
		c.b.recBroken.Store(true)
		ev := c.event(TypeSSHAlert)
		ev.Reason = EndRecording
		c.b.audit.Emit(context.Background(), ev)
		c.b.log.Error("session recording failed: ending the session", "session", c.id, "err", err)
	})
	c.cancel(causeRecording)
}

// check enforces, at every tick of the bastion's watchdog, the maximum
// session duration and the idle timeout (against the injected clock), a
// failed recording, and keepalives (wall clock: liveness is real time).
func (c *conn) check(now, wall time.Time) {
	if c.ctx.Err() != nil {
		return
	}
	if err := c.rec.Err(); err != nil {
		c.recordingFailed(err)
		return
	}
	g := c.granted()
	if !g.recheck.IsZero() && !now.Before(g.recheck) {
		// A grant the session holds ended: decide again (grants.go).
		if !c.redecide(EndGrantExpired, true) {
			return
		}
		g = c.granted()
	}
	if !g.deadline.IsZero() && !now.Before(g.deadline) {
		if g.endsByGrant() {
			c.endForGrant(EndGrantExpired, "", g)
		} else {
			c.cancel(causeMaxDuration)
		}
		return
	}
	if idle := c.b.cfg.IdleTimeout; idle > 0 && now.Sub(time.Unix(0, c.lastActive.Load())) >= idle {
		c.cancel(causeIdle)
		return
	}
	c.keepalive(wall)
}

// keepalive probes the client every KeepaliveInterval; KeepaliveMax
// intervals with a probe still unanswered end the connection. The probe
// runs in a short-lived goroutine: nothing waits while the client is
// healthy and idle.
func (c *conn) keepalive(wall time.Time) {
	ka := &c.ka
	ka.mu.Lock()
	defer ka.mu.Unlock()
	if ka.last.IsZero() {
		ka.last = wall
		return
	}
	if wall.Sub(ka.last) < c.b.cfg.KeepaliveInterval {
		return
	}
	ka.last = wall
	if ka.inFlight {
		if ka.missed++; ka.missed >= c.b.cfg.KeepaliveMax {
			c.cancel(causeKeepalive)
		}
		return
	}
	ka.inFlight = true
	go func() {
		// Any reply (OpenSSH answers "failure") proves the client lives.
		_, _, err := c.sconn.SendRequest("keepalive@openssh.com", true, nil)
		ka.mu.Lock()
		defer ka.mu.Unlock()
		if err == nil {
			ka.inFlight, ka.missed = false, 0
		}
	}()
}

// teardown runs once when the connection's context ends: it tells the
// user why on every open session channel (briefly: a client that does not
// read must not hold the kill up) and closes both connections, which ends
// every relay goroutine.
func (c *conn) teardown() {
	cause := causeOf(c.ctx)
	if cause.Message != "" {
		c.sessionsMu.Lock()
		var wg sync.WaitGroup
		for s := range c.sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.notice(cause.Message)
			}()
		}
		c.sessionsMu.Unlock()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(500 * time.Millisecond):
		}
	}
	c.sconn.Close()
	c.closeUpstream()
}

// finish runs after the connection is gone: it waits for the relay
// goroutines, closes the recording with the end cause and emits the
// session-end audit event.
func (c *conn) finish() {
	c.cancel(causeClientClosed)
	c.channels.Wait()
	c.closeUpstream()
	if c.mode != modeRelay {
		return
	}
	c.flushUsage()
	c.b.registry.remove(c)
	cause := causeOf(c.ctx)
	ev := c.event(TypeSSHSessionEnd)
	ev.Reason, ev.Ref = cause.Code, cause.Ref
	if cause.Detail != "" {
		ev.Attrs["detail"] = cause.Detail
	}
	ev.Attrs["duration_ms"] = strconv.FormatInt(c.b.now().Sub(c.start).Milliseconds(), 10)
	if err := c.rec.Close(recording.Trailer{End: c.b.now(), Reason: cause.Code, Detail: cause.Detail}); err != nil {
		c.recordingFailed(err)
		ev.Attrs["recording_error"] = "true"
	}
	if c.b.recClosed != nil {
		c.b.recClosed(c.rec.Path())
	}
	c.b.audit.Emit(context.Background(), ev)
}

func (c *conn) trackSession(s *sessionChan, on bool) {
	c.sessionsMu.Lock()
	defer c.sessionsMu.Unlock()
	if on {
		c.sessions[s] = struct{}{}
	} else {
		delete(c.sessions, s)
	}
}
