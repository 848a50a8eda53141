package review

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz"
	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// Fuzzing of campaign names and of the stored campaign records. Names
// arrive in URLs, forms and CLI arguments and become store IDs; records
// come from a shared store. Seeds, including what fuzzing runs found
// interesting, are in testdata/fuzz/<FuzzName>/ and replay on every
// `go test`.

// fuzzAt is the fuzzed managers' clock.
var fuzzAt = time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC)

// fuzzReviewManager is a manager on an empty fake store at fuzzAt.
func fuzzReviewManager(t *testing.T) (*Manager, *fakeStore) {
	t.Helper()
	st := newFakeStore()
	pol := mustPolicy(t, authz.PolicyConfig{Roles: []authz.RoleConfig{{Name: "viewer", Groups: []string{"everyone"}}}})
	m, err := New(Config{}, Deps{
		Store: st, Policy: func() *authz.Policy { return pol }, AuditDir: t.TempDir(), Audit: &audit.Memory{},
		Grants: &fakeGrants{grants: map[string]access.Grant{}}, Now: func() time.Time { return fuzzAt }, Rand: &countingReader{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, st
}

func FuzzCampaignName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string) {
		ctx := context.Background()
		m, st := fuzzReviewManager(t)
		if err := CheckName(name); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("CheckName(%q) = %v, not ErrInvalid", name, err)
			}
			// A refused name never reaches the store.
			if _, err := m.Get(ctx, name); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Get(%q) = %v, want ErrInvalid", name, err)
			}
			if _, err := m.Decide(ctx, root, name, "1", Keep, ""); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decide on %q = %v, want ErrInvalid", name, err)
			}
			return
		}
		s := Slug(name)
		if len(s) == 0 || len(s) > maxIDLen || len(itemKind(s)) > maxKindLen {
			t.Fatalf("Slug(%q) = %q: length %d out of bounds (item kind %d bytes)", name, s, len(s), len(itemKind(s)))
		}
		// A store ID and a path segment: lower-case letters, digits and
		// ".-_" only, starting with a letter or digit, so never "." or
		// "..", never hidden, never a separator or a control character.
		for i := 0; i < len(s); i++ {
			c := s[i]
			alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
			if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
				t.Fatalf("Slug(%q) = %q has byte %q at %d", name, s, c, i)
			}
		}
		if Slug(s) != s || CheckName(s) != nil {
			t.Fatalf("Slug(%q) = %q is not a fixed point (%q, %v)", name, s, Slug(s), CheckName(s))
		}
		if u := Slug(strings.ToUpper(name)); u != s {
			t.Fatalf("Slug is case-sensitive: %q vs %q", s, u)
		}
		if len(name) <= maxIDLen && s != strings.ToLower(name) {
			t.Fatalf("a short name is hashed: %q → %q", name, s)
		}
		// The name and its ID find the same campaign.
		if _, err := m.Get(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get(%q) on an empty store = %v, want ErrNotFound", name, err)
		}
		b, err := json.Marshal(header{ID: s, Name: name, CreatedAt: fuzzAt, Due: fuzzAt.Add(DefaultDue), CreatedBy: root})
		if err != nil {
			t.Fatal(err)
		}
		st.put(KindCampaign, s, b)
		for _, q := range []string{name, s, strings.ToUpper(name)} {
			c, err := m.Get(ctx, q)
			if err != nil || c.ID != s || c.Name != name {
				t.Fatalf("Get(%q) = %+v, %v; want campaign %q", q, c, err, s)
			}
		}
	})
}

// fuzzCampaign is the campaign the record fuzzer stores.
const (
	fuzzCampaignName = "2026-Q4"
	fuzzCampaignID   = "2026-q4"
)

// reportTags are the element names the HTML report's template uses: data
// can never add another (html/template escapes it).
var reportTags = func() map[string]bool {
	tags := map[string]bool{}
	for _, m := range tagName.FindAllStringSubmatch(htmlSource, -1) {
		tags[strings.ToLower(m[1])] = true
	}
	return tags
}()

var tagName = regexp.MustCompile(`<([A-Za-z][A-Za-z0-9-]*)`)

func FuzzCampaignRecords(f *testing.F) {
	f.Fuzz(func(t *testing.T, hdr, item []byte, itemID string) {
		ctx := context.Background()
		m, st := fuzzReviewManager(t)
		st.put(KindCampaign, fuzzCampaignID, hdr)
		st.put(itemKind(fuzzCampaignID), itemID, item)
		var h header
		hdrOK := json.Unmarshal(hdr, &h) == nil && h.ID == fuzzCampaignID

		c, err := m.Get(ctx, fuzzCampaignName)
		switch {
		case !hdrOK:
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("Get with a header that does not decode under its key = %v, want store.ErrUnavailable", err)
			}
		case err != nil:
		case len(c.Items) != h.Items:
			t.Fatalf("Get returned %d items, the header says %d", len(c.Items), h.Items)
		default:
			for _, it := range c.Items {
				if it.ID != itemID {
					t.Fatalf("item %q stored under key %q", it.ID, itemID)
				}
			}
			checkReports(t, c)
		}
		_, serr := m.Status(ctx)
		if !hdrOK && !errors.Is(serr, store.ErrUnavailable) {
			t.Fatalf("Status with a header that does not decode = %v", serr)
		}

		// Acting on it never panics, and never acts on a campaign whose
		// header is unreadable.
		decideID := itemID
		if checkItemID(decideID) != nil {
			decideID = "1"
		}
		for _, d := range []string{Revoke, Keep} {
			if _, derr := m.Decide(ctx, root, fuzzCampaignName, decideID, d, "fuzz"); derr == nil && !hdrOK {
				t.Fatalf("Decide succeeded on a campaign whose header does not decode")
			}
		}
		signed, serr := m.SignOff(ctx, root, fuzzCampaignName)
		if serr == nil && err != nil {
			t.Fatalf("SignOff succeeded on a campaign Get refuses (%v)", err)
		}
		if serr != nil {
			return
		}
		if signed.SignedOffAt.IsZero() || signed.SignedOffBy != root {
			t.Fatalf("signed-off campaign %+v", signed)
		}
		for _, it := range signed.Items {
			if it.Decision == "" {
				t.Fatalf("signed off with undecided item %+v", it)
			}
		}
		// Signed off is final.
		if _, err := m.Decide(ctx, root, fuzzCampaignName, decideID, Keep, ""); err == nil {
			t.Fatalf("a decision changed a signed-off campaign")
		}
		checkReports(t, signed)
	})
}

// checkReports renders c in every format: CSV parses back with every
// cell defused, JSON is valid, HTML has only the template's elements.
func checkReports(t *testing.T, c Campaign) {
	t.Helper()
	for _, format := range []string{FormatCSV, FormatJSON, FormatHTML} {
		var buf bytes.Buffer
		if err := WriteReport(&buf, c, format); err != nil {
			t.Fatalf("%s report: %v", format, err)
		}
		switch format {
		case FormatCSV:
			rows, err := csv.NewReader(&buf).ReadAll()
			if err != nil {
				t.Fatalf("CSV report does not parse: %v", err)
			}
			if len(rows) != 1+len(c.Items) {
				t.Fatalf("CSV report has %d rows for %d items", len(rows), len(c.Items))
			}
			for _, row := range rows[1:] {
				for i, cell := range row {
					if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
						t.Fatalf("CSV cell %s = %q starts a formula", csvHeader[i], cell)
					}
				}
			}
		case FormatJSON:
			if !json.Valid(buf.Bytes()) {
				t.Fatalf("JSON report is not JSON")
			}
		case FormatHTML:
			for _, m := range tagName.FindAllStringSubmatch(buf.String(), -1) {
				if !reportTags[strings.ToLower(m[1])] {
					t.Fatalf("HTML report has a <%s> element the template does not:\n%s", m[1], buf.String())
				}
			}
		}
	}
}
