package access

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// Fuzzing of the stored-record decoders. Records come from a shared store
// that other instances (and, after a crash or an operator's mistake,
// nobody sane) wrote: whatever bytes are there, decoding must not panic,
// a record it accepts must survive a re-encode unchanged, and a record it
// refuses must grant nothing anywhere (cache, reconcile, API listings).
// Seeds, including every input a fuzzing run found interesting, are in
// testdata/fuzz/<FuzzName>/ and replay on every `go test`.

// fuzzNow is the instant the fuzzed managers live at (the seeds' requests
// and grants are placed around it).
var fuzzNow = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// Witness grant: a valid local grant stored next to the fuzzed record, so
// a corrupt neighbour that broke the whole reload would show.
const (
	witnessID   = "witnessgrantaaaaaaaaaaaaaa"
	witnessUser = "https://witness|w"
	witnessRole = "witness-role"
)

func witnessGrant(t *testing.T) []byte {
	t.Helper()
	b, err := encode(Grant{ID: witnessID, UserID: witnessUser, Role: witnessRole, Source: SourceLocal,
		Start: fuzzNow.Add(-24 * time.Hour), CreatedBy: "local-admin"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// idOf is the "id" field of data when it has one, so the fuzzer also
// explores records stored under their own ID.
func idOf(data []byte) string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(data, &v)
	return v.ID
}

// fuzzManager is a manager on a fresh in-memory store at fuzzNow, with
// auditor reads needing an approved request.
func fuzzManager(t *testing.T) (*Manager, *memStore, *audit.Memory) {
	t.Helper()
	mem := newMemStore()
	cfg := testConfig()
	cfg.AuditRead = AuditReadConfig{Role: "auditor", RequireApproval: true}
	ev := &audit.Memory{}
	m, err := New(cfg, Deps{Store: mem, Audit: ev, Now: func() time.Time { return fuzzNow }})
	if err != nil {
		t.Fatal(err)
	}
	return m, mem, ev
}

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("%s: error %v is not ErrCorrupt wrapping store.ErrUnavailable", what, err)
	}
}

// cachedCount is how many grants the manager's cache holds.
func cachedCount(m *Manager) int {
	n := 0
	for _, gs := range m.snap.Load().byUser {
		n += len(gs)
	}
	return n
}

// allGrantsDecode fails unless every stored grant record decodes: the
// manager itself must never write one the cache would skip.
func allGrantsDecode(t *testing.T, mem *memStore, what string) {
	t.Helper()
	raw, _ := mem.ListRecords(context.Background(), KindGrant)
	for id, b := range raw {
		if _, err := decodeGrant(id, b); err != nil {
			t.Fatalf("%s: the manager wrote grant %q that does not decode: %v\n%s", what, id, err, b)
		}
	}
}

func FuzzGrantRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, id string, ownID bool) {
		if ownID {
			id = idOf(data)
		}
		if id == witnessID {
			return
		}
		g, derr := decodeGrant(id, data)
		if derr != nil {
			wantCorrupt(t, "decodeGrant", derr)
		} else {
			checkGrant(t, id, g)
		}

		ctx := context.Background()
		m, mem, _ := fuzzManager(t)
		mem.put(KindGrant, id, slices.Clone(data))
		mem.put(KindGrant, witnessID, witnessGrant(t))
		if err := m.Refresh(ctx); err != nil {
			t.Fatalf("reload with one odd record: %v", err)
		}
		// One bad record never takes the others down.
		if !slices.Contains(m.Roles(witnessUser, nil, fuzzNow), witnessRole) {
			t.Fatalf("the witness grant is not enforced next to %q", data)
		}
		listed, err := m.ListGrants(ctx)
		if err != nil {
			t.Fatalf("ListGrants: %v", err)
		}
		if derr != nil {
			// Refused: it grants nothing, anywhere.
			if n := cachedCount(m); n != 1 {
				t.Fatalf("a refused record (%v) put %d grants in the cache, want the witness only", derr, n)
			}
			if len(listed) != 1 || listed[0].ID != witnessID {
				t.Fatalf("a refused record is listed: %+v", listed)
			}
			// An admin can still clear it.
			err := m.RevokeGrant(ctx, "local-admin", id, "")
			switch {
			case !validID(id):
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("RevokeGrant(%q) = %v, want ErrInvalid", id, err)
				}
			case err != nil:
				t.Fatalf("RevokeGrant of a corrupt record: %v", err)
			case mem.raw(KindGrant, id) != nil:
				t.Fatalf("RevokeGrant left the corrupt record in place")
			}
			return
		}

		// Accepted: enforced exactly from Start (inclusive) to Expires
		// (exclusive), unless the witness holds the same role already.
		if g.UserID == witnessUser && g.Role == witnessRole {
			return
		}
		if n := cachedCount(m); n != 2 {
			t.Fatalf("cache holds %d grants, want 2", n)
		}
		has := func(at time.Time) bool { return slices.Contains(m.Roles(g.UserID, nil, at), g.Role) }
		if !has(g.Start) {
			t.Fatalf("grant %+v not enforced at its start", g)
		}
		if has(g.Start.Add(-time.Nanosecond)) {
			t.Fatalf("grant %+v enforced before its start", g)
		}
		if !g.Expires.IsZero() && has(g.Expires) {
			t.Fatalf("grant %+v enforced at its expiry", g)
		}
		until, ok := m.GrantedUntil(g.UserID, g.Role, g.Start)
		if !ok || !until.Equal(g.Expires) {
			t.Fatalf("GrantedUntil = %v, %v; want %v", until, ok, g.Expires)
		}
		v := m.CanReadAudit(g.UserID, nil, g.Start)
		if want := g.Role == "auditor" && g.Source == SourceTemporary; v.Allow != want {
			t.Fatalf("CanReadAudit at the start of %+v = %+v, want allow %v", g, v, want)
		}
		if in := slices.ContainsFunc(listed, func(l Grant) bool { return l.ID == id }); in != g.Active(fuzzNow) {
			t.Fatalf("ListGrants lists %+v: %v, active now: %v", g, in, g.Active(fuzzNow))
		}
	})
}

// checkGrant: an accepted grant satisfies the package's rules and
// re-encodes to a record that decodes to the same bytes again.
func checkGrant(t *testing.T, id string, g Grant) {
	t.Helper()
	switch {
	case g.ID != id || !validID(id):
		t.Fatalf("accepted grant %q under key %q", g.ID, id)
	case !validUserID(g.UserID) || !validName(g.Role):
		t.Fatalf("accepted grant with user %q role %q", g.UserID, g.Role)
	case g.Start.IsZero():
		t.Fatalf("accepted grant without a start")
	case g.Source != SourceLocal && g.Source != SourceTemporary:
		t.Fatalf("accepted grant of source %q", g.Source)
	case g.Source == SourceTemporary && (g.Expires.IsZero() || g.Expires.Sub(g.Start) > MaxGrantDuration || g.RequestID != g.ID):
		t.Fatalf("accepted temporary grant without a bounded end: %+v", g)
	case !g.Expires.IsZero() && !g.Expires.After(g.Start):
		t.Fatalf("accepted grant ending before it starts: %+v", g)
	}
	b, err := encode(g)
	if err != nil {
		t.Fatalf("accepted grant does not re-encode: %v", err)
	}
	g2, err := decodeGrant(id, b)
	if err != nil {
		t.Fatalf("re-encoded grant does not decode: %v\n%s", err, b)
	}
	if b2, err := encode(g2); err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("grant encoding is not stable:\n%s\n%s (%v)", b, b2, err)
	}
}

func FuzzRequestRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, id string, ownID bool) {
		if ownID {
			id = idOf(data)
		}
		r, derr := decodeRequest(id, data)
		if derr != nil {
			wantCorrupt(t, "decodeRequest", derr)
		} else {
			checkRequest(t, id, r)
		}

		ctx := context.Background()
		m, mem, _ := fuzzManager(t)
		mem.put(KindRequest, id, slices.Clone(data))
		if validID(id) {
			got, err := m.GetRequest(ctx, id)
			switch {
			case derr != nil:
				wantCorrupt(t, "GetRequest", err)
			case err != nil:
				t.Fatalf("GetRequest of an accepted record: %v", err)
			case got.ID != id:
				t.Fatalf("GetRequest returned %q for %q", got.ID, id)
			}
		}
		if derr != nil {
			// Refused: nobody can act on it, and it never becomes a grant.
			for _, who := range []Person{bob, carol, dave} {
				if _, err := m.Approve(ctx, who, id, ""); err == nil {
					t.Fatalf("%s approved a corrupt request", who.UserID)
				}
				if _, err := m.Deny(ctx, who, id, ""); err == nil {
					t.Fatalf("%s denied a corrupt request", who.UserID)
				}
			}
			m.tick(ctx)
			if n := mem.count(KindGrant); n != 0 {
				t.Fatalf("a corrupt request produced %d grant records", n)
			}
			if n := cachedCount(m); n != 0 {
				t.Fatalf("a corrupt request put %d grants in the cache", n)
			}
			if !bytes.Equal(mem.raw(KindRequest, id), data) {
				t.Fatalf("a corrupt request record was rewritten")
			}
			if rs, err := m.ListRequests(ctx); err != nil || len(rs) != 0 {
				t.Fatalf("ListRequests with only a corrupt record: %v, %+v", err, rs)
			}
			if validID(id) {
				revokeBesideCorrupt(t, m, mem, id)
			}
			return
		}

		// Accepted: Run's reconcile writes the grant of an approved,
		// unrevoked request only while it runs (with a margin), and only
		// ever a grant that decodes.
		want := false
		if r.State == StateApproved && r.Revoked == nil {
			g := grantFor(r)
			_, encErr := encode(g)
			want = encErr == nil && g.Expires.Sub(fuzzNow) > reconcileMargin && !fuzzNow.Before(g.Start)
		}
		m.tick(ctx)
		allGrantsDecode(t, mem, "reconcile")
		gb := mem.raw(KindGrant, id)
		if (gb != nil) != want {
			t.Fatalf("after a tick the grant of %+v exists: %v, want %v", r, gb != nil, want)
		}
		if want && !slices.Contains(m.Roles(r.UserID, nil, fuzzNow), r.Role) {
			t.Fatalf("reconciled grant of %+v not enforced", r)
		}
		// Whatever state it is in, deciding it again keeps the store sane.
		for _, who := range []Person{dave, carol, bob} {
			_, _ = m.Approve(ctx, who, id, "fuzz")
		}
		allGrantsDecode(t, mem, "approve")
		if b := mem.raw(KindRequest, id); b != nil {
			if _, err := decodeRequest(id, b); err != nil {
				t.Fatalf("the manager rewrote an accepted request into one that does not decode: %v\nbefore %s\nafter  %s", err, data, b)
			}
		}
	})
}

// revokeBesideCorrupt: the grant of a request whose record is damaged
// (the grant was written when it was still readable) can still be
// revoked, and stays revoked: revocation must never depend on the
// request record being readable.
func revokeBesideCorrupt(t *testing.T, m *Manager, mem *memStore, id string) {
	t.Helper()
	ctx := context.Background()
	b, err := encode(Grant{ID: id, UserID: alice.UserID, Role: "db-admin", Source: SourceTemporary, RequestID: id,
		Start: fuzzNow.Add(-time.Hour), Expires: fuzzNow.Add(time.Hour), CreatedBy: bob.UserID})
	if err != nil {
		t.Fatal(err)
	}
	mem.put(KindGrant, id, b)
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.Roles(alice.UserID, nil, fuzzNow), "db-admin") {
		t.Fatalf("the grant beside a corrupt request is not enforced")
	}
	if err := m.RevokeGrant(ctx, "local-admin", id, "fuzz"); err != nil {
		t.Fatalf("RevokeGrant of a grant whose request record is corrupt: %v", err)
	}
	m.tick(ctx)
	if mem.raw(KindGrant, id) != nil || slices.Contains(m.Roles(alice.UserID, nil, fuzzNow), "db-admin") {
		t.Fatalf("the grant beside a corrupt request survived its revocation")
	}
}

// checkRequest: an accepted request satisfies the package's rules,
// re-encodes stably, and (approved) yields a grant that decodes.
func checkRequest(t *testing.T, id string, r Request) {
	t.Helper()
	switch {
	case r.ID != id || !validID(id):
		t.Fatalf("accepted request %q under key %q", r.ID, id)
	case !validUserID(r.UserID) || !validName(r.Role):
		t.Fatalf("accepted request with user %q role %q", r.UserID, r.Role)
	case r.Duration <= 0 || r.Duration > MaxGrantDuration:
		t.Fatalf("accepted request of duration %v", r.Duration)
	case r.Needed < 1 || r.Needed > MaxApprovals || len(r.Approvals) > MaxApprovals:
		t.Fatalf("accepted request needing %d with %d approvals", r.Needed, len(r.Approvals))
	case r.State == StatePending && len(r.Approvals) >= r.Needed:
		t.Fatalf("accepted pending request that already has %d of %d approvals", len(r.Approvals), r.Needed)
	case r.State == StateApproved && (len(r.Approvals) == 0 || r.GrantID != r.ID):
		t.Fatalf("accepted approved request without approvals or grant ID: %+v", r)
	}
	if !slices.Contains([]State{StatePending, StateApproved, StateDenied, StateExpired, StateCancelled}, r.State) {
		t.Fatalf("accepted request in state %q", r.State)
	}
	for _, a := range r.Approvals {
		if a.UserID == r.UserID {
			t.Fatalf("accepted request approved by its requester")
		}
	}
	_ = r.view(fuzzNow)
	b, err := encode(requestRecord{Request: r})
	if err != nil {
		t.Fatalf("accepted request does not re-encode: %v", err)
	}
	r2, err := decodeRequest(id, b)
	if err != nil {
		t.Fatalf("re-encoded request does not decode: %v\n%s", err, b)
	}
	if b2, err := encode(requestRecord{Request: r2}); err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("request encoding is not stable:\n%s\n%s (%v)", b, b2, err)
	}
	if r.State == StateApproved {
		g := grantFor(r)
		if gb, err := encode(g); err == nil {
			if _, err := decodeGrant(id, gb); err != nil {
				t.Fatalf("the grant of an accepted approved request does not decode: %v\n%s", err, gb)
			}
		}
	}
}
