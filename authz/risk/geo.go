package risk

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Locator finds where an address is on Earth. The engine asks it about
// the source of every assessed and every recorded login; an address it
// cannot place (ok false) is simply not compared. It must be safe for
// concurrent use. *GeoIP is the implementation backed by a MaxMind DB
// file; tests inject their own.
type Locator interface {
	Locate(ip netip.Addr) (lat, lon float64, ok bool)
}

// GeoIP is a Locator reading a MaxMind DB (.mmdb) City database in the
// GeoIP2-City / GeoLite2-City layout (location.latitude,
// location.longitude, location.accuracy_radius). It is safe for
// concurrent use, and Close may run while other goroutines locate: a
// lookup after Close finds nothing.
type GeoIP struct {
	r    atomic.Pointer[maxminddb.Reader]
	path string
	info os.FileInfo
	meta maxminddb.Metadata
}

const (
	// maxGeoIPSize bounds the database read into memory. GeoIP2-City is
	// around 130 MB and GeoLite2-City 60 MB.
	maxGeoIPSize = 1 << 30
	// maxAccuracyKm: a record whose accuracy radius is larger than this
	// places the address only in its country (MaxMind then gives the
	// country's centroid, with a radius of 1000 km). Comparing such a
	// centroid with a city would report travel that never happened.
	maxAccuracyKm = 500
)

// OpenGeoIP reads the MaxMind DB City database at path into memory. The
// file is read, not memory-mapped: an update that rewrites it in place
// (cp over it, instead of geoipupdate's rename) would otherwise change
// or truncate the mapping under live lookups and crash the process.
// A file that is not a MaxMind DB, or one without city locations (a
// Country or ASN database), is refused with an error saying so.
func OpenGeoIP(path string) (*GeoIP, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // keeps fs.ErrNotExist / fs.ErrPermission for callers
	}
	defer f.Close()
	info, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case info.Size() == 0:
		return nil, fmt.Errorf("%s is empty, not a MaxMind DB (.mmdb) file", path)
	case info.Size() > maxGeoIPSize:
		return nil, fmt.Errorf("%s is larger than %d bytes, too large for a GeoIP City database", path, maxGeoIPSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxGeoIPSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	r, err := openMMDB(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not a MaxMind DB (.mmdb) file: %v", path, err)
	}
	if !cityLayout(r.Metadata.DatabaseType) {
		return nil, fmt.Errorf("%s is a %q MaxMind DB, which has no city locations: use a City database (GeoLite2-City, GeoIP2-City)", path, r.Metadata.DatabaseType)
	}
	if err := probe(r); err != nil {
		return nil, fmt.Errorf("%s is a corrupt MaxMind DB: %v", path, err)
	}
	g := &GeoIP{path: path, info: info, meta: r.Metadata}
	g.r.Store(r)
	return g, nil
}

// openMMDB parses data as a MaxMind DB. The reader library checks its
// input, but a corrupt file must never take the process down: a panic
// is turned into an error.
func openMMDB(data []byte) (r *maxminddb.Reader, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("corrupt database (%v)", p)
		}
	}()
	r, err = maxminddb.OpenBytes(data)
	if err != nil {
		return nil, err
	}
	if v := r.Metadata.BinaryFormatMajorVersion; v != 2 {
		return nil, fmt.Errorf("unsupported binary format version %d", v)
	}
	return r, nil
}

// probe looks up addresses spread over both address families. The
// library's full Verify would catch more, but takes seconds per 10 MB
// (a GeoLite2-City is 60 MB, and is opened by every config check and
// start-up); a damaged search tree or data section fails some of these
// lookups. A damaged record that no probe hits makes only its own
// lookups fail: those addresses have no location.
func probe(r *maxminddb.Reader) error {
	var addrs []netip.Addr
	for i := range 64 {
		addrs = append(addrs, netip.AddrFrom4([4]byte{byte(i<<2 | 1), byte(i * 37), byte(i * 11), 1}))
	}
	for i := range 16 {
		addrs = append(addrs, netip.AddrFrom16([16]byte{0x20, byte(i << 4), byte(i * 29), 1, 15: 1}))
	}
	for _, ip := range addrs {
		var rec geoRecord
		if err := lookup(r, ip, &rec); err != nil {
			return fmt.Errorf("looking up %s: %v", ip, err)
		}
	}
	return nil
}

// cityLayout reports whether a database type has per-city locations:
// MaxMind's GeoIP2-City, GeoLite2-City and GeoIP2-Enterprise, and
// compatible City databases of other vendors (DBIP-City-Lite …).
func cityLayout(dbType string) bool {
	t := strings.ToLower(dbType)
	return strings.Contains(t, "city") || strings.Contains(t, "enterprise")
}

// geoRecord is the part of a City record the engine reads.
type geoRecord struct {
	Location struct {
		Latitude       *float64 `maxminddb:"latitude"`
		Longitude      *float64 `maxminddb:"longitude"`
		AccuracyRadius uint16   `maxminddb:"accuracy_radius"`
	} `maxminddb:"location"`
}

// Locate returns the latitude and longitude recorded for ip. Addresses
// that are not public (private, loopback, link-local, CGNAT…) have no
// location; neither has an address whose record is missing, has no
// coordinates, or is only placed within its country.
func (g *GeoIP) Locate(ip netip.Addr) (lat, lon float64, ok bool) {
	r := g.r.Load()
	if r == nil || !locatable(ip) {
		return 0, 0, false
	}
	var rec geoRecord
	if err := lookup(r, ip.Unmap(), &rec); err != nil {
		return 0, 0, false
	}
	l := rec.Location
	if l.Latitude == nil || l.Longitude == nil || l.AccuracyRadius > maxAccuracyKm || !validCoord(*l.Latitude, *l.Longitude) {
		return 0, 0, false
	}
	return *l.Latitude, *l.Longitude, true
}

// lookup decodes ip's record; as in openMMDB, a corrupt record is an
// error, never a panic on the login path.
func lookup(r *maxminddb.Reader, ip netip.Addr, rec *geoRecord) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupt record (%v)", p)
		}
	}()
	return r.Lookup(ip).Decode(rec)
}

// Close releases the database. Lookups still running finish on it (it is
// in memory: nothing is unmapped under them); later ones find nothing.
func (g *GeoIP) Close() error {
	g.r.Store(nil)
	return nil
}

// Path is the file the database was read from.
func (g *GeoIP) Path() string { return g.path }

// DatabaseType is the database's type from its metadata ("GeoLite2-City").
func (g *GeoIP) DatabaseType() string { return g.meta.DatabaseType }

// BuildTime is when the database was built: an old one places addresses
// that changed hands since wherever they used to be.
func (g *GeoIP) BuildTime() time.Time { return g.meta.BuildTime() }

// Unchanged reports whether path names the very file this database was
// read from, unmodified (same file, size and modification time), so a
// reload can skip reading it again.
func (g *GeoIP) Unchanged(path string) bool {
	if path != g.path {
		return false
	}
	info, err := os.Stat(path)
	return err == nil && os.SameFile(info, g.info) && info.Size() == g.info.Size() && info.ModTime().Equal(g.info.ModTime())
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// locatable reports whether ip is a public address, the only kind a
// GeoIP database can place. A login from a private network (a VPN, an
// office behind a proxy the gateway does not trust) has no location
// and is never reported as travel.
func locatable(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
}

func validCoord(lat, lon float64) bool {
	return !math.IsNaN(lat) && !math.IsNaN(lon) && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180
}

// earthRadiusKm is the mean radius of the Earth (IUGG).
const earthRadiusKm = 6371.0088

// haversineKm is the great-circle distance between two points given in
// degrees. The haversine form stays accurate for small distances and
// needs no special case across the antimeridian.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadiusKm * math.Asin(math.Min(1, math.Sqrt(a)))
}

// geoFix is where and when a login happened, at city precision: the
// coordinates are rounded to 0.1° (about 11 km), which is all a GeoIP
// database can tell and all the profile needs to keep about a person.
type geoFix struct {
	Lat float64   `json:"lat"`
	Lon float64   `json:"lon"`
	At  time.Time `json:"at"`
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// String is "lat,lon" with one decimal, as audit events show it.
func (f geoFix) String() string { return fmt.Sprintf("%.1f,%.1f", f.Lat, f.Lon) }

// locate places ip for the engine: nil Locator, non-public addresses and
// invalid coordinates give no fix, whatever the Locator does.
func (e *Engine) locate(ip netip.Addr, at time.Time) (geoFix, bool) {
	if e.opts.Geo == nil || !locatable(ip) {
		return geoFix{}, false
	}
	lat, lon, ok := e.opts.Geo.Locate(ip.Unmap())
	if !ok || !validCoord(lat, lon) {
		return geoFix{}, false
	}
	return geoFix{Lat: round1(lat), Lon: round1(lon), At: at.UTC()}, true
}

// minTravelTime floors the time between two logins when computing a
// speed: logins at the same instant (or out of order, when instances'
// clocks disagree) would otherwise divide by zero or go backwards.
const minTravelTime = time.Second

// travel compares two logins: the distance between them, the speed it
// would take to cover it, and whether that is impossible, i.e. farther
// than minKm (closer than that, GeoIP city placement is noise) and
// faster than maxKmh.
func travel(from, to geoFix, minKm, maxKmh float64) (km, kmh float64, impossible bool) {
	km = haversineKm(from.Lat, from.Lon, to.Lat, to.Lon)
	elapsed := max(to.At.Sub(from.At), minTravelTime)
	kmh = km / elapsed.Hours()
	return km, kmh, km > minKm && kmh > maxKmh
}
