package review

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/portcullis/portcullis/authz/store"
)

// header is the campaign record (kind "review"). Items is the number of
// item records Start writes; fewer found means the start was interrupted.
// Signing/SigningAt mark a sign-off in progress (the token its seals
// carry), so that decisions wait and a crashed sign-off can be taken over.
type header struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"created_at"`
	Due         time.Time `json:"due"`
	PeriodStart time.Time `json:"period_start"`
	CreatedBy   string    `json:"created_by"`
	SignedOffBy string    `json:"signed_off_by,omitempty"`
	SignedOffAt time.Time `json:"signed_off_at,omitzero"`
	Items       int       `json:"items"`
	Signing     string    `json:"signing,omitempty"`
	SigningAt   time.Time `json:"signing_at,omitzero"`
}

func (h *header) signedOff() bool { return !h.SignedOffAt.IsZero() }

// signing reports a sign-off in progress that is not stale.
func (h *header) signing(now time.Time) bool {
	return h.Signing != "" && now.Sub(h.SigningAt) < signingStaleAfter
}

// itemRecord is an item as stored (kind "review-item.<campaign ID>").
// Seal is the token of the sign-off that sealed it; Revoking marks a grant
// revocation in flight (its decider holds the item until it is applied).
type itemRecord struct {
	Item
	Seal     string    `json:"seal,omitempty"`
	Revoking time.Time `json:"revoking,omitzero"`
}

// ready reports whether an item may be signed off: decided, and a revoked
// grant actually revoked.
func (r *itemRecord) ready() bool {
	if r.Decision == "" || !r.Revoking.IsZero() {
		return false
	}
	return r.Decision != Revoke || !r.Source.grantSource() || r.Revoked
}

func (h *header) campaign(items []Item) Campaign {
	return Campaign{
		ID: h.ID, Name: h.Name, CreatedAt: h.CreatedAt, Due: h.Due, PeriodStart: h.PeriodStart,
		CreatedBy: h.CreatedBy, SignedOffBy: h.SignedOffBy, SignedOffAt: h.SignedOffAt, Items: items,
	}
}

// corrupt reports a record that does not decode: the store is damaged, and
// treating it as absent would hide that.
func corrupt(what string, err error) error {
	return fmt.Errorf("%w: review: %s does not decode: %v", store.ErrUnavailable, what, err)
}

// getHeader loads the campaign named nameOrID and its raw bytes (for
// SwapRecord).
func (m *Manager) getHeader(ctx context.Context, nameOrID string) (header, []byte, error) {
	if err := CheckName(nameOrID); err != nil {
		return header{}, nil, err
	}
	return m.getHeaderByID(ctx, Slug(nameOrID))
}

func (m *Manager) getHeaderByID(ctx context.Context, id string) (header, []byte, error) {
	raw, err := m.deps.Store.GetRecord(ctx, KindCampaign, id)
	if errors.Is(err, store.ErrNotFound) {
		return header{}, nil, fmt.Errorf("%w: campaign", ErrNotFound)
	} else if err != nil {
		return header{}, nil, err
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return header{}, nil, corrupt("campaign "+id, err)
	}
	// Items and writes go by h.ID: a header under another key (or
	// "null", which decodes to no ID) would act on another campaign.
	if h.ID != id {
		return header{}, nil, corrupt("campaign "+id, errors.New("ID does not match its key"))
	}
	return h, raw, nil
}

// swapHeader replaces old with h; false when the header changed meanwhile.
func (m *Manager) swapHeader(ctx context.Context, old []byte, h header) ([]byte, bool, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, false, err
	}
	ok, err := m.swap(ctx, KindCampaign, h.ID, old, b)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, fmt.Errorf("%w: campaign", ErrNotFound)
	}
	return b, ok, err
}

func (m *Manager) getItem(ctx context.Context, campaignID, itemID string) (itemRecord, []byte, error) {
	raw, err := m.deps.Store.GetRecord(ctx, itemKind(campaignID), itemID)
	if errors.Is(err, store.ErrNotFound) {
		return itemRecord{}, nil, fmt.Errorf("%w: item", ErrNotFound)
	} else if err != nil {
		return itemRecord{}, nil, err
	}
	var r itemRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return itemRecord{}, nil, corrupt("item "+itemID, err)
	}
	return r, raw, nil
}

func (m *Manager) swapItem(ctx context.Context, campaignID string, old []byte, r itemRecord) (bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	ok, err := m.swap(ctx, itemKind(campaignID), r.ID, old, b)
	if errors.Is(err, store.ErrNotFound) {
		return false, fmt.Errorf("%w: item", ErrNotFound)
	}
	return ok, err
}

// swap is SwapRecord for writes that must know whether they landed. A
// backend may retry a write whose reply was lost and then report false
// although the first attempt took effect (see store.Records): a false is
// ours after all when the record now holds exactly our bytes. Our bytes
// carry our actor and a nanosecond time (or a random token), so another
// writer's bytes are never the same unless they say the same thing.
func (m *Manager) swap(ctx context.Context, kind, id string, old, new []byte) (bool, error) {
	ok, err := m.deps.Store.SwapRecord(ctx, kind, id, old, new)
	if err != nil || ok {
		return ok, err
	}
	return m.holds(ctx, kind, id, new)
}

// create is CreateRecord with the same care as swap.
func (m *Manager) create(ctx context.Context, kind, id string, data []byte) (bool, error) {
	ok, err := m.deps.Store.CreateRecord(ctx, kind, id, data)
	if err != nil || ok {
		return ok, err
	}
	return m.holds(ctx, kind, id, data)
}

func (m *Manager) holds(ctx context.Context, kind, id string, data []byte) (bool, error) {
	cur, err := m.deps.Store.GetRecord(ctx, kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return bytes.Equal(cur, data), nil
}

// updateItem runs a Get → change → Swap loop on one item. change returns
// errNoChange to stop without writing.
func (m *Manager) updateItem(ctx context.Context, campaignID, itemID string, change func(*itemRecord) error) (itemRecord, error) {
	for range defaultSwapTries {
		r, raw, err := m.getItem(ctx, campaignID, itemID)
		if err != nil {
			return itemRecord{}, err
		}
		if err := change(&r); err != nil {
			if errors.Is(err, errNoChange) {
				return r, nil
			}
			return itemRecord{}, err
		}
		ok, err := m.swapItem(ctx, campaignID, raw, r)
		if err != nil {
			return itemRecord{}, err
		}
		if ok {
			return r, nil
		}
		if err := ctx.Err(); err != nil {
			return itemRecord{}, err
		}
	}
	return itemRecord{}, ErrBusy
}

var errNoChange = errors.New("no change")

// listItems loads every item of a campaign, sorted by ID.
func (m *Manager) listItems(ctx context.Context, h *header) ([]itemRecord, error) {
	raw, err := m.deps.Store.ListRecords(ctx, itemKind(h.ID))
	if err != nil {
		return nil, err
	}
	out := make([]itemRecord, 0, len(raw))
	for id, b := range raw {
		var r itemRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, corrupt("item "+id, err)
		}
		if r.ID != id {
			return nil, corrupt("item "+id, errors.New("ID does not match its key"))
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b itemRecord) int {
		return cmp.Or(cmp.Compare(len(a.ID), len(b.ID)), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

func publicItems(rs []itemRecord) []Item {
	out := make([]Item, len(rs))
	for i, r := range rs {
		out[i] = r.Item
	}
	return out
}

// Get returns the campaign named (or with the ID) nameOrID.
func (m *Manager) Get(ctx context.Context, nameOrID string) (Campaign, error) {
	h, _, err := m.getHeader(ctx, nameOrID)
	if err != nil {
		return Campaign{}, err
	}
	return m.load(ctx, &h)
}

func (m *Manager) load(ctx context.Context, h *header) (Campaign, error) {
	items, err := m.listItems(ctx, h)
	if err != nil {
		return Campaign{}, err
	}
	if len(items) != h.Items {
		return Campaign{}, fmt.Errorf("%w (%d of %d items)", ErrIncomplete, len(items), h.Items)
	}
	return h.campaign(publicItems(items)), nil
}

// List returns every complete campaign, newest first. Campaigns whose
// start was interrupted are left out here; Status names them.
func (m *Manager) List(ctx context.Context) ([]Campaign, error) {
	hs, err := m.headers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Campaign, 0, len(hs))
	for i := range hs {
		c, err := m.load(ctx, &hs[i])
		if errors.Is(err, ErrIncomplete) {
			continue
		} else if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// headers lists every campaign header, newest first.
func (m *Manager) headers(ctx context.Context) ([]header, error) {
	raw, err := m.deps.Store.ListRecords(ctx, KindCampaign)
	if err != nil {
		return nil, err
	}
	hs := make([]header, 0, len(raw))
	for id, b := range raw {
		var h header
		if err := json.Unmarshal(b, &h); err != nil {
			return nil, corrupt("campaign "+id, err)
		}
		if h.ID != id {
			return nil, corrupt("campaign "+id, errors.New("ID does not match its key"))
		}
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b header) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return hs, nil
}
