package review

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// Decide records keep or revoke for one item. An item may be decided again
// until the campaign is signed off (each decision is audited). Revoking a
// local or temporary grant revokes it at once; revoking a group membership
// or a config entry sets the item's Action, the change a human must make.
// A revoked grant cannot be kept afterwards (ErrRevoked): it is gone.
func (m *Manager) Decide(ctx context.Context, actor, campaign, itemID, decision, note string) (Item, error) {
	if err := checkText("actor", actor, maxActorLen, true); err != nil {
		return Item{}, err
	}
	if err := checkItemID(itemID); err != nil {
		return Item{}, err
	}
	if decision != Keep && decision != Revoke {
		return Item{}, fmt.Errorf("%w: decision must be %q or %q", ErrInvalid, Keep, Revoke)
	}
	if err := checkText("note", note, MaxNoteLen, false); err != nil {
		return Item{}, err
	}
	h, _, err := m.getHeader(ctx, campaign)
	if err != nil {
		return Item{}, err
	}
	now := m.now()
	switch {
	case h.signedOff():
		return Item{}, ErrSignedOff
	case h.signing(now):
		return Item{}, ErrBusy
	}
	var (
		previous string
		revoke   bool
	)
	r, err := m.updateItem(ctx, h.ID, itemID, func(r *itemRecord) error {
		if r.Seal != "" {
			if err := m.breakSeal(ctx, h.ID, r.Seal, now); err != nil {
				return err
			}
			r.Seal = ""
		}
		if !r.Revoking.IsZero() && now.Sub(r.Revoking) < revokeStaleAfter {
			return ErrBusy
		}
		if r.Revoked && decision == Keep {
			return ErrRevoked
		}
		previous = r.Decision
		revoke = decision == Revoke && r.Source.grantSource() && !r.Revoked
		r.Decision, r.DecidedBy, r.DecidedAt, r.Note = decision, actor, now, note
		r.Revoking = time.Time{}
		if revoke {
			r.Revoking = now // hold the item until the revocation is applied
		}
		r.Action = action(&r.Item, decision)
		return nil
	})
	if err != nil {
		return Item{}, err
	}
	ev := audit.Event{Type: TypeDecide, Actor: actor, UserID: r.UserID, Attrs: map[string]string{
		"campaign": h.Name, "item": r.ID, "role": r.Role, "source": string(r.Source),
		"decision": decision, "previous": previous,
	}}
	if revoke {
		r, err = m.applyRevoke(ctx, actor, h, r)
		ev.Attrs["revoked"] = strconv.FormatBool(r.Revoked)
		if err != nil {
			ev.Reason = "grant-revoke-failed"
			m.emit(ctx, ev)
			return r.Item, err
		}
	}
	m.emit(ctx, ev)
	return r.Item, nil
}

// action is what a human must do after deciding it for it.
func action(it *Item, decision string) string {
	if decision != Revoke {
		return ""
	}
	who := it.UserID
	if who == "" {
		who = it.Email
	}
	switch it.Source {
	case SourceIdPGroup:
		return fmt.Sprintf("remove %s from IdP group %s", who, strconv.Quote(it.Group))
	case SourceConfig:
		return fmt.Sprintf("remove %s from roles[%s].users in the config file", strconv.Quote(it.ConfigEntry), it.Role)
	}
	return ""
}

// applyRevoke revokes the item's grant and records the outcome. The item
// is held (Revoking) meanwhile so nobody flips it to keep while the grant
// goes away. A grant that is already gone (expired, or revoked by someone
// else) counts as revoked: what a revoke decision wants holds.
func (m *Manager) applyRevoke(ctx context.Context, actor string, h header, r itemRecord) (itemRecord, error) {
	reason := "access review " + h.Name + ", item " + r.ID
	rerr := m.revokeGrant(ctx, actor, r.GrantID, reason)
	if rerr != nil {
		gone, lerr := m.grantGone(ctx, r.GrantID)
		if lerr == nil && gone {
			rerr = nil
		}
	}
	held := r.Revoking
	out, err := m.updateItem(ctx, h.ID, r.ID, func(x *itemRecord) error {
		if !x.Revoking.Equal(held) || x.DecidedBy != actor {
			// Our hold went stale and someone else decided since. A
			// revocation that happened is still the truth; a failed one
			// leaves their decision alone.
			if rerr != nil || x.Revoked {
				return errNoChange
			}
			if x.Decision != Revoke {
				x.Decision, x.DecidedBy, x.DecidedAt, x.Note = Revoke, actor, m.now(), r.Note
			}
		}
		x.Revoking = time.Time{}
		if rerr == nil {
			x.Revoked, x.Action = true, ""
		}
		return nil
	})
	if err != nil {
		m.log.ErrorContext(ctx, "recording a grant revocation", "campaign", h.Name, "item", r.ID, "err", err)
		return r, err
	}
	if rerr != nil {
		m.log.ErrorContext(ctx, "revoking a grant for an access review", "campaign", h.Name, "item", r.ID, "grant", r.GrantID, "err", rerr)
		return out, fmt.Errorf("review: revoking grant %s: %w", r.GrantID, rerr)
	}
	return out, nil
}

func (m *Manager) revokeGrant(ctx context.Context, actor, id, reason string) error {
	if m.deps.Grants == nil {
		return errors.New("just-in-time access is off")
	}
	return m.deps.Grants.RevokeGrant(ctx, actor, id, reason)
}

// grantGone reports whether the grant is no longer active.
func (m *Manager) grantGone(ctx context.Context, id string) (bool, error) {
	if m.deps.Grants == nil {
		return false, errors.New("just-in-time access is off")
	}
	gs, err := m.deps.Grants.ListGrants(ctx)
	if err != nil {
		return false, err
	}
	now := m.now()
	for _, g := range gs {
		if g.ID == id && g.Active(now) {
			return false, nil
		}
	}
	return true, nil
}

// breakSeal decides what a sealed item means to a decision: the campaign
// is signed off, or a sign-off is under way, or the seal is left over from
// a sign-off that failed or went stale. Only in the last case may the
// decision go on, and then the stale sign-off is cancelled in the header
// first, so that its owner, should it wake up, cannot finish.
func (m *Manager) breakSeal(ctx context.Context, campaignID, seal string, now time.Time) error {
	for range defaultSwapTries {
		h, raw, err := m.getHeaderByID(ctx, campaignID)
		if err != nil {
			return err
		}
		switch {
		case h.signedOff():
			return ErrSignedOff
		case h.Signing != seal:
			return nil // left over from an aborted or taken-over sign-off
		case h.signing(now):
			return ErrBusy
		}
		h.Signing, h.SigningAt = "", time.Time{}
		if _, ok, err := m.swapHeader(ctx, raw, h); err != nil || ok {
			return err
		}
	}
	return ErrBusy
}

// SignOff closes a campaign whose every item is decided (and whose grant
// revocations are applied). Afterwards nothing in it changes.
//
// Each item is sealed with a fresh token by compare-and-swap before the
// header is marked: a decision that lands before its item's seal is part
// of what is signed, and one that comes later finds the seal and is
// refused. A sign-off that finds an undecided item removes its seals.
func (m *Manager) SignOff(ctx context.Context, actor, campaign string) (Campaign, error) {
	if err := checkText("actor", actor, maxActorLen, true); err != nil {
		return Campaign{}, err
	}
	h, raw, err := m.getHeader(ctx, campaign)
	if err != nil {
		return Campaign{}, err
	}
	now := m.now()
	switch {
	case h.signedOff():
		return Campaign{}, ErrSignedOff
	case h.signing(now):
		return Campaign{}, ErrBusy
	}
	items, err := m.listItems(ctx, &h)
	if err != nil {
		return Campaign{}, err
	}
	if len(items) != h.Items {
		return Campaign{}, fmt.Errorf("%w (%d of %d items)", ErrIncomplete, len(items), h.Items)
	}
	if n := notReady(items); n > 0 {
		return Campaign{}, fmt.Errorf("%w: %d of %d items", ErrUndecided, n, len(items))
	}
	token, err := m.token()
	if err != nil {
		return Campaign{}, err
	}
	h.Signing, h.SigningAt = token, now
	raw, ok, err := m.swapHeader(ctx, raw, h)
	if err != nil {
		return Campaign{}, err
	}
	if !ok {
		return Campaign{}, m.headerMoved(ctx, h.ID)
	}
	sealed := make([]string, 0, len(items))
	var sealErr error
	for _, it := range items {
		_, sealErr = m.updateItem(ctx, h.ID, it.ID, func(r *itemRecord) error {
			if !r.ready() {
				return fmt.Errorf("%w: item %s", ErrUndecided, r.ID)
			}
			r.Seal = token
			return nil
		})
		if sealErr != nil {
			break
		}
		sealed = append(sealed, it.ID)
	}
	if sealErr == nil && m.now().Sub(h.SigningAt) >= signingStaleAfter {
		sealErr = ErrBusy // others may now treat our seals as stale
	}
	if sealErr == nil {
		// The final step: only if the header still carries our token (a
		// decision that broke a stale seal, or a takeover, cleared it).
		h.Signing, h.SigningAt = "", time.Time{}
		h.SignedOffBy, h.SignedOffAt = actor, m.now()
		_, ok, err := m.swapHeader(ctx, raw, h)
		switch {
		case err != nil:
			return Campaign{}, err
		case !ok:
			return Campaign{}, m.headerMoved(ctx, h.ID)
		}
		c, err := m.load(ctx, &h)
		if err != nil {
			return Campaign{}, err
		}
		m.emit(ctx, audit.Event{Type: TypeSignOff, Actor: actor, Attrs: signOffAttrs(c)})
		m.log.InfoContext(ctx, "access review signed off", "campaign", h.Name, "actor", actor)
		return c, nil
	}
	m.abortSignOff(ctx, h.ID, token, sealed)
	return Campaign{}, sealErr
}

// headerMoved explains a failed header swap.
func (m *Manager) headerMoved(ctx context.Context, id string) error {
	h, _, err := m.getHeaderByID(ctx, id)
	switch {
	case err != nil:
		return err
	case h.signedOff():
		return ErrSignedOff
	}
	return ErrBusy
}

// abortSignOff removes our seals and our mark on the header; best effort
// (a seal left behind is broken by the next decision, see breakSeal).
func (m *Manager) abortSignOff(ctx context.Context, id, token string, sealed []string) {
	for _, itemID := range sealed {
		_, err := m.updateItem(ctx, id, itemID, func(r *itemRecord) error {
			if r.Seal != token {
				return errNoChange
			}
			r.Seal = ""
			return nil
		})
		if err != nil {
			m.log.WarnContext(ctx, "removing a sign-off seal", "campaign", id, "item", itemID, "err", err)
		}
	}
	h, raw, err := m.getHeaderByID(ctx, id)
	if err == nil && h.Signing == token {
		h.Signing, h.SigningAt = "", time.Time{}
		_, _, err = m.swapHeader(ctx, raw, h)
	}
	if err != nil {
		m.log.WarnContext(ctx, "clearing an aborted sign-off", "campaign", id, "err", err)
	}
}

func notReady(items []itemRecord) int {
	n := 0
	for i := range items {
		if !items[i].ready() {
			n++
		}
	}
	return n
}

func signOffAttrs(c Campaign) map[string]string {
	var keep, revoke, revoked, actions int
	for _, it := range c.Items {
		switch it.Decision {
		case Keep:
			keep++
		case Revoke:
			revoke++
		}
		revoked += b2i(it.Revoked)
		actions += b2i(it.Action != "")
	}
	return map[string]string{
		"campaign": c.Name, "campaign_id": c.ID, "items": strconv.Itoa(len(c.Items)),
		"keep": strconv.Itoa(keep), "revoke": strconv.Itoa(revoke),
		"revoked": strconv.Itoa(revoked), "actions": strconv.Itoa(actions),
	}
}
