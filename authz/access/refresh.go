package access

import "context"

// Refresh reloads the grant cache from the store before it returns. An
// enforcement point that learns of a change from the feed calls it before
// deciding again: the event may overtake this instance's own reload. It is
// safe on a nil *Manager (JIT off), because a typed nil passed as an
// interface is not a nil interface.
func (m *Manager) Refresh(ctx context.Context) error {
	if m == nil {
		return nil
	}
	// Called because a grant changed: when the change cannot be read,
	// grants are suspended (fail closed), never kept as they were.
	return m.resync(ctx)
}
