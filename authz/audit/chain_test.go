package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// sealedLine returns one trail line (no newline) for e at seq after prev.
func sealedLine(e Event, seq uint64, prev [32]byte) string {
	c := chain{seq: seq - 1, head: prev}
	b := appendRecord(nil, AppendJSON(nil, &e), seq)
	c.seal(b)
	return strings.TrimSuffix(string(b), "\n")
}

func TestParseRecord(t *testing.T) {
	e := sampleEvent()
	good := sealedLine(e, 42, sha256.Sum256([]byte("x")))
	key := testKey(t)
	c := chain{instance: "gw-1", key: key, keyID: KeyID(key.Public().(ed25519.PublicKey)), seq: 9}
	ckpt := strings.TrimSuffix(string(c.appendCheckpoint(nil, sampleTime)), "\n")
	tests := []struct {
		name string
		line string
		want error // nil: a chained record
		seq  uint64
	}{
		{"event", good, nil, 42},
		{"checkpoint", ckpt, nil, 10},
		{"legacy line", `{"time":"2025-01-01T00:00:00Z","type":"admin"}`, errNoChain, 0},
		{"whitespace", ` { "seq" : 7 , "prev" : "` + zeroHash + `" } `, nil, 7},
		{"not an object", `[1,2]`, errNotObject, 0},
		{"empty", ``, errNotObject, 0},
		{"trailing garbage", good + `x`, errSyntax, 0},
		{"torn", good[:len(good)/2], errSyntax, 0},
		{"seq zero", `{"seq":0,"prev":"` + zeroHash + `"}`, errField, 0},
		{"seq leading zero", `{"seq":07,"prev":"` + zeroHash + `"}`, errField, 0},
		{"seq negative", `{"seq":-7,"prev":"` + zeroHash + `"}`, errField, 0},
		{"seq fraction", `{"seq":7.5,"prev":"` + zeroHash + `"}`, errSyntax, 0},
		{"seq string", `{"seq":"7","prev":"` + zeroHash + `"}`, errField, 0},
		{"seq overflow", `{"seq":18446744073709551616,"prev":"` + zeroHash + `"}`, errField, 0},
		{"prev short", `{"seq":7,"prev":"00"}`, errField, 0},
		{"prev upper case", `{"seq":7,"prev":"` + strings.Repeat("A", 64) + `"}`, errField, 0},
		{"duplicate seq", `{"seq":7,"seq":8,"prev":"` + zeroHash + `"}`, errDupKey, 0},
		{"case variant", `{"seq":7,"Seq":8,"prev":"` + zeroHash + `"}`, errDupKey, 0},
		{"unicode fold", `{"seq":7,"ſeq":8,"prev":"` + zeroHash + `"}`, errDupKey, 0},
		{"escaped key", `{"seq":7,"s\u0065q":8,"prev":"` + zeroHash + `"}`, errDupKey, 0},
		{"escaped instance", `{"instance":"\u0067w","seq":7,"prev":"` + zeroHash + `"}`, nil, 7},
		{"key without sig", `{"seq":7,"prev":"` + zeroHash + `","key":"0000000000000000"}`, errField, 0},
		{"checkpoint without sig", strings.Replace(ckpt, `,"sig":"`, `,"xig":"`, 1), errField, 0},
		{"only seq", `{"seq":7}`, errField, 0},
		{"control character", `{"seq":7,"prev":"` + zeroHash + `","a":"` + "\x01" + `"}`, errSyntax, 0},
		{"bad escape", `{"seq":7,"prev":"` + zeroHash + `","a":"\x"}`, errSyntax, 0},
		{"nested", `{"seq":7,"prev":"` + zeroHash + `","a":{"b":[1,true,null,{"seq":9}]}}`, nil, 7},
		{"deep nesting", `{"seq":7,"prev":"` + zeroHash + `","a":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, errSyntax, 0},
		{"invalid utf-8 instance", `{"instance":"` + "\xff" + `","seq":7,"prev":"` + zeroHash + `"}`, errField, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r record
			var p parsed
			err := parseRecord([]byte(tc.line), &r, &p)
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("parseRecord = %v, want %v", err, tc.want)
			}
			if err == nil && r.seq != tc.seq {
				t.Fatalf("seq %d, want %d", r.seq, tc.seq)
			}
		})
	}
	var r record
	var p parsed
	if err := parseRecord([]byte(ckpt), &r, &p); err != nil || r.kind != kindCheckpoint || !r.hasSig || string(p.instance) != "gw-1" {
		t.Fatalf("checkpoint: %v %+v", err, r)
	}
	pub := key.Public().(ed25519.PublicKey)
	if !ed25519.Verify(pub, checkpointMessage(nil, "gw-1", r.seq, r.prev, r.time[:r.timeLen]), r.sig[:]) {
		t.Fatal("checkpoint signature does not verify")
	}
}

// The line parser reads files anyone with write access may have crafted.
// Whatever it accepts must be valid JSON whose chain fields encoding/json
// reads the same way (no parser differential a reader could exploit), and
// it must never panic. Seeds live in testdata/fuzz/FuzzParseRecord.
func FuzzParseRecord(f *testing.F) {
	e := sampleEvent()
	f.Add([]byte(sealedLine(e, 1, sha256.Sum256(nil))))
	f.Add([]byte(`{"time":"2025-01-01T00:00:00Z","type":"admin"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var r record
		var p parsed
		err := parseRecord(line, &r, &p)
		if err != nil && !errors.Is(err, errNoChain) {
			return
		}
		if !json.Valid(line) {
			t.Fatalf("accepted invalid JSON %q", line)
		}
		if err != nil {
			return
		}
		var j struct {
			Instance *string `json:"instance"`
			Type     *string `json:"type"`
			Seq      uint64  `json:"seq"`
			Prev     string  `json:"prev"`
			Key      string  `json:"key"`
			Sig      string  `json:"sig"`
		}
		if err := json.Unmarshal(line, &j); err != nil {
			t.Fatalf("accepted %q, encoding/json: %v", line, err)
		}
		if j.Seq != r.seq || j.Prev != hex.EncodeToString(r.prev[:]) {
			t.Fatalf("%q: seq/prev %d %s, encoding/json %d %s", line, r.seq, hex.EncodeToString(r.prev[:]), j.Seq, j.Prev)
		}
		if (j.Instance == nil) != (p.instance == nil) || j.Instance != nil && *j.Instance != string(p.instance) {
			t.Fatalf("%q: instance %q, encoding/json %v", line, p.instance, j.Instance)
		}
		if (j.Type == nil) != (p.typ == nil) || j.Type != nil && *j.Type != string(p.typ) {
			t.Fatalf("%q: type %q, encoding/json %v", line, p.typ, j.Type)
		}
		if r.hasSig && j.Sig != hex.EncodeToString(r.sig[:]) || r.hasKey && j.Key != hex.EncodeToString(r.key[:]) {
			t.Fatalf("%q: key/sig differ from encoding/json", line)
		}
	})
}
