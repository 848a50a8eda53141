package recording

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// AsciicastOptions select what an asciicast export contains.
type AsciicastOptions struct {
	// Channel limits the export to one channel; 0 exports every channel's
	// output (a connection usually has one session channel).
	Channel uint32
	// Input adds stdin frames as "i" events (when they were recorded).
	Input bool
}

// asciicastHeader is the first line of an asciicast v2 file.
type asciicastHeader struct {
	Version   int               `json:"version"`
	Width     uint32            `json:"width"`
	Height    uint32            `json:"height"`
	Timestamp int64             `json:"timestamp"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// ExportAsciicast converts a recording to asciicast v2 (stdout and stderr
// as "o" events, terminal resizes as "r" events), which stock players
// such as `asciinema play` replay. Output is split into events exactly as
// it was recorded, except that a UTF-8 sequence cut between two frames is
// joined so no character is mangled; bytes that are not UTF-8 become
// U+FFFD (asciicast is JSON text).
//
// An incomplete recording is exported up to its last whole chunk and
// the error wraps ErrTruncated, so callers can warn and still use the
// file. On tampering the export stops before the first chunk that fails
// authentication (what came before is authentic) with ErrTampered.
func ExportAsciicast(w io.Writer, r io.Reader, key *Key, opts AsciicastOptions) error {
	rd, err := NewReader(r, key)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	x := &castWriter{w: bw, rd: rd, opts: opts, carry: map[carryKey][]byte{}, width: 80, height: 24}
	err = x.run()
	if ferr := bw.Flush(); ferr != nil && (err == nil || errors.Is(err, ErrTruncated)) {
		err = ferr
	}
	return err
}

type carryKey struct {
	ch uint32
	s  Stream
}

type castWriter struct {
	w             *bufio.Writer
	rd            *Reader
	opts          AsciicastOptions
	carry         map[carryKey][]byte // incomplete UTF-8 tails
	width, height uint32
	term          string
	headerDone    bool
}

type castEvent struct {
	t    time.Duration
	code string
	data string
}

func (x *castWriter) run() error {
	for {
		f, err := x.rd.Next()
		if err != nil {
			if werr := x.flushAll(); werr != nil {
				return werr
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
		if x.opts.Channel != 0 && f.Channel != x.opts.Channel {
			continue
		}
		if err := x.frame(f); err != nil {
			return err
		}
	}
}

func (x *castWriter) frame(f Frame) error {
	switch f.Stream {
	case StreamEvent:
		if !x.headerDone {
			if e, err := DecodeEvent(f.Data); err == nil && e.Type == EventPTY {
				x.term = e.Term
				if e.Cols > 0 && e.Rows > 0 {
					x.width, x.height = e.Cols, e.Rows
				}
			}
		}
		return nil
	case StreamResize:
		cols, rows, err := ParseResize(f.Data)
		if err != nil || cols == 0 || rows == 0 {
			return nil
		}
		if !x.headerDone {
			// Before any output: this is the initial size.
			x.width, x.height = cols, rows
			return nil
		}
		return x.emit(castEvent{f.Offset, "r", fmt.Sprintf("%dx%d", cols, rows)})
	case StreamStdout, StreamStderr:
		return x.text(f, "o")
	case StreamStdin:
		if x.opts.Input {
			return x.text(f, "i")
		}
	}
	return nil
}

// text emits the complete UTF-8 prefix of (carry + data) and keeps an
// incomplete trailing sequence for the next frame of the same stream.
func (x *castWriter) text(f Frame, code string) error {
	k := carryKey{f.Channel, f.Stream}
	b := append(x.carry[k], f.Data...)
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	x.carry[k] = append([]byte(nil), b[cut:]...)
	if cut == 0 {
		return nil
	}
	return x.emit(castEvent{f.Offset, code, string(b[:cut])})
}

func (x *castWriter) emit(e castEvent) error {
	if !x.headerDone {
		if err := x.header(); err != nil {
			return err
		}
	}
	line, err := json.Marshal([]any{json.Number(strconv.FormatFloat(e.t.Seconds(), 'f', 6, 64)), e.code, e.data})
	if err != nil {
		return err
	}
	x.w.Write(line)
	return x.w.WriteByte('\n')
}

func (x *castWriter) header() error {
	x.headerDone = true
	m := x.rd.Meta
	h := asciicastHeader{
		Version: 2, Width: x.width, Height: x.height, Timestamp: m.Start.Unix(),
		Title: fmt.Sprintf("%s as %s@%s (%s)", m.UserID, m.Login, m.Target, m.SessionID),
	}
	if x.term != "" {
		h.Env = map[string]string{"TERM": x.term}
	}
	line, err := json.Marshal(h)
	if err != nil {
		return err
	}
	x.w.Write(line)
	return x.w.WriteByte('\n')
}

// flushAll writes the header (also for a recording without output) and
// any carried bytes (as replacement characters).
func (x *castWriter) flushAll() error {
	if !x.headerDone {
		if err := x.header(); err != nil {
			return err
		}
	}
	for k, b := range x.carry {
		if len(b) > 0 {
			code := "o"
			if k.s == StreamStdin {
				code = "i"
			}
			if err := x.emit(castEvent{x.rd.offset, code, string(b)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// PlayOptions control Play.
type PlayOptions struct {
	// Speed multiplies playback speed (2 = twice as fast); ≤ 0 means 1.
	Speed float64
	// MaxIdle caps any pause (after speed scaling); 0 = no cap.
	MaxIdle time.Duration
	// Channel limits playback to one channel; 0 = all.
	Channel uint32
	// Sleep waits d or until ctx ends (default: a timer). Tests inject it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Play writes a recording's output to w with its original timing,
// scaled by Speed. It stops when ctx ends. An incomplete recording plays
// to the end of its last whole chunk and returns an error wrapping
// ErrTruncated; a tampered one stops before the chunk that fails
// authentication, with ErrTampered.
func Play(ctx context.Context, w io.Writer, r io.Reader, key *Key, opts PlayOptions) error {
	rd, err := NewReader(r, key)
	if err != nil {
		return err
	}
	speed := opts.Speed
	if speed <= 0 {
		speed = 1
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	var last time.Duration
	for {
		f, err := rd.Next()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if (opts.Channel != 0 && f.Channel != opts.Channel) || (f.Stream != StreamStdout && f.Stream != StreamStderr) {
			continue
		}
		d := time.Duration(float64(f.Offset-last) / speed)
		last = f.Offset
		if opts.MaxIdle > 0 && d > opts.MaxIdle {
			d = opts.MaxIdle
		}
		if d > 0 {
			if err := sleep(ctx, d); err != nil {
				return err
			}
		}
		if _, err := w.Write(f.Data); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
