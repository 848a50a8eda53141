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
// lengths are bounded, a damaged frame is ErrCorrupt, and a file that ends
// before its trailer is ErrTruncated (everything before it was returned).
type Reader struct {
	Meta Meta

	r       *bufio.Reader
	offset  time.Duration
	buf     []byte
	trailer *Trailer
	err     error
}

// NewReader reads the magic and header from r.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != Magic {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	n, err := readUvarint(br)
	if err != nil || n == 0 || n > MaxHeader {
		return nil, fmt.Errorf("%w: bad header length", ErrCorrupt)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, fmt.Errorf("%w: short header", ErrCorrupt)
	}
	rd := &Reader{r: br}
	if err := json.Unmarshal(hdr, &rd.Meta); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	if rd.Meta.Version != FormatVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCorrupt, rd.Meta.Version)
	}
	return rd, nil
}

// Next returns the next frame other than the trailer. At the end it
// returns io.EOF when the trailer was seen, ErrTruncated when the file
// ends without one, or ErrCorrupt. Frame.Data is only valid until the next
// call.
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
	if rd.trailer != nil {
		return Frame{}, io.EOF
	}
	delta, err := readUvarint(rd.r)
	if err == io.EOF {
		return Frame{}, ErrTruncated
	}
	if err != nil {
		return Frame{}, rd.short(err)
	}
	ch, err := readUvarint(rd.r)
	if err != nil {
		return Frame{}, rd.short(err)
	}
	sb, err := rd.r.ReadByte()
	if err != nil {
		return Frame{}, rd.short(err)
	}
	n, err := readUvarint(rd.r)
	if err != nil {
		return Frame{}, rd.short(err)
	}
	s := Stream(sb)
	switch {
	case ch > 1<<32-1, n > MaxFrame, delta > uint64(1<<62)/uint64(time.Microsecond):
		return Frame{}, fmt.Errorf("%w: frame out of bounds", ErrCorrupt)
	case s < StreamStdout || s > StreamTrailer:
		return Frame{}, fmt.Errorf("%w: unknown stream %d", ErrCorrupt, sb)
	}
	if cap(rd.buf) < int(n) {
		rd.buf = make([]byte, n)
	}
	data := rd.buf[:n]
	if _, err := io.ReadFull(rd.r, data); err != nil {
		return Frame{}, rd.short(err)
	}
	rd.offset += time.Duration(delta) * time.Microsecond
	if rd.offset < 0 {
		return Frame{}, fmt.Errorf("%w: time overflow", ErrCorrupt)
	}
	f := Frame{Offset: rd.offset, Channel: uint32(ch), Stream: s, Data: data}
	if s == StreamTrailer {
		var t Trailer
		if err := json.Unmarshal(data, &t); err != nil {
			return Frame{}, fmt.Errorf("%w: trailer: %v", ErrCorrupt, err)
		}
		rd.trailer = &t
		if _, err := rd.r.ReadByte(); err != io.EOF {
			return Frame{}, fmt.Errorf("%w: data after the trailer", ErrCorrupt)
		}
		return Frame{}, io.EOF
	}
	return f, nil
}

// short maps a read error inside a frame: the writer was cut off mid-frame.
func (rd *Reader) short(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// readUvarint is binary.ReadUvarint with overflow reported as ErrCorrupt
// and EOF after the first byte as io.ErrUnexpectedEOF.
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			break
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return x, nil
		}
	}
	return 0, fmt.Errorf("%w: bad varint", ErrCorrupt)
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
	Truncated bool
	Events    []ChannelEvent
	// Bytes counts payload bytes per stream.
	Bytes map[Stream]int64
}

// ChannelEvent is an event with its channel and offset.
type ChannelEvent struct {
	Offset  time.Duration
	Channel uint32
	Event
}

// Summarize reads a whole recording. A truncated recording is summarised
// up to its last whole frame with Truncated set and no error.
func Summarize(r io.Reader) (*Summary, error) {
	rd, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	s := &Summary{Meta: rd.Meta, Bytes: map[Stream]int64{}}
	for {
		f, err := rd.Next()
		switch {
		case err == io.EOF:
			t, _ := rd.Trailer()
			s.Trailer = &t
			return s, nil
		case errors.Is(err, ErrTruncated):
			s.Truncated = true
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
