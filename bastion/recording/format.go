// Package recording stores what happens in a bastion connection: every
// channel's output (and input when configured), terminal sizes, and
// structured events (commands, exit codes, SFTP file operations, port
// forwards), in a compact, binary-safe, encrypted and hash-chained file
// written while the session runs.
//
// File layout (format 2; integers big-endian unless noted):
//
//	header   HeaderSize bytes, fixed size so key rotation can rewrite
//	         the key slots in place while a live writer appends:
//	           magic "PCRECX\r\n", uint16 version (2), uint16 flags (0),
//	           4-byte nonce prefix, uint8 ID length, recording ID (the
//	           session ID, zero-padded to 128 bytes),
//	           two key slots: 8-byte key ID, 12-byte nonce, the 32-byte
//	           data key sealed with AES-256-GCM under that key-encryption
//	           key (KEK) with the fixed part above as additional data.
//	           An unused slot is all zero. Rotation (Rekey) writes the
//	           new wrap into the other slot first, then over the old one,
//	           so a crash leaves one valid slot under the old or new key.
//	chunks   uint8 type (1 meta, 2 data, 3 end), uint64 sequence number
//	         (0, 1, 2 …), uint32 length, then that many bytes of AES-256-GCM
//	         ciphertext under the data key, with nonce = nonce prefix ‖
//	         sequence number and additional data = chain ‖ type ‖ sequence.
//
// The chain starts as SHA-256 of the header's fixed part (so of the
// recording ID) and becomes SHA-256(chain ‖ chunk header ‖ GCM tag) after
// each chunk; its final value is the recording's Digest. The tag is a MAC
// of the chunk's ciphertext and additional data under the data key, so
// binding every chunk to the chain before it binds it to all earlier
// ciphertext and to the recording ID: a modified, reordered, deleted or
// spliced-in chunk fails authentication, and the end chunk makes a cut
// file visibly incomplete. The key slots are outside the chain (rotation
// changes them) but authenticated themselves.
//
// Plaintext: chunk 0 holds the JSON Meta; data chunks hold whole frames,
// the end chunk the last frames and the trailer frame:
//
//	frame    varint time delta (µs since the previous frame, the first
//	         since Meta.Start), varint channel, 1 byte stream, varint
//	         length, payload (varints unsigned LEB128)
//	trailer  a frame on StreamTrailer with JSON Trailer, last in the end
//	         chunk
//
// Payloads are stored as they are, so a gigabyte of binary output costs a
// gigabyte plus a few bytes per frame and 29 bytes per chunk (one chunk
// per writer batch). A file without an end chunk (the process was killed)
// is still readable up to its last whole chunk; readers report it as
// incomplete (ErrTruncated), distinct from tampering (ErrTampered).
package recording

import (
	"encoding/binary"
	"errors"
	"time"
)

// Magic starts every recording.
const Magic = "PCRECX\r\n"

// legacyMagic started the unencrypted format 1, which is no longer read.
const legacyMagic = "PCREC01\n"

// FormatVersion is the header's version and Meta.Version for files
// written by this package.
const FormatVersion = 2

// Limits a reader enforces (a writer never exceeds them).
const (
	MaxHeader = 64 << 10 // JSON Meta
	MaxFrame  = 1 << 20
	// MaxChunk bounds a chunk's plaintext; the writer caps its batch size
	// so that a batch (plus one oversized frame) stays below it.
	MaxChunk = 8 << 20
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

// Errors. Each failure wraps exactly one of them, so callers (play,
// export, audit verify) can tell a crash from an attack.
var (
	// ErrTruncated means the recording is incomplete: it ends without
	// its end chunk (the writer was killed, or the file was cut). What
	// came before is authentic and was returned.
	ErrTruncated = errors.New("recording: incomplete")
	// ErrTampered means the recording was modified: a chunk or key slot
	// fails authentication, chunks are missing, reordered or from another
	// recording, or data follows the end chunk.
	ErrTampered = errors.New("recording: tampered")
	// ErrWrongKey means the recording's data key is not wrapped under the
	// given key (see KeyMismatchError).
	ErrWrongKey = errors.New("recording: wrong key")
	// ErrCorrupt means the bytes are not a recording this version reads
	// (bad magic, unsupported version) or an authentic chunk holds
	// malformed frames.
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
