package access

import (
	"context"
	"testing"
)

func TestRefreshNilManager(t *testing.T) {
	var m *Manager
	if err := m.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}
