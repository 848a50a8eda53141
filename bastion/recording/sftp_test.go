package recording

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// pkt builds one SFTP packet from fields (byte, uint32, uint64, string,
// []byte).
func pkt(fields ...any) []byte {
	var body []byte
	for _, f := range fields {
		switch v := f.(type) {
		case byte:
			body = append(body, v)
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		default:
			panic(fmt.Sprintf("field %T", f))
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

type sftpStep struct {
	client bool
	data   []byte
}

func c2s(fields ...any) sftpStep { return sftpStep{true, pkt(fields...)} }
func s2c(fields ...any) sftpStep { return sftpStep{false, pkt(fields...)} }

// events renders events as "op path [detail]" strings.
func eventStrings(evs []Event) []string {
	var out []string
	for _, e := range evs {
		s := e.Op + " " + e.Path
		if e.Path2 != "" {
			s += " → " + e.Path2
		}
		if e.Flags != "" {
			s += " [" + e.Flags + "]"
		}
		if e.BytesRead > 0 || e.BytesWritten > 0 {
			s += fmt.Sprintf(" r=%d w=%d", e.BytesRead, e.BytesWritten)
		}
		if e.SHA256 != "" {
			s += " sha=" + e.SHA256[:8]
		}
		if e.NonSequential {
			s += " nonseq"
		}
		if e.Result != "" {
			s += " " + e.Result
		}
		out = append(out, s)
	}
	return out
}

func sha8(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:8]
}

func TestSFTPParser(t *testing.T) {
	const (
		read  = uint32(1)
		write = uint32(2 | 8 | 16)
	)
	session := []sftpStep{
		c2s(byte(sshFxpInit), uint32(3)),
		s2c(byte(sshFxpVersion), uint32(3)),
		// Upload: open, two sequential writes, close.
		c2s(byte(sshFxpOpen), uint32(1), "/tmp/up.txt", write, uint32(0)),
		s2c(byte(sshFxpHandle), uint32(1), "h1"),
		c2s(byte(sshFxpWrite), uint32(2), "h1", uint64(0), "hello "),
		c2s(byte(sshFxpWrite), uint32(3), "h1", uint64(6), "world"),
		s2c(byte(sshFxpStatus), uint32(2), uint32(0), "", ""),
		s2c(byte(sshFxpStatus), uint32(3), uint32(0), "", ""),
		c2s(byte(sshFxpClose), uint32(4), "h1"),
		s2c(byte(sshFxpStatus), uint32(4), uint32(0), "", ""),
		// Download: open, read, EOF, close.
		c2s(byte(sshFxpOpen), uint32(5), "/etc/hosts", read, uint32(0)),
		s2c(byte(sshFxpHandle), uint32(5), "h2"),
		c2s(byte(sshFxpRead), uint32(6), "h2", uint64(0), uint32(32768)),
		s2c(byte(sshFxpData), uint32(6), "127.0.0.1 localhost\n"),
		c2s(byte(sshFxpRead), uint32(7), "h2", uint64(20), uint32(32768)),
		s2c(byte(sshFxpStatus), uint32(7), uint32(1), "EOF", ""),
		c2s(byte(sshFxpClose), uint32(8), "h2"),
		s2c(byte(sshFxpStatus), uint32(8), uint32(0), "", ""),
		// Out-of-order writes: counted, not hashed.
		c2s(byte(sshFxpOpen), uint32(9), "/tmp/sparse", write, uint32(0)),
		s2c(byte(sshFxpHandle), uint32(9), "h3"),
		c2s(byte(sshFxpWrite), uint32(10), "h3", uint64(100), "late"),
		c2s(byte(sshFxpWrite), uint32(11), "h3", uint64(0), "early"),
		// Directory and namespace operations.
		c2s(byte(sshFxpMkdir), uint32(12), "/tmp/d", uint32(0)),
		s2c(byte(sshFxpStatus), uint32(12), uint32(0), "", ""),
		c2s(byte(sshFxpRename), uint32(13), "/tmp/up.txt", "/tmp/d/up.txt"),
		s2c(byte(sshFxpStatus), uint32(13), uint32(0), "", ""),
		c2s(byte(sshFxpExtended), uint32(14), "posix-rename@openssh.com", "/tmp/d/up.txt", "/tmp/d/x"),
		s2c(byte(sshFxpStatus), uint32(14), uint32(0), "", ""),
		c2s(byte(sshFxpRemove), uint32(15), "/etc/shadow"),
		s2c(byte(sshFxpStatus), uint32(15), uint32(3), "denied", ""),
		c2s(byte(sshFxpRmdir), uint32(16), "/tmp/d"),
		s2c(byte(sshFxpStatus), uint32(16), uint32(4), "not empty", ""),
		c2s(byte(sshFxpOpen), uint32(17), "/nope", read, uint32(0)),
		s2c(byte(sshFxpStatus), uint32(17), uint32(2), "no such file", ""),
		c2s(byte(sshFxpOpendir), uint32(18), "/tmp"),
		s2c(byte(sshFxpHandle), uint32(18), "dh"),
		c2s(byte(sshFxpClose), uint32(19), "dh"),
		s2c(byte(sshFxpStatus), uint32(19), uint32(0), "", ""),
		// Stat and realpath are not recorded.
		c2s(byte(17), uint32(20), "/tmp"),
		s2c(byte(sshFxpAttrs), uint32(20), uint32(0)),
	}
	want := []string{
		"open /tmp/up.txt [write,create,truncate] ok",
		"write /tmp/up.txt r=0 w=11 sha=" + sha8("hello world"),
		"close /tmp/up.txt r=0 w=11 ok",
		"open /etc/hosts [read] ok",
		"read /etc/hosts r=20 w=0",
		"close /etc/hosts r=20 w=0 ok",
		"open /tmp/sparse [write,create,truncate] ok",
		"mkdir /tmp/d ok",
		"rename /tmp/up.txt → /tmp/d/up.txt ok",
		"rename /tmp/d/up.txt → /tmp/d/x ok",
		"remove /etc/shadow permission-denied",
		"rmdir /tmp/d failure",
		"open /nope [read] no-such-file",
		// Close (end of channel) reports the file never closed.
		"write /tmp/sparse r=0 w=9 nonseq",
		"close /tmp/sparse r=0 w=9 unclosed",
	}
	for _, chunk := range []int{0, 1, 7} { // 0 = whole packets
		t.Run(fmt.Sprintf("chunks of %d", chunk), func(t *testing.T) {
			var got []Event
			p := NewSFTPParser(func(e Event) error {
				if e.Type != EventSFTP {
					t.Errorf("event type %q", e.Type)
				}
				got = append(got, e)
				return nil
			})
			for _, st := range session {
				feed := p.Server
				if st.client {
					feed = p.Client
				}
				data := st.data
				for len(data) > 0 {
					n := len(data)
					if chunk > 0 {
						n = min(chunk, n)
					}
					if err := feed(data[:n]); err != nil {
						t.Fatal(err)
					}
					data = data[n:]
				}
			}
			p.Close()
			if g := eventStrings(got); strings.Join(g, "\n") != strings.Join(want, "\n") {
				t.Fatalf("events\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestSFTPParserRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client bool
		data   []byte
	}{
		{"zero length", true, []byte{0, 0, 0, 0}},
		{"huge length", true, []byte{0x7f, 0xff, 0xff, 0xff}},
		{"truncated open", true, pkt(byte(sshFxpOpen), uint32(1), uint32(1000))},
		{"write with a lying length", true, pkt(byte(sshFxpWrite), uint32(1), "h", uint64(0), uint32(99))},
		{"response without an id", false, pkt(byte(sshFxpStatus))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewSFTPParser(func(Event) error { return nil })
			// A response needs a known request to be parsed further.
			if err := p.Client(pkt(byte(sshFxpRemove), uint32(1), "/x")); err != nil {
				t.Fatal(err)
			}
			feed := p.Server
			if tc.client {
				feed = p.Client
			}
			if err := feed(tc.data); !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("emit failure propagates", func(t *testing.T) {
		boom := errors.New("disk full")
		p := NewSFTPParser(func(Event) error { return boom })
		p.Client(pkt(byte(sshFxpRemove), uint32(1), "/x"))
		if err := p.Server(pkt(byte(sshFxpStatus), uint32(1), uint32(0), "", "")); !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("too many outstanding requests", func(t *testing.T) {
		p := NewSFTPParser(func(Event) error { return nil })
		var err error
		for i := uint32(0); i <= maxSFTPOutstanding && err == nil; i++ {
			err = p.Client(pkt(byte(sshFxpRemove), i, "/x"))
		}
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("got %v", err)
		}
	})
}

func FuzzSFTPParser(f *testing.F) {
	f.Add(pkt(byte(sshFxpOpen), uint32(1), "/a", uint32(2), uint32(0)), pkt(byte(sshFxpHandle), uint32(1), "h"))
	f.Add(pkt(byte(sshFxpWrite), uint32(2), "h", uint64(0), "data"), pkt(byte(sshFxpStatus), uint32(2), uint32(0), "", ""))
	f.Add([]byte{0, 0, 0, 1, 4}, []byte{0, 0, 0, 5, 101, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, client, server []byte) {
		p := NewSFTPParser(func(Event) error { return nil })
		p.Client(pkt(byte(sshFxpOpen), uint32(1), "/a", uint32(2), uint32(0)))
		p.Server(pkt(byte(sshFxpHandle), uint32(1), "h"))
		p.Client(client)
		p.Server(server)
		p.Close()
	})
}

func TestSCPParser(t *testing.T) {
	for _, tc := range []struct {
		name    string
		command string
		client  string // client→target stream
		server  string // target→client stream
		want    []string
	}{
		{"upload", "scp -t /tmp/dest", "C0644 11 a.txt\nhello world\x00", "\x00\x00\x00",
			[]string{"upload a.txt → /tmp/dest r=0 w=11 sha=" + sha8("hello world") + " ok"}},
		{"download with times", "scp -p -f /etc/hosts", "\x00\x00\x00\x00", "T1 0 2 0\nC0644 3 hosts\nabc\x00",
			[]string{"download hosts → /etc/hosts r=0 w=3 sha=" + sha8("abc") + " ok"}},
		{"recursive upload", "scp -r -t -- /tmp/d", "D0755 0 dir\nC0600 0 empty\n\x00C0600 2 two\nhi\x00E\nC0644 1 top\nx\x00", "",
			[]string{
				"upload dir/empty → /tmp/d sha=" + sha8("") + " ok",
				"upload dir/two → /tmp/d r=0 w=2 sha=" + sha8("hi") + " ok",
				"upload top → /tmp/d r=0 w=1 sha=" + sha8("x") + " ok",
			}},
		{"cut off mid-file", "scp -t /tmp/x", "C0644 10 big\nhalf", "",
			[]string{"upload big → /tmp/x r=0 w=4 incomplete"}},
		{"sender error stops parsing", "scp -f /root/secret", "", "\x02scp: /root/secret: Permission denied\n", nil},
	} {
		for _, chunk := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%s/chunks of %d", tc.name, chunk), func(t *testing.T) {
				var got []Event
				p := NewSCPParser(tc.command, func(e Event) error { got = append(got, e); return nil })
				if p == nil {
					t.Fatal("not recognised as scp")
				}
				for _, dir := range []struct {
					feed func([]byte) error
					data string
				}{{p.Client, tc.client}, {p.Server, tc.server}} {
					data := []byte(dir.data)
					for len(data) > 0 {
						n := len(data)
						if chunk > 0 {
							n = min(chunk, n)
						}
						if err := dir.feed(data[:n]); err != nil {
							t.Fatal(err)
						}
						data = data[n:]
					}
				}
				p.Close()
				if g := eventStrings(got); strings.Join(g, "\n") != strings.Join(tc.want, "\n") {
					t.Fatalf("events\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(tc.want, "\n"))
				}
			})
		}
	}
}

func TestSCPParserRecognises(t *testing.T) {
	for _, tc := range []struct {
		cmd string
		ok  bool
	}{
		{"scp -t /tmp", true},
		{"/usr/bin/scp -f x", true},
		{"scp -v -r -p -t -- /x", true},
		{"scp", false},
		{"scp x y", false},
		{"echo scp -t", false},
		{"", false},
	} {
		if got := NewSCPParser(tc.cmd, nil) != nil; got != tc.ok {
			t.Errorf("%q: %v", tc.cmd, got)
		}
	}
	for _, bad := range []string{"X\n", "C0644 x name\n", "C0644 1 a/b\n", "C0644 -1 a\n", "\n", strings.Repeat("C", maxSCPLine+1)} {
		p := NewSCPParser("scp -t /x", func(Event) error { return nil })
		if err := p.Client([]byte(bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: %v", bad[:min(len(bad), 20)], err)
		}
	}
}

func FuzzSCPParser(f *testing.F) {
	f.Add("C0644 5 a\nhello\x00D0755 0 d\nE\n")
	f.Add("T1 0 1 0\nC0600 0 e\n\x00")
	f.Fuzz(func(t *testing.T, stream string) {
		p := NewSCPParser("scp -t /x", func(Event) error { return nil })
		p.Client([]byte(stream))
		p.Close()
	})
}
