package server

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/risk"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/config"
)

// openRisk builds the risk engine and runs its background work (alert
// delivery, usage flushes) until the instance closes. A lock it raises
// revokes the user's web sessions and, with a bastion, every SSH
// certificate issued to them so far. With risk.geoip configured, the
// GeoIP database is read here (an error names the key); Close releases it.
func (in *Instance) openRisk(bg context.Context, cfg *config.Config, opts Options) error {
	revokers := []risk.Revoker{in.Sessions}
	if in.CertRevocations != nil {
		revokers = append(revokers, certRevoker{in.CertRevocations})
	}
	geo := &geoLocator{}
	if path := cfg.Risk.GeoIPDatabase; path != "" {
		db, err := risk.OpenGeoIP(path)
		if err != nil {
			return fmt.Errorf("risk.geoip.database: %w", err)
		}
		geo.db.Store(db)
		in.logGeoIP(db, "GeoIP database read")
	}
	e, err := risk.New(cfg.Risk, in.Store, risk.Options{
		Instance: cfg.Instance,
		Now:      opts.Now,
		Rand:     opts.Rand,
		Logger:   opts.Logger,
		Audit:    in.Audit,
		Revokers: revokers,
		// Always the holder, even empty: a reload can turn GeoIP on.
		Geo: geo,
	})
	if err != nil {
		geo.close()
		return err
	}
	in.Risk, in.geo = e, geo
	go e.Run(bg)
	return nil
}

// geoLocator is the engine's risk.Locator: the GeoIP database in force,
// which a reload may replace or remove (nil: nothing is placed, the
// impossible-travel check is off).
type geoLocator struct {
	mu sync.Mutex // serialises reloads
	db atomic.Pointer[risk.GeoIP]
}

func (g *geoLocator) Locate(ip netip.Addr) (float64, float64, bool) {
	if db := g.db.Load(); db != nil {
		return db.Locate(ip)
	}
	return 0, 0, false
}

func (g *geoLocator) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if db := g.db.Swap(nil); db != nil {
		db.Close()
	}
}

// geoIPMaxAge: addresses change hands, and MaxMind updates its City
// databases twice a week; one older than this places some logins where
// their addresses used to be.
const geoIPMaxAge = 60 * 24 * time.Hour

func (in *Instance) logGeoIP(db *risk.GeoIP, msg string) {
	built := db.BuildTime()
	in.log.Info(msg, "path", db.Path(), "type", db.DatabaseType(), "built", built.UTC().Format(time.DateOnly))
	if age := in.now().Sub(built); age > geoIPMaxAge {
		in.log.Warn("GeoIP database is old: update it (geoipupdate) and reload", "path", db.Path(), "age_days", int(age.Hours()/24))
	}
}

// reloadGeo applies risk.geoip.database on reload: the file is read again
// when its path changed or the file did (geoipupdate renames a new one
// over it), so updating the database needs a reload, not a restart. If the
// new file cannot be read, the database in force stays: a bad update must
// not turn detection off. The outcome is noted on the reload's audit event
// as a code ("geoip": reloaded, off, reload-failed-kept-previous).
func (in *Instance) reloadGeo(cfg *config.Config, ev *audit.Event) {
	g := in.geo
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	cur, path := g.db.Load(), cfg.Risk.GeoIPDatabase
	switch {
	case path == "" && cur == nil:
	case path == "":
		g.db.Store(nil)
		cur.Close()
		ev.Attrs["geoip"] = "off"
		in.log.Info("GeoIP database released: impossible travel is no longer checked")
	case cur != nil && cur.Unchanged(path):
	default:
		db, err := risk.OpenGeoIP(path)
		if err != nil {
			ev.Attrs["geoip"] = "reload-failed-kept-previous"
			in.log.Error("risk.geoip.database: cannot read the new database; keeping the one in force", "err", err)
			return
		}
		g.db.Store(db)
		if cur != nil {
			cur.Close() // lookups running on it finish: it is in memory
		}
		ev.Attrs["geoip"] = "reloaded"
		in.logGeoIP(db, "GeoIP database reloaded")
	}
}

// certRevoker revokes every SSH certificate issued to a user up to now
// (key ID = user ID); certificates issued after an unlock are valid.
type certRevoker struct{ r *session.CertRevocations }

func (c certRevoker) RevokeUser(ctx context.Context, userID, reason string) error {
	if err := c.r.RevokeKeyID(ctx, userID, reason); err != nil {
		return fmt.Errorf("revoking SSH certificates: %w", err)
	}
	return nil
}
