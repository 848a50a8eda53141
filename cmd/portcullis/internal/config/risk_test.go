package config

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/risk"
)

// TestRiskUserKeysMatchSignals keeps the schema's risk.user keys and
// risk's signals in step: every signal has a key, every key a signal.
func TestRiskUserKeysMatchSignals(t *testing.T) {
	var keys []string
	for _, f := range fieldsOf(reflect.TypeFor[RiskUserSection]()) {
		if _, ok := risk.SignalForKey(f.key); !ok {
			t.Errorf("risk.user.%s is not a risk signal", f.key)
		}
		keys = append(keys, f.key)
	}
	for _, s := range risk.Signals {
		if !slices.Contains(keys, risk.ConfigKey(s)) {
			t.Errorf("signal %s has no risk.user.%s key", s, risk.ConfigKey(s))
		}
	}
}

// TestRiskParsed checks what valid_risk.yaml turns into, and that
// `config check --risk` output (WriteRisk) matches
// testdata/valid_risk.risk.golden (regenerate with -update).
func TestRiskParsed(t *testing.T) {
	cfg, _, err := Load("testdata/valid_risk.yaml", testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Risk
	if err := r.Validate(); err != nil {
		t.Fatalf("built risk.Config does not validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"totp", r.User[risk.SignalTOTPFailure], risk.Threshold{Count: 3, Window: 10 * time.Minute}},
		{"oidc never locks", r.User[risk.SignalOIDCFailure], risk.Threshold{Count: 0, Window: 15 * time.Minute}},
		{"denied", r.User[risk.SignalDenied], risk.Threshold{Count: 40, Window: 5 * time.Minute}},
		{"user entries", len(r.User), 6},
		{"source ip", r.SourceIP, risk.Threshold{Count: 15, Window: 2 * time.Minute}},
		{"source network", r.SourceNetwork, risk.Threshold{Count: 90, Window: 3 * time.Minute}},
		{"source block", r.SourceBlock, 10 * time.Minute},
		{"source block max", r.SourceBlockMax, 12 * time.Hour},
		{"learn logins", r.LearnLogins, 5},
		{"hour tolerance", r.HourTolerance, 3},
		{"new_network_step_up false", r.NoNewNetworkStepUp, true},
		{"rate factor", r.RateFactor, 12.5},
		{"rate min", r.RateMin, int64(1000)},
		{"bytes factor", r.BytesFactor, 8.0},
		{"bytes min", r.BytesMin, int64(2 << 30)},
		{"usage lock", r.UsageLocks, true},
		{"flush", r.FlushInterval, 5 * time.Second},
		{"dedup", r.AlertDedup, 30 * time.Minute},
		{"canary routes", strings.Join(r.CanaryRoutes, ","), "app.example.com/backup,decoy.example.com"},
		{"canary targets", strings.Join(r.CanaryTargets, ","), "backup-db"},
		{"canary logins", strings.Join(r.CanaryLogins, ","), "oracle"},
		{"webhooks", len(r.Webhooks), 3},
		{"webhook secret from env", string(r.Webhooks[0].Secret), "webhook-hmac-key"},
		{"webhook url from env, newline trimmed", r.Webhooks[1].URL, "https://hooks.slack.example/services/T0/B0/do-not-echo"},
		{"webhook format", r.Webhooks[1].Format, "slack"},
		{"webhook unsigned", r.Webhooks[2].Secret == nil, true},
		{"disabled", r.Disabled, false},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("got %#v, want %#v", c.got, c.want)
			}
		})
	}

	var out bytes.Buffer
	if err := WriteRisk(&out, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "do-not-echo") || strings.Contains(out.String(), "webhook-hmac-key") {
		t.Errorf("WriteRisk prints a secret:\n%s", out.String())
	}
	golden := "testdata/valid_risk.risk.golden"
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if out.String() != string(want) {
		t.Errorf("WriteRisk differs from %s\n--- got\n%s--- want\n%s", golden, out.String(), want)
	}
}

// TestRiskDefaults: a file without a risk section gets the zero
// risk.Config (risk applies its defaults), which validates.
func TestRiskDefaults(t *testing.T) {
	cfg, _, err := Parse("x.yaml", []byte(minimalYAML), testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Risk, risk.Config{}) {
		t.Errorf("risk without a section = %+v, want the zero Config", cfg.Risk)
	}
	if err := cfg.Risk.Validate(); err != nil {
		t.Error(err)
	}
	if cfg.Gateway.StoreGrace != 0 {
		t.Errorf("store_grace default %v, want 0", cfg.Gateway.StoreGrace)
	}
}

// TestRiskHostile feeds single bad risk settings and checks each is
// refused at its key (the golden files show the full messages).
func TestRiskHostile(t *testing.T) {
	tests := []struct {
		name, risk, path, msg string
	}{
		{"negative count", "user: {totp_failures: {count: -3, window: 1m}}", "risk.user.totp_failures.count", "1..1000000"},
		{"window 0", "user: {totp_failures: {count: 3, window: 0s}}", "risk.user.totp_failures.window", "between 1s"},
		{"source window 0", "source_ip: {count: 3, window: 0s}", "risk.source_ip.window", "at least 1s"},
		{"source count 0", "source_network: {count: 0, window: 1m}", "risk.source_network.count", "at least 1"},
		{"window too long", "source_ip: {count: 3, window: 200h}", "risk.source_ip.window", "between 1s"},
		{"http webhook elsewhere", "alerts: {webhooks: [{name: a, url: 'http://192.0.2.1/x'}]}", "risk.alerts.webhooks[0].url", "loopback"},
		{"http webhook by name", "alerts: {webhooks: [{name: a, url: 'http://localhost.example.com/x'}]}", "risk.alerts.webhooks[0].url", "loopback"},
		{"unknown signal", "user: {sms_failures: {count: 3, window: 1m}}", "risk.user.sms_failures", "unknown key"},
		{"secret file missing", "alerts: {webhooks: [{name: a, url: 'https://a.example/', secret_file: /nonexistent/secret}]}", "risk.alerts.webhooks[0].secret_file", "does not exist"},
		{"inline secret", "alerts: {webhooks: [{name: a, url: 'https://a.example/', secret: hunter2}]}", "risk.alerts.webhooks[0].secret", "must not be written"},
		{"url file missing", "alerts: {webhooks: [{name: a, url_file: /nonexistent/url}]}", "risk.alerts.webhooks[0].url_file", "does not exist"},
		{"block above max", "{source_block: 2h, source_block_max: 1h}", "risk.source_block", "source_block_max"},
		{"block max too long", "{source_block_max: 1000h}", "risk.source_block_max", "720h"},
		{"explicit zero learn", "{learn_logins: 0}", "risk.learn_logins", "must not be 0"},
		{"negative learn", "{learn_logins: -1}", "risk.learn_logins", "1..10000"},
		{"nan factor", "usage: {bytes_factor: .nan}", "risk.usage.bytes_factor", "finite"},
		{"huge integer", "usage: {bytes_min: 99999999999999999999}", "risk.usage.bytes_min", "expected an integer"},
		{"canary route traversal", "canary: {routes: ['a.example/x/../y']}", "risk.canary.routes[0]", "host/path-prefix"},
		{"risk not a mapping", "[1, 2]", "risk", "expected a mapping"},
	}
	// Two sinks whose URLs are secrets pass --no-secrets (distinct stand-ins).
	fake := minimalYAML + "risk: {alerts: {webhooks: [{name: a, url_file: /x/a}, {name: b, url_env: B}]}}\n"
	if _, _, err := Parse("x.yaml", []byte(fake), Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }}); err != nil {
		t.Errorf("FakeSecrets with two secret webhook URLs: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			value := tc.risk
			if !strings.HasPrefix(value, "{") && !strings.HasPrefix(value, "[") {
				value = "{" + value + "}"
			}
			data := minimalYAML + "risk: " + value + "\n"
			_, _, err := Parse("x.yaml", []byte(data), testOptions(t))
			ce, ok := err.(*Error)
			if !ok {
				t.Fatalf("want *Error, got %v", err)
			}
			for _, d := range ce.Diags {
				if d.Path == tc.path && strings.Contains(d.Msg, tc.msg) {
					if d.Line != strings.Count(minimalYAML, "\n")+1 {
						t.Errorf("line %d, want the risk line", d.Line)
					}
					if strings.Contains(d.String(), "hunter2") {
						t.Errorf("secret echoed: %v", d)
					}
					return
				}
			}
			t.Errorf("no %q error at %s in:\n%v", tc.msg, tc.path, err)
		})
	}
}
