package audit

import (
	"context"
	"maps"
	"testing"
)

func TestPersonalDataAttrs(t *testing.T) {
	attrs := map[string]string{AttrEmail: "alice@example.com", AttrName: "Alice Example", "role": "admin"}
	tests := []struct {
		name                string
		cfg                 FileConfig
		wantEmail, wantName bool
	}{
		{"dropped by default", FileConfig{}, false, false},
		{"email only", FileConfig{IncludeEmail: true}, true, false},
		{"name only", FileConfig{IncludeName: true}, false, true},
		{"both", FileConfig{IncludeEmail: true, IncludeName: true}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := openTest(t, tc.cfg)
			in := maps.Clone(attrs)
			l.Emit(context.Background(), Event{Type: TypeLoginCallback, UserID: "https://idp|alice", Attrs: in})
			if !maps.Equal(in, attrs) {
				t.Fatalf("Emit changed the caller's map: %v", in)
			}
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
			evs := readLines(t, l.Path())
			got := evs[len(evs)-1]
			_, email := got.Attrs[AttrEmail]
			_, name := got.Attrs[AttrName]
			if email != tc.wantEmail || name != tc.wantName || got.Attrs["role"] != "admin" || got.UserID != "https://idp|alice" {
				t.Errorf("record %+v", got)
			}
		})
	}
}
