package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// The trail format (version 1).
//
// Each line of audit-<instance>.jsonl is one JSON object that decodes into
// Event, with chain fields appended after the event's own fields:
//
//	{"time":…,"instance":"gw-1","type":"decision",…,"seq":42,"prev":"<64 hex>"}
//
// seq counts the instance's records from 1 with no gaps; prev is the
// SHA-256 of the previous record's exact line bytes (without the newline).
// The first record's prev is the SHA-256 of every byte before it in its
// file (the empty string's hash for a new file; lines written by versions
// before chaining are covered that way). Every record of the chain has
// instance set to the log's instance.
//
// A checkpoint is a record of type "audit.checkpoint" with two more
// fields, key (KeyID of the signer) and sig (hex Ed25519 signature over
// checkpointMessage: instance, its own seq, prev — the hash of the record
// before it, i.e. the chain head it covers — and its time string).
//
// The head marker (audit-<instance>.head, see head.go) is a signed
// statement "the trail ends at seq N with hash H", rewritten after every
// group commit, so a trail cut back behind it is detected.

// Reserved record types: written by the log itself; an Emit of one is
// renamed (ReservedPrefix + type) so a producer cannot forge them.
const (
	TypeCheckpoint = "audit.checkpoint" // signed checkpoint (key, sig)
	TypeRecovery   = "audit.recovery"   // the log cut a torn last line on open
	// TypePurge is reserved for retention: a record with attrs
	// "through_seq" (the last purged seq) and "through_hash" (hex SHA-256
	// of that record). Verify accepts a chain whose files start at seq
	// S > 1 only when a purge record with through_seq S-1 and
	// through_hash equal to the first record's prev follows, covered by a
	// signature, so deleting expired files never breaks verify.
	TypePurge = "audit.purge"

	// ReservedPrefix is prepended to a reserved type emitted by a producer.
	ReservedPrefix = "reserved."
)

func reservedType(t string) bool {
	return t == TypeCheckpoint || t == TypeRecovery || t == TypePurge
}

const (
	hashHexLen = 2 * sha256.Size
	// prevKey starts the fixed end of a record: ,"prev":"<64 hex>"} —
	// the writer fills the hex in place.
	prevKey = `,"prev":"`
	// maxLineLen bounds one record for readers; the writer never produces
	// longer lines in practice (events carry a few short strings).
	maxLineLen = 64 << 20
)

// appendRecord appends an encoded event (AppendJSON output, ending in
// '}') to dst as a trail line with the given seq and a placeholder prev,
// newline included. chain.seal fills the placeholder.
func appendRecord(dst, event []byte, seq uint64) []byte {
	dst = append(dst, event[:len(event)-1]...) // without its closing brace
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, prevKey...)
	dst = append(dst, zeroHash...)
	return append(dst, '"', '}', '\n')
}

const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// chain is the writer's position: the seq and hash of the last record
// sealed, and the signing key.
type chain struct {
	instance string
	key      ed25519.PrivateKey
	keyID    string
	seq      uint64
	head     [32]byte // hash of record seq (the genesis prev when seq is 0)
	since    int      // records sealed since the last checkpoint
	lastCkpt time.Time
}

// seal fills the prev placeholder of every line in buf (complete lines
// made by appendRecord, in seq order) and advances the head. It is
// the only per-record work the writer goroutine does besides write.
func (c *chain) seal(buf []byte) {
	for len(buf) > 0 {
		n := bytes.IndexByte(buf, '\n')
		if n < 0 {
			panic("audit: seal: incomplete line") // the writer only takes whole lines
		}
		line := buf[:n]
		hex.Encode(line[n-2-hashHexLen:n-2], c.head[:])
		c.head = sha256.Sum256(line)
		c.seq++
		c.since++
		buf = buf[n+1:]
	}
}

// appendCheckpoint appends a signed checkpoint line covering the current
// head, at seq c.seq+1, and seals it.
func (c *chain) appendCheckpoint(dst []byte, now time.Time) []byte {
	start := len(dst)
	seq := c.seq + 1
	dst = append(dst, `{"time":"`...)
	ts := len(dst)
	dst = appendTime(dst, now)
	tsEnd := len(dst)
	dst = append(dst, '"')
	dst = appendField(dst, "instance", c.instance, false)
	dst = appendField(dst, "type", TypeCheckpoint, false)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, prevKey...)
	dst = hex.AppendEncode(dst, c.head[:])
	dst = append(dst, `","key":"`...)
	dst = append(dst, c.keyID...)
	dst = append(dst, `","sig":"`...)
	var msg [256]byte
	sig := ed25519.Sign(c.key, checkpointMessage(msg[:0], c.instance, seq, c.head, dst[ts:tsEnd]))
	dst = hex.AppendEncode(dst, sig)
	dst = append(dst, '"', '}')
	c.head = sha256.Sum256(dst[start:])
	c.seq = seq
	c.since = 0
	c.lastCkpt = now
	return append(dst, '\n')
}

// Signed messages are binary and length-prefixed so no field can bleed
// into another; the domain strings keep a checkpoint signature from being
// replayed as a head marker and vice versa.
const (
	checkpointDomain = "portcullis audit checkpoint v1\x00"
	headDomain       = "portcullis audit head v1\x00"
)

func checkpointMessage(dst []byte, instance string, seq uint64, prev [32]byte, time []byte) []byte {
	dst = append(dst, checkpointDomain...)
	dst = appendSigned(dst, instance, seq, prev, time)
	return dst
}

func headMessage(dst []byte, instance string, seq uint64, hash [32]byte, time []byte, gen uint64, closed bool) []byte {
	dst = append(dst, headDomain...)
	dst = appendSigned(dst, instance, seq, hash, time)
	dst = binary.BigEndian.AppendUint64(dst, gen)
	if closed {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendSigned(dst []byte, instance string, seq uint64, hash [32]byte, time []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(instance)))
	dst = append(dst, instance...)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = append(dst, hash[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(time)))
	return append(dst, time...)
}

// record is the chain's view of one trail line, as parseRecord extracts
// it. It is a plain value (no pointers into the line) so readers can keep
// one for lookahead without allocating.
type record struct {
	chained bool // has seq and prev
	seq     uint64
	prev    [32]byte
	hash    [32]byte // SHA-256 of the line (filled by the reader)
	instOK  bool     // instance equals the chain's (filled by the reader)
	kind    recordKind
	hasKey  bool
	key     [8]byte
	hasSig  bool
	sig     [ed25519.SignatureSize]byte
	timeLen int
	time    [40]byte // the raw "time" string of checkpoints (RFC 3339)

	// Purge records (filled by the reader): attrs through_seq, through_hash.
	purgeOK   bool
	purgeSeq  uint64
	purgeHash [32]byte

	// Where the line came from (filled by the reader).
	file   int
	line   int64
	offset int64
}

type recordKind uint8

const (
	kindEvent recordKind = iota
	kindCheckpoint
	kindRecovery
	kindPurge
)

// parsed holds the slices parseRecord found; they alias the line.
type parsed struct {
	instance []byte
	typ      []byte
	time     []byte
}

var (
	errNotObject = errors.New("not a JSON object")
	errSyntax    = errors.New("invalid JSON")
	errDupKey    = errors.New("duplicate or case-variant chain key")
	errField     = errors.New("invalid chain field")
	errNoChain   = errors.New("no seq/prev: not a chain record")
)

// parseRecord extracts the chain fields of one trail line (no newline).
// It walks the whole object with a strict JSON scanner (RFC 8259 syntax,
// including strings and nesting), but decodes only the top-level keys the
// chain uses: instance, type, time, seq, prev, key, sig. To leave no room
// for a reader to see something else than verify checked, those keys must
// appear at most once and never in another letter case (encoding/json
// matches keys case-insensitively, last one wins), must be unescaped, and
// their values must have the exact form the writer produces.
//
// A line that is valid JSON but has no seq and prev returns errNoChain
// with r.chained false (lines from before chaining).
func parseRecord(line []byte, r *record, p *parsed) error {
	*r = record{}
	*p = parsed{}
	s := scanner{b: line}
	s.ws()
	if !s.eat('{') {
		return errNotObject
	}
	var seen uint8
	s.ws()
	if !s.eat('}') {
		for {
			s.ws()
			key, esc, ok := s.str()
			if !ok {
				return errSyntax
			}
			s.ws()
			if !s.eat(':') {
				return errSyntax
			}
			s.ws()
			bit, known := chainKey(key)
			if !known && !esc && foldsChainKey(key) {
				return errDupKey
			}
			if known {
				if esc || seen&bit != 0 {
					return errDupKey
				}
				seen |= bit
				if err := s.chainValue(bit, r, p); err != nil {
					return err
				}
			} else if esc && foldsChainKeyEscaped(key) {
				return errDupKey
			} else if !s.value(0) {
				return errSyntax
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			if s.eat('}') {
				break
			}
			return errSyntax
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return errSyntax
	}
	if seen&(bitSeq|bitPrev) != bitSeq|bitPrev {
		if seen&(bitSeq|bitPrev|bitKey|bitSig) != 0 {
			return errField
		}
		return errNoChain
	}
	r.chained = true
	switch string(p.typ) {
	case TypeCheckpoint:
		r.kind = kindCheckpoint
		if !r.hasKey || !r.hasSig || len(p.time) > len(r.time) {
			return errField
		}
		r.timeLen = copy(r.time[:], p.time)
	case TypeRecovery:
		r.kind = kindRecovery
	case TypePurge:
		r.kind = kindPurge
	}
	if r.kind != kindCheckpoint && (r.hasKey || r.hasSig) {
		return errField
	}
	return nil
}

const (
	bitInstance uint8 = 1 << iota
	bitType
	bitTime
	bitSeq
	bitPrev
	bitKey
	bitSig
)

var chainKeys = [...]struct {
	name string
	bit  uint8
}{
	{"instance", bitInstance}, {"type", bitType}, {"time", bitTime},
	{"seq", bitSeq}, {"prev", bitPrev}, {"key", bitKey}, {"sig", bitSig},
}

func chainKey(k []byte) (uint8, bool) {
	for _, c := range chainKeys {
		if string(k) == c.name {
			return c.bit, true
		}
	}
	return 0, false
}

// foldsChainKey reports whether k equals a chain key in another case
// (including the Unicode folds encoding/json applies: 'ſ' for s, 'K' for k).
func foldsChainKey(k []byte) bool {
	// Only 's' (ſ, 2 bytes) and 'k' (K, 3 bytes) of the chain keys' letters
	// have non-ASCII folds, so a folding key is 3, 4, 5, 8 or 9 bytes long
	// and starts with a chain key's first letter, either case, or ſ or K.
	// The filter keeps EqualFold off the hot path (event keys).
	switch len(k) {
	case 3, 4, 5, 8, 9:
	default:
		return false
	}
	switch k[0] | 0x20 {
	case 'i', 't', 's', 'p', 'k', 0xc5 | 0x20, 0xe2 | 0x20:
	default:
		return false
	}
	for _, c := range chainKeys {
		if bytes.EqualFold(k, []byte(c.name)) {
			return true
		}
	}
	return false
}

// foldsChainKeyEscaped decodes an escaped key and applies foldsChainKey;
// any escape that spells a chain key is refused.
func foldsChainKeyEscaped(k []byte) bool {
	d, ok := unescape(k)
	if !ok {
		return true
	}
	if _, known := chainKey(d); known {
		return true
	}
	return foldsChainKey(d)
}

// chainValue reads the value of a known key into r or p.
func (s *scanner) chainValue(bit uint8, r *record, p *parsed) error {
	switch bit {
	case bitSeq:
		start := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		digits := s.b[start:s.i]
		if len(digits) == 0 || len(digits) > 20 || digits[0] == '0' {
			return errField
		}
		n, err := strconv.ParseUint(string(digits), 10, 64)
		if err != nil || n == 0 {
			return errField
		}
		r.seq = n
		return nil
	case bitPrev:
		return s.hexValue(r.prev[:])
	case bitKey:
		r.hasKey = true
		return s.hexValue(r.key[:])
	case bitSig:
		r.hasSig = true
		return s.hexValue(r.sig[:])
	}
	v, esc, ok := s.str()
	if !ok {
		return errSyntax
	}
	if esc {
		// The writer escapes instance and type only if they contain
		// characters that need it; decode so verify compares what a JSON
		// reader sees.
		d, ok := unescape(v)
		if !ok {
			return errSyntax
		}
		v = d
	}
	if !utf8.Valid(v) {
		return errField // the writer never produces it; readers would see U+FFFD
	}
	switch bit {
	case bitInstance:
		p.instance = v
	case bitType:
		p.typ = v
	case bitTime:
		p.time = v
	}
	return nil
}

// hexValue reads a string of exactly 2*len(dst) lower-case hex digits.
func (s *scanner) hexValue(dst []byte) error {
	v, esc, ok := s.str()
	if !ok {
		return errSyntax
	}
	if esc || len(v) != 2*len(dst) {
		return errField
	}
	for _, c := range v {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return errField
		}
	}
	hex.Decode(dst, v)
	return nil
}

// scanner is a strict, allocation-free JSON syntax checker over one line.
type scanner struct {
	b []byte
	i int
}

const maxDepth = 64

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a JSON string and returns its raw content (between the
// quotes) and whether it contains escapes. Escapes are validated.
func (s *scanner) str() (raw []byte, escaped, ok bool) {
	if !s.eat('"') {
		return nil, false, false
	}
	start := s.i
	for {
		// Jump to the next quote; check the run before it for escapes
		// and control characters (both rare in practice).
		q := bytes.IndexByte(s.b[s.i:], '"')
		if q < 0 {
			return nil, false, false
		}
		run := s.b[s.i : s.i+q]
		bs := bytes.IndexByte(run, '\\')
		if bs < 0 {
			if !noControl(run) {
				return nil, false, false
			}
			s.i += q + 1
			return s.b[start : s.i-1], escaped, true
		}
		if !noControl(run[:bs]) {
			return nil, false, false
		}
		escaped = true
		s.i += bs + 1
		if s.i >= len(s.b) {
			return nil, false, false
		}
		switch s.b[s.i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.i++
		case 'u':
			if s.i+5 > len(s.b) {
				return nil, false, false
			}
			for _, c := range s.b[s.i+1 : s.i+5] {
				if !isHex(c) {
					return nil, false, false
				}
			}
			s.i += 5
		default:
			return nil, false, false
		}
	}
}

// noControl reports whether b has no byte below 0x20. It tests eight
// bytes per step (a byte x < 0x20 makes x-0x20 borrow into bit 7 while
// bit 7 of x is clear), which matters for verify's speed and more so
// under the race detector, which instruments every load.
func noControl(b []byte) bool {
	const lo, hi = 0x2020202020202020, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		if (x-lo)&^x&hi != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// value skips any JSON value.
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.b) || depth > maxDepth {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{':
		s.i++
		s.ws()
		if s.eat('}') {
			return true
		}
		for {
			s.ws()
			if _, _, ok := s.str(); !ok {
				return false
			}
			s.ws()
			if !s.eat(':') {
				return false
			}
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			return s.eat('}')
		}
	case c == '[':
		s.i++
		s.ws()
		if s.eat(']') {
			return true
		}
		for {
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			if s.eat(',') {
				continue
			}
			return s.eat(']')
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	default:
		return s.number()
	}
}

func (s *scanner) lit(w string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		s.i += len(w)
		return true
	}
	return false
}

// number accepts RFC 8259 numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	s.eat('-')
	switch {
	case s.eat('0'):
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.eat('.') && !s.digits() {
		return false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// unescape decodes the content of a JSON string as encoding/json does
// (invalid surrogates become U+FFFD). ok is false for malformed escapes.
func unescape(raw []byte) ([]byte, bool) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return nil, false
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			out = append(out, raw[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, n := decodeU(raw[i:])
			if n == 0 {
				return nil, false
			}
			out = utf8.AppendRune(out, r)
			i += n
			continue
		default:
			return nil, false
		}
		i += 2
	}
	return out, true
}

// decodeU decodes \uXXXX (or a surrogate pair) at the start of b.
func decodeU(b []byte) (rune, int) {
	r, ok := hex4(b)
	if !ok {
		return 0, 0
	}
	if r >= 0xD800 && r < 0xDC00 {
		if len(b) >= 12 && b[6] == '\\' && b[7] == 'u' {
			if r2, ok := hex4(b[6:]); ok && r2 >= 0xDC00 && r2 < 0xE000 {
				return (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000, 12
			}
		}
		return utf8.RuneError, 6
	}
	if r >= 0xDC00 && r < 0xE000 {
		return utf8.RuneError, 6
	}
	return r, 6
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}
