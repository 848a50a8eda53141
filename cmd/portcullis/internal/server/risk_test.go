package server

import (
	"context"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

var (
	parisIP  = netip.MustParseAddr("198.51.100.7")
	sydneyIP = netip.MustParseAddr("203.0.113.7")
	paris    = [2]float64{48.8566, 2.3522}
	sydney   = [2]float64{-33.8688, 151.2093}
)

// writeCityDB writes a City-layout MaxMind DB placing 198.51.100.0/24 at
// at198 and 203.0.113.0/24 in Sydney, built at built. It writes a
// temporary file and renames it over path, as geoipupdate does.
func writeCityDB(t *testing.T, path string, at198 [2]float64, built time.Time) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoLite2-City",
		Description:             map[string]string{"en": "server test"},
		RecordSize:              24,
		IncludeReservedNetworks: true,
		BuildEpoch:              built.Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for cidr, c := range map[string][2]float64{"198.51.100.0/24": at198, "203.0.113.0/24": sydney} {
		_, n, _ := net.ParseCIDR(cidr)
		if err := tree.Insert(n, mmdbtype.Map{"location": mmdbtype.Map{
			"latitude": mmdbtype.Float64(c[0]), "longitude": mmdbtype.Float64(c[1]), "accuracy_radius": mmdbtype.Uint16(20),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func near(lat, lon float64, c [2]float64) bool {
	return math.Abs(lat-c[0]) < 1e-3 && math.Abs(lon-c[1]) < 1e-3
}

// TestReloadGeo walks a GeoIP database through reloads: unchanged (not
// read again), updated in place by rename (read again), replaced by a
// broken file (the one in force stays), removed from the config (off),
// configured again, moved to a missing path (the one in force stays).
func TestReloadGeo(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "GeoLite2-City.mmdb")
	now := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	writeCityDB(t, db, paris, now.Add(-24*time.Hour))
	first, err := risk.OpenGeoIP(db)
	if err != nil {
		t.Fatal(err)
	}
	in := &Instance{geo: &geoLocator{}, log: slog.New(slog.DiscardHandler), now: func() time.Time { return now }}
	in.geo.db.Store(first)
	t.Cleanup(in.geo.close)

	for _, step := range []struct {
		name    string
		prepare func(t *testing.T)
		path    string
		attr    string     // Attrs["geoip"]; "" absent
		want198 [2]float64 // where 198.51.100.7 is; zero: not placed
		sameDB  bool       // the database in force is the one before
	}{
		{name: "unchanged file is not read again", path: db, want198: paris, sameDB: true},
		{name: "updated file is read again", prepare: func(t *testing.T) { writeCityDB(t, db, [2]float64{40.7128, -74.0060}, now) },
			path: db, attr: "reloaded", want198: [2]float64{40.7128, -74.0060}},
		{name: "broken update keeps the database in force", prepare: func(t *testing.T) {
			if err := os.WriteFile(db+".tmp", []byte("<html>rate limited</html>"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(db+".tmp", db); err != nil {
				t.Fatal(err)
			}
		}, path: db, attr: "reload-failed-kept-previous", want198: [2]float64{40.7128, -74.0060}, sameDB: true},
		{name: "section removed: off", path: "", attr: "off"},
		{name: "still off", path: ""},
		{name: "configured again", prepare: func(t *testing.T) { writeCityDB(t, db, paris, now) }, path: db, attr: "reloaded", want198: paris},
		{name: "missing path keeps the database in force", path: filepath.Join(dir, "nope.mmdb"), attr: "reload-failed-kept-previous", want198: paris, sameDB: true},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.prepare != nil {
				step.prepare(t)
			}
			before := in.geo.db.Load()
			ev := audit.Event{Attrs: map[string]string{}}
			in.reloadGeo(&config.Config{Risk: risk.Config{GeoIPDatabase: step.path}}, &ev)
			if got := ev.Attrs["geoip"]; got != step.attr {
				t.Errorf("geoip attr %q, want %q", got, step.attr)
			}
			after := in.geo.db.Load()
			if (before == after) != step.sameDB && after != nil {
				t.Errorf("database replaced = %v, want %v", before != after, !step.sameDB)
			}
			lat, lon, ok := in.geo.Locate(parisIP)
			if placed := step.want198 != [2]float64{}; ok != placed || (ok && !near(lat, lon, step.want198)) {
				t.Errorf("198.51.100.7 at %v,%v (%v), want %v", lat, lon, ok, step.want198)
			}
			if before != nil && before != after {
				if _, _, ok := before.Locate(sydneyIP); ok {
					t.Error("the replaced database was not closed")
				}
			}
		})
	}
}

// TestOpenWithGeoIP: serve reads the configured database, the engine
// uses it, a reload through Reload reaches it, and Close releases it. A
// database that cannot be read fails Open with the key named, and the
// failed Open releases what it had opened.
func TestOpenWithGeoIP(t *testing.T) {
	f := testfixture.New(t)
	db := filepath.Join(t.TempDir(), "city.mmdb")
	writeCityDB(t, db, paris, time.Now())

	t.Run("unreadable database", func(t *testing.T) {
		cfg := load(t, f)
		cfg.Risk.GeoIPDatabase = filepath.Join(t.TempDir(), "missing.mmdb")
		_, err := Open(context.Background(), cfg, Options{})
		if err == nil || !strings.Contains(err.Error(), "risk.geoip.database") {
			t.Fatalf("Open = %v, want an error naming risk.geoip.database", err)
		}
	})

	cfg := load(t, f)
	cfg.Risk.GeoIPDatabase = db
	clock := time.Now()
	in, err := Open(context.Background(), cfg, Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			in.Close()
		}
	}()
	ctx := context.Background()
	if err := in.Risk.Record(ctx, "alice", parisIP); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	lr, err := in.Risk.Assess(ctx, "alice", sydneyIP, "web")
	if err != nil || !slices.Contains(lr.Anomalies, risk.ReasonTravel) || !lr.StepUp {
		t.Errorf("Sydney an hour after Paris: %+v, %v", lr, err)
	}

	// A reload that drops the section turns the check off.
	off := *cfg
	off.Risk.GeoIPDatabase = ""
	if err := in.Reload(ctx, func() (*config.Config, error) { return &off, nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := in.geo.Locate(parisIP); ok {
		t.Error("placed after a reload without geoip")
	}
	if err := in.Reload(ctx, func() (*config.Config, error) { return cfg, nil }); err != nil {
		t.Fatal(err)
	}
	held := in.geo.db.Load()
	if held == nil {
		t.Fatal("no database after a reload with geoip")
	}
	closed = true
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := held.Locate(parisIP); ok || in.geo.db.Load() != nil {
		t.Error("Close did not release the GeoIP database")
	}
}
