package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/authz/store"
)

// Revoke ends session id everywhere: it deletes the record, drops it from
// this instance's cache, and publishes EventSessionRevoked so every other
// instance drops it when the event arrives. When Revoke returns nil, no
// Lookup on this instance that starts afterwards returns the session.
//
// It returns ErrNoSession for a malformed ID or one the store did not
// know (the event is published anyway: harmless, and it clears any stale
// copy elsewhere), and an error wrapping store.ErrUnavailable when the
// store could not delete or publish. If publishing fails after the delete
// succeeded, other instances learn of it when their subscription
// reconnects (the feed's resync clears their caches): a broken feed is a
// broken store connection.
func (m *Manager) Revoke(ctx context.Context, id, reason string) error {
	if !validID(id) {
		return ErrNoSession
	}
	_, err := m.st.GetSession(ctx, id)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("session: revoke %s: %w", id, unavailable(err))
	}
	if err := m.st.DeleteSession(ctx, id); err != nil {
		return fmt.Errorf("session: revoke %s: %w", id, unavailable(err))
	}
	// Only after the delete: a cache miss that starts after this point
	// reads the store after the delete; one that started before is kept
	// out of the cache by the epoch bump in drop.
	m.dropRevoked(id)
	if err := m.st.Publish(ctx, store.Event{Kind: store.EventSessionRevoked, Subject: id, Reason: reason}); err != nil {
		return fmt.Errorf("session: revoke %s: deleted, but other instances were not told: %w", id, unavailable(err))
	}
	if !known {
		return ErrNoSession
	}
	return nil
}

// RevokeUser ends every session of userID on every instance (deletes each
// record, drops them locally, publishes EventUserRevoked).
func (m *Manager) RevokeUser(ctx context.Context, userID, reason string) error {
	if userID == "" {
		return errors.New("session: revoke user: empty user ID") // "" would mean everyone
	}
	ss, err := m.st.ListSessions(ctx, userID)
	if err != nil {
		return fmt.Errorf("session: revoke user: %w", unavailable(err))
	}
	var errs []error
	for _, s := range ss {
		if s.UserID != userID {
			continue
		}
		if err := m.st.DeleteSession(ctx, s.ID); err != nil {
			errs = append(errs, fmt.Errorf("session: revoke user: session %s: %w", s.ID, unavailable(err)))
		}
	}
	m.dropRevokedUser(userID)
	if err := m.st.Publish(ctx, store.Event{Kind: store.EventUserRevoked, Subject: userID, Reason: reason}); err != nil {
		errs = append(errs, fmt.Errorf("session: revoke user: other instances were not told: %w", unavailable(err)))
	}
	return errors.Join(errs...)
}

// negUntil is the negative-cache deadline for something dropped now.
func (m *Manager) negUntil() int64 { return m.now().Add(negativeTTL).UnixNano() }

func (m *Manager) dropRevoked(id string) {
	m.cache.drop(id, m.negUntil())
	m.wb.noteRevoked(id, "", m.now().UnixNano())
}

func (m *Manager) dropRevokedUser(userID string) {
	m.cache.dropUser(userID, m.negUntil())
	m.wb.noteRevoked("", userID, m.now().UnixNano())
}
