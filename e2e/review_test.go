package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/review"
	"github.com/portcullis/portcullis/e2e/harness"
)

// quarterUsers are the IdP accounts of the scripted quarter: alice uses
// app, bob logs in to db-1 over SSH, dave asks for db-admin, frank (an
// sre-lead) approves, ada (an admin) decides on the web page after the
// campaign started. carol (db-admin through a users: entry) and erin (an
// admin-added grant) never log in.
var quarterUsers = map[string][]string{
	"alice": {"engineers"},
	"bob":   {"sshops"},
	"dave":  {"engineers"},
	"frank": {"leads"},
	"ada":   {"admins"},
}

const campaignName = "2026-Q4"

// TestAccessReviewQuarter plays a quarter of access and reviews it: the
// review's evidence (last login, last use per app or target and login,
// dormant, unused, locked, MFA) must be what the trail recorded; revoking
// a temporary grant takes effect on the very next request, revoking an
// IdP-group membership becomes an action for a human; the sign-off, the
// reports (CSV, JSON, and HTML rendered in Chromium) and the trail agree.
//
// "Days" are real time: the server's clock cannot be moved, so the test
// checks the exact times the trail recorded rather than dates.
func TestAccessReviewQuarter(t *testing.T) {
	t.Parallel()
	as := newAccessSite(t, quarterUsers, func(s *site) []string { return []string{s.userID("carol")} })
	carolID, erinID := as.userID("carol"), as.userID("erin")
	alice, bob, dave, frank := as.signIn(t, "alice"), as.signIn(t, "bob"), as.signIn(t, "dave"), as.signIn(t, "frank")

	// "Day 1": alice uses app.
	if r := alice.visit(as.p.URL(appHost, "/day-1")); r.StatusCode != http.StatusOK {
		t.Fatalf("alice on app: %d", r.StatusCode)
	}
	// bob logs in to db-1 as root through the bastion.
	if r := as.ssh(t, as.sshCert(t, bob), "echo quarter-bob"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "quarter-bob" {
		t.Fatalf("bob's ssh: %+v\n--- server:\n%s", r, tail(as.p.Output(), 3000))
	}
	// dave asks for db-admin; the admin socket cannot approve (nobody
	// signed in), frank can; dave uses db.
	as.mintToken(t, dave)
	as.mintToken(t, frank)
	r := dave.api.Call(http.MethodPost, "/api/access/requests", map[string]string{"role": "db-admin", "duration": "2h", "reason": "INC-4711 restore"})
	wantStatus(t, "dave's request", r, http.StatusCreated, "")
	var rq apiRequest
	harness.DecodeJSON(t, r, &rq)
	if r := dave.visit(as.p.URL(dbHost, "/before-approval")); r.StatusCode != http.StatusForbidden {
		t.Fatalf("db for dave before approval: %d, want 403", r.StatusCode)
	}
	adm := as.p.AdminAPI(t)
	if code, body := adm.Call(http.MethodPost, "/api/admin/requests/"+url.PathEscape(rq.ID)+"/approve", map[string]string{"note": "socket"}); code != http.StatusForbidden || harness.ParseAPIError(body).Reason != "approver-required" {
		t.Fatalf("approval over the admin socket: %d %s, want 403 approver-required", code, body)
	}
	r = approve(frank, rq.ID)
	wantStatus(t, "frank approves", r, http.StatusOK, "")
	harness.DecodeJSON(t, r, &rq)
	if rq.State != "approved" || rq.GrantID == "" {
		t.Fatalf("dave's request after frank's approval: %+v", rq)
	}
	for _, p := range []string{"/day-12", "/day-13"} {
		if r := dave.visit(as.p.URL(dbHost, p)); r.StatusCode != http.StatusOK {
			t.Fatalf("db for dave with the grant: %d", r.StatusCode)
		}
	}
	// erin gets a standing grant from an admin and never uses it.
	as.admin(t, "grants", "add", erinID, "sshops", "--reason", "standby on-call")
	var grants grantsAnswer
	if err := json.Unmarshal([]byte(as.admin(t, "--json", "grants").Stdout), &grants); err != nil {
		t.Fatalf("admin --json grants: %v", err)
	}
	gi := slices.IndexFunc(grants.Grants, func(g apiGrant) bool { return g.UserID == erinID })
	if gi < 0 || grants.Grants[gi].Source != "local" || grants.Grants[gi].Role != "sshops" || grants.Grants[gi].Expires != "" {
		t.Fatalf("admin grants after adding erin's: %+v", grants.Grants)
	}
	erinGrant := grants.Grants[gi].ID
	// "Day 40": alice again. Then bob is locked.
	if r := alice.visit(as.p.URL(appHost, "/day-40")); r.StatusCode != http.StatusOK {
		t.Fatalf("alice on app, day 40: %d", r.StatusCode)
	}
	as.admin(t, "lock", bob.id, "--reason", "left the team")

	// The trail holds every use before the review reads it.
	harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, UserID: alice.id, Decision: audit.Allow, PathContains: "/day-40"})
	harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: audit.TypeDecision, UserID: dave.id, Decision: audit.Allow, PathContains: "/day-13"})
	harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: audit.TypeRiskLock, UserID: bob.id})

	as.admin(t, "review", "start", "--name", campaignName)
	c := showCampaign(t, as)
	trail := harness.ReadAudit(t, as.p.AuditDir)
	dir := directory(t, as)
	t.Logf("campaign %s items:\n%s", c.ID, itemsText(c.Items))

	type want struct {
		user, role string
		source     review.Source
		via        string // group, config entry or grant ID
		use        *useKey
		dormant    bool
		unused     bool
		locked     bool
		mfa        bool
	}
	wants := []want{
		{alice.id, "engineer", review.SourceIdPGroup, "engineers", &useKey{"app", "app", ""}, false, false, false, true},
		{bob.id, "sshops", review.SourceIdPGroup, "sshops", &useKey{"ssh", "db-1", "root"}, false, false, true, true},
		{dave.id, "engineer", review.SourceIdPGroup, "engineers", nil, false, true, false, true},
		{dave.id, "db-admin", review.SourceTemporary, rq.GrantID, &useKey{"app", "db", ""}, false, false, false, true},
		{frank.id, "sre-lead", review.SourceIdPGroup, "leads", nil, false, true, false, true},
		{carolID, "db-admin", review.SourceConfig, carolID, nil, true, true, false, false},
		{erinID, "sshops", review.SourceLocal, erinGrant, nil, true, true, false, false},
	}
	if len(c.Items) != len(wants) {
		t.Errorf("campaign has %d items, want %d:\n%s", len(c.Items), len(wants), itemsText(c.Items))
	}
	for _, w := range wants {
		it, ok := findItem(c, w.user, w.role, w.source)
		if !ok {
			t.Errorf("no item %s %s %s:\n%s", w.user, w.role, w.source, itemsText(c.Items))
			continue
		}
		name := w.user + "/" + w.role + "/" + string(w.source)
		via := map[review.Source]string{review.SourceIdPGroup: it.Group, review.SourceConfig: it.ConfigEntry}[w.source]
		if w.source == review.SourceTemporary || w.source == review.SourceLocal {
			via = it.GrantID
		}
		if via != w.via {
			t.Errorf("%s: via %q, want %q", name, via, w.via)
		}
		if it.Dormant != w.dormant || it.Unused != w.unused || it.Locked != w.locked || it.MFAEnrolled != w.mfa {
			t.Errorf("%s: dormant %v unused %v locked %v mfa %v; want %v %v %v %v", name,
				it.Dormant, it.Unused, it.Locked, it.MFAEnrolled, w.dormant, w.unused, w.locked, w.mfa)
		}
		// Last login: the later of the directory's and the trail's last
		// session start; never for carol and erin.
		wantLogin := lastLogin(trail, w.user)
		if d := dir[w.user]; d.After(wantLogin) {
			wantLogin = d
		}
		if !it.LastLogin.Equal(wantLogin) {
			t.Errorf("%s: last login %v, want %v (trail and directory)", name, it.LastLogin, wantLogin)
		}
		if w.use == nil {
			if len(it.Uses) != 0 || !it.LastUse.IsZero() {
				t.Errorf("%s: uses %+v, last use %v; want none", name, it.Uses, it.LastUse)
			}
			continue
		}
		last, n := lastUse(trail, w.user, w.role, *w.use)
		if n == 0 {
			t.Errorf("%s: the trail has no allowed %+v", name, *w.use)
			continue
		}
		if len(it.Uses) != 1 || it.Uses[0].Kind != w.use.kind || it.Uses[0].Name != w.use.name || it.Uses[0].Login != w.use.login ||
			it.Uses[0].Count != n || !it.Uses[0].Last.Equal(last) || !it.LastUse.Equal(last) {
			t.Errorf("%s: uses %+v, last use %v; want %+v ×%d, last %v (the last allowed decision in the trail)",
				name, it.Uses, it.LastUse, *w.use, n, last)
		}
	}
	if alice, ok := findItem(c, alice.id, "engineer", review.SourceIdPGroup); ok && (len(alice.Uses) == 0 || alice.Uses[0].Count < 2) {
		t.Errorf("alice used app on two days; the review counts %+v", alice.Uses)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Decisions.
	decide := func(user, role string, src review.Source, decision string) harness.Result {
		t.Helper()
		it, _ := findItem(c, user, role, src)
		return as.admin(t, "review", "decide", campaignName, it.ID, decision, "--note", "Q4 "+decision)
	}
	out := decide(dave.id, "db-admin", review.SourceTemporary, review.Revoke)
	if r := dave.visit(as.p.URL(dbHost, "/after-revoke")); r.StatusCode != http.StatusForbidden {
		t.Fatalf("dave's next request after the review revoked his grant: %d, want 403 (decide said %q)", r.StatusCode, out.Stdout)
	}
	waitEvent(t, as.p, "revocation of dave's grant", func(e audit.Event) bool {
		return e.Type == "access.revoke" && e.UserID == dave.id && e.Attrs["grant_id"] == rq.GrantID
	})
	if out := decide(alice.id, "engineer", review.SourceIdPGroup, review.Revoke); !strings.Contains(out.Stdout, `remove `+alice.id+` from IdP group "engineers"`) {
		t.Errorf("revoking alice's group membership names no action:\n%s", out.Stdout)
	}
	decide(carolID, "db-admin", review.SourceConfig, review.Revoke)
	decide(bob.id, "sshops", review.SourceIdPGroup, review.Keep)
	// Three items are still open: no sign-off yet.
	if r := harness.RunPortcullis(t, "admin", "--socket", as.p.AdminSocket, "review", "signoff", campaignName); r.Code == 0 {
		t.Fatalf("sign-off with undecided items succeeded:\n%s", r.Stdout)
	}
	decide(erinID, "sshops", review.SourceLocal, review.Revoke)

	// The last two decisions and the sign-off on the web page, by ada (an
	// admin signing in only now, so she is not in the campaign) in Chromium.
	bctx := harness.Browser(t, true)
	ada := as.userID("ada")
	page := as.p.AccessURL + "/reviews/" + campaignName
	if l := harness.LoginBrowser(t, bctx, page, as.users["ada"], nil); l.URL != page {
		t.Fatalf("ada's login ended at %s, want the review page %s", l.URL, page)
	}
	for _, k := range []struct {
		user, role string
	}{{dave.id, "engineer"}, {frank.id, "sre-lead"}} {
		it, _ := findItem(c, k.user, k.role, review.SourceIdPGroup)
		if got := clickReview(t, bctx, "#item-"+it.ID+" button.keep", "#item-"+it.ID); got != review.Keep {
			t.Fatalf("after Keep on item %s the page shows decision %q", it.ID, got)
		}
	}
	clickReview(t, bctx, "#signoff-button", "#signed-off")
	if it, _ := findItem(c, frank.id, "sre-lead", review.SourceIdPGroup); harness.RunPortcullis(t, "admin", "--socket", as.p.AdminSocket,
		"review", "decide", campaignName, it.ID, "revoke").Code == 0 {
		t.Fatal("a decision after the sign-off was accepted")
	}

	c = showCampaign(t, as)
	if c.SignedOffBy != ada || c.SignedOffAt.IsZero() {
		t.Fatalf("campaign after sign-off: by %q at %v, want %s", c.SignedOffBy, c.SignedOffAt, ada)
	}
	if it, _ := findItem(c, frank.id, "sre-lead", review.SourceIdPGroup); it.DecidedBy != ada {
		t.Errorf("frank's item decided on the web page by %q, want %s", it.DecidedBy, ada)
	}
	decisions := map[string]string{}
	for _, it := range c.Items {
		decisions[it.UserID+"/"+it.Role+"/"+string(it.Source)] = it.Decision
		if it.Decision == "" || it.DecidedBy == "" || it.DecidedAt.IsZero() {
			t.Errorf("item %s undecided after sign-off: %+v", it.ID, it)
		}
		switch {
		case it.Decision == review.Revoke && it.Source == review.SourceIdPGroup:
			if it.Action == "" {
				t.Errorf("revoked group item %s has no action", it.ID)
			}
		case it.Decision == review.Revoke && it.Source == review.SourceConfig:
			if !strings.Contains(it.Action, "roles[db-admin].users") {
				t.Errorf("revoked config item %s: action %q", it.ID, it.Action)
			}
		case it.Decision == review.Revoke:
			if !it.Revoked {
				t.Errorf("revoked grant item %s not applied: %+v", it.ID, it)
			}
		}
	}
	if err := json.Unmarshal([]byte(as.admin(t, "--json", "grants").Stdout), &grants); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(grants.Grants, func(g apiGrant) bool { return g.ID == rq.GrantID || g.ID == erinGrant }) {
		t.Errorf("revoked grants still listed: %+v", grants.Grants)
	}

	t.Run("reports", func(t *testing.T) { testReviewReports(t, as, bctx, c, alice.id) })

	// The campaign, each decision and the sign-off are in the trail.
	harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: review.TypeSignOff})
	// The web page's report event may still be on its way (batched).
	reports := func() []audit.Event {
		return findEvents(t, as.p, func(e audit.Event) bool { return e.Type == review.TypeReport && e.Attrs["campaign"] == campaignName })
	}
	for deadline := time.Now().Add(10 * time.Second); len(reports()) < 4 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	trail = harness.ReadAudit(t, as.p.AuditDir)
	count := func(typ string) (n int) {
		for _, e := range trail {
			if e.Type == typ && e.Decision != audit.Deny && e.Attrs["campaign"] == campaignName {
				n++
			}
		}
		return n
	}
	if s, d, o := count(review.TypeStart), count(review.TypeDecide), count(review.TypeSignOff); s != 1 || d != len(wants) || o != 1 {
		t.Errorf("trail: %d review.start, %d review.decide, %d review.signoff; want 1, %d, 1", s, d, o, len(wants))
	}
	// Who fetched the reports is audited too: three by the CLI, one page.
	if n := count(review.TypeReport); n < 4 {
		t.Errorf("trail: %d review.report events, want 4 (csv, html, json, web page)", n)
	}
	for _, e := range trail {
		if e.Type == review.TypeDecide && e.Decision != audit.Deny {
			k := e.UserID + "/" + e.Attrs["role"] + "/" + e.Attrs["source"]
			if decisions[k] != e.Attrs["decision"] || e.Actor == "" {
				t.Errorf("review.decide %v by %q: the campaign says %q", e.Attrs, e.Actor, decisions[k])
			}
		}
	}
}

// useKey names one use: an app route, or an SSH target with a login.
type useKey struct{ kind, name, login string }

// lastUse returns the time of the last allowed decision of user through
// role for k in the trail, and how many there are.
func lastUse(trail []audit.Event, user, role string, k useKey) (time.Time, int) {
	var last time.Time
	n := 0
	for _, e := range trail {
		if e.Type != audit.TypeDecision || e.Decision != audit.Allow || e.UserID != user || e.Role != role {
			continue
		}
		if k.kind == "app" && e.App != k.name || k.kind == "ssh" && (e.Target != k.name || e.Attrs["login"] != k.login) {
			continue
		}
		n++
		if e.Time.After(last) {
			last = e.Time
		}
	}
	return last, n
}

// lastLogin is the time of the user's last session start the trail
// recorded (a login, or a hop to a route host; refusals excluded).
func lastLogin(trail []audit.Event, user string) time.Time {
	var last time.Time
	for _, e := range trail {
		if e.Type == audit.TypeSessionStart && e.UserID == user && e.Decision != audit.Deny && e.Time.After(last) {
			last = e.Time
		}
	}
	return last
}

// directory is each known user's last login as `admin --json users`
// reports it.
func directory(t *testing.T, as *accessSite) map[string]time.Time {
	t.Helper()
	var users []struct {
		UserID    string    `json:"user_id"`
		LastLogin time.Time `json:"last_login"`
	}
	if err := json.Unmarshal([]byte(as.admin(t, "--json", "users").Stdout), &users); err != nil {
		t.Fatalf("admin --json users: %v", err)
	}
	out := map[string]time.Time{}
	for _, u := range users {
		out[u.UserID] = u.LastLogin
	}
	return out
}

// showCampaign reads the campaign through `admin --json review show`.
func showCampaign(t *testing.T, as *accessSite) review.Campaign {
	t.Helper()
	var c review.Campaign
	out := as.admin(t, "--json", "review", "show", campaignName)
	if err := json.Unmarshal([]byte(out.Stdout), &c); err != nil {
		t.Fatalf("admin --json review show: %v\n%s", err, out.Stdout)
	}
	if c.Name != campaignName {
		t.Fatalf("campaign %q, want %q", c.Name, campaignName)
	}
	return c
}

func findItem(c review.Campaign, user, role string, src review.Source) (review.Item, bool) {
	i := slices.IndexFunc(c.Items, func(it review.Item) bool { return it.UserID == user && it.Role == role && it.Source == src })
	if i < 0 {
		return review.Item{}, false
	}
	return c.Items[i], true
}

func itemsText(items []review.Item) string {
	var b strings.Builder
	for _, it := range items {
		j, _ := json.Marshal(it)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// testReviewReports fetches the signed-off campaign's reports with the
// CLI: CSV and JSON carry every item with its decision; the HTML report,
// rendered by Chromium from disk, has the items table with one row per
// item, read by element ID and data attributes.
func testReviewReports(t *testing.T, as *accessSite, bctx context.Context, c review.Campaign, aliceID string) {
	dir := t.TempDir()
	csvFile, htmlFile := filepath.Join(dir, "q4.csv"), filepath.Join(dir, "q4.html")
	as.admin(t, "review", "report", campaignName, "--format", "csv", "--out", csvFile)
	as.admin(t, "review", "report", campaignName, "--format", "html", "--out", htmlFile)
	jsonOut := as.admin(t, "review", "report", campaignName, "--format", "json").Stdout

	byItem := map[string]review.Item{}
	for _, it := range c.Items {
		byItem[it.ID] = it
	}
	f, err := os.Open(csvFile)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != len(c.Items)+1 {
		t.Fatalf("CSV report: %d rows (%v), want a header and %d items", len(rows), err, len(c.Items))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, row := range rows[1:] {
		it, ok := byItem[row[col["item"]]]
		if !ok || row[col["user_id"]] != it.UserID || row[col["role"]] != it.Role || row[col["decision"]] != it.Decision ||
			row[col["campaign"]] != campaignName || row[col["signed_off_by"]] != c.SignedOffBy || row[col["action"]] != it.Action {
			t.Errorf("CSV row %v does not match item %+v", row, it)
		}
		if want := reportTime(it.LastUse); row[col["last_use"]] != want {
			t.Errorf("CSV item %s: last_use %q, want %q", it.ID, row[col["last_use"]], want)
		}
	}

	var rep struct {
		Campaign struct {
			Name        string `json:"name"`
			SignedOffBy string `json:"signed_off_by"`
			Items       int    `json:"items"`
			Keep        int    `json:"keep"`
			Revoke      int    `json:"revoke"`
		} `json:"campaign"`
		Items []struct {
			ID       string `json:"id"`
			Decision string `json:"decision"`
			Action   string `json:"action"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(jsonOut), &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	keep, revoke := 0, 0
	for _, it := range c.Items {
		if it.Decision == review.Keep {
			keep++
		} else {
			revoke++
		}
	}
	if rep.Campaign.Name != campaignName || rep.Campaign.SignedOffBy != c.SignedOffBy || rep.Campaign.Items != len(c.Items) ||
		rep.Campaign.Keep != keep || rep.Campaign.Revoke != revoke || len(rep.Items) != len(c.Items) {
		t.Errorf("JSON report campaign %+v with %d items; want %d items, keep %d, revoke %d", rep.Campaign, len(rep.Items), len(c.Items), keep, revoke)
	}
	for _, ri := range rep.Items {
		if it := byItem[ri.ID]; ri.Decision != it.Decision || ri.Action != it.Action {
			t.Errorf("JSON report item %+v, campaign says %+v", ri, it)
		}
	}

	// The HTML report in a real browser: the CLI's file opened from
	// disk, and the page /reviews/NAME/report with ada's session.
	checkHTMLReport(t, bctx, "file://"+htmlFile, c, aliceID)
	checkHTMLReport(t, bctx, as.p.AccessURL+"/reviews/"+campaignName+"/report", c, aliceID)
}

// reportRowsJS reads the report's items table: one object per row, from
// its data attributes and cells.
const reportRowsJS = `Array.from(document.querySelectorAll('#items tbody tr')).map(r => ({
	Item: r.dataset.item, User: r.dataset.user, Role: r.dataset.role, Source: r.dataset.source,
	Decision: r.dataset.decision, Dormant: r.dataset.dormant, Unused: r.dataset.unused,
	Locked: r.dataset.locked, MFA: r.dataset.mfa,
	Action: r.querySelector('td.action').textContent, LastUse: r.querySelector('td.last-use').textContent}))`

// reportRow is one row of the HTML report's items table.
type reportRow struct {
	Item, User, Role, Source, Decision, Action, LastUse string
	Dormant, Unused, Locked, MFA                        string
}

// checkHTMLReport opens the HTML report at rawURL in Chromium and checks
// its items table row by row against the campaign.
func checkHTMLReport(t *testing.T, bctx context.Context, rawURL string, c review.Campaign, aliceID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(rawURL), chromedp.WaitVisible(chromedp.CSS("#items"))); err != nil {
		t.Fatalf("HTML report %s in Chromium: %v", rawURL, err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]reportRow](reportRowsJS))
	if err != nil {
		t.Fatalf("HTML report %s: reading the items table: %v", rawURL, err)
	}
	signed, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#signed-off-by")))
	if err != nil {
		t.Fatalf("HTML report %s: signed-off-by: %v", rawURL, err)
	}
	if strings.TrimSpace(signed) != c.SignedOffBy || len(got) != len(c.Items) {
		t.Fatalf("HTML report %s: signed off by %q, %d rows; want %q, %d", rawURL, signed, len(got), c.SignedOffBy, len(c.Items))
	}
	for _, r := range got {
		i := slices.IndexFunc(c.Items, func(it review.Item) bool { return it.ID == r.Item })
		if i < 0 {
			t.Errorf("HTML report %s: row for unknown item %+v", rawURL, r)
			continue
		}
		it := c.Items[i]
		if r.User != it.UserID || r.Role != it.Role || r.Source != string(it.Source) || r.Decision != it.Decision ||
			strings.TrimSpace(r.Action) != it.Action || strings.TrimSpace(r.LastUse) != reportTime(it.LastUse) ||
			r.Dormant != strconv.FormatBool(it.Dormant) || r.Unused != strconv.FormatBool(it.Unused) ||
			r.Locked != strconv.FormatBool(it.Locked) || r.MFA != strconv.FormatBool(it.MFAEnrolled) {
			t.Errorf("HTML report %s: row %+v does not match item %+v", rawURL, r, it)
		}
	}
	i := slices.IndexFunc(got, func(r reportRow) bool { return r.User == aliceID && r.Role == "engineer" })
	if i < 0 || got[i].Decision != review.Revoke || !strings.Contains(got[i].Action, `IdP group "engineers"`) {
		t.Errorf("HTML report %s: alice's engineer row missing or without the IdP-group action: %+v", rawURL, got)
	}
}

// clickReview clicks sel on the review page in Chromium, waits for the
// page it leads to, and returns the data-decision of the element row
// there ("" when row is not an item row).
func clickReview(t *testing.T, bctx context.Context, sel, row string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(row))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		t.Fatalf("after clicking %s no %s:\n%s", sel, row, body)
	}
	d, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('`+row+`').dataset.decision || '')`))
	if err != nil {
		t.Fatalf("read %s: %v", row, err)
	}
	return d
}

// reportTime is how the reports print a time (RFC 3339 UTC, "never").
func reportTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
