package review

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func startQuarter(t *testing.T) (*fixture, Campaign) {
	t.Helper()
	f := newFixture(t)
	c, err := f.m.Start(context.Background(), root, "2026-Q3")
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	f, _ := startQuarter(t)
	f.clock.Set(snapAt.Add(time.Hour))
	decidedAt := snapAt.Add(time.Hour)

	tests := []struct {
		name     string
		item     string
		decision string
		note     string
		action   string
		revoked  bool
		revokes  []string // RevokeGrant calls so far
	}{
		{"keep a group role", "0003", Keep, "uses grafana daily", "", false, nil},
		{"revoke a group role: action for a human", "0002", Revoke, "no admin work this quarter",
			`remove https://idp#alice from IdP group "admins"`, false, nil},
		{"revoke a config entry by ID", "0005", Revoke, "", `remove "https://idp#dave" from roles[dba].users in the config file`, false, nil},
		{"revoke a config entry nobody used (email)", "0001", Revoke, "left the company",
			`remove "Erin@Example.com" from roles[dba].users in the config file`, false, nil},
		{"re-decide: revoke becomes keep, action cleared", "0005", Keep, "dba after all", "", false, nil},
		{"revoke a local grant: revoked at once", "0009", Revoke, "unused", "", true, []string{"lg-gina"}},
		{"revoke again: no second revocation", "0009", Revoke, "still unused", "", true, []string{"lg-gina"}},
		{"revoke a temporary grant", "0008", Revoke, "", "", true, []string{"lg-gina", "rq-frank"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			it, err := f.m.Decide(ctx, root, "2026-Q3", tc.item, tc.decision, tc.note)
			if err != nil {
				t.Fatal(err)
			}
			if it.ID != tc.item || it.Decision != tc.decision || it.DecidedBy != root || !it.DecidedAt.Equal(decidedAt) ||
				it.Note != tc.note || it.Action != tc.action || it.Revoked != tc.revoked {
				t.Fatalf("item %+v", it)
			}
			if got := f.grants.calls(); !slices.Equal(got, tc.revokes) {
				t.Fatalf("RevokeGrant calls %v, want %v", got, tc.revokes)
			}
			// The store holds what Decide returned.
			c, err := f.m.Get(ctx, "2026-Q3")
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Items[idx(tc.item)]; !reflect.DeepEqual(got, it) {
				t.Fatalf("stored %+v\nreturned %+v", got, it)
			}
		})
	}
	if _, ok := f.grants.grants["lg-gina"]; ok {
		t.Fatal("local grant still active after revoke")
	}

	t.Run("a revoked grant cannot be kept", func(t *testing.T) {
		if _, err := f.m.Decide(ctx, root, "2026-Q3", "0009", Keep, ""); !errors.Is(err, ErrRevoked) {
			t.Fatalf("err = %v, want ErrRevoked", err)
		}
	})

	t.Run("every decision is audited without the note", func(t *testing.T) {
		evs := findEvents(f.events, TypeDecide)
		if len(evs) != len(tests) {
			t.Fatalf("%d review.decide events, want %d", len(evs), len(tests))
		}
		ev := evs[4] // the re-decision
		want := map[string]string{"campaign": "2026-Q3", "item": "0005", "role": "dba", "source": "config",
			"decision": "keep", "previous": "revoke"}
		if ev.Actor != root || ev.UserID != dave || !reflect.DeepEqual(ev.Attrs, want) {
			t.Fatalf("event %+v", ev)
		}
		if evs[5].Attrs["revoked"] != "true" {
			t.Fatalf("revoke event %+v", evs[5])
		}
		for _, e := range evs {
			for _, v := range e.Attrs {
				if strings.Contains(v, "unused") || strings.Contains(v, "left the company") {
					t.Fatalf("note text in audit event %+v", e)
				}
			}
		}
	})
}

func idx(itemID string) int {
	var n int
	fmt.Sscanf(itemID, "%d", &n)
	return n - 1
}

func decideAll(t *testing.T, m *Manager, c Campaign, decision string) {
	t.Helper()
	for _, it := range c.Items {
		if _, err := m.Decide(context.Background(), root, c.Name, it.ID, decision, ""); err != nil {
			t.Fatalf("deciding %s: %v", it.ID, err)
		}
	}
}

func TestSignOff(t *testing.T) {
	ctx := context.Background()
	f, c := startQuarter(t)

	if _, err := f.m.SignOff(ctx, root, c.Name); !errors.Is(err, ErrUndecided) || !strings.Contains(err.Error(), "9 of 9") {
		t.Fatalf("sign-off with nothing decided: %v", err)
	}
	for _, it := range c.Items[:8] {
		if _, err := f.m.Decide(ctx, root, c.Name, it.ID, Keep, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.m.SignOff(ctx, root, c.Name); !errors.Is(err, ErrUndecided) || !strings.Contains(err.Error(), "1 of 9") {
		t.Fatalf("sign-off with one undecided: %v", err)
	}
	// A failed sign-off left no seal behind: decisions still work.
	if _, err := f.m.Decide(ctx, root, c.Name, "0001", Revoke, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Decide(ctx, root, c.Name, "0009", Revoke, ""); err != nil {
		t.Fatal(err)
	}
	f.clock.Set(snapAt.Add(48 * time.Hour))
	got, err := f.m.SignOff(ctx, "https://idp#ciso", c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.SignedOffBy != "https://idp#ciso" || !got.SignedOffAt.Equal(snapAt.Add(48*time.Hour)) || len(got.Items) != 9 {
		t.Fatalf("signed off %+v", got)
	}
	evs := findEvents(f.events, TypeSignOff)
	want := map[string]string{"campaign": "2026-Q3", "campaign_id": "2026-q3", "items": "9", "keep": "7", "revoke": "2",
		"revoked": "1", "actions": "1"}
	if len(evs) != 1 || evs[0].Actor != "https://idp#ciso" || !reflect.DeepEqual(evs[0].Attrs, want) {
		t.Fatalf("review.signoff events %+v", evs)
	}

	after := []struct {
		name string
		do   func() error
	}{
		{"decide", func() error { _, err := f.m.Decide(ctx, root, c.Name, "0003", Revoke, ""); return err }},
		{"re-decide the same", func() error { _, err := f.m.Decide(ctx, root, c.Name, "0002", Keep, ""); return err }},
		{"sign off again", func() error { _, err := f.m.SignOff(ctx, root, c.Name); return err }},
	}
	for _, tc := range after {
		t.Run("after sign-off/"+tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, ErrSignedOff) {
				t.Fatalf("err = %v, want ErrSignedOff", err)
			}
		})
	}
	again, err := f.m.Get(ctx, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, got) {
		t.Fatal("the campaign changed after sign-off")
	}
}

func TestRevokeFailures(t *testing.T) {
	ctx := context.Background()

	t.Run("revocation fails: decision stays, sign-off refused, retry works", func(t *testing.T) {
		f, c := startQuarter(t)
		f.grants.revokeErr = errFakeDown
		it, err := f.m.Decide(ctx, root, c.Name, "0009", Revoke, "")
		if !errors.Is(err, errFakeDown) {
			t.Fatalf("err = %v", err)
		}
		if it.Decision != Revoke || it.Revoked {
			t.Fatalf("item %+v", it)
		}
		ev := findEvents(f.events, TypeDecide)
		if len(ev) != 1 || ev[0].Reason != "grant-revoke-failed" || ev[0].Attrs["revoked"] != "false" {
			t.Fatalf("audit %+v", ev)
		}
		for _, other := range c.Items {
			if other.ID != "0009" {
				if _, err := f.m.Decide(ctx, root, c.Name, other.ID, Keep, ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := f.m.SignOff(ctx, root, c.Name); !errors.Is(err, ErrUndecided) {
			t.Fatalf("signed off with a revocation not applied: %v", err)
		}
		// Keeping is honest while the grant still exists.
		if _, err := f.m.Decide(ctx, root, c.Name, "0009", Keep, ""); err != nil {
			t.Fatal(err)
		}
		f.grants.revokeErr = nil
		if it, err := f.m.Decide(ctx, root, c.Name, "0009", Revoke, ""); err != nil || !it.Revoked {
			t.Fatalf("retry: %+v %v", it, err)
		}
		if _, err := f.m.SignOff(ctx, root, c.Name); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("grant already gone counts as revoked", func(t *testing.T) {
		f, c := startQuarter(t)
		delete(f.grants.grants, "lg-gina") // expired or revoked elsewhere meanwhile
		it, err := f.m.Decide(ctx, root, c.Name, "0009", Revoke, "")
		if err != nil || !it.Revoked {
			t.Fatalf("%+v %v", it, err)
		}
	})

	t.Run("revoked but the call reported an error", func(t *testing.T) {
		f, c := startQuarter(t)
		f.grants.goneErr = errors.New("feed publish failed")
		it, err := f.m.Decide(ctx, root, c.Name, "0008", Revoke, "")
		if err != nil || !it.Revoked {
			t.Fatalf("%+v %v", it, err)
		}
	})

	t.Run("no grants manager", func(t *testing.T) {
		f, c := startQuarter(t)
		f.m.deps.Grants = nil
		it, err := f.m.Decide(ctx, root, c.Name, "0009", Revoke, "")
		if err == nil || it.Revoked {
			t.Fatalf("%+v %v", it, err)
		}
	})

	t.Run("a revocation in flight holds the item", func(t *testing.T) {
		f, c := startQuarter(t)
		var r itemRecord
		f.st.get(t, itemKind(c.ID), "0009", &r)
		r.Decision, r.DecidedBy, r.Revoking = Revoke, "https://idp#other", snapAt
		b, _ := json.Marshal(r)
		f.st.put(itemKind(c.ID), "0009", b)
		if _, err := f.m.Decide(ctx, root, c.Name, "0009", Keep, ""); !errors.Is(err, ErrBusy) {
			t.Fatalf("err = %v, want ErrBusy", err)
		}
		// The other decider crashed: after a while the hold is stale.
		f.clock.Set(snapAt.Add(revokeStaleAfter))
		if it, err := f.m.Decide(ctx, root, c.Name, "0009", Revoke, ""); err != nil || !it.Revoked {
			t.Fatalf("%+v %v", it, err)
		}
	})
}

func TestHostileInput(t *testing.T) {
	ctx := context.Background()
	f, c := startQuarter(t)
	long := strings.Repeat("a", MaxNameLen+1)
	tests := []struct {
		name                             string
		actor, campaign, item, dec, note string
		want                             error
	}{
		{"unknown item", root, c.Name, "9999", Keep, "", ErrNotFound},
		{"item zero", root, c.Name, "0", Keep, "", ErrNotFound},
		{"item path trick", root, c.Name, "../0001", Keep, "", ErrInvalid},
		{"item with a slash", root, c.Name, "0001/x", Keep, "", ErrInvalid},
		{"item empty", root, c.Name, "", Keep, "", ErrInvalid},
		{"item too long", root, c.Name, "0000000001", Keep, "", ErrInvalid},
		{"item negative", root, c.Name, "-1", Keep, "", ErrInvalid},
		{"decision upper case", root, c.Name, "0001", "Keep", "", ErrInvalid},
		{"decision unknown", root, c.Name, "0001", "delete", "", ErrInvalid},
		{"decision empty", root, c.Name, "0001", "", "", ErrInvalid},
		{"note too long", root, c.Name, "0001", Keep, strings.Repeat("x", MaxNoteLen+1), ErrInvalid},
		{"note with escape", root, c.Name, "0001", Keep, "ok\x1b[31m", ErrInvalid},
		{"note with newline", root, c.Name, "0001", Keep, "a\nb", ErrInvalid},
		{"note not UTF-8", root, c.Name, "0001", Keep, "\xff\xfe", ErrInvalid},
		{"note with a C1 control", root, c.Name, "0001", Keep, "a\u0085b", ErrInvalid},
		{"actor empty", "", c.Name, "0001", Keep, "", ErrInvalid},
		{"actor blank", "  ", c.Name, "0001", Keep, "", ErrInvalid},
		{"actor with NUL", "a\x00b", c.Name, "0001", Keep, "", ErrInvalid},
		{"campaign not found", root, "2025-Q1", "0001", Keep, "", ErrNotFound},
		{"campaign path trick", root, "../2026-Q3", "0001", Keep, "", ErrInvalid},
		{"campaign dot-dot", root, "..", "0001", Keep, "", ErrInvalid},
		{"campaign with slash", root, "2026/Q3", "0001", Keep, "", ErrInvalid},
		{"campaign too long", root, long, "0001", Keep, "", ErrInvalid},
		{"campaign empty", root, "", "0001", Keep, "", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run("decide/"+tc.name, func(t *testing.T) {
			if _, err := f.m.Decide(ctx, tc.actor, tc.campaign, tc.item, tc.dec, tc.note); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if n := len(findEvents(f.events, TypeDecide)); n != 0 {
		t.Fatalf("%d decide events for refused input", n)
	}
	t.Run("decide/note at the limit", func(t *testing.T) {
		if _, err := f.m.Decide(ctx, root, c.Name, "0001", Keep, strings.Repeat("é", MaxNoteLen/2)); err != nil {
			t.Fatal(err)
		}
	})

	names := []struct {
		name, campaign string
		want           error
	}{
		{"duplicate", "2026-Q3", ErrExists},
		{"duplicate in another case", "2026-q3", ErrExists},
		{"dot", ".", ErrInvalid},
		{"dot-dot", "..", ErrInvalid},
		{"leading dot", ".hidden", ErrInvalid},
		{"leading dash", "-rf", ErrInvalid},
		{"path", "../../etc/passwd", ErrInvalid},
		{"backslash", `a\b`, ErrInvalid},
		{"space", "Q3 2026", ErrInvalid},
		{"NUL", "q3\x00", ErrInvalid},
		{"unicode", "Q3–2026", ErrInvalid},
		{"too long", long, ErrInvalid},
		{"empty", "", ErrInvalid},
		{"html", "<b>q3</b>", ErrInvalid},
	}
	for _, tc := range names {
		t.Run("start/"+tc.name, func(t *testing.T) {
			if _, err := f.m.Start(ctx, root, tc.campaign); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err := f.m.Get(ctx, tc.campaign); tc.want == ErrInvalid && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Get: err = %v", err)
			}
		})
	}
	if n := len(findEvents(f.events, TypeStart)); n != 1 {
		t.Fatalf("%d start events", n)
	}
	t.Run("signoff/not found", func(t *testing.T) {
		if _, err := f.m.SignOff(ctx, root, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("report/bad format", func(t *testing.T) {
		var sb strings.Builder
		for _, format := range []string{"", "pdf", "CSV", "html "} {
			if err := f.m.Report(ctx, root, c.Name, format, &sb); !errors.Is(err, ErrInvalid) {
				t.Fatalf("format %q: err = %v", format, err)
			}
		}
		if sb.Len() != 0 || len(findEvents(f.events, TypeReport)) != 0 {
			t.Fatal("a refused report wrote or audited something")
		}
	})
	t.Run("corrupt item record", func(t *testing.T) {
		f.st.put(itemKind(c.ID), "0004", []byte("{not json"))
		if _, err := f.m.Get(ctx, c.Name); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want a store error", err)
		}
		if _, err := f.m.Decide(ctx, root, c.Name, "0004", Keep, ""); err == nil || errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLongNamesGetDistinctShortIDs(t *testing.T) {
	a := strings.Repeat("a", MaxNameLen)
	b := strings.Repeat("a", MaxNameLen-1) + "b"
	sa, sb := Slug(a), Slug(b)
	if sa == sb || len(itemKind(sa)) > maxKindLen || len(itemKind(sb)) > maxKindLen {
		t.Fatalf("slugs %q %q", sa, sb)
	}
	if Slug(sa) != sa || CheckName(sa) != nil {
		t.Fatalf("slug %q is not a fixed point / valid name", sa)
	}
	f := newFixture(t)
	c, err := f.m.Start(context.Background(), root, a)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{a, strings.ToUpper(a), c.ID} {
		if got, err := f.m.Get(context.Background(), key); err != nil || got.Name != a {
			t.Fatalf("Get(%q) = %v, %v", key, got.Name, err)
		}
	}
}

// TestConcurrentDeciders: two instances (managers sharing one store)
// decide every item at once, several times; every call succeeds or is
// retried by the CAS loop, and each item ends with one complete decision.
func TestConcurrentDeciders(t *testing.T) {
	ctx := context.Background()
	f, c := startQuarter(t)
	f.st.yield = true
	other, err := New(Config{}, f.m.deps)
	if err != nil {
		t.Fatal(err)
	}
	managers := []*Manager{f.m, other}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 4 {
		m := managers[i%2]
		actor := fmt.Sprintf("https://idp#admin%d", i)
		wg.Go(func() {
			for _, it := range c.Items {
				if it.Source.grantSource() {
					continue
				}
				dec := Keep
				if i%2 == 1 {
					dec = Revoke
				}
				if _, err := m.Decide(ctx, actor, c.Name, it.ID, dec, "by "+actor); err != nil {
					errs <- fmt.Errorf("%s on %s: %w", actor, it.ID, err)
				}
			}
		})
	}
	// Both instances revoke the same grant at once: one revocation wins,
	// the other finds it gone; both calls succeed.
	for _, m := range managers {
		wg.Go(func() {
			if _, err := m.Decide(ctx, root, c.Name, "0009", Revoke, ""); err != nil && !errors.Is(err, ErrBusy) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := f.m.Get(ctx, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range got.Items {
		if it.Source == SourceTemporary {
			continue
		}
		if it.Source == SourceLocal {
			if !it.Revoked || it.Decision != Revoke {
				t.Errorf("grant item %+v", it)
			}
			continue
		}
		// Decision, decider and note belong to one call, never mixed.
		odd := strings.HasSuffix(it.DecidedBy, "1") || strings.HasSuffix(it.DecidedBy, "3")
		if it.Note != "by "+it.DecidedBy || (it.Decision == Revoke) != odd || (it.Action != "") != odd {
			t.Errorf("mixed decision %+v", it)
		}
	}
	if n := len(findEvents(f.events, TypeDecide)); n < 4*7 {
		t.Fatalf("%d decide events, want at least %d", n, 4*7)
	}
}

// TestSignOffRacesDecisions: while one admin signs off, others keep
// re-deciding. Whatever the interleaving, nothing changes once the
// sign-off has succeeded, and a decision is either part of it or refused.
func TestSignOffRacesDecisions(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		f, c := startQuarter(t)
		decideAll(t, f.m, c, Keep)
		f.st.yield = true
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			accepted []Item
			signed   Campaign
			signErr  error
		)
		for i := range 3 {
			wg.Go(func() {
				for k := range 10 {
					id := c.Items[(i*3+k)%7].ID // group and config items only
					dec := []string{Keep, Revoke}[(i+k)%2]
					it, err := f.m.Decide(ctx, fmt.Sprintf("https://idp#a%d", i), c.Name, id, dec, fmt.Sprintf("r%d k%d", round, k))
					switch {
					case err == nil:
						mu.Lock()
						accepted = append(accepted, it)
						mu.Unlock()
					case errors.Is(err, ErrSignedOff), errors.Is(err, ErrBusy):
					default:
						t.Error(err)
					}
				}
			})
		}
		wg.Go(func() { signed, signErr = f.m.SignOff(ctx, root, c.Name) })
		wg.Wait()
		if signErr != nil {
			if !errors.Is(signErr, ErrBusy) && !errors.Is(signErr, ErrUndecided) {
				t.Fatal(signErr)
			}
			continue
		}
		final, err := f.m.Get(ctx, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(final, signed) {
			t.Fatalf("round %d: the campaign changed after sign-off", round)
		}
		// Each signed item carries the initial keep or one accepted
		// decision, whole.
		notes := map[string]bool{}
		for _, it := range accepted {
			notes[it.ID+"|"+it.DecidedBy+"|"+it.Decision+"|"+it.Note] = true
		}
		for _, it := range final.Items[:7] {
			if !(it.DecidedBy == root && it.Note == "" && it.Decision == Keep) && !notes[it.ID+"|"+it.DecidedBy+"|"+it.Decision+"|"+it.Note] {
				t.Fatalf("round %d: item %+v is no accepted decision", round, it)
			}
		}
	}
}

func TestStaleSignOff(t *testing.T) {
	ctx := context.Background()
	f, c := startQuarter(t)
	decideAll(t, f.m, c, Keep)
	// A sign-off crashed after sealing item 0003: the header carries its
	// token and the item its seal.
	var h header
	f.st.get(t, KindCampaign, c.ID, &h)
	h.Signing, h.SigningAt = "deadbeef", snapAt
	hb, _ := json.Marshal(h)
	f.st.put(KindCampaign, c.ID, hb)
	var r itemRecord
	f.st.get(t, itemKind(c.ID), "0003", &r)
	r.Seal = "deadbeef"
	rb, _ := json.Marshal(r)
	f.st.put(itemKind(c.ID), "0003", rb)

	if _, err := f.m.Decide(ctx, root, c.Name, "0003", Revoke, ""); !errors.Is(err, ErrBusy) {
		t.Fatalf("decide during a live sign-off: %v", err)
	}
	if _, err := f.m.SignOff(ctx, root, c.Name); !errors.Is(err, ErrBusy) {
		t.Fatalf("second sign-off during a live one: %v", err)
	}
	f.clock.Set(snapAt.Add(signingStaleAfter))
	// The stale seal is broken by a decision, which also cancels the
	// stale sign-off in the header.
	if it, err := f.m.Decide(ctx, root, c.Name, "0003", Revoke, ""); err != nil || it.Decision != Revoke {
		t.Fatalf("%+v %v", it, err)
	}
	h = header{}
	f.st.get(t, KindCampaign, c.ID, &h)
	if h.Signing != "" {
		t.Fatalf("stale sign-off not cleared: %+v", h)
	}
	r = itemRecord{}
	f.st.get(t, itemKind(c.ID), "0003", &r)
	if r.Seal != "" {
		t.Fatal("stale seal kept")
	}

	// A stale sign-off is taken over by the next one.
	h.Signing, h.SigningAt = "cafe", snapAt
	hb, _ = json.Marshal(h)
	f.st.put(KindCampaign, c.ID, hb)
	got, err := f.m.SignOff(ctx, root, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.SignedOffBy != root {
		t.Fatalf("%+v", got)
	}
}

// TestLostReplies: a store that retried a write whose reply was lost
// reports false although the write landed. Every step must still
// recognise its own write instead of refusing or holding items.
func TestLostReplies(t *testing.T) {
	ctx := context.Background()
	for _, every := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("every %d", every), func(t *testing.T) {
			f := newFixture(t)
			f.st.lostReplies = every
			c, err := f.m.Start(ctx, root, "2026-Q3")
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range c.Items {
				dec := Keep
				if it.Source == SourceLocal || it.Source == SourceIdPGroup {
					dec = Revoke
				}
				got, err := f.m.Decide(ctx, root, c.Name, it.ID, dec, "")
				if err != nil {
					t.Fatalf("%s: %v", it.ID, err)
				}
				if got.Decision != dec || got.Revoked != (it.Source == SourceLocal) {
					t.Fatalf("%+v", got)
				}
			}
			signed, err := f.m.SignOff(ctx, root, c.Name)
			if err != nil || signed.SignedOffBy != root {
				t.Fatalf("%+v %v", signed, err)
			}
			if n := len(findEvents(f.events, TypeSignOff)); n != 1 {
				t.Fatalf("%d sign-off events", n)
			}
		})
	}
}
