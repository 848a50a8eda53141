package risk

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
)

func TestConfigDefaults(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	c := Config{Webhooks: []Webhook{{Name: "ops", URL: "https://hooks.example.com/x"}}}.WithDefaults()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"totp", c.User[SignalTOTPFailure], Threshold{5, 15 * time.Minute}},
		{"recovery", c.User[SignalRecoveryFailure], Threshold{5, 15 * time.Minute}},
		{"ssh", c.User[SignalSSHAuthFailure], Threshold{5, 15 * time.Minute}},
		{"approval", c.User[SignalApprovalFailure], Threshold{10, 15 * time.Minute}},
		{"oidc", c.User[SignalOIDCFailure], Threshold{10, 15 * time.Minute}},
		{"denied", c.User[SignalDenied], Threshold{50, 10 * time.Minute}},
		{"source ip", c.SourceIP, Threshold{20, 5 * time.Minute}},
		{"source network", c.SourceNetwork, Threshold{100, 5 * time.Minute}},
		{"source block", c.SourceBlock, 15 * time.Minute},
		{"source block max", c.SourceBlockMax, 24 * time.Hour},
		{"learn logins", c.LearnLogins, 10},
		{"hour tolerance", c.HourTolerance, 2},
		{"step up", c.NoNewNetworkStepUp, false},
		{"rate factor", c.RateFactor, 10.0},
		{"rate min", c.RateMin, int64(600)},
		{"bytes factor", c.BytesFactor, 10.0},
		{"bytes min", c.BytesMin, int64(1 << 30)},
		{"usage locks", c.UsageLocks, false},
		{"flush interval", c.FlushInterval, 10 * time.Second},
		{"alert dedup", c.AlertDedup, time.Hour},
		{"webhook format", c.Webhooks[0].Format, "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("default = %v, want %v", tc.got, tc.want)
			}
		})
	}
	t.Run("user override keeps other defaults", func(t *testing.T) {
		in := Config{User: map[Signal]Threshold{SignalTOTPFailure: {3, time.Minute}}}
		c := in.WithDefaults()
		if c.User[SignalTOTPFailure] != (Threshold{3, time.Minute}) || c.User[SignalDenied] != (Threshold{50, 10 * time.Minute}) {
			t.Errorf("User = %v", c.User)
		}
		if len(in.User) != 1 {
			t.Errorf("WithDefaults changed the caller's map: %v", in.User)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		// want lists the fields the errors must name, exactly.
		want []string
	}{
		{"zero", Config{}, nil},
		{"signal off", Config{User: map[Signal]Threshold{SignalDenied: {0, time.Minute}}}, nil},
		{"negative count", Config{User: map[Signal]Threshold{SignalTOTPFailure: {-1, time.Minute}}}, []string{"user.totp_failures.count"}},
		{"huge count", Config{User: map[Signal]Threshold{SignalSSHAuthFailure: {2_000_000, time.Minute}}}, []string{"user.ssh_auth_failures.count"}},
		{"user window missing", Config{User: map[Signal]Threshold{SignalRecoveryFailure: {3, 0}}}, []string{"user.recovery_failures.window"}},
		{"user window too long", Config{User: map[Signal]Threshold{SignalOIDCFailure: {3, 8 * 24 * time.Hour}}}, []string{"user.oidc_failures.window"}},
		{"unknown signal", Config{User: map[Signal]Threshold{"password-failure": {3, time.Minute}}}, []string{"user.password-failure"}},
		{"several user fields, stable order", Config{User: map[Signal]Threshold{
			SignalApprovalFailure: {-1, 0}, SignalDenied: {-1, time.Minute}, "zzz": {1, time.Minute}}},
			[]string{"user.approval_failures.count", "user.approval_failures.window", "user.denied_decisions.count", "user.zzz"}},
		{"source ip count", Config{SourceIP: Threshold{0, time.Minute}}, []string{"source_ip.count"}},
		{"source ip window", Config{SourceIP: Threshold{10, time.Millisecond}}, []string{"source_ip.window"}},
		{"source network", Config{SourceNetwork: Threshold{-5, 0}}, []string{"source_network.count", "source_network.window"}},
		{"block above max", Config{SourceBlock: 2 * time.Hour, SourceBlockMax: time.Hour}, []string{"source_block"}},
		{"block too short", Config{SourceBlock: time.Millisecond}, []string{"source_block"}},
		{"block max too long", Config{SourceBlockMax: 31 * 24 * time.Hour}, []string{"source_block_max"}},
		{"learn logins", Config{LearnLogins: -1}, []string{"learn_logins"}},
		{"hour tolerance", Config{HourTolerance: 13}, []string{"hour_tolerance"}},
		{"factor", Config{RateFactor: 0.5}, []string{"usage"}},
		{"minimum", Config{BytesMin: -1}, []string{"usage"}},
		{"flush too fast", Config{FlushInterval: time.Millisecond}, []string{"flush_interval"}},
		{"flush too slow", Config{FlushInterval: 2 * time.Minute}, []string{"flush_interval"}},
		{"dedup", Config{AlertDedup: -time.Second}, []string{"alert_dedup"}},
		{"canary routes ok", Config{CanaryRoutes: []string{"app.example.com/backup", "App.Example.com/admin/", "secret.example.com"}}, nil},
		{"canary routes bad", Config{CanaryRoutes: []string{"", "/nohost", "h:8443/x", "h/a b", "h/a?b", "h/../etc", "h/a//b", "h/a\nb", "h/%2e"}},
			[]string{"canary.routes[0]", "canary.routes[1]", "canary.routes[2]", "canary.routes[3]", "canary.routes[4]",
				"canary.routes[5]", "canary.routes[6]", "canary.routes[7]", "canary.routes[8]"}},
		{"canary route duplicate", Config{CanaryRoutes: []string{"a.example.com/x", "A.example.com/x"}}, []string{"canary.routes[1]"}},
		{"canary targets", Config{CanaryTargets: []string{"backup-db", "", "a@b", "a b", "Backup-DB"}},
			[]string{"canary.targets[1]", "canary.targets[2]", "canary.targets[3]", "canary.targets[4]"}},
		{"canary logins", Config{CanaryLogins: []string{"oracle", "ORACLE", "x/y", "oracle"}},
			[]string{"canary.logins[2]", "canary.logins[3]"}},
		{"webhooks ok", Config{Webhooks: []Webhook{
			{Name: "a", URL: "https://hooks.example.com/x"},
			{Name: "b", URL: "http://127.0.0.1:9000/relay"},
			{Name: "c", URL: "http://[::1]/relay", Format: "slack"},
			{Name: "d", URL: "http://localhost/relay"},
			{Name: "e", URL: "https://hooks.example.com/x", Format: "slack"},
		}}, nil},
		{"webhook http to the network", Config{Webhooks: []Webhook{{Name: "a", URL: "http://hooks.example.com/x"}}}, []string{"alerts.webhooks[0].url"}},
		{"webhook http to a private address", Config{Webhooks: []Webhook{{Name: "a", URL: "http://10.0.0.1/x"}}}, []string{"alerts.webhooks[0].url"}},
		{"webhook bad urls", Config{Webhooks: []Webhook{
			{Name: "a", URL: ""},
			{Name: "b", URL: "ftp://hooks.example.com/x"},
			{Name: "c", URL: "https://user:pw@hooks.example.com/x"},
			{Name: "d", URL: "https://hooks.example.com/x#frag"},
			{Name: "e", URL: "hooks.example.com/x"},
			{Name: "f", URL: "https://hooks.example.com/%zz"},
		}}, []string{"alerts.webhooks[0].url", "alerts.webhooks[1].url", "alerts.webhooks[2].url",
			"alerts.webhooks[3].url", "alerts.webhooks[4].url", "alerts.webhooks[5].url"}},
		{"webhook format", Config{Webhooks: []Webhook{{Name: "a", URL: "https://x.example.com/", Format: "xml"}}}, []string{"alerts.webhooks[0].format"}},
		{"webhook duplicate name", Config{Webhooks: []Webhook{
			{Name: "ops", URL: "https://x.example.com/1"}, {Name: "ops", URL: "https://x.example.com/2"}}},
			[]string{"alerts.webhooks[1].name"}},
		{"webhook duplicate url", Config{Webhooks: []Webhook{
			{Name: "a", URL: "https://x.example.com/1"}, {Name: "b", URL: "https://x.example.com/1", Format: "json"}}},
			[]string{"alerts.webhooks[1].url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var got []string
			for _, e := range authz.Flatten(err) {
				field, msg, ok := strings.Cut(e.Error(), ": ")
				if !ok || msg == "" {
					t.Errorf("error %q is not \"field: message\"", e)
				}
				got = append(got, field)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("fields = %q, want %q\nerror: %v", got, tc.want, err)
			}
			if err == nil {
				if _, err := New(tc.cfg, &hookStore{}, Options{Audit: nopAudit{}}); err != nil {
					t.Errorf("New refuses a valid config: %v", err)
				}
			} else if _, nerr := New(tc.cfg, &hookStore{}, Options{Audit: nopAudit{}}); nerr == nil {
				t.Error("New accepts an invalid config")
			}
		})
	}
}

func TestConfigValidateIsStable(t *testing.T) {
	cfg := Config{User: map[Signal]Threshold{}}
	for _, s := range Signals {
		cfg.User[s] = Threshold{-1, 0}
	}
	first := cfg.Validate().Error()
	for range 20 {
		if got := cfg.Validate().Error(); got != first {
			t.Fatalf("Validate's message changes between runs:\n%s\n%s", first, got)
		}
	}
}

func TestConfigKeys(t *testing.T) {
	for _, tc := range []struct {
		sig          Signal
		key, reasonC string
	}{
		{SignalOIDCFailure, "oidc_failures", "oidc-failures"},
		{SignalTOTPFailure, "totp_failures", "totp-failures"},
		{SignalRecoveryFailure, "recovery_failures", "recovery-failures"},
		{SignalSSHAuthFailure, "ssh_auth_failures", "ssh-auth-failures"},
		{SignalApprovalFailure, "approval_failures", "approval-failures"},
		{SignalDenied, "denied_decisions", "denied-decisions"},
	} {
		t.Run(string(tc.sig), func(t *testing.T) {
			if got := ConfigKey(tc.sig); got != tc.key {
				t.Errorf("ConfigKey = %q, want %q", got, tc.key)
			}
			if s, ok := SignalForKey(tc.key); !ok || s != tc.sig {
				t.Errorf("SignalForKey(%q) = %q, %v", tc.key, s, ok)
			}
			if got := LockReason(tc.sig); got != tc.reasonC {
				t.Errorf("LockReason = %q, want %q", got, tc.reasonC)
			}
		})
	}
	if _, ok := SignalForKey("password_failures"); ok {
		t.Error("SignalForKey accepts an unknown key")
	}
	if len(Signals) != 6 {
		t.Errorf("Signals has %d entries; update this test and the config schema", len(Signals))
	}
}

func TestSplitCanaryRoute(t *testing.T) {
	for _, tc := range []struct {
		in, host, prefix string
		ok               bool
	}{
		{"app.example.com/backup", "app.example.com", "/backup", true},
		{"App.Example.COM/Backup", "app.example.com", "/Backup", true},
		{"app.example.com", "app.example.com", "/", true},
		{"app.example.com/", "app.example.com", "/", true},
		{"app.example.com/a/b/", "app.example.com", "/a/b/", true},
		{"", "", "", false},
		{"/backup", "", "", false},
		{"app.example.com:443/x", "", "", false},
		{"user@app.example.com/x", "", "", false},
		{"[::1]/x", "", "", false},
		{"app.example.com/x?y", "", "", false},
		{"app.example.com/x#y", "", "", false},
		{"app.example.com/%41", "", "", false},
		{"app.example.com/a\\b", "", "", false},
		{"app.example.com/a/../b", "", "", false},
		{"app.example.com//b", "", "", false},
		{"app.example.com/a b", "", "", false},
		{"app\x00.example.com/a", "", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			host, prefix, err := splitCanaryRoute(tc.in)
			if (err == nil) != tc.ok || host != tc.host || prefix != tc.prefix {
				t.Errorf("= %q, %q, %v; want %q, %q, ok=%v", host, prefix, err, tc.host, tc.prefix, tc.ok)
			}
		})
	}
}

// FuzzSplitCanaryRoute: whatever the input, an accepted route has a
// lower-case host and an absolute prefix, and the compiled engine matches
// that exact path (a canary that can never fire would be worse than an
// error at start-up). Seeds: testdata/fuzz/FuzzSplitCanaryRoute.
func FuzzSplitCanaryRoute(f *testing.F) {
	for _, s := range []string{"app.example.com/backup", "h", "h/", "H/a/b/", "/x", "h:1/x", "h/a/../b", "h/%2f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, r string) {
		host, prefix, err := splitCanaryRoute(r)
		verr := Config{CanaryRoutes: []string{r}}.Validate()
		if (err == nil) != (verr == nil) {
			t.Fatalf("splitCanaryRoute err=%v but Validate err=%v", err, verr)
		}
		if err != nil {
			return
		}
		if host == "" || host != strings.ToLower(host) || !strings.HasPrefix(prefix, "/") {
			t.Fatalf("%q -> %q %q", r, host, prefix)
		}
		e, nerr := New(Config{CanaryRoutes: []string{r}}, &hookStore{}, Options{Audit: nopAudit{}})
		if nerr != nil {
			t.Fatalf("New: %v", nerr)
		}
		if name, ok := e.CanaryRoute(host, prefix); !ok || name != host+prefix {
			t.Fatalf("route %q does not match its own prefix %q%q", r, host, prefix)
		}
		if _, ok := e.CanaryRoute(host, prefix+"x"); ok && prefix != "/" && !strings.HasSuffix(prefix, "/") {
			t.Fatalf("route %q matches %q across a segment boundary", r, prefix+"x")
		}
		if prefix != "/" {
			if _, ok := e.CanaryRoute(host, "/"); ok {
				t.Fatalf("route %q matches the whole host", r)
			}
		}
	})
}

// FuzzValidate: Validate never panics on hostile names and URLs, and what
// it accepts New accepts.
func FuzzValidate(f *testing.F) {
	f.Add("backup-db", "oracle", "https://hooks.example.com/x", "json")
	f.Add("", "a@b", "http://10.0.0.1/", "slack")
	f.Add("x\x00", "\t", "http://[::1]:0/", "xml")
	f.Fuzz(func(t *testing.T, target, login, url, format string) {
		cfg := Config{CanaryTargets: []string{target}, CanaryLogins: []string{login},
			Webhooks: []Webhook{{Name: "w", URL: url, Format: format}}}
		err := cfg.Validate()
		if err != nil {
			for _, e := range authz.Flatten(err) {
				if field, _, _ := strings.Cut(e.Error(), ": "); strings.ContainsAny(field, " \t\n") {
					t.Fatalf("error does not start with a field: %q", e)
				}
			}
			return
		}
		e, nerr := New(cfg, &hookStore{}, Options{Audit: nopAudit{}})
		if nerr != nil {
			t.Fatalf("Validate accepts, New refuses: %v", nerr)
		}
		if !e.CanaryTarget(target) || !e.CanaryLogin(login) {
			t.Fatal("accepted canary names do not match themselves")
		}
		if up := asciiUpper(target); !e.CanaryTarget(up) {
			t.Fatalf("target %q does not match %q: target names are case-insensitive", target, up)
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
