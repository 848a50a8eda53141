package recording

// Legacy scp (rcp protocol, `scp -O`) runs as an exec of "scp -t PATH"
// (upload: the client sends files) or "scp -f PATH" (download: the target
// sends them). The sending side's stream is a sequence of control lines
// ("C0644 SIZE NAME", "D0755 0 NAME", "E", "T…") each followed, for files,
// by SIZE bytes of content and a status byte. The parser follows that
// stream and reports every file with its size and SHA-256.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"path"
	"strconv"
	"strings"
)

// scp event operations.
const (
	OpUpload   = "upload"
	OpDownload = "download"
)

const maxSCPLine = 4096

// SCPParser follows the sending side of a legacy scp transfer.
type SCPParser struct {
	emit   func(Event) error
	op     string // OpUpload (client sends) or OpDownload (target sends)
	target string // path named on the command line

	state   int // scpLine, scpData, scpStatus
	line    []byte
	dirs    []string
	name    string
	size    int64
	left    int64
	h       hash.Hash
	stopped bool
}

const (
	scpLine = iota
	scpData
	scpStatus
)

// NewSCPParser returns a parser for an exec command that runs the remote
// end of legacy scp, or nil when command is not one.
func NewSCPParser(command string, emit func(Event) error) *SCPParser {
	f := strings.Fields(command)
	if len(f) < 2 || path.Base(f[0]) != "scp" {
		return nil
	}
	p := &SCPParser{emit: emit}
	for _, a := range f[1:] {
		switch {
		case a == "--":
			continue
		case strings.HasPrefix(a, "-"):
			if strings.Contains(a, "t") {
				p.op = OpUpload
			}
			if strings.Contains(a, "f") {
				p.op = OpDownload
			}
		default:
			p.target = a
		}
	}
	if p.op == "" {
		return nil
	}
	return p
}

// Client consumes client→target bytes (the file stream of an upload).
func (p *SCPParser) Client(b []byte) error {
	if p.op == OpUpload {
		return p.feed(b)
	}
	return nil
}

// Server consumes target→client bytes (the file stream of a download).
func (p *SCPParser) Server(b []byte) error {
	if p.op == OpDownload {
		return p.feed(b)
	}
	return nil
}

// Close reports a file cut off mid-transfer.
func (p *SCPParser) Close() {
	if p.state == scpData && !p.stopped {
		p.emit(Event{Type: EventSCP, Op: p.op, Path: p.file(), Path2: p.target, BytesWritten: p.size - p.left, Result: "incomplete"})
	}
}

func (p *SCPParser) file() string { return path.Join(append(append([]string{}, p.dirs...), p.name)...) }

func (p *SCPParser) feed(b []byte) error {
	for len(b) > 0 && !p.stopped {
		switch p.state {
		case scpData:
			n := int64(len(b))
			if n > p.left {
				n = p.left
			}
			p.h.Write(b[:n])
			p.left -= n
			b = b[n:]
			if p.left == 0 {
				p.state = scpStatus
				if err := p.emit(Event{
					Type: EventSCP, Op: p.op, Path: p.file(), Path2: p.target,
					BytesWritten: p.size, SHA256: hex.EncodeToString(p.h.Sum(nil)), Result: "ok",
				}); err != nil {
					return err
				}
			}
		case scpStatus:
			b = b[1:]
			p.state = scpLine
		default:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				if len(p.line)+len(b) > maxSCPLine {
					return fmt.Errorf("%w: scp control line too long", ErrProtocol)
				}
				p.line = append(p.line, b...)
				return nil
			}
			p.line = append(p.line, b[:i]...)
			b = b[i+1:]
			line := string(p.line)
			p.line = p.line[:0]
			if err := p.control(line); err != nil {
				return err
			}
		}
	}
	return nil
}

// control handles one control line.
func (p *SCPParser) control(line string) error {
	if line == "" {
		return fmt.Errorf("%w: empty scp control line", ErrProtocol)
	}
	switch line[0] {
	case 'C', 'D':
		f := strings.SplitN(line[1:], " ", 3)
		if len(f) != 3 || f[2] == "" || strings.Contains(f[2], "/") {
			return fmt.Errorf("%w: bad scp header", ErrProtocol)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: bad scp size", ErrProtocol)
		}
		if line[0] == 'D' {
			p.dirs = append(p.dirs, f[2])
			return nil
		}
		p.name, p.size, p.left, p.h = f[2], size, size, sha256.New()
		p.state = scpData
		if size == 0 {
			return p.feedEmpty()
		}
	case 'E':
		if len(p.dirs) > 0 {
			p.dirs = p.dirs[:len(p.dirs)-1]
		}
	case 'T':
	case 1, 2:
		// A warning or error line from the sender.
		if line[0] == 2 {
			p.stopped = true
		}
	default:
		return fmt.Errorf("%w: unknown scp control line", ErrProtocol)
	}
	return nil
}

// feedEmpty completes a zero-length file.
func (p *SCPParser) feedEmpty() error {
	p.state = scpStatus
	return p.emit(Event{
		Type: EventSCP, Op: p.op, Path: p.file(), Path2: p.target,
		SHA256: hex.EncodeToString(p.h.Sum(nil)), Result: "ok",
	})
}
