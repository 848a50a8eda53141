package recording

// SFTP (draft-ietf-secsh-filexfer-02, version 3 as spoken by OpenSSH)
// parsed from both directions of a session channel into file-operation
// events: open, read and write totals, close, remove, rename, mkdir,
// rmdir, symlink, setstat. Written file contents are hashed (SHA-256)
// while they stream by as long as the writes are sequential; contents are
// never stored.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// SFTP packet types.
const (
	sshFxpInit          = 1
	sshFxpVersion       = 2
	sshFxpOpen          = 3
	sshFxpClose         = 4
	sshFxpRead          = 5
	sshFxpWrite         = 6
	sshFxpSetstat       = 9
	sshFxpOpendir       = 11
	sshFxpRemove        = 13
	sshFxpMkdir         = 14
	sshFxpRmdir         = 15
	sshFxpRename        = 18
	sshFxpSymlink       = 20
	sshFxpStatus        = 101
	sshFxpHandle        = 102
	sshFxpData          = 103
	sshFxpName          = 104
	sshFxpAttrs         = 105
	sshFxpExtended      = 200
	sshFxpExtendedReply = 201
)

// Limits: OpenSSH's sftp-server accepts 256 KiB messages; a peer sending
// more, or keeping absurdly many requests outstanding, is not speaking
// SFTP and the channel is ended rather than relayed unrecorded.
const (
	maxSFTPPacket      = 1 << 20
	maxSFTPOutstanding = 1 << 14
	maxSFTPHandles     = 1 << 12
)

// ErrProtocol means a stream could not be parsed (and so not recorded).
var ErrProtocol = errors.New("recording: unparseable file-transfer stream")

// SFTP operation names in events (Event.Op).
const (
	OpOpen    = "open"
	OpRead    = "read"
	OpWrite   = "write"
	OpClose   = "close"
	OpRemove  = "remove"
	OpRename  = "rename"
	OpMkdir   = "mkdir"
	OpRmdir   = "rmdir"
	OpSymlink = "symlink"
	OpSetstat = "setstat"
)

// SFTPParser turns both directions of an SFTP session into Events.
// Client and Server may be called from different goroutines.
type SFTPParser struct {
	emit func(Event) error

	mu      sync.Mutex
	client  framer
	server  framer
	reqs    map[uint32]sftpReq
	handles map[string]*sftpFile
}

type sftpReq struct {
	op     string
	path   string
	path2  string
	flags  string
	handle string
}

type sftpFile struct {
	path          string
	dir           bool
	read, written int64
	next          uint64
	nonSequential bool
	h             hash.Hash
}

// NewSFTPParser returns a parser that reports operations to emit. An
// emit error is returned from Client/Server (the recording failed).
func NewSFTPParser(emit func(Event) error) *SFTPParser {
	return &SFTPParser{
		emit:    emit,
		client:  framer{max: maxSFTPPacket},
		server:  framer{max: maxSFTPPacket},
		reqs:    map[uint32]sftpReq{},
		handles: map[string]*sftpFile{},
	}
}

// Client consumes client→server bytes.
func (s *SFTPParser) Client(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.client.feed(p, s.clientPacket)
}

// Server consumes server→client bytes.
func (s *SFTPParser) Server(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.server.feed(p, s.serverPacket)
}

// Close reports files still open when the channel ended.
func (s *SFTPParser) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	handles := make([]string, 0, len(s.handles))
	for h := range s.handles {
		handles = append(handles, h)
	}
	sort.Strings(handles)
	for _, h := range handles {
		if f := s.handles[h]; !f.dir {
			s.closeFile(f, "unclosed")
		}
	}
	s.handles = map[string]*sftpFile{}
	s.reqs = map[uint32]sftpReq{}
}

// framer splits a byte stream into uint32-length-prefixed packets without
// copying packets that arrive whole.
type framer struct {
	buf []byte
	max int
}

func (f *framer) feed(p []byte, handle func([]byte) error) error {
	for len(p) > 0 && len(f.buf) == 0 {
		if len(p) < 4 {
			break
		}
		n := int(binary.BigEndian.Uint32(p))
		if n == 0 || n > f.max {
			return fmt.Errorf("%w: packet length %d", ErrProtocol, n)
		}
		if len(p) < 4+n {
			break
		}
		if err := handle(p[4 : 4+n]); err != nil {
			return err
		}
		p = p[4+n:]
	}
	if len(p) == 0 {
		return nil
	}
	f.buf = append(f.buf, p...)
	for len(f.buf) >= 4 {
		n := int(binary.BigEndian.Uint32(f.buf))
		if n == 0 || n > f.max {
			return fmt.Errorf("%w: packet length %d", ErrProtocol, n)
		}
		if len(f.buf) < 4+n {
			break
		}
		if err := handle(f.buf[4 : 4+n]); err != nil {
			return err
		}
		f.buf = f.buf[4+n:]
	}
	if len(f.buf) == 0 {
		f.buf = nil // drop the (possibly large) backing array
	} else if cap(f.buf) > 2*f.max {
		f.buf = append([]byte(nil), f.buf...)
	}
	return nil
}

// wire reads SFTP fields.
type wire struct {
	b   []byte
	bad bool
}

// take returns the next n bytes, or nil (marking w bad) when short.
func (w *wire) take(n uint64) []byte {
	if w.bad || n > uint64(len(w.b)) {
		w.bad = true
		return nil
	}
	v := w.b[:n]
	w.b = w.b[n:]
	return v
}

func (w *wire) u8() byte {
	if b := w.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (w *wire) u32() uint32 {
	if b := w.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (w *wire) u64() uint64 {
	if b := w.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (w *wire) bytes() []byte {
	n := w.u32()
	if w.bad {
		return nil
	}
	if v := w.take(uint64(n)); v != nil {
		return v
	}
	return nil
}

func (w *wire) str() string { return string(w.bytes()) }

func (s *SFTPParser) clientPacket(pkt []byte) error {
	w := &wire{b: pkt}
	typ := w.u8()
	if typ == sshFxpInit {
		return nil
	}
	id := w.u32()
	var r sftpReq
	switch typ {
	case sshFxpOpen:
		r = sftpReq{op: OpOpen, path: w.str()}
		r.flags = openFlags(w.u32())
	case sshFxpOpendir:
		r = sftpReq{op: "opendir", path: w.str()}
	case sshFxpClose:
		r = sftpReq{op: OpClose, handle: w.str()}
	case sshFxpRead:
		r = sftpReq{op: OpRead, handle: w.str()}
	case sshFxpWrite:
		h := w.str()
		off := w.u64()
		data := w.bytes()
		if w.bad {
			return fmt.Errorf("%w: write", ErrProtocol)
		}
		if f := s.handles[h]; f != nil && !f.dir {
			f.written += int64(len(data))
			if off == f.next && !f.nonSequential {
				f.h.Write(data)
				f.next += uint64(len(data))
			} else {
				f.nonSequential = true
			}
		}
		return nil
	case sshFxpRemove:
		r = sftpReq{op: OpRemove, path: w.str()}
	case sshFxpMkdir:
		r = sftpReq{op: OpMkdir, path: w.str()}
	case sshFxpRmdir:
		r = sftpReq{op: OpRmdir, path: w.str()}
	case sshFxpSetstat:
		r = sftpReq{op: OpSetstat, path: w.str()}
	case sshFxpRename:
		r = sftpReq{op: OpRename, path: w.str(), path2: w.str()}
	case sshFxpSymlink:
		r = sftpReq{op: OpSymlink, path: w.str(), path2: w.str()}
	case sshFxpExtended:
		switch w.str() {
		case "posix-rename@openssh.com":
			r = sftpReq{op: OpRename, path: w.str(), path2: w.str()}
		case "hardlink@openssh.com":
			r = sftpReq{op: "hardlink", path: w.str(), path2: w.str()}
		default:
			return nil
		}
	default:
		// stat, realpath, readdir…: nothing to record.
		return nil
	}
	if w.bad {
		return fmt.Errorf("%w: request type %d", ErrProtocol, typ)
	}
	if len(s.reqs) >= maxSFTPOutstanding {
		return fmt.Errorf("%w: too many outstanding requests", ErrProtocol)
	}
	s.reqs[id] = r
	return nil
}

func (s *SFTPParser) serverPacket(pkt []byte) error {
	w := &wire{b: pkt}
	typ := w.u8()
	if typ == sshFxpVersion {
		return nil
	}
	id := w.u32()
	if w.bad {
		return fmt.Errorf("%w: response", ErrProtocol)
	}
	r, known := s.reqs[id]
	delete(s.reqs, id)
	if !known {
		return nil
	}
	switch typ {
	case sshFxpHandle:
		h := w.str()
		if w.bad {
			return fmt.Errorf("%w: handle", ErrProtocol)
		}
		if len(s.handles) >= maxSFTPHandles {
			return fmt.Errorf("%w: too many open handles", ErrProtocol)
		}
		if r.op == "opendir" {
			s.handles[h] = &sftpFile{path: r.path, dir: true}
			return nil
		}
		if r.op != OpOpen {
			return nil
		}
		s.handles[h] = &sftpFile{path: r.path, h: sha256.New()}
		return s.emit(Event{Type: EventSFTP, Op: OpOpen, Path: r.path, Flags: r.flags, Result: "ok"})
	case sshFxpData:
		data := w.bytes()
		if f := s.handles[r.handle]; f != nil && r.op == OpRead {
			f.read += int64(len(data))
		}
		return nil
	case sshFxpStatus:
		return s.status(r, w.u32())
	}
	return nil
}

// status completes a request answered with SSH_FXP_STATUS.
func (s *SFTPParser) status(r sftpReq, code uint32) error {
	result := statusText(code)
	switch r.op {
	case OpOpen:
		return s.emit(Event{Type: EventSFTP, Op: OpOpen, Path: r.path, Flags: r.flags, Result: result})
	case OpClose:
		f := s.handles[r.handle]
		delete(s.handles, r.handle)
		if f == nil || f.dir {
			return nil
		}
		return s.closeFile(f, result)
	case OpRead, "opendir":
		return nil
	}
	return s.emit(Event{Type: EventSFTP, Op: r.op, Path: r.path, Path2: r.path2, Result: result})
}

// closeFile emits the read/write totals and the close of f.
func (s *SFTPParser) closeFile(f *sftpFile, result string) error {
	if f.read > 0 {
		if err := s.emit(Event{Type: EventSFTP, Op: OpRead, Path: f.path, BytesRead: f.read}); err != nil {
			return err
		}
	}
	if f.written > 0 {
		e := Event{Type: EventSFTP, Op: OpWrite, Path: f.path, BytesWritten: f.written, NonSequential: f.nonSequential}
		if !f.nonSequential {
			e.SHA256 = hex.EncodeToString(f.h.Sum(nil))
		}
		if err := s.emit(e); err != nil {
			return err
		}
	}
	return s.emit(Event{Type: EventSFTP, Op: OpClose, Path: f.path, BytesRead: f.read, BytesWritten: f.written, Result: result})
}

func statusText(code uint32) string {
	switch code {
	case 0:
		return "ok"
	case 1:
		return "eof"
	case 2:
		return "no-such-file"
	case 3:
		return "permission-denied"
	case 4:
		return "failure"
	case 8:
		return "unsupported"
	}
	return "status-" + strconv.FormatUint(uint64(code), 10)
}

func openFlags(f uint32) string {
	var out []string
	for _, x := range []struct {
		bit  uint32
		name string
	}{{1, "read"}, {2, "write"}, {4, "append"}, {8, "create"}, {16, "truncate"}, {32, "excl"}} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}
