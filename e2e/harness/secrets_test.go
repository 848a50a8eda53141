package harness

import (
	"strings"
	"testing"
)

// The secrets scan is only worth something if it can fail: these cases
// plant secrets and check they are found (and that a six-digit code inside
// a longer number is not a false alarm).
func TestFindSecret(t *testing.T) {
	cases := []struct {
		name string
		kind string
		data string
		want bool
	}{
		{"cookie in a log line", KindCookie, `{"msg":"x","cookie":"v1.abcdefgh.ijk"}`, true},
		{"cookie absent", KindCookie, `{"msg":"x"}`, false},
		{"code as a JSON string", KindTOTPCode, `{"code":"123456"}`, true},
		{"code in a query", KindTOTPCode, `path=/mfa?code=123456&x=1`, true},
		{"code at the start", KindTOTPCode, `123456 was typed`, true},
		{"code at the end", KindTOTPCode, `typed 123456`, true},
		{"code inside nanoseconds", KindTOTPCode, `"time":"2026-01-02T03:04:05.1234567Z"`, false},
		{"code inside a longer number", KindTOTPCode, `"n":91234567`, false},
		{"code glued to letters", KindTOTPCode, `ref-AB123456CD`, false},
		{"code once glued, once alone", KindTOTPCode, `x123456 123456`, true},
		{"code as a timestamp's fraction", KindTOTPCode, `[0.123456,"o","hello\r\n"]`, false},
		{"code as a number's integer part", KindTOTPCode, `"t":123456.5`, false},
		{"code after a sentence's full stop", KindTOTPCode, `Done.123456 typed`, true},
		{"code before a full stop", KindTOTPCode, `the code was 123456.`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := "123456"
			if tc.kind == KindCookie {
				v = "v1.abcdefgh.ijk"
			}
			got := findSecret([]byte(tc.data), secretEntry{tc.kind, v}) >= 0
			if got != tc.want {
				t.Fatalf("findSecret(%q) = %v, want %v", tc.data, got, tc.want)
			}
		})
	}
}

func TestScanSecretsFindsPlantedLeak(t *testing.T) {
	const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	RecordSecret(KindTOTPSecret, secret)
	RecordSecret(KindPassword, "short") // below minSecretLen: ignored
	Archive("planted/output", []byte(`level=INFO msg="enrolled" secret=`+secret+` user=x`))
	Archive("clean/output", []byte(`level=INFO msg="nothing to see"`))
	leaks, artefacts, secrets := ScanSecrets()
	if artefacts < 2 || secrets < 1 {
		t.Fatalf("scan saw %d artefacts and %d secrets", artefacts, secrets)
	}
	if len(leaks) != 1 || leaks[0].Artefact != "planted/output" || leaks[0].Kind != KindTOTPSecret {
		t.Fatalf("leaks = %v, want the planted TOTP secret", leaks)
	}
	if strings.Contains(leaks[0].String(), secret) || !strings.Contains(leaks[0].Context, "<SECRET>") {
		t.Fatalf("the leak report repeats the secret: %s", leaks[0])
	}
}
