package store

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

func TestDecodeRecord(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    int // fields wanted
		ok      bool
		expires int64
		fields  []string
	}{
		{"empty", nil, -1, false, 0, nil},
		{"header only", encodeRecord(0), 0, true, 0, nil},
		{"short header", []byte{recordVersion, 0, 0}, -1, false, 0, nil},
		{"wrong version", append([]byte{2}, make([]byte, 8)...), -1, false, 0, nil},
		{"negative expiry", []byte{recordVersion, 0x80, 0, 0, 0, 0, 0, 0, 1}, -1, false, 0, nil},
		{"fields", encodeRecord(42, []byte("a"), nil, []byte("c\x00")), 3, true, 42, []string{"a", "", "c\x00"}},
		{"wrong field count", encodeRecord(0, []byte("a")), 2, false, 0, nil},
		{"any field count", encodeRecord(0, []byte("a"), []byte("b")), -1, true, 0, []string{"a", "b"}},
		{"length past end", append(encodeRecord(0), 5, 'a'), -1, false, 0, nil},
		{"huge length", append(encodeRecord(0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), -1, false, 0, nil},
		{"truncated varint", append(encodeRecord(0), 0x80), -1, false, 0, nil},
		{"max expiry", encodeRecord(math.MaxInt64), 0, true, math.MaxInt64, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := decodeRecord(tc.in, tc.want)
			if !tc.ok {
				if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errCorrupt) {
					t.Fatalf("decodeRecord = %v, want a corruption error wrapping ErrUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeRecord: %v", err)
			}
			if r.expires != tc.expires || len(r.fields) != len(tc.fields) {
				t.Fatalf("decodeRecord = %+v", r)
			}
			for i, f := range tc.fields {
				if string(r.fields[i]) != f {
					t.Fatalf("field %d = %q, want %q", i, r.fields[i], f)
				}
			}
		})
	}
}

func TestExpiryNanos(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		got  int64
		want int64
	}{
		{"zero is never", expiryNanos(time.Time{}), 0},
		{"normal", expiryNanos(now), now.UnixNano()},
		{"before 1970 is already expired", expiryNanos(time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)), 1},
		{"after 2262 saturates", expiryNanos(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)), math.MaxInt64},
		{"after: normal", afterNanos(now, time.Minute), now.Add(time.Minute).UnixNano()},
		{"after: huge TTL saturates", afterNanos(now, math.MaxInt64), math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %d, want %d", tc.got, tc.want)
			}
		})
	}
	if !(record{expires: expiryNanos(now)}).live(now.Add(-1)) || (record{expires: expiryNanos(now)}).live(now) {
		t.Fatal("a record must be live strictly before its expiry and gone at it")
	}
}

func TestLockCodecRoundTrip(t *testing.T) {
	created := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	tests := []Lock{
		{Subject: "user:a", Reason: "r", Ref: "INC-1", CreatedAt: created, ExpiresAt: created.Add(time.Hour), Detail: "d"},
		{Subject: "ip:\xff", Reason: "\x00\xfe"},
	}
	for _, l := range tests {
		got, err := decodeLock(l.Subject, encodeLock(l))
		if err != nil {
			t.Fatal(err)
		}
		if got.Reason != l.Reason || got.Ref != l.Ref || got.Detail != l.Detail ||
			!got.CreatedAt.Equal(l.CreatedAt) || !got.ExpiresAt.Equal(l.ExpiresAt) || got.ExpiresAt.IsZero() != l.ExpiresAt.IsZero() {
			t.Fatalf("round trip: got %+v, want %+v", got, l)
		}
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the record decoders: they
// must never panic, and whatever decodes must re-encode to something that
// decodes to the same record.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(0), -1)
	f.Add(encodeRecord(1, []byte("u"), encodeTime(time.Unix(5, 0)), []byte("data")), sessionFields)
	f.Add(encodeLock(Lock{Subject: "s", Reason: "r", CreatedAt: time.Unix(1, 0)}), lockFields)
	f.Add(encodeRecord(0, encodeInt(-7)), 1)
	f.Add([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x01}, -1)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		if want < -1 || want > 8 {
			want = -1
		}
		r, err := decodeRecord(b, want)
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("decode error %v does not wrap ErrUnavailable", err)
			}
			return
		}
		again, err := decodeRecord(encodeRecord(r.expires, r.fields...), want)
		if err != nil || again.expires != r.expires || len(again.fields) != len(r.fields) {
			t.Fatalf("re-encoding %+v: %+v, %v", r, again, err)
		}
		for i := range r.fields {
			if !bytes.Equal(again.fields[i], r.fields[i]) {
				t.Fatalf("field %d changed on re-encode", i)
			}
		}
		// The typed decoders must not panic either.
		if len(r.fields) == sessionFields {
			_, _ = decodeSession("id", r)
		}
		_, _ = decodeLock("s", b)
		if len(r.fields) == 1 {
			_, _ = decodeInt(r.fields[0])
		}
	})
}
