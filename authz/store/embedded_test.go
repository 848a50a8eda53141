package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/store"
	"github.com/portcullis/portcullis/authz/store/storetest"
)

func openEmbedded(t *testing.T, path string, now func() time.Time) *store.Embedded {
	t.Helper()
	s, err := store.OpenEmbedded(path, store.EmbeddedOptions{Now: now})
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	return s
}

func TestEmbeddedConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Backend: func(t *testing.T) storetest.Opener {
			path := filepath.Join(t.TempDir(), "state.db")
			return func(t *testing.T, now func() time.Time) store.Store { return openEmbedded(t, path, now) }
		},
	})
}
