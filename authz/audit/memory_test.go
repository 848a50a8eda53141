package audit

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

func TestMemory(t *testing.T) {
	m := &Memory{Now: fixedNow}
	ctx := context.Background()
	attrs := map[string]string{"route": "grafana", "otp_code": "123456"}
	m.Emit(ctx, Event{Type: TypeMFAVerify, Reason: "invalid_code", Attrs: attrs})
	attrs["route"] = "mutated"
	m.Emit(ctx, Event{Type: TypeMFAVerify, Reason: "ok"})
	m.Emit(ctx, Event{Type: TypeDecision, Reason: "invalid_code"})

	evs := m.Events()
	if len(evs) != 3 || !evs[0].Time.Equal(sampleTime) {
		t.Fatalf("Events = %+v", evs)
	}
	if evs[0].Attrs["route"] != "grafana" || evs[0].Attrs["otp_code"] != Redacted {
		t.Fatalf("attrs = %v: aliased or not redacted", evs[0].Attrs)
	}
	tests := []struct {
		typ, reason string
		want        int
	}{
		{TypeMFAVerify, "", 2},
		{TypeMFAVerify, "invalid_code", 1},
		{"", "invalid_code", 2},
		{"", "", 3},
		{TypeSessionStart, "", 0},
		{TypeMFAVerify, "nope", 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s", tc.typ, tc.reason), func(t *testing.T) {
			if got := m.Find(tc.typ, tc.reason); len(got) != tc.want {
				t.Fatalf("Find = %d events, want %d", len(got), tc.want)
			}
		})
	}
	evs[0].Reason = "changed"
	if m.Events()[0].Reason != "invalid_code" {
		t.Fatal("Events returned the internal slice")
	}
	m.Reset()
	if len(m.Events()) != 0 {
		t.Fatal("Reset kept events")
	}
}

func TestMemoryConcurrent(t *testing.T) {
	var m Memory // zero value usable
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				m.Emit(context.Background(), Event{Type: TypeAdmin})
				_ = m.Find(TypeAdmin, "")
			}
		})
	}
	wg.Wait()
	if n := len(m.Events()); n != 800 {
		t.Fatalf("%d events, want 800", n)
	}
}

func TestMulti(t *testing.T) {
	var a, b Memory
	Multi{&a, nil, Discard, &b}.Emit(context.Background(), Event{Type: TypeAdmin})
	if len(a.Events()) != 1 || len(b.Events()) != 1 {
		t.Fatalf("a=%d b=%d, want 1 each", len(a.Events()), len(b.Events()))
	}
	Multi(nil).Emit(context.Background(), Event{}) // no panic
}
