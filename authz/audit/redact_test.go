package audit

import (
	"reflect"
	"strings"
	"testing"
)

// Event has no place for a secret: no field may be named like one, so a
// producer cannot "just fill in" a token, code, password or cookie.
func TestEventHasNoSecretFields(t *testing.T) {
	forbidden := []string{"token", "secret", "password", "passwd", "code", "cookie", "otp", "credential", "key"}
	typ := reflect.TypeFor[Event]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		names := strings.ToLower(f.Name + " " + f.Tag.Get("json"))
		for _, w := range forbidden {
			if strings.Contains(names, w) {
				t.Errorf("Event field %s (%s) looks like it holds a secret (%q)", f.Name, f.Tag.Get("json"), w)
			}
		}
	}
}

func TestSensitiveKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"route", false},
		{"status", false},
		{"exit_status", false},
		{"user_agent", false},
		{"key_fingerprint", false},
		{"episode", false}, // contains "code"-like letters but not the word
		{"token", true},
		{"id_token", true},
		{"sessionToken", true},
		{"SECRET", true},
		{"client_secret", true},
		{"password", true},
		{"Passwd", true},
		{"cookie", true},
		{"Set-Cookie", true},
		{"authorization", true},
		{"bearer", true},
		{"private_key", true},
		{"credentials", true},
		{"code", true},
		{"otp_code", true},
		{"exit_code", true},
		{"totp", true},
		{"mfa.pin", true},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if got := SensitiveKey(tc.key); got != tc.want {
				t.Fatalf("SensitiveKey(%q) = %v, want %v", tc.key, got, tc.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	in := Event{Type: TypeAdmin, Attrs: map[string]string{"route": "r", "token": "abc"}}
	out := Redact(in)
	if out.Attrs["token"] != Redacted || out.Attrs["route"] != "r" {
		t.Fatalf("Redact = %v", out.Attrs)
	}
	if in.Attrs["token"] != "abc" {
		t.Fatal("Redact modified the caller's map")
	}
	if got := string(AppendJSON(nil, &in)); strings.Contains(got, "abc") || !strings.Contains(got, Redacted) {
		t.Fatalf("encoded %s: sensitive value not redacted", got)
	}
	if Redact(Event{}).Attrs != nil {
		t.Fatal("Redact invented Attrs")
	}
}
