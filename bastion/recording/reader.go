package recording

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Reader decodes a recording frame by frame. It never trusts the input:
// every chunk is authenticated before any of its frames is returned,
// lengths are bounded, and each failure wraps one of ErrTampered,
// ErrTruncated (incomplete: no end chunk; everything before was
// returned), ErrWrongKey or ErrCorrupt.
type Reader struct {
	Meta Meta

	cr      chunkReader
	keyID   KeyID
	slot    int
	pt      []byte // the current chunk's unread frames
	final   bool   // pt belongs to the end chunk
	offset  time.Duration
	trailer *Trailer
	err     error
}

// NewReader reads the header with the data key wrapped under key and
// the metadata chunk from r.
func NewReader(r io.Reader, key *Key) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	dek, slot, err := h.openSlots(key)
	if err != nil {
		return nil, err
	}
	c, err := newChain(h, dek)
	clear(dek)
	if err != nil {
		return nil, err
	}
	if h.flags() != 0 {
		return nil, fmt.Errorf("%w: unsupported header flags %#x", ErrCorrupt, h.flags())
	}
	rd := &Reader{cr: chunkReader{r: br, c: c}, keyID: key.id, slot: slot}
	_, meta, err := rd.cr.next()
	if err != nil {
		return nil, err
	}
	if len(meta) > MaxHeader {
		return nil, fmt.Errorf("%w: metadata too large", ErrCorrupt)
	}
	if err := json.Unmarshal(meta, &rd.Meta); err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", ErrCorrupt, err)
	}
	if rd.Meta.Version != FormatVersion {
		return nil, fmt.Errorf("%w: unsupported metadata version %d", ErrCorrupt, rd.Meta.Version)
	}
	if rd.Meta.SessionID != h.id {
		// Authenticated, so a writer bug rather than tampering.
		return nil, fmt.Errorf("%w: metadata names session %q, the header %q", ErrCorrupt, rd.Meta.SessionID, h.id)
	}
	return rd, nil
}

// KeyID is the key-encryption key that opened the recording.
func (rd *Reader) KeyID() KeyID { return rd.keyID }

// Chunks is the number of whole chunks read so far, the metadata chunk
// included.
func (rd *Reader) Chunks() int { return rd.cr.chunks }

// Digest is the recording's chain value (Writer.Digest) once Next has
// returned io.EOF.
func (rd *Reader) Digest() ([32]byte, bool) {
	if rd.trailer == nil {
		return [32]byte{}, false
	}
	return rd.cr.c.sum, true
}

// Next returns the next frame other than the trailer. At the end it
// returns io.EOF after the end chunk, or an error wrapping ErrTruncated
// (the file ends without an end chunk), ErrTampered or ErrCorrupt.
// Frame.Data is only valid until the next call.
func (rd *Reader) Next() (Frame, error) {
	if rd.err != nil {
		return Frame{}, rd.err
	}
	f, err := rd.next()
	if err != nil {
		rd.err = err
	}
	return f, err
}

func (rd *Reader) next() (Frame, error) {
	for len(rd.pt) == 0 {
		if rd.trailer != nil {
			// Anything after the end chunk is tampering.
			if _, _, err := rd.cr.next(); err != io.EOF {
				return Frame{}, err
			}
			return Frame{}, io.EOF
		}
		if rd.final {
			return Frame{}, fmt.Errorf("%w: the end chunk has no trailer", ErrCorrupt)
		}
		typ, pt, err := rd.cr.next()
		if err != nil {
			return Frame{}, err
		}
		rd.pt, rd.final = pt, typ == chunkEnd
	}
	delta, ch, s, data, n, err := parseFrame(rd.pt)
	if err != nil {
		return Frame{}, fmt.Errorf("%w (chunk %d)", err, rd.cr.chunks-1)
	}
	rd.pt = rd.pt[n:]
	rd.offset += time.Duration(delta) * time.Microsecond
	if rd.offset < 0 {
		return Frame{}, fmt.Errorf("%w: time overflow", ErrCorrupt)
	}
	if s == StreamTrailer {
		if !rd.final || len(rd.pt) != 0 {
			return Frame{}, fmt.Errorf("%w: a trailer that is not last in the end chunk", ErrCorrupt)
		}
		var t Trailer
		if err := json.Unmarshal(data, &t); err != nil {
			return Frame{}, fmt.Errorf("%w: trailer: %v", ErrCorrupt, err)
		}
		rd.trailer = &t
		return rd.next()
	}
	return Frame{Offset: rd.offset, Channel: ch, Stream: s, Data: data}, nil
}

// parseFrame decodes the frame at the start of p (authentic plaintext,
// still bounded: a writer bug must not become a panic).
func parseFrame(p []byte) (delta uint64, ch uint32, s Stream, data []byte, n int, err error) {
	bad := func(what string) (uint64, uint32, Stream, []byte, int, error) {
		return 0, 0, 0, nil, 0, fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
	delta, i := binary.Uvarint(p)
	if i <= 0 {
		return bad("bad frame header")
	}
	c, j := binary.Uvarint(p[i:])
	if j <= 0 || i+j >= len(p) {
		return bad("bad frame header")
	}
	i += j
	sb := p[i]
	i++
	size, j := binary.Uvarint(p[i:])
	if j <= 0 {
		return bad("bad frame header")
	}
	i += j
	s = Stream(sb)
	switch {
	case c > 1<<32-1, size > MaxFrame, delta > uint64(1<<62)/uint64(time.Microsecond):
		return bad("frame out of bounds")
	case s < StreamStdout || s > StreamTrailer:
		return bad(fmt.Sprintf("unknown stream %d", sb))
	case size > uint64(len(p)-i):
		return bad("frame longer than its chunk")
	}
	return delta, uint32(c), s, p[i : i+int(size)], i + int(size), nil
}

// Trailer returns the trailer once Next has returned io.EOF.
func (rd *Reader) Trailer() (Trailer, bool) {
	if rd.trailer == nil {
		return Trailer{}, false
	}
	return *rd.trailer, true
}

// Time is the wall time of a frame.
func (rd *Reader) Time(f Frame) time.Time { return rd.Meta.Start.Add(f.Offset) }

// DecodeEvent parses a StreamEvent payload.
func DecodeEvent(p []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(p, &e); err != nil {
		return Event{}, fmt.Errorf("%w: event: %v", ErrCorrupt, err)
	}
	return e, nil
}

// Summary is a whole recording's metadata and events (no output bytes),
// for listings and tests.
type Summary struct {
	Meta      Meta
	Trailer   *Trailer // nil when truncated
	Truncated bool     // incomplete: no end chunk (Err says more)
	// Err is the ErrTruncated error when Truncated ("ended without a
	// final chunk after N chunks").
	Err    error
	KeyID  KeyID
	Chunks int
	Digest [32]byte // zero when truncated
	Events []ChannelEvent
	// Bytes counts payload bytes per stream.
	Bytes map[Stream]int64
}

// ChannelEvent is an event with its channel and offset.
type ChannelEvent struct {
	Offset  time.Duration
	Channel uint32
	Event
}

// Summarize reads and authenticates a whole recording. An incomplete
// recording is summarised up to its last whole chunk with Truncated set
// and no error; tampering is an error.
func Summarize(r io.Reader, key *Key) (*Summary, error) {
	rd, err := NewReader(r, key)
	if err != nil {
		return nil, err
	}
	s := &Summary{Meta: rd.Meta, KeyID: rd.KeyID(), Bytes: map[Stream]int64{}}
	for {
		f, err := rd.Next()
		s.Chunks = rd.Chunks()
		switch {
		case err == io.EOF:
			t, _ := rd.Trailer()
			s.Trailer = &t
			s.Digest, _ = rd.Digest()
			return s, nil
		case errors.Is(err, ErrTruncated):
			s.Truncated, s.Err = true, err
			return s, nil
		case err != nil:
			return s, err
		}
		s.Bytes[f.Stream] += int64(len(f.Data))
		if f.Stream == StreamEvent {
			e, err := DecodeEvent(f.Data)
			if err != nil {
				return s, err
			}
			s.Events = append(s.Events, ChannelEvent{Offset: f.Offset, Channel: f.Channel, Event: e})
		}
	}
}
