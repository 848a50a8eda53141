package config

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

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
		{"geoip database, relative to the file", r.GeoIPDatabase, mustAbs(t, geoipFixture)},
		{"geoip speed", r.MaxTravelKmh, 900.0},
		{"geoip distance", r.MinTravelKm, 300.5},
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
	// The database path is absolute: show it relative to the checkout.
	out = *bytes.NewBufferString(strings.ReplaceAll(out.String(), mustAbs(t, "testdata")+string(filepath.Separator), "testdata/"))
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
	var out bytes.Buffer
	if err := WriteRisk(&out, cfg.Risk); err != nil || !strings.Contains(out.String(), "geoip  ") || !strings.Contains(out.String(), "off (no database") {
		t.Errorf("WriteRisk without geoip: %v\n%s", err, out.String())
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
		{"geoip without database", "geoip: {max_speed_kmh: 900}", "risk.geoip.database", "missing required key"},
		{"geoip empty database", "geoip: {database: ''}", "risk.geoip.database", "must name a MaxMind DB"},
		{"geoip database missing", "geoip: {database: /nonexistent/city.mmdb}", "risk.geoip.database", "/nonexistent/city.mmdb does not exist"},
		{"geoip database is a directory", "geoip: {database: testdata}", "risk.geoip.database", "not a regular file"},
		{"geoip database not an mmdb", "geoip: {database: testdata/valid.yaml}", "risk.geoip.database", "is not a MaxMind DB (.mmdb) file"},
		{"geoip country database", "geoip: {database: " + countryDB + "}", "risk.geoip.database", "no city locations"},
		{"geoip speed 0", "geoip: {database: " + geoipFixture + ", max_speed_kmh: 0}", "risk.geoip.max_speed_kmh", "must not be 0 (leave it out for the default, 1000)"},
		{"geoip speed too slow", "geoip: {database: " + geoipFixture + ", max_speed_kmh: 30}", "risk.geoip.max_speed_kmh", "between 100 and 50000"},
		{"geoip speed negative", "geoip: {database: " + geoipFixture + ", max_speed_kmh: -900}", "risk.geoip.max_speed_kmh", "between 100 and 50000"},
		{"geoip speed infinite", "geoip: {database: " + geoipFixture + ", max_speed_kmh: .inf}", "risk.geoip.max_speed_kmh", "finite"},
		{"geoip distance 0", "geoip: {database: " + geoipFixture + ", min_distance_km: 0}", "risk.geoip.min_distance_km", "must not be 0"},
		{"geoip distance too far", "geoip: {database: " + geoipFixture + ", min_distance_km: 25000}", "risk.geoip.min_distance_km", "between 10 and 10000"},
		{"geoip distance a string", "geoip: {database: " + geoipFixture + ", min_distance_km: far}", "risk.geoip.min_distance_km", "expected a number"},
		{"geoip unknown key", "geoip: {database: " + geoipFixture + ", license_key: x}", "risk.geoip.license_key", "unknown key"},
		{"geoip not a mapping", "geoip: " + geoipFixture, "risk.geoip", "expected a mapping"},
	}
	countryPath := filepath.Join(t.TempDir(), "country.mmdb")
	writeGeoIPDB(t, countryPath, "GeoLite2-Country")
	for i := range tests {
		tests[i].risk = strings.ReplaceAll(tests[i].risk, countryDB, countryPath)
	}
	// Two sinks whose URLs are secrets pass --no-secrets (distinct stand-ins).
	fake := minimalYAML + "risk: {alerts: {webhooks: [{name: a, url_file: /x/a}, {name: b, url_env: B}]}}\n"
	if _, _, err := Parse("x.yaml", []byte(fake), Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }}); err != nil {
		t.Errorf("FakeSecrets with two secret webhook URLs: %v", err)
	}
	// --no-secrets does not open the GeoIP database (CI has none), but
	// still checks the rest of the section.
	geo := minimalYAML + "risk: {geoip: {database: /nonexistent/city.mmdb}}\n"
	if cfg, _, err := Parse("x.yaml", []byte(geo), Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }}); err != nil || cfg.Risk.GeoIPDatabase != "/nonexistent/city.mmdb" {
		t.Errorf("FakeSecrets with a GeoIP database not on this machine: %v", err)
	}
	geo = minimalYAML + "risk: {geoip: {database: /nonexistent/city.mmdb, max_speed_kmh: 1}}\n"
	if _, _, err := Parse("x.yaml", []byte(geo), Options{FakeSecrets: true, LookupEnv: func(string) (string, bool) { return "", false }}); err == nil || !strings.Contains(err.Error(), "risk.geoip.max_speed_kmh") {
		t.Errorf("FakeSecrets skips the geoip speed check: %v", err)
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

// countryDB stands for a Country database generated by TestRiskHostile.
const countryDB = "COUNTRY_DB"

func mustAbs(t testing.TB, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// geoipFixture is the MaxMind DB that valid_risk.yaml names. It is
// generated (and committed, so that the golden test and `config check`
// by hand can read it) by TestGeoIPFixture:
//
//go:generate go test -run TestGeoIPFixture -update .
const geoipFixture = "testdata/geoip-city.mmdb"

// TestGeoIPFixture regenerates testdata/geoip-city.mmdb and checks the
// committed file is what the generator writes (-update rewrites it).
func TestGeoIPFixture(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), "city.mmdb")
	writeGeoIPDB(t, tmp, "GeoLite2-City")
	got, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(geoipFixture, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(geoipFixture)
	if err != nil {
		t.Fatalf("%v (run go generate)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the generator writes: run go generate", geoipFixture)
	}
}

// writeGeoIPDB writes a small City-layout database of dbType: Paris and
// Sydney in the documentation ranges.
func writeGeoIPDB(t testing.TB, path, dbType string) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "Portcullis config test database"},
		RecordSize:              24,
		IncludeReservedNetworks: true, // the documentation ranges are reserved
		BuildEpoch:              time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		cidr     string
		lat, lon float64
	}{{"198.51.100.0/24", 48.8566, 2.3522}, {"203.0.113.0/24", -33.8688, 151.2093}} {
		_, ipnet, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(ipnet, mmdbtype.Map{"location": mmdbtype.Map{
			"latitude": mmdbtype.Float64(n.lat), "longitude": mmdbtype.Float64(n.lon), "accuracy_radius": mmdbtype.Uint16(20),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
