package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Problem kinds, as Verify names them.
const (
	ProblemModified     = "modified"      // a record's bytes changed
	ProblemDeleted      = "deleted"       // records missing from the middle or the start
	ProblemInserted     = "inserted"      // a record that the writer did not write there
	ProblemReordered    = "reordered"     // records out of order
	ProblemTruncated    = "truncated"     // records cut off the end, behind the signed head marker
	ProblemBadSignature = "bad-signature" // a checkpoint or head marker signature does not verify
	ProblemForeignKey   = "foreign-key"   // signed by a key that is not trusted
	ProblemMissingHead  = "missing-head"  // no valid head marker: a cut tail could not be detected
	ProblemMissingTrail = "missing-trail" // a head marker without its trail
	ProblemNoKey        = "no-key"        // nothing to verify signatures with
)

// Problem is the first thing wrong with one chain (or with the directory).
type Problem struct {
	Kind     string
	Instance string
	File     string // base name of the file, "" when not about a file
	Line     int64  // 1-based line in File; 0 when not about a line
	Offset   int64  // byte offset of that line
	Seq      uint64 // the record's seq when known
	Detail   string // what was found, in a sentence
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Kind)
	if p.Seq > 0 {
		fmt.Fprintf(&b, ": record seq %d", p.Seq)
	}
	if p.File != "" {
		if p.Line > 0 {
			fmt.Fprintf(&b, " at %s:%d (byte %d)", p.File, p.Line, p.Offset)
		} else {
			fmt.Fprintf(&b, " in %s", p.File)
		}
	}
	b.WriteString(": ")
	b.WriteString(p.Detail)
	return b.String()
}

// Chain is what Verify found for one instance's chain.
type Chain struct {
	Instance    string
	Files       []string // in chain order
	Records     uint64   // chained records read (checkpoints included)
	FirstSeq    uint64
	LastSeq     uint64
	Checkpoints uint64 // checkpoints whose signatures verified
	HeadSeq     uint64 // the signed head marker's seq
	HeadTime    string
	HeadClosed  bool
	Unsigned    uint64   // records after the head marker, not yet covered by a signature
	Problem     *Problem // the first problem; nil when the chain verifies
	Notes       []string // facts that are not failures (a torn line being written, …)
}

// Report is the outcome of Verify. The CLI prints String() and exits
// with ExitCode().
type Report struct {
	Dir       string
	KeySource string   // where the trusted public keys came from
	BesideKey bool     // the keys are the copy beside the trail, not --pubkey
	KeyIDs    []string // KeyID of each trusted key
	Chains    []Chain  // by instance
	Problems  []Problem
	Notes     []string // directory-level notes
}

// OK reports whether everything verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// ExitCode is the verify command's exit status: 0 when everything
// verifies, 1 when a problem was found. (An error from Verify — the
// directory could not be read — is exit status 2.)
func (r *Report) ExitCode() int {
	if r.OK() {
		return 0
	}
	return 1
}

func (r *Report) String() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "audit trail %s: OK\n", r.Dir)
	} else {
		fmt.Fprintf(&b, "audit trail %s: FAILED (%d problem(s))\n", r.Dir, len(r.Problems))
	}
	fmt.Fprintf(&b, "keys: %s (key IDs %s)\n", r.KeySource, strings.Join(r.KeyIDs, ", "))
	if r.BesideKey {
		b.WriteString("WARNING: verified with the public key stored beside the trail. Whoever can edit the trail can replace that key\n" +
			"         and re-sign; pass --pubkey with a copy kept apart from the trail for an independent check.\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, c := range r.Chains {
		state := "OK"
		if c.Problem != nil {
			state = "FAILED"
		}
		fmt.Fprintf(&b, "instance %s: %s: %d records", c.Instance, state, c.Records)
		if c.Records > 0 {
			fmt.Fprintf(&b, " (seq %d..%d)", c.FirstSeq, c.LastSeq)
		}
		fmt.Fprintf(&b, " in %s, %d signed checkpoints", strings.Join(c.Files, ", "), c.Checkpoints)
		if c.HeadTime != "" {
			closed := "open"
			if c.HeadClosed {
				closed = "closed"
			}
			fmt.Fprintf(&b, ", head seq %d (%s, %s)", c.HeadSeq, closed, c.HeadTime)
		}
		b.WriteString("\n")
		if c.Problem != nil {
			fmt.Fprintf(&b, "  %s\n", c.Problem)
		}
		for _, n := range c.Notes {
			fmt.Fprintf(&b, "  note: %s\n", n)
		}
	}
	for _, p := range r.Problems {
		if p.Instance == "" {
			fmt.Fprintf(&b, "%s\n", p)
		}
	}
	return b.String()
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// KeySource describes explicit keys for the report (e.g. "--pubkey
	// /etc/portcullis/audit.pub").
	KeySource string
}

// Verify checks every chain in dir (every *.jsonl file, grouped by the
// instance in its records) offline, reading each file once, streaming,
// in constant memory. keys are the trusted public keys (from --pubkey);
// when there are none, the copies beside the trail (*.pub) are used and
// the report says so.
//
// For each chain it reports OK or the first problem: the first record
// modified, deleted, inserted or reordered (named by seq, file, line and
// byte offset), a checkpoint or head marker with a bad signature or
// signed by an untrusted key, records cut off behind the signed head
// marker, a missing head marker. Where a rewrite re-linked the chain
// after a change, the change is caught at the next signature and the
// report names the range it lies in.
//
// The error is for a directory that cannot be read at all; problems with
// its contents are in the Report.
func Verify(dir string, keys []ed25519.PublicKey, opts VerifyOptions) (*Report, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	rep := &Report{Dir: dir}
	var trails, heads, pubs, privs []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		switch n := e.Name(); filepath.Ext(n) {
		case ".jsonl":
			trails = append(trails, n)
		case ".head":
			heads = append(heads, n)
		case ".pub":
			pubs = append(pubs, n)
		case ".key":
			privs = append(privs, n)
		}
	}
	v := &verifier{dir: dir, rep: rep}

	// Trusted keys.
	var beside []ed25519.PublicKey
	for _, p := range pubs {
		ks, err := ReadPublicKeys(filepath.Join(dir, p))
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		beside = append(beside, ks...)
	}
	if len(keys) > 0 {
		rep.KeySource = opts.KeySource
		if rep.KeySource == "" {
			rep.KeySource = "given public keys"
		}
		v.kr = newKeyring(keys)
		for _, k := range beside {
			var id [8]byte
			copy(id[:], mustHex(KeyID(k)))
			if _, ok := v.kr[id]; !ok {
				rep.Notes = append(rep.Notes, fmt.Sprintf("the public key beside the trail (key ID %s) is not one of the trusted keys: it was replaced, or the signing key changed", KeyID(k)))
			}
		}
	} else {
		if len(beside) == 0 {
			rep.Problems = append(rep.Problems, Problem{Kind: ProblemNoKey, Detail: "no public key: pass --pubkey FILE (no *.pub beside the trail either)"})
			return rep, nil
		}
		rep.BesideKey = true
		rep.KeySource = "the copy beside the trail (" + strings.Join(pubs, ", ") + ")"
		v.kr = newKeyring(beside)
	}
	rep.KeyIDs = v.kr.ids()
	slices.Sort(rep.KeyIDs)
	if len(privs) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("a private signing key is stored beside the trail (%s): whoever can read it can re-sign the trail; configure a signing key kept elsewhere", strings.Join(privs, ", ")))
	}

	// Head markers first: a running writer updates the head only after the
	// trail is durable, so reading heads before trails never sees a head
	// ahead of the trail.
	v.heads = map[string]*headEntry{}
	for _, h := range heads {
		v.readHead(h)
	}

	// Group trail files by the instance of their first record.
	groups := map[string][]*trailFile{}
	for _, t := range trails {
		tf, err := v.firstRecord(t)
		if err != nil {
			return nil, err
		}
		if tf == nil {
			continue
		}
		groups[tf.instance] = append(groups[tf.instance], tf)
	}
	instances := make([]string, 0, len(groups)+len(v.heads))
	for inst := range groups {
		instances = append(instances, inst)
	}
	for inst := range v.heads {
		if _, ok := groups[inst]; !ok {
			instances = append(instances, inst)
		}
	}
	slices.Sort(instances)
	for _, inst := range instances {
		files := groups[inst]
		slices.SortFunc(files, func(a, b *trailFile) int { return cmpUint(a.firstSeq, b.firstSeq) })
		c, err := v.chain(inst, files)
		if err != nil {
			return nil, err
		}
		rep.Chains = append(rep.Chains, c)
		if c.Problem != nil {
			rep.Problems = append(rep.Problems, *c.Problem)
		}
	}
	if len(rep.Chains) == 0 && len(rep.Problems) == 0 {
		rep.Problems = append(rep.Problems, Problem{Kind: ProblemMissingTrail, Detail: "no audit trail (*.jsonl with chained records) in the directory"})
	}
	return rep, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type verifier struct {
	dir   string
	rep   *Report
	kr    keyring
	heads map[string]*headEntry
}

// headEntry is one instance's head marker, or the problem with it.
type headEntry struct {
	file    string
	m       *headMarker
	problem *Problem
	notes   []string
}

func (v *verifier) readHead(name string) {
	// A running writer may rewrite a slot while it is read: read until two
	// consecutive reads agree, so a half-updated slot is not mistaken for
	// a forged one.
	var data []byte
	for range 10 {
		b, err := os.ReadFile(filepath.Join(v.dir, name))
		if err != nil {
			v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("%s: %v", name, err))
			return
		}
		if bytes.Equal(b, data) {
			break
		}
		data = b
	}
	slots, err := readHeadSlots(bytes.NewReader(data))
	if err != nil {
		v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("%s: %v", name, err))
		return
	}
	st := checkHeadSlots(slots, v.kr)
	e := &headEntry{file: name, m: st.best, notes: st.notes}
	var inst string
	switch {
	case st.foreign != nil:
		inst = st.foreign.Instance
		e.problem = &Problem{Kind: ProblemForeignKey, Instance: inst, File: name, Seq: st.foreign.Seq,
			Detail: fmt.Sprintf("the head marker is signed by key %x, which is not a trusted key: the trail was re-signed", st.foreign.Key)}
	case st.badSig != nil:
		inst = st.badSig.Instance
		e.problem = &Problem{Kind: ProblemBadSignature, Instance: inst, File: name, Seq: st.badSig.Seq,
			Detail: "the head marker's signature does not verify: it was modified"}
	case st.best != nil:
		inst = st.best.Instance
	default:
		v.rep.Notes = append(v.rep.Notes, fmt.Sprintf("%s holds no readable head marker", name))
		return
	}
	if prev, dup := v.heads[inst]; dup {
		e.problem = &Problem{Kind: ProblemInserted, Instance: inst, File: name,
			Detail: fmt.Sprintf("a second head marker for instance %q (the first is %s)", inst, prev.file)}
	}
	v.heads[inst] = e
}

// trailFile is one *.jsonl file of a chain.
type trailFile struct {
	name     string
	instance string
	firstSeq uint64
}

// firstRecord finds the first chained record of a trail file. A file
// without any (empty, or written before chaining) is checked against a
// head marker with seq 0 of the same name, or reported.
func (v *verifier) firstRecord(name string) (*trailFile, error) {
	f, err := os.Open(filepath.Join(v.dir, name))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
		// Created by an open that did not get to write its head marker.
		v.rep.Notes = append(v.rep.Notes, name+" is empty")
		return nil, nil
	}
	br := bufio.NewReaderSize(f, 256<<10)
	h := sha256.New()
	var r record
	var p parsed
	for {
		line, err := readLine(br)
		if err != nil && err != io.ErrUnexpectedEOF {
			if err == io.EOF {
				break
			}
			return nil, fmt.Errorf("audit: %s: %w", name, err)
		}
		if parseRecord(line, &r, &p) == nil {
			return &trailFile{name: name, instance: string(p.instance), firstSeq: r.seq}, nil
		}
		if err == io.ErrUnexpectedEOF {
			break
		}
		h.Write(line)
		h.Write([]byte{'\n'})
	}
	// No chain record. An empty chain is fine if its head says so.
	var sum [32]byte
	h.Sum(sum[:0])
	base := strings.TrimSuffix(name, ".jsonl")
	for inst, e := range v.heads {
		if e.file == base+".head" && e.m != nil && e.m.Seq == 0 && e.m.Hash == sum {
			return &trailFile{name: name, instance: inst}, nil
		}
	}
	v.rep.Problems = append(v.rep.Problems, Problem{Kind: ProblemMissingHead, File: name,
		Detail: "the file has no chain records (written before chaining, or its chain fields were removed) and no head marker accounts for it: it cannot be verified"})
	return nil, nil
}

// recIter streams the records of a chain's files, with one record of
// lookahead.
type recIter struct {
	v        *verifier
	inst     string
	files    []*trailFile
	fi       int
	f        *os.File
	br       *bufio.Reader
	line     int64
	off      int64
	started  bool      // a chained record was seen
	legacy   hash.Hash // hashes lines before the first record
	legacyN  int64
	peeked   *item
	buf      item
	peekItem item
}

type itemKind uint8

const (
	itemRecord itemKind = iota
	itemEOF
	itemTorn      // the last file ends in an incomplete line
	itemMalformed // not a record (after the chain started)
	itemUnchained // valid JSON without chain fields (after the chain started)
	itemPartial   // a non-last file ends in an incomplete line
)

type item struct {
	kind   itemKind
	rec    record
	file   int
	line   int64
	offset int64
	size   int64 // bytes of a torn line
	err    error
}

func (it *recIter) close() {
	if it.f != nil {
		it.f.Close()
		it.f = nil
	}
}

// next returns the next item (the peeked one first).
func (it *recIter) next() (*item, error) {
	if it.peeked != nil {
		it.buf, it.peeked = *it.peeked, nil
		return &it.buf, nil
	}
	if err := it.read(&it.buf); err != nil {
		return nil, err
	}
	return &it.buf, nil
}

// peek returns the item after the current one without consuming it.
func (it *recIter) peek() (*item, error) {
	if it.peeked == nil {
		if err := it.read(&it.peekItem); err != nil {
			return nil, err
		}
		it.peeked = &it.peekItem
	}
	return it.peeked, nil
}

var errStop = errors.New("stop")

func (it *recIter) read(out *item) error {
	for {
		if it.f == nil {
			if it.fi >= len(it.files) {
				*out = item{kind: itemEOF, file: len(it.files) - 1}
				return nil
			}
			f, err := os.Open(filepath.Join(it.v.dir, it.files[it.fi].name))
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			it.f, it.line, it.off = f, 0, 0
			if it.br == nil {
				it.br = bufio.NewReaderSize(f, 1<<20)
			} else {
				it.br.Reset(f)
			}
		}
		line, err := readLine(it.br)
		if err == io.EOF {
			it.close()
			it.fi++
			continue
		}
		*out = item{file: it.fi, line: it.line + 1, offset: it.off}
		if err == io.ErrUnexpectedEOF {
			out.size = int64(len(line))
			out.kind = itemPartial
			if it.fi == len(it.files)-1 {
				out.kind = itemTorn
			}
			it.close()
			it.fi = len(it.files)
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: %s: %w", it.files[it.fi].name, err)
		}
		it.line++
		it.off += int64(len(line)) + 1
		var p parsed
		perr := parseRecord(line, &out.rec, &p)
		if perr != nil {
			if !it.started && it.fi == 0 {
				// Before the chain: covered by the first record's prev.
				it.legacy.Write(line)
				it.legacy.Write([]byte{'\n'})
				it.legacyN++
				continue
			}
			out.err = perr
			out.kind = itemMalformed
			if errors.Is(perr, errNoChain) {
				out.kind = itemUnchained
			}
			return nil
		}
		it.started = true
		r := &out.rec
		r.hash = sha256.Sum256(line)
		r.instOK = string(p.instance) == it.inst
		r.file, r.line, r.offset = out.file, out.line, out.offset
		if r.kind == kindPurge {
			parsePurge(line, r)
		}
		out.kind = itemRecord
		return nil
	}
}

// parsePurge reads a purge record's attrs (rare: a full decode is fine).
func parsePurge(line []byte, r *record) {
	var e Event
	if json.Unmarshal(line, &e) != nil {
		return
	}
	n, err := strconv.ParseUint(e.Attrs["through_seq"], 10, 64)
	if err != nil {
		return
	}
	h, err := hex.DecodeString(e.Attrs["through_hash"])
	if err != nil || len(h) != 32 {
		return
	}
	r.purgeOK, r.purgeSeq = true, n
	copy(r.purgeHash[:], h)
}

// chainRun is the state of one chain's verification.
type chainRun struct {
	v           *verifier
	c           *Chain
	it          *recIter
	head        *headMarker
	a           record // the last accepted record
	haveA       bool
	signedSeq   uint64 // highest seq covered by a verified signature
	afterHead   *record
	headProblem *Problem // the head marker is bad (checked last)
	gap         *record  // first record, when it is not seq 1
	purge       *record  // a purge record that accounts for the gap
	lastPurge   *record  // the newest purge record of all (to name an unaccounted gap)
}

func (v *verifier) chain(inst string, files []*trailFile) (Chain, error) {
	c := Chain{Instance: inst}
	for _, f := range files {
		c.Files = append(c.Files, f.name)
	}
	run := &chainRun{v: v, c: &c}
	he := v.heads[inst]
	if he != nil {
		c.Notes = append(c.Notes, he.notes...)
		if he.problem != nil {
			// Reported unless a record-level problem comes first (a
			// re-signed trail fails at its first foreign checkpoint).
			run.headProblem = he.problem
		} else {
			run.head = he.m
			c.HeadSeq, c.HeadTime, c.HeadClosed = he.m.Seq, he.m.Time, he.m.Closed
		}
	}
	if len(files) == 0 {
		if run.headProblem != nil {
			c.Problem = run.headProblem
			return c, nil
		}
		if run.head != nil && run.head.Seq > 0 {
			c.Problem = &Problem{Kind: ProblemMissingTrail, Instance: inst, File: he.file, Seq: run.head.Seq,
				Detail: fmt.Sprintf("the signed head marker covers %d records but no trail file holds this instance's records: it was deleted", run.head.Seq)}
		}
		return c, nil
	}
	run.it = &recIter{v: v, inst: inst, files: files, legacy: sha256.New()}
	defer run.it.close()
	if err := run.walk(); err != nil && err != errStop {
		return c, err
	}
	return c, nil
}

func (run *chainRun) fail(kind string, at *record, detail string, args ...any) error {
	p := &Problem{Kind: kind, Instance: run.c.Instance, Detail: fmt.Sprintf(detail, args...)}
	if at != nil {
		p.File, p.Line, p.Offset, p.Seq = run.it.files[at.file].name, at.line, at.offset, at.seq
	}
	run.c.Problem = p
	return errStop
}

func (run *chainRun) failItem(kind string, it *item, seq uint64, detail string, args ...any) error {
	p := &Problem{Kind: kind, Instance: run.c.Instance, Seq: seq, Detail: fmt.Sprintf(detail, args...)}
	if it.file >= 0 && it.file < len(run.it.files) {
		p.File, p.Line, p.Offset = run.it.files[it.file].name, it.line, it.offset
	}
	run.c.Problem = p
	return errStop
}

func (run *chainRun) walk() error {
	var torn *item
	for {
		x, err := run.it.next()
		if err != nil {
			return err
		}
		switch x.kind {
		case itemEOF:
		case itemTorn:
			t := *x
			torn = &t
		case itemPartial:
			return run.failItem(ProblemModified, x, run.a.seq+1, "the file ends in an incomplete line but more of the chain follows in %s: it was cut", run.it.files[x.file+1].name)
		case itemMalformed:
			return run.failItem(ProblemModified, x, run.a.seq+1, "the line is not a valid record (%v): it was modified", x.err)
		case itemUnchained:
			return run.failItem(ProblemInserted, x, 0, "a line without seq/prev inside the chain (the record expected here is seq %d): it was inserted", run.a.seq+1)
		case itemRecord:
			r := x.rec
			if !run.haveA {
				if err := run.first(&r); err != nil {
					return err
				}
			} else if !(r.instOK && r.seq == run.a.seq+1 && r.prev == run.a.hash) {
				q, err := run.it.peek()
				if err != nil {
					return err
				}
				var qr *record
				if q.kind == itemRecord {
					qr = &q.rec
				}
				return run.classify(&r, qr)
			}
			if err := run.accept(&r); err != nil {
				return err
			}
			continue
		}
		break
	}
	return run.finish(torn)
}

// first checks the chain's first record.
func (run *chainRun) first(r *record) error {
	if !r.instOK {
		return run.fail(ProblemInserted, r, "the record belongs to another instance")
	}
	if r.seq == 1 {
		var genesis [32]byte
		run.it.legacy.Sum(genesis[:0])
		if run.it.legacyN > 0 {
			run.c.Notes = append(run.c.Notes, fmt.Sprintf("%d lines before the first record (written before chaining) are covered by its prev hash", run.it.legacyN))
		}
		if r.prev != genesis {
			if run.it.legacyN > 0 {
				return run.fail(ProblemModified, r, "its prev hash does not match the %d lines before it (written before chaining): those lines or this record were modified", run.it.legacyN)
			}
			return run.fail(ProblemModified, r, "its prev hash is not the hash of an empty file: lines before it were removed, or it was modified")
		}
		return nil
	}
	if run.it.legacyN > 0 {
		return run.fail(ProblemInserted, r, "%d lines precede the first record, which is not seq 1: they were inserted", run.it.legacyN)
	}
	g := *r
	run.gap = &g
	return nil
}

// accept takes r as the next record of the chain and checks what it
// signs or what signs it.
func (run *chainRun) accept(r *record) error {
	c := run.c
	if !run.haveA {
		c.FirstSeq = r.seq
	}
	run.haveA = true
	run.a = *r
	c.Records++
	c.LastSeq = r.seq
	switch r.kind {
	case kindCheckpoint:
		pub, ok := run.v.kr[r.key]
		if !ok {
			return run.fail(ProblemForeignKey, r, "the checkpoint is signed by key %x, which is not a trusted key: the trail was re-signed", r.key)
		}
		var msg [256]byte
		if !ed25519.Verify(pub, checkpointMessage(msg[:0], c.Instance, r.seq, r.prev, r.time[:r.timeLen]), r.sig[:]) {
			return run.fail(ProblemBadSignature, r, "the checkpoint's signature does not verify: a record after seq %d was modified and the chain re-linked, or the checkpoint itself was altered", run.signedSeq)
		}
		c.Checkpoints++
		run.signedSeq = r.seq - 1
	case kindPurge:
		if r.purgeOK {
			p := *r
			run.lastPurge = &p
		}
		if run.gap != nil && r.purgeOK && r.purgeSeq == run.gap.seq-1 && r.purgeHash == run.gap.prev {
			p := *r
			run.purge = &p
		}
	}
	if h := run.head; h != nil {
		switch r.seq {
		case h.Seq:
			if r.hash != h.Hash {
				return run.fail(ProblemModified, r, "the record does not match the signed head marker: it, or a record after seq %d (the last signed point) that was then re-linked, was modified", run.signedSeq)
			}
			run.signedSeq = r.seq
		case h.Seq + 1:
			a := *r
			run.afterHead = &a
		}
	}
	return nil
}

// classify names what happened when r does not follow a (the last
// accepted record); q is the record after r, if any.
func (run *chainRun) classify(r, q *record) error {
	a := &run.a
	exp := a.seq + 1
	qFollowsA := q != nil && q.instOK && q.seq == exp && q.prev == a.hash
	qFollowsR := q != nil && q.instOK && q.seq == r.seq+1 && q.prev == r.hash
	switch {
	case !r.instOK:
		if r.seq == exp && r.prev == a.hash {
			return run.fail(ProblemModified, r, "its instance field was changed")
		}
		return run.fail(ProblemInserted, r, "a record of another instance inside this chain (seq %d expected here)", exp)
	case qFollowsA:
		// The chain continues right after r: r does not belong here.
		if r.seq == exp+1 && r.prev == q.hash {
			return run.fail(ProblemReordered, r, "records seq %d and %d are swapped (seq %d follows at line %d)", exp, r.seq, exp, q.line)
		}
		if r.seq > exp {
			return run.fail(ProblemReordered, r, "the record belongs later in the chain (seq %d expected here, and follows at line %d)", exp, q.line)
		}
		return run.fail(ProblemInserted, r, "the record does not belong here (seq %d expected, and follows at line %d): it was inserted", exp, q.line)
	case r.prev == a.hash && r.seq != exp:
		m := *r
		m.seq = exp
		return run.fail(ProblemModified, &m, "it links to seq %d but its seq field says %d: its seq was modified", a.seq, r.seq)
	case r.seq == exp:
		// r is authentic if the chain continues from it, if it is a
		// checkpoint whose signature covers its prev, or if the head
		// marker names it; then a (its predecessor) was changed.
		if qFollowsR || run.signedCheckpoint(r) || run.head != nil && r.seq == run.head.Seq && r.hash == run.head.Hash {
			also := ""
			if a.seq > run.signedSeq+1 {
				also = fmt.Sprintf(" (or a record after seq %d, the last signed point, was modified and the chain re-linked up to here)", run.signedSeq)
			}
			return run.fail(ProblemModified, a, "its hash no longer matches the prev hash recorded by the next record (seq %d, line %d): it was modified%s", r.seq, r.line, also)
		}
		return run.fail(ProblemModified, r, "its prev hash does not match the record before it (seq %d): it was modified", a.seq)
	case r.seq > exp:
		if q != nil && q.seq == exp+1 && q.prev != r.hash {
			return run.fail(ProblemReordered, r, "seq %d is missing here and this record belongs later: records were moved", exp)
		}
		if r.seq == exp+1 {
			return run.fail(ProblemDeleted, r, "record seq %d is missing before this record: it was deleted", exp)
		}
		return run.fail(ProblemDeleted, r, "records seq %d..%d are missing before this record: they were deleted", exp, r.seq-1)
	default: // r.seq <= a.seq
		if r.seq == a.seq && r.prev == a.prev && qFollowsR {
			return run.fail(ProblemInserted, a, "a second record with seq %d follows at line %d and the chain continues from it: this one was inserted", a.seq, r.line)
		}
		return run.fail(ProblemInserted, r, "seq %d was already seen (seq %d expected here): the record was inserted or replayed", r.seq, exp)
	}
}

// signedCheckpoint reports whether r is a checkpoint with a valid
// signature by a trusted key.
func (run *chainRun) signedCheckpoint(r *record) bool {
	if r.kind != kindCheckpoint {
		return false
	}
	pub, ok := run.v.kr[r.key]
	var msg [256]byte
	return ok && ed25519.Verify(pub, checkpointMessage(msg[:0], run.c.Instance, r.seq, r.prev, r.time[:r.timeLen]), r.sig[:])
}

// finish checks the end of the chain against the head marker and the
// start against purge records.
func (run *chainRun) finish(torn *item) error {
	c := run.c
	if torn != nil {
		c.Notes = append(c.Notes, fmt.Sprintf("%s ends in an incomplete line (%d bytes at byte %d): a write in progress, or a crash (opening the log cuts it and records the cut)",
			run.it.files[torn.file].name, torn.size, torn.offset))
	}
	if g := run.gap; g != nil {
		if lp := run.lastPurge; run.purge == nil && lp != nil && lp.purgeSeq < g.seq-1 {
			return run.fail(ProblemDeleted, g, "records seq %d..%d are missing before this record: the newest purge record (seq %d) accounts only for seq 1..%d: they were deleted", lp.purgeSeq+1, g.seq-1, lp.seq, lp.purgeSeq)
		}
		if run.purge == nil || run.purge.seq > run.signedSeq {
			return run.fail(ProblemDeleted, g, "records seq 1..%d are missing from the start of the chain and no signed purge record accounts for them: they were deleted", g.seq-1)
		}
		c.Notes = append(c.Notes, fmt.Sprintf("records seq 1..%d were purged by retention (purge record seq %d)", g.seq-1, run.purge.seq))
	}
	if run.headProblem != nil {
		c.Problem = run.headProblem
		return errStop
	}
	h := run.head
	if h == nil {
		if run.haveA {
			last := run.a
			return run.fail(ProblemMissingHead, &last, "no valid head marker for this instance (the .head file was deleted or is unreadable): records cut off the end could not be detected; the trail verifies up to its last signed checkpoint (seq %d)", run.signedSeq)
		}
		return nil
	}
	switch {
	case run.a.seq < h.Seq:
		last := run.a
		where := ""
		if torn != nil {
			where = " and an incomplete line"
		}
		return run.fail(ProblemTruncated, &last, "the trail ends with this record%s, but the signed head marker (%s) covers seq %d: records seq %d..%d were cut off", where, h.Time, h.Seq, run.a.seq+1, h.Seq)
	case run.a.seq > h.Seq:
		if h.Closed {
			return run.fail(ProblemInserted, run.afterHead, "the record follows the head marker written when the log was closed (seq %d): it was appended afterwards by something else", h.Seq)
		}
		c.Unsigned = run.a.seq - h.Seq
		c.Notes = append(c.Notes, fmt.Sprintf("%d record(s) after the head marker (seq %d..%d) are not yet covered by a signature: the log is running, or was killed (opening it seals them)", c.Unsigned, h.Seq+1, run.a.seq))
	}
	return nil
}
