package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDecodeBody(t *testing.T) {
	tests := []struct {
		name, body string
		ok         bool
		reason     string
	}{
		{"empty", "", true, ""},
		{"whitespace", " \n", true, ""},
		{"reason", `{"reason":"x"}`, true, "x"},
		{"empty object", `{}`, true, ""},
		{"unknown field", `{"reason":"x","y":1}`, false, ""},
		{"trailing object", `{"reason":"x"}{}`, false, ""},
		{"trailing garbage", `{"reason":"x"} x`, false, ""},
		{"trailing brace", `{"reason":"x"}}`, false, ""},
		{"wrong type", `{"reason":1}`, false, ""},
		{"array", `[]`, false, ""},
		{"truncated", `{"reason":"x"`, false, ""},
		{"too large", `{"reason":"` + strings.Repeat("a", maxAdminBody) + `"}`, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			var v actionBody
			err := decodeBody(httptest.NewRecorder(), r, &v)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && v.Reason != tc.reason {
				t.Fatalf("reason %q", v.Reason)
			}
		})
	}
}

func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{"", "{}", `{"reason":"x"}`, `{"reason":"x"}{}`, "\x00", `{"a":`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var v actionBody
		_ = decodeBody(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body)), &v)
	})
}

func TestValidText(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"https://idp.example.com#u-1", true},
		{"lost phone", true},
		{"", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"\xff", false},
		{"a\u0085b", false},
		{strings.Repeat("a", 201), false},
	}
	for _, tc := range tests {
		if got := validText(tc.in, 200); got != tc.ok {
			t.Errorf("validText(%q) = %v", tc.in, got)
		}
	}
}

func TestSplitGroups(t *testing.T) {
	got := splitGroups([]string{"a, b,,", "c", " "})
	if strings.Join(got, "|") != "a|b|c" {
		t.Fatalf("splitGroups = %q", got)
	}
}
