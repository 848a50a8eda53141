package review

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// Report formats.
const (
	FormatCSV  = "csv"
	FormatJSON = "json"
	FormatHTML = "html"
)

// CheckFormat validates a report format.
func CheckFormat(format string) error {
	switch format {
	case FormatCSV, FormatJSON, FormatHTML:
		return nil
	}
	return fmt.Errorf("%w: report format must be csv, json or html", ErrInvalid)
}

// Report writes the campaign's report to w and audits who fetched it.
func (m *Manager) Report(ctx context.Context, actor, campaign, format string, w io.Writer) error {
	if err := checkText("actor", actor, maxActorLen, true); err != nil {
		return err
	}
	if err := CheckFormat(format); err != nil {
		return err
	}
	c, err := m.Get(ctx, campaign)
	if err != nil {
		return err
	}
	ev := audit.Event{Type: TypeReport, Actor: actor, Attrs: map[string]string{
		"campaign": c.Name, "campaign_id": c.ID, "format": format, "items": strconv.Itoa(len(c.Items)),
		"signed_off": strconv.FormatBool(!c.SignedOffAt.IsZero()),
	}}
	if err := WriteReport(w, c, format); err != nil {
		ev.Reason = "write-failed"
		m.emit(ctx, ev)
		return err
	}
	m.emit(ctx, ev)
	return nil
}

// reportTime is the one time format of every report: RFC 3339 in UTC,
// "never" for the zero time.
func reportTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

type reportCampaign struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	PeriodStart string `json:"period_start"`
	PeriodEnd   string `json:"period_end"`
	StartedBy   string `json:"started_by"`
	StartedAt   string `json:"started_at"`
	Due         string `json:"due"`
	SignedOffBy string `json:"signed_off_by"`
	SignedOffAt string `json:"signed_off_at"`
	Items       int    `json:"items"`
	Decided     int    `json:"decided"`
	Keep        int    `json:"keep"`
	Revoke      int    `json:"revoke"`
}

type reportUse struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Login string `json:"login,omitempty"`
	Count int    `json:"count"`
	Last  string `json:"last"`
}

func (u reportUse) String() string {
	s := u.Kind + " " + u.Name
	if u.Login != "" {
		s += " as " + u.Login
	}
	return fmt.Sprintf("%s: %d, last %s", s, u.Count, u.Last)
}

type reportItem struct {
	ID           string      `json:"id"`
	UserID       string      `json:"user_id"`
	Email        string      `json:"email"`
	Role         string      `json:"role"`
	Source       string      `json:"source"`
	Group        string      `json:"group"`
	ConfigEntry  string      `json:"config_entry"`
	GrantID      string      `json:"grant_id"`
	GrantStart   string      `json:"grant_start"`
	GrantExpires string      `json:"grant_expires"`
	LastLogin    string      `json:"last_login"`
	LastUse      string      `json:"last_use"`
	Uses         []reportUse `json:"uses"`
	Dormant      bool        `json:"dormant"`
	Unused       bool        `json:"unused"`
	Locked       bool        `json:"locked"`
	MFAEnrolled  bool        `json:"mfa_enrolled"`
	Decision     string      `json:"decision"`
	DecidedBy    string      `json:"decided_by"`
	DecidedAt    string      `json:"decided_at"`
	Note         string      `json:"note"`
	Action       string      `json:"action"`
	Revoked      bool        `json:"revoked"`
}

func (it reportItem) UsesText() string {
	parts := make([]string, len(it.Uses))
	for i, u := range it.Uses {
		parts[i] = u.String()
	}
	return strings.Join(parts, "; ")
}

type report struct {
	Campaign reportCampaign `json:"campaign"`
	Items    []reportItem   `json:"items"`
}

func buildReport(c Campaign) report {
	r := report{Campaign: reportCampaign{
		ID: c.ID, Name: c.Name, PeriodStart: reportTime(c.PeriodStart), PeriodEnd: reportTime(c.CreatedAt),
		StartedBy: c.CreatedBy, StartedAt: reportTime(c.CreatedAt), Due: reportTime(c.Due),
		SignedOffBy: c.SignedOffBy, SignedOffAt: reportTime(c.SignedOffAt), Items: len(c.Items),
	}, Items: make([]reportItem, len(c.Items))}
	for i, it := range c.Items {
		switch it.Decision {
		case Keep:
			r.Campaign.Keep++
		case Revoke:
			r.Campaign.Revoke++
		}
		ri := reportItem{
			ID: it.ID, UserID: it.UserID, Email: it.Email, Role: it.Role, Source: string(it.Source),
			Group: it.Group, ConfigEntry: it.ConfigEntry, GrantID: it.GrantID,
			LastLogin: reportTime(it.LastLogin), LastUse: reportTime(it.LastUse), Uses: make([]reportUse, len(it.Uses)),
			Dormant: it.Dormant, Unused: it.Unused, Locked: it.Locked, MFAEnrolled: it.MFAEnrolled,
			Decision: it.Decision, DecidedBy: it.DecidedBy, DecidedAt: reportTime(it.DecidedAt),
			Note: it.Note, Action: it.Action, Revoked: it.Revoked,
		}
		if it.Source.grantSource() {
			ri.GrantStart, ri.GrantExpires = reportTime(it.GrantStart), reportTime(it.GrantExpires)
		}
		for j, u := range it.Uses {
			ri.Uses[j] = reportUse{Kind: u.Kind, Name: u.Name, Login: u.Login, Count: u.Count, Last: reportTime(u.Last)}
		}
		r.Items[i] = ri
	}
	r.Campaign.Decided = r.Campaign.Keep + r.Campaign.Revoke
	return r
}

// WriteReport renders c as the evidence an auditor asks for: the campaign
// (name, period, who started it, who signed it off and when) and one row
// per item with every flag, last login, last use, uses, the decision, who
// made it and when, the note and the action. format is "csv", "json" or
// "html" (a self-contained page: inline CSS, no scripts, nothing loaded
// from elsewhere).
func WriteReport(w io.Writer, c Campaign, format string) error {
	if err := CheckFormat(format); err != nil {
		return err
	}
	r := buildReport(c)
	bw := bufio.NewWriter(w)
	var err error
	switch format {
	case FormatCSV:
		err = writeCSV(bw, &r)
	case FormatJSON:
		enc := json.NewEncoder(bw)
		enc.SetIndent("", "  ")
		err = enc.Encode(&r)
	case FormatHTML:
		err = htmlReport.Execute(bw, &r)
	}
	if err != nil {
		return fmt.Errorf("review: writing the %s report: %w", format, err)
	}
	return bw.Flush()
}

var csvHeader = []string{
	"campaign", "campaign_id", "period_start", "period_end", "started_by", "due", "signed_off_by", "signed_off_at",
	"item", "user_id", "email", "role", "source", "group", "config_entry", "grant_id", "grant_start", "grant_expires",
	"last_login", "last_use", "uses", "dormant", "unused", "locked", "mfa_enrolled",
	"decision", "decided_by", "decided_at", "note", "action", "revoked",
}

// writeCSV writes one row per item, each carrying the campaign's columns
// too, so any row read alone is complete evidence.
func writeCSV(w io.Writer, r *report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	c := &r.Campaign
	for _, it := range r.Items {
		row := []string{
			c.Name, c.ID, c.PeriodStart, c.PeriodEnd, c.StartedBy, c.Due, c.SignedOffBy, c.SignedOffAt,
			it.ID, it.UserID, it.Email, it.Role, it.Source, it.Group, it.ConfigEntry, it.GrantID, it.GrantStart, it.GrantExpires,
			it.LastLogin, it.LastUse, it.UsesText(), yesNo(it.Dormant), yesNo(it.Unused), yesNo(it.Locked), yesNo(it.MFAEnrolled),
			it.Decision, it.DecidedBy, it.DecidedAt, it.Note, it.Action, yesNo(it.Revoked),
		}
		for i := range row {
			row[i] = csvSafe(row[i])
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe defuses spreadsheet formulas: a cell that starts with = + - @,
// a tab or a carriage return gets a leading apostrophe, so a note, an
// email address or a group name an attacker chose cannot run when an
// auditor opens the file.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{"yesno": yesNo}).Parse(htmlSource))

// htmlSource: every piece of data is escaped by html/template; the page
// forbids scripts and external loads with its own CSP as well, in case it
// is saved and opened from disk.
const htmlSource = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Access review {{.Campaign.Name}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}
h1{font-size:1.4em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}
dd{margin:0}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border:1px solid #ccc;padding:.3em .4em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
tr.revoke td{background:#fdecea}
td.flag-yes{font-weight:600}
ul{margin:0;padding-left:1.1em}
@media print{body{margin:0}}
</style>
</head>
<body>
<h1>Access review <span id="campaign-name">{{.Campaign.Name}}</span></h1>
<dl id="campaign">
<dt>Campaign ID</dt><dd id="campaign-id">{{.Campaign.ID}}</dd>
<dt>Review period</dt><dd><span id="period-start">{{.Campaign.PeriodStart}}</span> to <span id="period-end">{{.Campaign.PeriodEnd}}</span></dd>
<dt>Started by</dt><dd id="started-by">{{.Campaign.StartedBy}}</dd>
<dt>Started at</dt><dd id="started-at">{{.Campaign.StartedAt}}</dd>
<dt>Due</dt><dd id="due">{{.Campaign.Due}}</dd>
<dt>Signed off by</dt><dd id="signed-off-by">{{or .Campaign.SignedOffBy "not signed off"}}</dd>
<dt>Signed off at</dt><dd id="signed-off-at">{{.Campaign.SignedOffAt}}</dd>
<dt>Items</dt><dd><span id="item-count">{{.Campaign.Items}}</span> (decided <span id="decided-count">{{.Campaign.Decided}}</span>: keep <span id="keep-count">{{.Campaign.Keep}}</span>, revoke <span id="revoke-count">{{.Campaign.Revoke}}</span>)</dd>
</dl>
<table id="items">
<thead><tr><th>Item</th><th>User</th><th>Email</th><th>Role</th><th>Source</th><th>Via</th><th>Last login</th><th>Last use</th><th>Uses in period</th><th>Dormant</th><th>Unused</th><th>Locked</th><th>MFA enrolled</th><th>Decision</th><th>Decided by</th><th>Decided at</th><th>Note</th><th>Action</th></tr></thead>
<tbody>
{{- range .Items}}
<tr id="item-{{.ID}}" class="{{.Decision}}" data-item="{{.ID}}" data-user="{{.UserID}}" data-email="{{.Email}}" data-role="{{.Role}}" data-source="{{.Source}}" data-decision="{{.Decision}}" data-dormant="{{.Dormant}}" data-unused="{{.Unused}}" data-locked="{{.Locked}}" data-mfa="{{.MFAEnrolled}}" data-revoked="{{.Revoked}}">
<td class="item">{{.ID}}</td><td class="user">{{.UserID}}</td><td class="email">{{.Email}}</td><td class="role">{{.Role}}</td><td class="source">{{.Source}}</td>
<td class="via">{{if .Group}}group {{.Group}}{{else if .ConfigEntry}}users: {{.ConfigEntry}}{{else if .GrantID}}grant {{.GrantID}} ({{.GrantStart}} to {{.GrantExpires}}){{end}}</td>
<td class="last-login">{{.LastLogin}}</td><td class="last-use">{{.LastUse}}</td>
<td class="uses">{{if .Uses}}<ul>{{range .Uses}}<li>{{.}}</li>{{end}}</ul>{{else}}none{{end}}</td>
<td class="dormant flag-{{yesno .Dormant}}">{{yesno .Dormant}}</td><td class="unused flag-{{yesno .Unused}}">{{yesno .Unused}}</td><td class="locked flag-{{yesno .Locked}}">{{yesno .Locked}}</td><td class="mfa">{{yesno .MFAEnrolled}}</td>
<td class="decision">{{or .Decision "undecided"}}{{if .Revoked}} (revoked){{end}}</td><td class="decided-by">{{.DecidedBy}}</td><td class="decided-at">{{if .Decision}}{{.DecidedAt}}{{end}}</td>
<td class="note">{{.Note}}</td><td class="action">{{.Action}}</td>
</tr>
{{- end}}
</tbody>
</table>
</body>
</html>
`
