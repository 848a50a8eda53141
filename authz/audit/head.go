package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// The head marker file (audit-<instance>.head) says where the trail ends:
// "instance I's chain ends at seq N whose record hashes to H", signed. The
// writer rewrites it after every group commit (after the trail's fsync, so
// it never claims more than is durable) and marks it closed at Close.
// Verify fails a trail that ends before the marker's seq or whose record
// at that seq has another hash: cutting records off the end is detected
// even when no checkpoint follows them.
//
// The file has two slots (offsets 0 and headSlotStride), written
// alternately with a generation number, so a crash in the middle of a
// write leaves the other, older slot intact; the valid slot with the
// highest generation wins. Each slot is one JSON line, padded with spaces.
//
// Residual risk, by design of any local file: someone who can write the
// directory and kept an old copy of both the trail and the head file can
// roll both back to that older signed state, and verify cannot tell.
// Shipping checkpoints off the machine (sinks, a later part of the work)
// is what closes that.

const (
	headSlotSize   = 1024
	headSlotStride = 4096
)

// headMarker is one slot's content.
type headMarker struct {
	Instance string
	Gen      uint64 // write generation; the highest valid one is current
	Seq      uint64 // last record covered (0: the chain is empty)
	Hash     [32]byte
	Time     string
	Closed   bool // written by Close: nothing may follow seq
	Key      [8]byte
	Sig      [ed25519.SignatureSize]byte
}

func (m *headMarker) message() []byte {
	return headMessage(nil, m.Instance, m.Seq, m.Hash, []byte(m.Time), m.Gen, m.Closed)
}

func (m *headMarker) sign(key ed25519.PrivateKey) {
	copy(m.Key[:], mustHex(KeyID(key.Public().(ed25519.PublicKey))))
	copy(m.Sig[:], ed25519.Sign(key, m.message()))
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// appendJSON encodes the marker as one JSON object.
func (m *headMarker) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"instance":`...)
	dst = appendString(dst, m.Instance)
	dst = append(dst, `,"gen":`...)
	dst = strconv.AppendUint(dst, m.Gen, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, m.Seq, 10)
	dst = append(dst, `,"hash":"`...)
	dst = hex.AppendEncode(dst, m.Hash[:])
	dst = append(dst, `","time":`...)
	dst = appendString(dst, m.Time)
	dst = append(dst, `,"closed":`...)
	dst = strconv.AppendBool(dst, m.Closed)
	dst = append(dst, `,"key":"`...)
	dst = hex.AppendEncode(dst, m.Key[:])
	dst = append(dst, `","sig":"`...)
	dst = hex.AppendEncode(dst, m.Sig[:])
	return append(dst, '"', '}')
}

// parseHeadMarker decodes one slot (its JSON line).
func parseHeadMarker(line []byte) (headMarker, error) {
	var j struct {
		Instance *string `json:"instance"`
		Gen      uint64  `json:"gen"`
		Seq      *uint64 `json:"seq"`
		Hash     string  `json:"hash"`
		Time     string  `json:"time"`
		Closed   bool    `json:"closed"`
		Key      string  `json:"key"`
		Sig      string  `json:"sig"`
	}
	var m headMarker
	d := json.NewDecoder(bytes.NewReader(line))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return m, err
	}
	if j.Instance == nil || j.Seq == nil {
		return m, errors.New("missing instance or seq")
	}
	m.Instance, m.Gen, m.Seq, m.Time, m.Closed = *j.Instance, j.Gen, *j.Seq, j.Time, j.Closed
	for _, f := range []struct {
		s   string
		dst []byte
	}{{j.Hash, m.Hash[:]}, {j.Key, m.Key[:]}, {j.Sig, m.Sig[:]}} {
		if len(f.s) != 2*len(f.dst) {
			return m, errors.New("bad hash, key or sig length")
		}
		if _, err := hex.Decode(f.dst, []byte(f.s)); err != nil {
			return m, err
		}
	}
	return m, nil
}

// headSlot is what one slot of a head file holds.
type headSlot struct {
	present bool  // not blank
	err     error // unreadable (torn write, or garbage)
	m       headMarker
}

// readHeadSlots reads both slots of a head file.
func readHeadSlots(f io.ReaderAt) ([2]headSlot, error) {
	var out [2]headSlot
	buf := make([]byte, headSlotSize)
	for i := range out {
		n, err := f.ReadAt(buf, int64(i)*headSlotStride)
		if err != nil && !errors.Is(err, io.EOF) {
			return out, err
		}
		b := buf[:n]
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			b = b[:j]
		}
		if len(bytes.Trim(b, " \x00")) == 0 {
			continue
		}
		out[i].present = true
		out[i].m, out[i].err = parseHeadMarker(b)
	}
	return out, nil
}

// keyring finds a trusted public key by KeyID.
type keyring map[[8]byte]ed25519.PublicKey

func newKeyring(keys []ed25519.PublicKey) keyring {
	kr := keyring{}
	for _, k := range keys {
		var id [8]byte
		copy(id[:], mustHex(KeyID(k)))
		kr[id] = k
	}
	return kr
}

func (kr keyring) ids() []string {
	var out []string
	for id := range kr {
		out = append(out, hex.EncodeToString(id[:]))
	}
	return out
}

// headState is the outcome of checking both slots against trusted keys.
type headState struct {
	best    *headMarker // the valid slot with the highest generation
	slot    int         // its index
	notes   []string    // unreadable slots (a torn write is possible)
	foreign *headMarker // a slot signed by an untrusted key
	badSig  *headMarker // a slot whose signature does not verify
}

func checkHeadSlots(slots [2]headSlot, kr keyring) headState {
	var st headState
	for i := range slots {
		s := &slots[i]
		switch {
		case !s.present:
		case s.err != nil:
			st.notes = append(st.notes, fmt.Sprintf("head slot %d is unreadable (%v): a write was interrupted by a crash, or it was damaged", i, s.err))
		default:
			pub, ok := kr[s.m.Key]
			switch {
			case !ok:
				st.foreign = &s.m
			case !ed25519.Verify(pub, s.m.message(), s.m.Sig[:]):
				st.badSig = &s.m
			case st.best == nil || s.m.Gen > st.best.Gen:
				st.best, st.slot = &s.m, i
			}
		}
	}
	return st
}

// headFile is the writer's handle on the head marker file.
type headFile struct {
	f    *os.File
	key  ed25519.PrivateKey
	next int    // slot to write next
	gen  uint64 // generation of the last marker written
	buf  []byte
}

// write replaces the older slot with a signed marker, and fsyncs when
// sync is set.
//
// The writer fsyncs only at open and Close. After a group commit the
// marker is written without fsync: the records it names are already
// durable, so whenever the kernel writes the page back (the slots are in
// separate pages, and either slot may be older), the marker on disk never
// claims more than the trail holds; after a power loss it may lag, which
// leaves an unsigned tail that the next open seals. An fsync per commit
// would double the journal commits on the hot path for no gain in what
// verify can prove.
func (h *headFile) write(instance string, seq uint64, hash [32]byte, now time.Time, closed, sync bool) error {
	m := headMarker{Instance: instance, Gen: h.gen + 1, Seq: seq, Hash: hash, Time: string(appendTime(nil, now)), Closed: closed}
	m.sign(h.key)
	b := m.appendJSON(h.buf[:0])
	if len(b) >= headSlotSize {
		return errors.New("head marker too large")
	}
	b = append(b, '\n')
	for len(b) < headSlotSize-1 {
		b = append(b, ' ')
	}
	b = append(b, '\n')
	h.buf = b
	if _, err := h.f.WriteAt(b, int64(h.next)*headSlotStride); err != nil {
		return err
	}
	if sync {
		if err := h.f.Sync(); err != nil {
			return err
		}
	}
	h.gen = m.Gen
	h.next ^= 1
	return nil
}
