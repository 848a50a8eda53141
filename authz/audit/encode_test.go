package audit

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// plain has Event's fields and tags but not its MarshalJSON, so
// encoding/json encodes it by reflection: the reference encoding.
type plain Event

var sampleTime = time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)

func sampleEvent() Event {
	return Event{
		Time: sampleTime, Instance: "gw-1", Type: TypeDecision, UserID: "https://idp#alice",
		SourceIP: "192.0.2.7", SessionID: "s-1", App: "grafana", Target: "db-1", Method: "GET",
		Path: "/d/abc", Decision: Deny, Reason: "no_rule", Ref: "ref-0123456789", Actor: "admin",
		Attrs: map[string]string{"route": "grafana", "ua": "curl/8", "b": "2", "a": "1"},
	}
}

func TestAppendJSONStrings(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "abc", `"abc"`},
		{"empty", "", `""`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"newline tab cr", "a\nb\tc\rd", `"a\nb\tc\rd"`},
		{"other controls", "\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{"line separators", "a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"invalid bytes", "a\xffb\xc3", `"a\ufffdb\ufffd"`},
		{"surrogate half", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"multibyte kept", "é😀", `"é😀"`},
		{"html kept", "<a&b>", `"<a&b>"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(appendString(nil, tc.in))
			if got != tc.want {
				t.Fatalf("appendString(%q) = %s, want %s", tc.in, got, tc.want)
			}
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("invalid JSON %s: %v", got, err)
			}
			if want := validUTF8PerByte(tc.in); back != want {
				t.Fatalf("round trip %q, want %q", back, want)
			}
		})
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	full := sampleEvent()
	local := full
	local.Time = full.Time.In(time.FixedZone("X", 3600))
	tests := []struct {
		name string
		e    Event
	}{
		{"full", full},
		{"zero", Event{}},
		{"only type", Event{Type: TypeAdmin}},
		{"local time", local},
		{"empty attrs", Event{Type: TypeAdmin, Attrs: map[string]string{}}},
		{"hostile strings", Event{Type: "x\"\n\u2028", Path: "/\xff/..", Attrs: map[string]string{"\x00k": "v\\"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ours := AppendJSON(nil, &tc.e)
			ref, err := json.Marshal(plain(tc.e))
			if err != nil {
				t.Fatal(err)
			}
			var a, b map[string]any
			if err := json.Unmarshal(ours, &a); err != nil {
				t.Fatalf("our output %s: %v", ours, err)
			}
			if err := json.Unmarshal(ref, &b); err != nil {
				t.Fatal(err)
			}
			// Times may differ in zone only; compare instants, then the rest.
			ta, _ := time.Parse(time.RFC3339Nano, a["time"].(string))
			tb, _ := time.Parse(time.RFC3339Nano, b["time"].(string))
			if !ta.Equal(tb) {
				t.Fatalf("time %v, want %v", ta, tb)
			}
			delete(a, "time")
			delete(b, "time")
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("ours %s\nencoding/json %s", ours, ref)
			}
			if tc.name != "local time" && tc.name != "hostile strings" && string(ours) != string(ref) {
				t.Fatalf("bytes differ:\nours %s\nencoding/json %s", ours, ref)
			}
		})
	}
}

// Adding a field to Event without encoding it must fail a test.
func TestAppendJSONCoversEveryField(t *testing.T) {
	var e Event
	v := reflect.ValueOf(&e).Elem()
	var keys []string
	for i := range v.NumField() {
		f := v.Field(i)
		keys = append(keys, strings.Split(v.Type().Field(i).Tag.Get("json"), ",")[0])
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"k": "v"}))
		case reflect.Struct: // time.Time
			f.Set(reflect.ValueOf(sampleTime))
		default:
			t.Fatalf("field %s has kind %s that AppendJSON does not handle", v.Type().Field(i).Name, f.Kind())
		}
	}
	var got map[string]any
	if err := json.Unmarshal(AppendJSON(nil, &e), &got); err != nil {
		t.Fatal(err)
	}
	if gk := slices.Sorted(maps.Keys(got)); !slices.Equal(gk, slices.Sorted(slices.Values(keys))) {
		t.Fatalf("encoded keys %v, want every field %v", gk, keys)
	}
}

func TestAppendJSONTimes(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"utc", sampleTime, "2025-03-04T05:06:07.891011121Z"},
		{"zone converted", sampleTime.In(time.FixedZone("X", -7200)), "2025-03-04T05:06:07.891011121Z"},
		{"whole second", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), "2025-01-01T00:00:00Z"},
		{"zero", time.Time{}, "0001-01-01T00:00:00Z"},
		{"year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "0001-01-01T00:00:00Z"},
		{"negative year", time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), "0001-01-01T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendTime(nil, tc.in)); got != tc.want {
				t.Fatalf("appendTime = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestMarshalJSON(t *testing.T) {
	e := sampleEvent()
	e.Attrs["session_token"] = "s3cr3t"
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(AppendJSON(nil, &e)) {
		t.Fatalf("json.Marshal %s differs from AppendJSON", b)
	}
	if strings.Contains(string(b), "s3cr3t") {
		t.Fatalf("sensitive attribute leaked: %s", b)
	}
}

// validUTF8PerByte replaces each invalid byte with U+FFFD, as the encoder
// (and encoding/json) do.
func validUTF8PerByte(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// expectDecoded is what decoding AppendJSON's output must give for e.
func expectDecoded(e Event) Event {
	out := Event{Time: e.Time.UTC()}
	if y := out.Time.Year(); y < 0 || y > 9999 {
		out.Time = time.Time{}
	}
	src := reflect.ValueOf(e)
	dst := reflect.ValueOf(&out).Elem()
	for i := range src.NumField() {
		if s := src.Field(i); s.Kind() == reflect.String {
			dst.Field(i).SetString(validUTF8PerByte(s.String()))
		}
	}
	if len(e.Attrs) > 0 {
		out.Attrs = map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(e.Attrs)) { // duplicates after repair: last wins
			v := e.Attrs[k]
			if SensitiveKey(k) {
				v = Redacted
			}
			out.Attrs[validUTF8PerByte(k)] = validUTF8PerByte(v)
		}
	}
	return out
}

func FuzzAppendJSON(f *testing.F) {
	f.Add(int64(0), "login.start", "alice", "/p", "k", "v", "k2", "v2")
	f.Add(sampleTime.UnixNano(), "x\"\\\n", "\xff\xfe", "\u2028\u2029", "password", "hunter2", "exit_code", "1")
	f.Add(int64(-1), "", "", "", "", "", "\x00", "\x1f")
	f.Add(int64(1)<<62, "é😀", "<script>", "a\rb", "\xed\xa0\x80", "x", "\xc3", "\xc3")
	f.Fuzz(func(t *testing.T, ns int64, typ, user, path, k1, v1, k2, v2 string) {
		e := Event{Time: time.Unix(0, ns), Type: typ, UserID: user, Path: path, Reason: user + path}
		if k1 != "" || k2 != "" {
			e.Attrs = map[string]string{k1: v1, k2: v2}
		}
		out := AppendJSON(nil, &e)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %q", out)
		}
		if strings.ContainsAny(string(out), "\n\r") || strings.Contains(string(out), "\u2028") {
			t.Fatalf("output is not a single safe line: %q", out)
		}
		var got Event
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		want := expectDecoded(e)
		if !got.Time.Equal(want.Time) {
			t.Fatalf("time %v, want %v", got.Time, want.Time)
		}
		got.Time, want.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	e := sampleEvent()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &e)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodingJSON(b *testing.B) {
	e := plain(sampleEvent())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(e); err != nil {
			b.Fatal(err)
		}
	}
}
