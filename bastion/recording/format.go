// Package recording stores what happens in a bastion connection: every
// channel's output (and input when configured), terminal sizes, and
// structured events (commands, exit codes, SFTP file operations, port
// forwards), in a compact binary-safe framed file written while the
// session runs.
//
// File layout (all integers are unsigned LEB128 varints unless noted):
//
//	magic    "PCREC01\n" (8 bytes)
//	header   varint length, then that many bytes of JSON Meta
//	frames   varint time delta (µs since the previous frame, the first
//	         since Meta.Start), varint channel, 1 byte stream, varint
//	         length, payload
//	trailer  a frame on StreamTrailer with JSON Trailer; nothing follows
//
// Payloads are stored as they are — no escaping — so a gigabyte of binary
// output costs a gigabyte plus a few bytes per frame. A file without a
// trailer (the process was killed) is still readable up to its last whole
// frame; readers report it as truncated.
package recording

import (
	"encoding/binary"
	"errors"
	"time"
)

// Magic starts every recording.
const Magic = "PCREC01\n"

// FormatVersion is Meta.Version for files written by this package.
const FormatVersion = 1

// Limits a reader enforces (a writer never exceeds them).
const (
	MaxHeader = 64 << 10
	MaxFrame  = 1 << 20
)

// FileExt is the extension of recording files.
const FileExt = ".pcrec"

// Stream says what a frame carries.
type Stream uint8

// Streams.
const (
	StreamStdout  Stream = 1 // what the user saw on stdout
	StreamStderr  Stream = 2 // what the user saw on stderr
	StreamStdin   Stream = 3 // what the user sent (only with input recording)
	StreamResize  Stream = 4 // payload: varint cols, varint rows
	StreamEvent   Stream = 5 // payload: JSON Event
	StreamTrailer Stream = 6 // payload: JSON Trailer; last frame
)

func (s Stream) String() string {
	switch s {
	case StreamStdout:
		return "stdout"
	case StreamStderr:
		return "stderr"
	case StreamStdin:
		return "stdin"
	case StreamResize:
		return "resize"
	case StreamEvent:
		return "event"
	case StreamTrailer:
		return "trailer"
	}
	return "unknown"
}

// Meta is the header: one record for all of a connection's channels.
type Meta struct {
	Version     int       `json:"version"`
	SessionID   string    `json:"session_id"`
	Instance    string    `json:"instance,omitempty"`
	UserID      string    `json:"user_id"`
	SourceIP    string    `json:"source_ip"`
	Target      string    `json:"target"`
	TargetAddr  string    `json:"target_addr,omitempty"`
	Login       string    `json:"login"`
	Roles       []string  `json:"roles,omitempty"`
	CertSerial  uint64    `json:"cert_serial,omitempty"`
	Start       time.Time `json:"start"`
	RecordInput bool      `json:"record_input"`
}

// Trailer closes a recording: when and why the connection ended.
type Trailer struct {
	End    time.Time `json:"end"`
	Reason string    `json:"reason"`
	Detail string    `json:"detail,omitempty"`
}

// Event types.
const (
	EventChannelOpen  = "channel-open"  // Kind: session, direct-tcpip, auth-agent
	EventChannelClose = "channel-close" //
	EventPTY          = "pty"           // Term, Cols, Rows
	EventShell        = "shell"         //
	EventExec         = "exec"          // Command
	EventSubsystem    = "subsystem"     // Name
	EventEnv          = "env"           // Name (value not recorded), Allowed
	EventDenied       = "denied"        // a request or channel refused: Kind/Name, Reason
	EventExitStatus   = "exit-status"   // Status
	EventExitSignal   = "exit-signal"   // Signal
	EventSFTP         = "sftp"          // Op, Path, Path2, Bytes…, SHA256, Status
	EventSCP          = "scp"           // Op (upload/download), Path, Bytes
	EventForwardOpen  = "forward-open"  // Dest, Resolved
	EventForwardClose = "forward-close" // Dest, Resolved, BytesIn, BytesOut
	EventSignal       = "signal"        // Signal
	EventAgent        = "agent"         // agent forwarding used
)

// Event is a structured record inside a recording (StreamEvent frames).
// Only fields relevant to the type are set.
type Event struct {
	Type    string `json:"type"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
	Command string `json:"command,omitempty"`
	Term    string `json:"term,omitempty"`
	Cols    uint32 `json:"cols,omitempty"`
	Rows    uint32 `json:"rows,omitempty"`
	Status  *int   `json:"status,omitempty"`
	Signal  string `json:"signal,omitempty"`
	Allowed *bool  `json:"allowed,omitempty"`
	Reason  string `json:"reason,omitempty"`

	// SFTP / scp.
	Op            string `json:"op,omitempty"`
	Path          string `json:"path,omitempty"`
	Path2         string `json:"path2,omitempty"`
	Flags         string `json:"flags,omitempty"`
	BytesRead     int64  `json:"bytes_read,omitempty"`
	BytesWritten  int64  `json:"bytes_written,omitempty"`
	SHA256        string `json:"sha256,omitempty"`
	NonSequential bool   `json:"non_sequential,omitempty"`
	Result        string `json:"result,omitempty"`

	// Port forwards.
	Dest     string `json:"dest,omitempty"`
	Resolved string `json:"resolved,omitempty"`
	BytesIn  int64  `json:"bytes_in,omitempty"`  // towards the client
	BytesOut int64  `json:"bytes_out,omitempty"` // towards the target
}

// Frame is one decoded frame.
type Frame struct {
	Offset  time.Duration // since Meta.Start
	Channel uint32
	Stream  Stream
	Data    []byte // valid until the next call to Next
}

// Errors.
var (
	// ErrTruncated means the recording ends without a trailer (the
	// writer was killed) or inside a frame; what came before is intact.
	ErrTruncated = errors.New("recording: truncated (no trailer)")
	// ErrCorrupt means the bytes are not a recording.
	ErrCorrupt = errors.New("recording: corrupt")
)

// appendFrameHeader appends a frame header to dst.
func appendFrameHeader(dst []byte, delta time.Duration, ch uint32, s Stream, n int) []byte {
	if delta < 0 {
		delta = 0
	}
	dst = binary.AppendUvarint(dst, uint64(delta/time.Microsecond))
	dst = binary.AppendUvarint(dst, uint64(ch))
	dst = append(dst, byte(s))
	return binary.AppendUvarint(dst, uint64(n))
}

// maxFrameHeader bounds appendFrameHeader's output.
const maxFrameHeader = 3*binary.MaxVarintLen64 + 1

func appendResize(dst []byte, cols, rows uint32) []byte {
	dst = binary.AppendUvarint(dst, uint64(cols))
	return binary.AppendUvarint(dst, uint64(rows))
}

// ParseResize decodes a StreamResize payload.
func ParseResize(p []byte) (cols, rows uint32, err error) {
	c, n := binary.Uvarint(p)
	if n <= 0 || c > 1<<20 {
		return 0, 0, ErrCorrupt
	}
	r, m := binary.Uvarint(p[n:])
	if m <= 0 || r > 1<<20 || n+m != len(p) {
		return 0, 0, ErrCorrupt
	}
	return uint32(c), uint32(r), nil
}
