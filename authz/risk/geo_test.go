package risk

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/portcullis/portcullis/authz/audit"
)

// Cities the tests place addresses in (coordinates as a City database
// gives them).
var (
	paris   = [2]float64{48.8566, 2.3522}
	newYork = [2]float64{40.7128, -74.0060}
	sydney  = [2]float64{-33.8688, 151.2093}
	lyon    = [2]float64{45.7640, 4.8357}
	suva    = [2]float64{-18.1248, 178.4501}  // Fiji, west of the antimeridian
	apia    = [2]float64{-13.8507, -171.7514} // Samoa, east of it
)

func fix(c [2]float64, at time.Time) geoFix { return geoFix{Lat: c[0], Lon: c[1], At: at} }

func TestHaversine(t *testing.T) {
	for _, tc := range []struct {
		name      string
		a, b      [2]float64
		want, tol float64 // km
	}{
		{"same point", paris, paris, 0, 0.001},
		{"Paris to Lyon", paris, lyon, 392, 5},
		{"Paris to New York", paris, newYork, 5837, 10},
		{"Paris to Sydney", paris, sydney, 16960, 20},
		{"across the antimeridian", suva, apia, 1150, 30},
		{"antipodes", [2]float64{0, 0}, [2]float64{0, 180}, math.Pi * earthRadiusKm, 0.01},
		{"pole to pole", [2]float64{90, 0}, [2]float64{-90, 0}, math.Pi * earthRadiusKm, 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := haversineKm(tc.a[0], tc.a[1], tc.b[0], tc.b[1])
			back := haversineKm(tc.b[0], tc.b[1], tc.a[0], tc.a[1])
			if math.Abs(got-tc.want) > tc.tol || math.Abs(got-back) > 1e-6 {
				t.Errorf("distance = %.1f km (back %.1f), want %.0f ± %.0f", got, back, tc.want, tc.tol)
			}
		})
	}
}

func TestTravel(t *testing.T) {
	for _, tc := range []struct {
		name           string
		from, to       [2]float64
		elapsed        time.Duration
		minKm, maxKmh  float64
		wantImpossible bool
		wantKmh        float64 // 0: not checked
	}{
		{name: "same city a minute later", from: paris, to: [2]float64{48.9, 2.4}, elapsed: time.Minute, wantImpossible: false},
		{name: "same city at the same instant", from: paris, to: paris, elapsed: 0, wantImpossible: false},
		{name: "Paris to New York in 1h", from: paris, to: newYork, elapsed: time.Hour, wantImpossible: true, wantKmh: 5837},
		{name: "Paris to New York in 10h", from: paris, to: newYork, elapsed: 10 * time.Hour, wantImpossible: false, wantKmh: 584},
		{name: "Paris to Sydney in 16h", from: paris, to: sydney, elapsed: 16 * time.Hour, wantImpossible: true},
		{name: "Paris to Sydney in a day", from: paris, to: sydney, elapsed: 24 * time.Hour, wantImpossible: false},
		{name: "Paris to Lyon in 10 minutes: closer than the minimum", from: paris, to: lyon, elapsed: 10 * time.Minute, wantImpossible: false},
		{name: "Paris to Lyon with a 300 km minimum", from: paris, to: lyon, elapsed: 10 * time.Minute, minKm: 300, wantImpossible: true},
		{name: "across the antimeridian in 30 minutes", from: suva, to: apia, elapsed: 30 * time.Minute, wantImpossible: true},
		{name: "across the antimeridian in 3 hours", from: suva, to: apia, elapsed: 3 * time.Hour, wantImpossible: false},
		{name: "at the same instant, far apart", from: paris, to: newYork, elapsed: 0, wantImpossible: true},
		{name: "clocks disagree: the later login looks earlier", from: paris, to: newYork, elapsed: -time.Minute, wantImpossible: true},
		{name: "faster limit", from: paris, to: newYork, elapsed: time.Hour, maxKmh: 6000, wantImpossible: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{MinTravelKm: tc.minKm, MaxTravelKmh: tc.maxKmh}.WithDefaults()
			km, kmh, imp := travel(fix(tc.from, t0), fix(tc.to, t0.Add(tc.elapsed)), c.MinTravelKm, c.MaxTravelKmh)
			if imp != tc.wantImpossible {
				t.Errorf("impossible = %v (%.0f km, %.0f km/h), want %v", imp, km, kmh, tc.wantImpossible)
			}
			if tc.wantKmh != 0 && math.Abs(kmh-tc.wantKmh) > tc.wantKmh/100 {
				t.Errorf("speed = %.0f km/h, want about %.0f", kmh, tc.wantKmh)
			}
			if math.IsInf(kmh, 0) || math.IsNaN(kmh) || kmh < 0 {
				t.Errorf("speed = %v", kmh)
			}
		})
	}
}

// geoNet is one network of a generated test database.
type geoNet struct {
	cidr   string
	loc    [2]float64
	radius uint16 // accuracy_radius; 0: 20 km
	noLoc  bool   // a record without location (an anycast network has none)
}

// testNets are the networks of the generated database.
var testNets = []geoNet{
	{cidr: "198.51.100.0/24", loc: paris},
	{cidr: "203.0.113.0/24", loc: sydney},
	{cidr: "192.0.2.0/25", loc: newYork},
	{cidr: "192.0.2.128/25", loc: lyon},
	{cidr: "2001:db8:1::/48", loc: sydney},
	{cidr: "2001:db8:2::/48", loc: [2]float64{37.751, -97.822}, radius: 1000}, // country centroid only
	{cidr: "2001:db8:3::/48", noLoc: true},
	{cidr: "10.0.0.0/8", loc: paris},                  // a database may place private space; the engine must not
	{cidr: "100.64.0.0/10", loc: newYork},             // CGNAT, likewise
	{cidr: "2001:db8:4::/48", loc: [2]float64{91, 0}}, // out of range: corrupt data
}

// writeTestDB generates a City-layout MaxMind DB with nets at path.
func writeTestDB(t testing.TB, path, dbType string, nets []geoNet) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            dbType,
		RecordSize:              24,
		IncludeReservedNetworks: true, // the documentation ranges the tests use are reserved
		BuildEpoch:              t0.Unix(),
		Description:             map[string]string{"en": "Portcullis test City database"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		_, ipnet, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("ZZ")}}
		if !n.noLoc {
			r := n.radius
			if r == 0 {
				r = 20
			}
			rec["location"] = mmdbtype.Map{
				"latitude":        mmdbtype.Float64(n.loc[0]),
				"longitude":       mmdbtype.Float64(n.loc[1]),
				"accuracy_radius": mmdbtype.Uint16(r),
				"time_zone":       mmdbtype.String("Etc/UTC"),
			}
		}
		if err := tree.Insert(ipnet, rec); err != nil {
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

func openTestDB(t testing.TB) *GeoIP {
	t.Helper()
	path := filepath.Join(t.TempDir(), "city.mmdb")
	writeTestDB(t, path, "Portcullis-Test-City", testNets)
	g, err := OpenGeoIP(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestGeoIPLocate(t *testing.T) {
	g := openTestDB(t)
	if g.DatabaseType() != "Portcullis-Test-City" || !g.BuildTime().Equal(t0) {
		t.Errorf("metadata: %q built %v", g.DatabaseType(), g.BuildTime())
	}
	for _, tc := range []struct {
		ip   string
		want [2]float64
		ok   bool
	}{
		{"198.51.100.7", paris, true},
		{"::ffff:198.51.100.7", paris, true},
		{"203.0.113.200", sydney, true},
		{"192.0.2.1", newYork, true},
		{"192.0.2.200", lyon, true},
		{"2001:db8:1:ff::1", sydney, true},
		{"2001:db8:2::1", [2]float64{}, false}, // country-level only
		{"2001:db8:3::1", [2]float64{}, false}, // no location
		{"2001:db8:4::1", [2]float64{}, false}, // latitude out of range
		{"2001:db8:5::1", [2]float64{}, false}, // not in the database
		{"8.8.8.8", [2]float64{}, false},
		{"10.1.2.3", [2]float64{}, false},    // private, though the database places it
		{"100.64.0.1", [2]float64{}, false},  // CGNAT
		{"127.0.0.1", [2]float64{}, false},   // loopback
		{"::1", [2]float64{}, false},         // loopback
		{"169.254.1.1", [2]float64{}, false}, // link-local
		{"fe80::1", [2]float64{}, false},     // link-local
		{"fd00::1", [2]float64{}, false},     // unique local
		{"224.0.0.1", [2]float64{}, false},   // multicast
		{"0.0.0.0", [2]float64{}, false},     // unspecified
	} {
		t.Run(tc.ip, func(t *testing.T) {
			lat, lon, ok := g.Locate(netip.MustParseAddr(tc.ip))
			if ok != tc.ok || (ok && (math.Abs(lat-tc.want[0]) > 1e-4 || math.Abs(lon-tc.want[1]) > 1e-4)) {
				t.Errorf("Locate = %v,%v,%v; want %v,%v", lat, lon, ok, tc.want, tc.ok)
			}
		})
	}
	t.Run("invalid address", func(t *testing.T) {
		if _, _, ok := g.Locate(netip.Addr{}); ok {
			t.Error("the zero Addr was placed")
		}
	})
}

func TestOpenGeoIPRefuses(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mmdb")
	writeTestDB(t, good, "GeoLite2-City", testNets)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	country := filepath.Join(dir, "country.mmdb")
	writeTestDB(t, country, "GeoLite2-Country", testNets[:1])
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "nope.mmdb"), "no such file"},
		{"directory", dir, "not a regular file"},
		{"empty file", write("empty.mmdb", nil), "is empty"},
		{"text file", write("text.mmdb", []byte("latitude,longitude\n48.8,2.3\n")), "not a MaxMind DB"},
		{"gzip archive as downloaded", write("db.tar.gz", []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03")), "not a MaxMind DB"},
		{"truncated: metadata cut off", write("cut.mmdb", data[:len(data)-60]), "not a MaxMind DB"},
		{"metadata only", write("meta.mmdb", data[len(data)-300:]), "not a MaxMind DB"},
		{"country database", country, "no city locations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := OpenGeoIP(tc.path)
			if err == nil {
				g.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q, want it to name the file and say %q", err, tc.want)
			}
		})
	}
	if _, err := OpenGeoIP(filepath.Join(dir, "nope.mmdb")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	if g, err := OpenGeoIP(good); err != nil {
		t.Errorf("GeoLite2-City: %v", err)
	} else {
		g.Close()
	}
}

// TestGeoIPCorruptRecords: a database whose search tree and data are
// damaged (bytes flipped before the metadata, which stays intact) is
// refused at open; one damaged more sparsely opens or not, but no lookup
// ever panics, and a lookup that fails places nothing.
func TestGeoIPCorruptRecords(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mmdb")
	writeTestDB(t, good, "GeoLite2-City", testNets)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	meta := strings.LastIndex(string(data), "\xab\xcd\xefMaxMind.com")
	for _, tc := range []struct {
		step    int // flip every step-th byte
		refused bool
	}{{1, true}, {3, true}, {7, true}, {50, false}, {101, false}, {400, false}} {
		t.Run(fmt.Sprintf("every %d bytes", tc.step), func(t *testing.T) {
			bad := slices.Clone(data)
			for i := 0; i < meta; i += tc.step {
				bad[i] ^= 0xa5
			}
			p := filepath.Join(t.TempDir(), "bad.mmdb")
			if err := os.WriteFile(p, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			g, err := OpenGeoIP(p)
			if err != nil {
				if !strings.Contains(err.Error(), "corrupt") {
					t.Errorf("error %q does not say corrupt", err)
				}
				return
			}
			defer g.Close()
			if tc.refused {
				t.Error("opened")
			}
			for _, n := range testNets {
				lat, lon, ok := g.Locate(netip.MustParsePrefix(n.cidr).Addr().Next())
				if ok && !validCoord(lat, lon) {
					t.Errorf("%s placed at %v,%v", n.cidr, lat, lon)
				}
			}
		})
	}
}

func TestGeoIPCloseWhileLocating(t *testing.T) {
	g := openTestDB(t)
	ip := mustAddr("198.51.100.1")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				g.Locate(ip)
			}
		})
	}
	g.Close()
	wg.Wait()
	if _, _, ok := g.Locate(ip); ok {
		t.Error("located after Close")
	}
}

func TestGeoIPUnchanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "city.mmdb")
	writeTestDB(t, path, "GeoLite2-City", testNets)
	g, err := OpenGeoIP(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !g.Unchanged(path) {
		t.Error("the file just read is reported changed")
	}
	if g.Unchanged(filepath.Join(dir, "other.mmdb")) {
		t.Error("another path is reported unchanged")
	}
	// geoipupdate writes a new file and renames it over the old one.
	tmp := filepath.Join(dir, "city.mmdb.tmp")
	writeTestDB(t, tmp, "GeoLite2-City", testNets[:2])
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if g.Unchanged(path) {
		t.Error("a replaced file is reported unchanged")
	}
	// Lookups still answer from what was read.
	if _, _, ok := g.Locate(mustAddr("192.0.2.1")); !ok {
		t.Error("the database changed under the reader")
	}
}

// fakeGeo places addresses by prefix.
type fakeGeo map[netip.Prefix][2]float64

func (f fakeGeo) Locate(ip netip.Addr) (float64, float64, bool) {
	for p, c := range f {
		if p.Contains(ip) {
			return c[0], c[1], true
		}
	}
	return 0, 0, false
}

// TestAssessTravel: with a Locator, a login too far from the previous
// located one too soon is reported (audited, alerted, step-up) and never
// locks; everything else is not.
func TestAssessTravel(t *testing.T) {
	geo := fakeGeo{
		netip.MustParsePrefix("198.51.100.0/24"): paris,
		netip.MustParsePrefix("203.0.113.0/24"):  sydney,
		netip.MustParsePrefix("192.0.2.0/24"):    newYork,
		netip.MustParsePrefix("10.0.0.0/8"):      sydney, // never asked: private
		netip.MustParsePrefix("2001:db8::/32"):   [2]float64{math.NaN(), 0},
	}
	type login struct {
		ip    string
		after time.Duration // since the previous one
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		history []login // recorded (successful) logins
		next    login   // assessed
		want    bool
	}{
		{name: "Paris then Sydney an hour later", history: []login{{"198.51.100.5", 0}}, next: login{"203.0.113.9", time.Hour}, want: true},
		{name: "Paris then Sydney two days later", history: []login{{"198.51.100.5", 0}}, next: login{"203.0.113.9", 48 * time.Hour}},
		{name: "Paris then New York 1h later", history: []login{{"198.51.100.5", 0}}, next: login{"192.0.2.1", time.Hour}, want: true},
		{name: "Paris then New York 10h later", history: []login{{"198.51.100.5", 0}}, next: login{"192.0.2.1", 10 * time.Hour}},
		{name: "same city", history: []login{{"198.51.100.5", 0}}, next: login{"198.51.100.77", time.Minute}},
		{name: "no history", next: login{"203.0.113.9", time.Hour}},
		{name: "previous login not placed (private)", history: []login{{"10.1.1.1", 0}}, next: login{"203.0.113.9", time.Minute}},
		{name: "next login private", history: []login{{"198.51.100.5", 0}}, next: login{"10.1.1.1", time.Minute}},
		{name: "next login unknown to the database", history: []login{{"198.51.100.5", 0}}, next: login{"8.8.8.8", time.Minute}},
		{name: "locator gives NaN", history: []login{{"198.51.100.5", 0}}, next: login{"2001:db8::1", time.Minute}},
		{name: "a private login in between keeps the last placed one",
			history: []login{{"198.51.100.5", 0}, {"10.1.1.1", 30 * time.Minute}}, next: login{"203.0.113.9", 30 * time.Minute}, want: true},
		{name: "compared with the latest placed login, not the first",
			history: []login{{"203.0.113.1", 0}, {"198.51.100.5", 48 * time.Hour}}, next: login{"198.51.100.6", time.Hour}},
		{name: "higher speed limit", cfg: Config{MaxTravelKmh: 20000}, history: []login{{"198.51.100.5", 0}}, next: login{"203.0.113.9", time.Hour}},
		{name: "step-up off for new networks does not turn travel off", cfg: Config{NoNewNetworkStepUp: true},
			history: []login{{"198.51.100.5", 0}}, next: login{"203.0.113.9", time.Hour}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Webhooks = alertSink
			ev := newEnv(t, "embedded", cfg, func(o *Options) { o.Geo = geo })
			ctx := ev.ctx()
			for _, l := range tc.history {
				ev.clock.Advance(l.after)
				if err := ev.e.Record(ctx, "alice", mustAddr(l.ip)); err != nil {
					t.Fatal(err)
				}
			}
			ev.clock.Advance(tc.next.after)
			lr, err := ev.e.Assess(ctx, "alice", mustAddr(tc.next.ip), "ssh")
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(lr.Anomalies, ReasonTravel); got != tc.want || (tc.want && !lr.StepUp) {
				t.Errorf("Assess = %+v, want impossible travel %v with step-up", lr, tc.want)
			}
			n := 0
			for _, e := range ev.events(audit.TypeRiskAnomaly) {
				if e.Reason == ReasonTravel {
					n++
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tc.want]; n != want {
				t.Errorf("%d impossible-travel events, want %d", n, want)
			}
			if got := ev.riskEvents(); got[audit.TypeRiskLock] != 0 || got[audit.TypeRiskBlock] != 0 {
				t.Errorf("travel locked or blocked: %v", got)
			}
		})
	}
}

// TestImpossibleTravelWithGeoIP runs the check end to end on a generated
// MaxMind DB, on both store backends: Paris, then Sydney an hour later
// is flagged (audit, alert, step-up, no lock); a day and a half later it
// is not. Learning does not hold it back: one earlier login is enough.
func TestImpossibleTravelWithGeoIP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b string) {
		g := openTestDB(t)
		ev := newEnv(t, b, Config{Webhooks: alertSink}, func(o *Options) { o.Geo = g })
		ctx := ev.ctx()
		paris, sydney := mustAddr("198.51.100.20"), mustAddr("203.0.113.40")
		ev.clock.Set(at(0, 9, 0))
		if err := ev.e.Record(ctx, "alice", paris); err != nil {
			t.Fatal(err)
		}
		ev.clock.Set(at(0, 10, 0))
		lr, err := ev.e.Assess(ctx, "alice", sydney, "web")
		if err != nil || !lr.StepUp || !slices.Equal(lr.Anomalies, []string{ReasonTravel}) {
			t.Fatalf("Sydney an hour after Paris: %+v, %v", lr, err)
		}
		evs := ev.events(audit.TypeRiskAnomaly)
		if len(evs) != 1 {
			t.Fatalf("%d anomaly events, want 1", len(evs))
		}
		e := evs[0]
		want := map[string]string{"from": "48.9,2.4", "to": "-33.9,151.2", "elapsed": "1h0m0s",
			"network": "203.0.113.0/24", "via": "web"}
		for k, v := range want {
			if e.Attrs[k] != v {
				t.Errorf("attr %s = %q, want %q", k, e.Attrs[k], v)
			}
		}
		if e.UserID != "alice" || e.SourceIP != "203.0.113.40" || e.Reason != ReasonTravel {
			t.Errorf("event %+v", e)
		}
		if km := e.Attrs["distance_km"]; km < "16900" || km > "16999" || e.Attrs["speed_kmh"] != km {
			t.Errorf("distance %s km, speed %s km/h", km, e.Attrs["speed_kmh"])
		}
		alerts := drainAlerts(ev.e)
		if len(alerts) != 1 || alerts[0].Reason != ReasonTravel || alerts[0].Kind != "anomaly" ||
			!strings.Contains(alerts[0].Detail, "km/h") {
			t.Errorf("alerts %+v", alerts)
		}
		if got := ev.riskEvents(); got[audit.TypeRiskLock] != 0 {
			t.Errorf("impossible travel locked: %v", got)
		}
		if v, err := ev.e.Gate(ctx, "alice", sydney); err != nil || !v.Allow {
			t.Errorf("Gate after travel = %+v, %v", v, err)
		}

		// Enough time for the flight: nothing to report.
		ev.clock.Set(at(1, 22, 0))
		if lr, err := ev.e.Assess(ctx, "alice", sydney, "web"); err != nil || len(lr.Anomalies) != 0 || lr.StepUp {
			t.Errorf("Sydney 37h after Paris: %+v, %v", lr, err)
		}
		// Once the Sydney login succeeds, it is the reference.
		if err := ev.e.Record(ctx, "alice", sydney); err != nil {
			t.Fatal(err)
		}
		ev.clock.Set(at(1, 23, 0))
		if lr, _ := ev.e.Assess(ctx, "alice", paris, "ssh"); !slices.Contains(lr.Anomalies, ReasonTravel) {
			t.Errorf("Paris an hour after Sydney: %+v", lr)
		}
		p, err := ev.e.loadProfile(ctx, "alice")
		if err != nil || p.Geo == nil || p.Geo.Lat != -33.9 || p.Geo.Lon != 151.2 || !p.Geo.At.Equal(at(1, 22, 0)) {
			t.Errorf("profile location %+v, %v; want Sydney at 0.1° and the login's time", p.Geo, err)
		}
	})
}

// TestNoGeoNoTravel: without a Locator, profiles keep no location and
// nothing is compared.
func TestNoGeoNoTravel(t *testing.T) {
	ev := newEnv(t, "embedded", Config{})
	ctx := ev.ctx()
	ev.e.Record(ctx, "alice", mustAddr("198.51.100.1"))
	ev.clock.Advance(time.Minute)
	if lr, err := ev.e.Assess(ctx, "alice", mustAddr("203.0.113.1"), "web"); err != nil || len(lr.Anomalies) != 0 {
		t.Errorf("Assess = %+v, %v", lr, err)
	}
	if p, _ := ev.e.loadProfile(ctx, "alice"); p.Geo != nil {
		t.Errorf("location stored without a Locator: %+v", p.Geo)
	}
}

func TestGeoConfig(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.MaxTravelKmh != 1000 || c.MinTravelKm != 500 || c.GeoIPDatabase != "" {
		t.Errorf("defaults: %v km/h, %v km, %q", c.MaxTravelKmh, c.MinTravelKm, c.GeoIPDatabase)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"defaults", Config{}, nil},
		{"configured", Config{GeoIPDatabase: "/var/lib/GeoIP/GeoLite2-City.mmdb", MaxTravelKmh: 900, MinTravelKm: 300}, nil},
		{"bounds", Config{MaxTravelKmh: 100, MinTravelKm: 10}, nil},
		{"too slow", Config{MaxTravelKmh: 99}, []string{"geoip.max_speed_kmh"}},
		{"too fast", Config{MaxTravelKmh: 50001}, []string{"geoip.max_speed_kmh"}},
		{"negative speed", Config{MaxTravelKmh: -1}, []string{"geoip.max_speed_kmh"}},
		{"NaN speed", Config{MaxTravelKmh: math.NaN()}, []string{"geoip.max_speed_kmh"}},
		{"infinite distance", Config{MinTravelKm: math.Inf(1)}, []string{"geoip.min_distance_km"}},
		{"too close", Config{MinTravelKm: 5}, []string{"geoip.min_distance_km"}},
		{"farther than half the Earth", Config{MinTravelKm: 20000}, []string{"geoip.min_distance_km"}},
		{"control character in path", Config{GeoIPDatabase: "/tmp/x\n.mmdb"}, []string{"geoip.database"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := tc.cfg.Validate()
			if err != nil {
				for _, l := range strings.Split(err.Error(), "\n") {
					f, _, _ := strings.Cut(l, ": ")
					got = append(got, f)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Validate = %v, want errors at %v", err, tc.want)
			}
		})
	}
}
