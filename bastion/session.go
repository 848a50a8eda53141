package bastion

import (
	"context"
	"io"
	"path"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/bastion/recording"
)

// sessionChan relays one "session" channel between the client (ch) and the
// target (up).
//
// Goroutines: one request loop for both sides (the caller of
// handleSession), and once a shell/exec/subsystem is running, the stdout,
// stderr and stdin pumps. exit-status/exit-signal from the target
// are held until both output pumps have delivered everything, so the
// client never sees the exit before the output.
type sessionChan struct {
	c   *conn
	id  uint32
	ch  ssh.Channel
	up  ssh.Channel
	rec *recording.Writer

	startOnce sync.Once
	started   bool
	sftp      bool
	parser    streamParser // sftp or scp parser, or nil
	outputs   sync.WaitGroup
	inputs    sync.WaitGroup
	// stderrMu serialises writes to the client's stderr stream (the pump,
	// kill notices) and the client-side CloseWrite: x/crypto channels
	// must not be written on one stream from two goroutines, nor closed
	// for writing while written.
	stderrMu sync.Mutex
}

// streamParser turns a channel's byte streams into recording events
// (SFTP, scp). Client sees client→target bytes, Server target→client.
type streamParser interface {
	Client(p []byte) error
	Server(p []byte) error
	Close()
}

// Channel request payloads (RFC 4254).
type (
	ptyReqMsg struct {
		Term          string
		Cols, Rows    uint32
		Width, Height uint32
		Modes         string
	}
	windowChangeMsg struct {
		Cols, Rows    uint32
		Width, Height uint32
	}
	envMsg       struct{ Name, Value string }
	execMsg      struct{ Command string }
	subsystemMsg struct{ Name string }
	signalMsg    struct{ Signal string }
	exitStatus   struct{ Status uint32 }
	exitSignal   struct {
		Signal     string
		CoreDumped bool
		Msg, Lang  string
	}
)

func (c *conn) handleSession(nc ssh.NewChannel) {
	up, err := c.upstream()
	if err != nil {
		c.refuseChannel(nc, c.upstreamMessage(), 255)
		c.endSoon(&EndCause{Code: EndUpstreamFailed})
		return
	}
	upCh, upReqs, err := up.OpenChannel("session", nil)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "the target refused the session")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		upCh.Close()
		return
	}
	s := &sessionChan{c: c, id: c.chanSeq.Add(1), ch: ch, up: upCh, rec: c.rec}
	c.trackSession(s, true)
	defer c.trackSession(s, false)
	if c.recordEvent(s.id, recording.Event{Type: recording.EventChannelOpen, Kind: "session"}) != nil {
		ch.Close()
		upCh.Close()
		return
	}
	s.serve(reqs, upReqs)
	ch.Close()
	s.inputs.Wait()
	if s.parser != nil {
		s.parser.Close()
	}
	c.recordEvent(s.id, recording.Event{Type: recording.EventChannelClose, Kind: "session"})
}

// upstreamMessage is what the user sees when the target is unreachable.
func (c *conn) upstreamMessage() string {
	select {
	case <-c.up.done:
		if c.up.msg != "" {
			return c.up.msg
		}
	default:
	}
	return "the session ended before the target was reached"
}

// serve handles both sides' channel requests in one goroutine (idle
// sessions must stay cheap) until both sides have closed the channel.
func (s *sessionChan) serve(reqs, upReqs <-chan *ssh.Request) {
	var held []*ssh.Request
	for reqs != nil || upReqs != nil {
		select {
		case req, ok := <-reqs:
			if !ok {
				// The client closed its side: close the target's.
				reqs = nil
				s.up.Close()
				continue
			}
			ok, err := s.clientRequest(req)
			if req.WantReply {
				req.Reply(ok && err == nil, nil)
			}
			if err != nil {
				// Recording failed: the session is ending.
				s.up.Close()
			}
			s.c.touch()
		case req, ok := <-upReqs:
			if !ok {
				upReqs = nil
				s.targetClosed(held)
				continue
			}
			if req.Type == "exit-status" || req.Type == "exit-signal" {
				if s.recordExit(req) {
					held = append(held, req)
				}
				continue
			}
			s.upstreamRequest(req)
		}
	}
}

// deny records and audits a refused request. Refused file transfers are
// denied authorization decisions and reported to the risk engine; the
// other refusals (pty, agent, X11, environment) are mostly what a client
// asks for by configuration, on every connection.
func (s *sessionChan) deny(kind, name, reason string) (bool, error) {
	s.c.auditChannel(kind, reason, map[string]string{"name": name})
	err := s.c.recordEvent(s.id, recording.Event{Type: recording.EventDenied, Kind: kind, Name: name, Reason: reason})
	if reason == reasonFileTransferDenied || reason == reasonSFTPExec {
		if locked := s.c.denied(); locked != nil {
			s.c.cancel(locked)
		}
	}
	return false, err
}

// Refused file transfers (reported as denied decisions).
const (
	reasonFileTransferDenied = "file-transfer-not-permitted"
	reasonSFTPExec           = "sftp-server-exec-not-allowed"
)

// clientRequest decides one request; it returns the reply and a recording
// error.
func (s *sessionChan) clientRequest(req *ssh.Request) (bool, error) {
	c := s.c
	switch req.Type {
	case "pty-req":
		var m ptyReqMsg
		if ssh.Unmarshal(req.Payload, &m) != nil {
			return false, nil
		}
		if !c.granted().pty {
			return s.deny(req.Type, "", "pty-not-permitted")
		}
		if err := c.recordEvent(s.id, recording.Event{Type: recording.EventPTY, Term: m.Term, Cols: m.Cols, Rows: m.Rows}); err != nil {
			return false, err
		}
		if err := s.resize(m.Cols, m.Rows); err != nil {
			return false, err
		}
		return s.forward(req)
	case "window-change":
		var m windowChangeMsg
		if ssh.Unmarshal(req.Payload, &m) != nil {
			return false, nil
		}
		if err := s.resize(m.Cols, m.Rows); err != nil {
			return false, err
		}
		return s.forward(req)
	case "env":
		var m envMsg
		if ssh.Unmarshal(req.Payload, &m) != nil {
			return false, nil
		}
		allowed := envAllowed(c.b.cfg.EnvAllowlist, m.Name)
		// The value is never recorded: it may be a secret.
		if err := c.recordEvent(s.id, recording.Event{Type: recording.EventEnv, Name: m.Name, Allowed: &allowed}); err != nil {
			return false, err
		}
		if !allowed {
			return false, nil
		}
		return s.forward(req)
	case "shell":
		if s.started {
			return false, nil
		}
		if err := c.recordEvent(s.id, recording.Event{Type: recording.EventShell}); err != nil {
			return false, err
		}
		return s.startWith(req, nil)
	case "exec":
		var m execMsg
		if s.started || ssh.Unmarshal(req.Payload, &m) != nil {
			return false, nil
		}
		if isSFTPServer(m.Command) {
			// File transfer must use the sftp subsystem, which is parsed
			// and permission-checked.
			return s.deny(req.Type, m.Command, reasonSFTPExec)
		}
		scp := recording.NewSCPParser(m.Command, s.emit)
		if scp != nil && !c.granted().fileTransfer {
			return s.deny(req.Type, m.Command, reasonFileTransferDenied)
		}
		if err := c.recordEvent(s.id, recording.Event{Type: recording.EventExec, Command: m.Command}); err != nil {
			return false, err
		}
		if scp != nil {
			return s.startWith(req, scp)
		}
		return s.startWith(req, nil)
	case "subsystem":
		var m subsystemMsg
		if s.started || ssh.Unmarshal(req.Payload, &m) != nil {
			return false, nil
		}
		if m.Name != "sftp" {
			return s.deny(req.Type, m.Name, "subsystem-not-allowed")
		}
		if !c.granted().fileTransfer {
			return s.deny(req.Type, m.Name, reasonFileTransferDenied)
		}
		if err := c.recordEvent(s.id, recording.Event{Type: recording.EventSubsystem, Name: m.Name}); err != nil {
			return false, err
		}
		s.sftp = true
		return s.startWith(req, recording.NewSFTPParser(s.emit))
	case "signal":
		var m signalMsg
		if ssh.Unmarshal(req.Payload, &m) != nil {
			return false, nil
		}
		if err := c.recordEvent(s.id, recording.Event{Type: recording.EventSignal, Signal: m.Signal}); err != nil {
			return false, err
		}
		return s.forward(req)
	case "break", "eow@openssh.com":
		return s.forward(req)
	case "auth-agent-req@openssh.com":
		if !c.granted().agent {
			return s.deny(req.Type, "", "agent-forwarding-not-permitted")
		}
		if err := c.recordEvent(s.id, recording.Event{Type: recording.EventAgent}); err != nil {
			return false, err
		}
		c.agentOn.Store(true)
		return s.forward(req)
	case "x11-req":
		return s.deny(req.Type, "", "x11-forwarding-not-allowed")
	}
	return false, nil
}

// isSFTPServer reports whether an exec command runs an SFTP server
// directly (sftp -s, or "ssh host /usr/lib/openssh/sftp-server").
func isSFTPServer(cmd string) bool {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return false
	}
	base := path.Base(f[0])
	return strings.Contains(base, "sftp-server") || base == "internal-sftp"
}

func (s *sessionChan) emit(e recording.Event) error { return s.c.recordEvent(s.id, e) }

func (s *sessionChan) resize(cols, rows uint32) error {
	if s.rec == nil {
		return nil
	}
	if err := s.rec.Resize(s.id, cols, rows); err != nil {
		s.c.recordingFailed(err)
		return err
	}
	return nil
}

// forward passes a request to the target and returns its answer.
func (s *sessionChan) forward(req *ssh.Request) (bool, error) {
	ok, err := s.up.SendRequest(req.Type, req.WantReply, req.Payload)
	return ok && err == nil, nil
}

// startWith forwards shell/exec/subsystem and, when the target accepts,
// starts the data pumps (only now, so that the parser for this mode sees
// the stream from its first byte).
func (s *sessionChan) startWith(req *ssh.Request, p streamParser) (bool, error) {
	ok, _ := s.forward(req)
	if !ok {
		return false, nil
	}
	s.started = true
	s.parser = p
	s.startOnce.Do(s.startPumps)
	return true, nil
}

func (s *sessionChan) startPumps() {
	c := s.c
	touch := func(int) { c.touch() }
	// Output towards the client is what the user downloads.
	toClient := func(n int) { c.touch(); c.sent(n) }
	var outObserve, errObserve, inObserve func([]byte) error
	switch {
	case s.sftp:
		// SFTP carries file contents: parsed into events, never stored.
		outObserve, inObserve = parseErrors(s.parser.Server), parseErrors(s.parser.Client)
		errObserve = s.recorder(recording.StreamStderr)
	default:
		outObserve = s.recorder(recording.StreamStdout)
		errObserve = s.recorder(recording.StreamStderr)
		if c.b.cfg.RecordInput {
			inObserve = s.recorder(recording.StreamStdin)
		}
		if s.parser != nil {
			outObserve = both(outObserve, parseErrors(s.parser.Server))
			inObserve = both(inObserve, parseErrors(s.parser.Client))
		}
	}
	s.outputs.Add(2)
	go func() {
		defer s.outputs.Done()
		s.endOnError(pump(s.ch, s.up, outObserve, toClient))
	}()
	go func() {
		defer s.outputs.Done()
		s.endOnError(pump(s.stderr(), s.up.Stderr(), errObserve, toClient))
	}()
	s.inputs.Add(1)
	go func() {
		defer s.inputs.Done()
		if err := pump(s.up, s.ch, inObserve, touch); err == nil {
			s.up.CloseWrite()
		} else {
			s.endOnError(err)
		}
	}()
}

// endOnError closes the channel when a pump failed for a reason other
// than the peer going away (a recording or parser failure): what cannot be
// recorded is not relayed.
func (s *sessionChan) endOnError(err error) {
	if err == nil || s.c.ctx.Err() != nil {
		return
	}
	if re, ok := err.(*recordError); ok {
		s.c.b.log.Warn("ending channel: stream cannot be recorded", "session", s.c.id, "err", re.err)
		s.c.recordEvent(s.id, recording.Event{Type: recording.EventDenied, Kind: "stream", Reason: "unparseable-stream"})
		s.notice("the transfer could not be recorded and was stopped")
		s.ch.Close()
		s.up.Close()
	}
}

// stderr is the client's stderr stream, serialised with notices.
func (s *sessionChan) stderr() io.Writer { return &lockedWriter{mu: &s.stderrMu, w: s.ch.Stderr()} }

// notice tells the user something on stderr.
func (s *sessionChan) notice(msg string) {
	s.stderr().Write([]byte("\r\nportcullis: " + msg + "\r\n"))
}

// lockedWriter serialises Writes to w with mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// recordError marks an observer failure that is not a recording-file
// failure (those end the whole session through recordingFailed).
type recordError struct{ err error }

func (e *recordError) Error() string { return e.err.Error() }

func (s *sessionChan) recorder(st recording.Stream) func([]byte) error {
	if s.rec == nil {
		return nil
	}
	return func(p []byte) error {
		if err := s.rec.Data(s.id, st, p); err != nil {
			s.c.recordingFailed(err)
			return err
		}
		return nil
	}
}

// parseErrors marks a parser's errors as recordError.
func parseErrors(f func([]byte) error) func([]byte) error {
	return func(p []byte) error {
		if err := f(p); err != nil {
			return &recordError{err}
		}
		return nil
	}
}

func both(a, b func([]byte) error) func([]byte) error {
	if a == nil {
		return b
	}
	return func(p []byte) error {
		if err := a(p); err != nil {
			return err
		}
		return b(p)
	}
}

// recordExit records an exit-status/exit-signal from the target; the
// request is held (delivered by targetClosed after the output) when it
// parses.
func (s *sessionChan) recordExit(req *ssh.Request) bool {
	if req.Type == "exit-status" {
		var m exitStatus
		if ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		st := int(m.Status)
		s.c.recordEvent(s.id, recording.Event{Type: recording.EventExitStatus, Status: &st})
		return true
	}
	var m exitSignal
	if ssh.Unmarshal(req.Payload, &m) != nil {
		return false
	}
	s.c.recordEvent(s.id, recording.Event{Type: recording.EventExitSignal, Signal: m.Signal})
	return true
}

// upstreamRequest relays one of the target's other channel requests.
func (s *sessionChan) upstreamRequest(req *ssh.Request) {
	if req.Type == "keepalive@openssh.com" {
		// The target checks that we are alive; answer for the client.
		req.Reply(true, nil)
		return
	}
	ok, _ := s.ch.SendRequest(req.Type, req.WantReply, req.Payload)
	if req.WantReply {
		req.Reply(ok, nil)
	}
}

// targetClosed runs when the target closed the channel: deliver the rest
// of the output, then EOF, the held exit status, and close, so the client
// never sees the exit before the output.
func (s *sessionChan) targetClosed(held []*ssh.Request) {
	s.outputs.Wait()
	s.stderrMu.Lock()
	s.ch.CloseWrite()
	s.stderrMu.Unlock()
	for _, req := range held {
		s.ch.SendRequest(req.Type, false, req.Payload)
	}
	s.ch.Close()
}

// relayAgent connects an agent channel from the target to the client's
// agent. Agent traffic is signatures, not session content: only its
// opening is recorded.
func (c *conn) relayAgent(nc ssh.NewChannel) {
	if c.ctx.Err() != nil {
		nc.Reject(ssh.ConnectionFailed, "session ending")
		return
	}
	cch, creqs, err := c.sconn.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "agent unavailable")
		return
	}
	uch, ureqs, err := nc.Accept()
	if err != nil {
		cch.Close()
		return
	}
	go ssh.DiscardRequests(creqs)
	go ssh.DiscardRequests(ureqs)
	id := c.chanSeq.Add(1)
	c.recordEvent(id, recording.Event{Type: recording.EventChannelOpen, Kind: "auth-agent"})
	relayBoth(context.Background(), cch, uch, nil)
	c.recordEvent(id, recording.Event{Type: recording.EventChannelClose, Kind: "auth-agent"})
}
