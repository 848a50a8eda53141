package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Syslog messages (RFC 5424), one per record, framed by octet counting
// (RFC 6587 section 3.4.1: "LEN SP MSG") over TCP, or TLS (RFC 5425):
//
//	<PRI>1 TIMESTAMP HOSTNAME portcullis PROCID TYPE [portcullis@32473 instance="…" seq="42" type="…"] BOM{"time":…,"seq":42,"prev":…}
//
// PRI is facility 13 (log audit) with severity warning for locks, blocks,
// anomalies and trail recoveries, info otherwise. TIMESTAMP is the
// record's own time, to the microsecond (the most RFC 5424 allows).
// MSGID is the record's type. The structured data repeats instance, seq
// and type so a receiver can index and de-duplicate without parsing the
// message; SyslogSDID uses 32473, the example enterprise number of RFC
// 5612 (Portcullis has none registered). MSG is the exact trail line,
// UTF-8 with the BOM RFC 5424 requires, so a receiver holds the same
// bytes, hashes included, that verify checks.
//
// Syslog over TCP has no acknowledgement: a write that succeeded may
// still be lost if the receiver dies before reading it. To keep delivery
// at least once where it can, the sink checks that the connection is
// still open before each batch and, when it finds it closed, reconnects
// and sends the previous batch again before the new one.

// SyslogSDID is the SD-ID of the structured data element.
const SyslogSDID = "portcullis@32473"

const (
	syslogFacility = 13 // log audit
	syslogWarning  = 4
	syslogInfo     = 6
	syslogAppName  = "portcullis"
)

type syslogSink struct {
	cfg  SinkConfig
	dial func(ctx context.Context, network, address string) (net.Conn, error)
	log  *slog.Logger
	host string
	proc string

	conn   net.Conn
	last   []byte // frames of the last batch written on conn
	resend []byte // frames written on a connection that then failed: sent again first
	buf    []byte
	tmp    [1]byte
}

func newSyslogSink(c SinkConfig, opts SinkOptions) *syslogSink {
	s := &syslogSink{cfg: c, dial: opts.Dial, log: opts.Logger, proc: strconv.Itoa(os.Getpid())}
	if s.dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		s.dial = d.DialContext
	}
	host := c.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	s.host = syslogToken(host, 255)
	return s
}

func (s *syslogSink) Send(ctx context.Context, recs []Record) error {
	frames := s.buf[:0]
	for i := range recs {
		frames = appendSyslogFrame(frames, s.host, s.proc, &recs[i])
	}
	s.buf = frames
	if s.conn != nil && !s.alive() {
		s.log.Warn("audit sink: syslog connection closed by the receiver; reconnecting and resending the last batch", "address", s.cfg.Address)
		s.lost()
	}
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return err
		}
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	for _, b := range [][]byte{s.resend, frames} {
		if len(b) == 0 {
			continue
		}
		if _, err := s.conn.Write(b); err != nil {
			s.lost()
			return err
		}
	}
	s.resend = nil
	// Keep a copy: s.buf is reused for the next batch.
	s.last = append(s.last[:0], frames...)
	return nil
}

// lost drops a connection that failed or was closed: what was written on
// it is unconfirmed, so the last batch is sent again first on the next
// one (unless an older unconfirmed batch is still waiting: that one).
func (s *syslogSink) lost() {
	if s.resend == nil {
		s.resend = s.last
	}
	s.last = nil
	s.drop()
}

// connect dials the receiver (TLS handshake included) within the timeout.
func (s *syslogSink) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, err := s.dial(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return err
	}
	if s.cfg.TLS != nil {
		tc := s.cfg.TLS.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(s.cfg.Address)
		}
		if tc.MinVersion == 0 {
			tc.MinVersion = tls.VersionTLS12
		}
		t := tls.Client(c, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			c.Close()
			return fmt.Errorf("tls: %w", err)
		}
		c = t
	}
	s.conn = c
	return nil
}

// alive reports whether the receiver has not closed the connection: a
// read that would block means open; EOF or a reset means closed. The
// receiver never sends anything, so anything read is discarded.
func (s *syslogSink) alive() bool {
	s.conn.SetReadDeadline(time.Now())
	_, err := s.conn.Read(s.tmp[:])
	s.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return err == nil || (errors.As(err, &ne) && ne.Timeout())
}

func (s *syslogSink) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

func (s *syslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// appendSyslogFrame appends one octet-counted RFC 5424 message.
func appendSyslogFrame(dst []byte, host, proc string, r *Record) []byte {
	var msg [512]byte
	m := msg[:0]
	sev := syslogInfo
	if r.Type == TypeRiskLock || r.Type == TypeRiskBlock || r.Type == TypeRiskAnomaly || r.Type == TypeRecovery ||
		strings.HasPrefix(r.Type, ReservedPrefix) {
		sev = syslogWarning
	}
	m = append(m, '<')
	m = strconv.AppendInt(m, syslogFacility*8+int64(sev), 10)
	m = append(m, ">1 "...)
	m = appendSyslogTime(m, r.Time)
	m = append(m, ' ')
	m = append(m, host...)
	m = append(m, ' ')
	m = append(m, syslogAppName...)
	m = append(m, ' ')
	m = append(m, proc...)
	m = append(m, ' ')
	m = append(m, syslogToken(r.Type, 32)...)
	m = append(m, " ["...)
	m = append(m, SyslogSDID...)
	m = appendSDParam(m, "instance", r.Instance)
	m = appendSDParam(m, "seq", strconv.FormatUint(r.Seq, 10))
	m = appendSDParam(m, "type", r.Type)
	m = append(m, "] \xef\xbb\xbf"...)
	dst = strconv.AppendInt(dst, int64(len(m)+len(r.Line)), 10)
	dst = append(dst, ' ')
	dst = append(dst, m...)
	return append(dst, r.Line...)
}

// appendSyslogTime writes an RFC 3339 time with at most six fractional
// digits (RFC 5424 TIME-SECFRAC), or "-" when the record has none.
func appendSyslogTime(dst []byte, raw string) []byte {
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return append(dst, '-')
	}
	return t.UTC().Truncate(time.Microsecond).AppendFormat(dst, "2006-01-02T15:04:05.999999Z07:00")
}

// appendSDParam appends ` name="value"` with '"', '\' and ']' escaped.
func appendSDParam(dst []byte, name, value string) []byte {
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, '=', '"')
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '"', '\\', ']':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// syslogToken makes s a header field: printable US-ASCII without spaces
// (others become '_'), at most n bytes, "-" when empty.
func syslogToken(s string, n int) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
	if len(b) > n {
		b = b[:n]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}
