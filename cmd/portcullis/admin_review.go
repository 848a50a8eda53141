package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

const adminReviewUsage = `portcullis admin review COMMAND
      start --name NAME                       start a campaign (e.g. 2026-Q4)
      status                                  every campaign's state; whether a new one is due
      show NAME                               a campaign's items with their evidence
      decide NAME ITEM keep|revoke [--note N]
      signoff NAME                            close a campaign whose every item is decided
      report NAME --format csv|json|html [--out FILE]`

// reviewFlags lists which review flags go with which command.
var reviewFlags = map[string][]string{
	"start": {"name"}, "status": nil, "show": nil, "decide": {"note"}, "signoff": nil, "report": {"format", "out"},
}

// reviewArgs is the number of positionals after each command.
var reviewArgs = map[string]int{"start": 0, "status": 0, "show": 1, "decide": 3, "signoff": 1, "report": 1}

// maxCampaignName bounds a campaign name (the server makes its ID a slug
// of it).
const maxCampaignName = 128

// adminReview runs quarterly access reviews from the command line.
func adminReview(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin review", adminReviewUsage, stderr)
	conn.register(fs)
	name := fs.String("name", "", "campaign name (start)")
	note := fs.String("note", "", "note recorded with the decision (decide)")
	format := fs.String("format", "", "report format: csv, json or html (report)")
	out := fs.String("out", "", "write the report to `FILE` (mode 0600) instead of stdout (report)")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return usageError(fs, stderr, "missing review command")
	}
	sub, pos := pos[0], pos[1:]
	allowed, known := reviewFlags[sub]
	if !known {
		return usageError(fs, stderr, "unknown review command %q", adminclient.Sanitize(sub))
	}
	var stray string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "name", "note", "format", "out":
			for _, a := range allowed {
				if a == f.Name {
					return
				}
			}
			if stray == "" {
				stray = f.Name
			}
		}
	})
	if stray != "" {
		return usageError(fs, stderr, "--%s does not go with review %s", stray, sub)
	}
	if len(pos) != reviewArgs[sub] {
		if reviewArgs[sub] == 0 {
			return usageError(fs, stderr, "unexpected argument %q", adminclient.Sanitize(pos[0]))
		}
		return usageError(fs, stderr, "review %s expects %s", sub, map[string]string{
			"show": "NAME", "signoff": "NAME", "report": "NAME", "decide": "NAME ITEM keep|revoke"}[sub])
	}
	if len(pos) > 0 {
		if err := checkText("campaign NAME", pos[0], maxCampaignName, true); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
	}
	switch sub {
	case "start":
		n := strings.TrimSpace(*name)
		if err := checkText("--name", n, maxCampaignName, true); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		var c adminclient.ReviewCampaign
		printed, err := call(ctx, conn, adminclient.StartReview(n), stdout, &c)
		if err != nil {
			return fail(stderr, "admin review start", explainErr(err, ""))
		}
		if !printed {
			fmt.Fprintf(stdout, "review %s started (id %s): %d item(s), due %s\n", adminclient.Sanitize(c.Name), adminclient.Sanitize(c.ID),
				len(c.Items), when(c.Due.Time))
		}
		return exitOK
	case "status":
		return reviewStatus(ctx, conn, stdout, stderr)
	case "show":
		return reviewShow(ctx, conn, pos[0], stdout, stderr)
	case "decide":
		decision := pos[2]
		if decision != "keep" && decision != "revoke" {
			return usageError(fs, stderr, "decision must be keep or revoke, not %q", adminclient.Sanitize(decision))
		}
		if err := checkID("ITEM", pos[1]); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		n := strings.TrimSpace(*note)
		if err := checkText("--note", n, maxReason, false); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		return reviewDecide(ctx, conn, pos[0], pos[1], decision, n, stdout, stderr)
	case "signoff":
		var c adminclient.ReviewCampaign
		printed, err := call(ctx, conn, adminclient.SignOffReview(pos[0]), stdout, &c)
		if err != nil {
			return fail(stderr, "admin review signoff", explainErr(err, "no such review campaign"))
		}
		if !printed {
			fmt.Fprintf(stdout, "review %s signed off by %s at %s (%d item(s)); it can no longer change\n", adminclient.Sanitize(c.Name),
				adminclient.Sanitize(c.SignedOffBy), when(c.SignedOffAt.Time), len(c.Items))
		}
		return exitOK
	default: // report
		if _, ok := adminclient.ReportMediaTypes[*format]; !ok {
			return usageError(fs, stderr, "--format must be csv, json or html")
		}
		if conn.json {
			return usageError(fs, stderr, "--json does not go with report; use --format json")
		}
		if err := checkOut(*out); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		cl, err := conn.client()
		if err != nil {
			return fail(stderr, "admin review report", err)
		}
		if err := download(ctx, cl, adminclient.ReviewReport(pos[0], *format), conn.timeout, *out, stdout); err != nil {
			return fail(stderr, "admin review report", explainErr(err, "no such review campaign"))
		}
		if *out != "" {
			fmt.Fprintf(stdout, "report written to %s\n", adminclient.Sanitize(*out))
		}
		return exitOK
	}
}

func reviewStatus(ctx context.Context, conn *adminConn, stdout, stderr io.Writer) int {
	var st adminclient.ReviewStatus
	printed, err := call(ctx, conn, adminclient.ReviewStatusReq(), stdout, &st)
	if err != nil {
		return fail(stderr, "admin review status", explainErr(err, ""))
	}
	if printed {
		return exitOK
	}
	if len(st.Campaigns) == 0 {
		fmt.Fprintln(stdout, "no review campaigns yet")
	} else {
		tw := table(stdout, "NAME", "ID", "STATE", "CREATED", "BY", "DUE", "DECIDED", "SIGNED OFF BY", "SIGNED OFF")
		for _, c := range st.Campaigns {
			state := c.State
			if state == "overdue" || state == "incomplete" {
				state = strings.ToUpper(state) // what an operator scans for
			}
			row(tw, c.Name, c.ID, state, when(c.CreatedAt.Time), c.CreatedBy, when(c.Due.Time), fmt.Sprintf("%d/%d", c.Decided, c.Items),
				c.SignedOffBy, when(c.SignedOffAt.Time))
		}
		if code := flush(tw, stderr); code != exitOK {
			return code
		}
	}
	switch {
	case st.NewDue:
		fmt.Fprintln(stdout, "a new review is due: start one with portcullis admin review start --name NAME")
	case !st.NextDue.IsZero():
		fmt.Fprintf(stdout, "next review due by %s\n", when(st.NextDue.Time))
	}
	return exitOK
}

func reviewShow(ctx context.Context, conn *adminConn, name string, stdout, stderr io.Writer) int {
	var c adminclient.ReviewCampaign
	printed, err := call(ctx, conn, adminclient.GetReview(name), stdout, &c)
	if err != nil {
		return fail(stderr, "admin review show", explainErr(err, "no such review campaign"))
	}
	if printed {
		return exitOK
	}
	decided := 0
	for _, it := range c.Items {
		if it.Decision != "" {
			decided++
		}
	}
	kv := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	signed := "not yet"
	if c.SignedOffBy != "" {
		signed = c.SignedOffBy + " at " + when(c.SignedOffAt.Time)
	}
	for _, p := range [][2]string{
		{"review", c.Name}, {"id", c.ID}, {"created", strings.TrimSpace(when(c.CreatedAt.Time) + " by " + c.CreatedBy)},
		{"period from", when(c.PeriodStart.Time)}, {"due", when(c.Due.Time)},
		{"decided", fmt.Sprintf("%d/%d", decided, len(c.Items))}, {"signed off", signed},
	} {
		row(kv, p[0]+":", p[1])
	}
	if code := flush(kv, stderr); code != exitOK {
		return code
	}
	fmt.Fprintln(stdout)
	tw := table(stdout, "ITEM", "USER", "EMAIL", "ROLE", "SOURCE", "LAST LOGIN", "LAST USE", "USES", "FLAGS", "DECISION", "BY", "NOTE", "ACTION")
	for _, it := range c.Items {
		source := it.Source
		switch {
		case it.Group != "":
			source += ":" + it.Group
		case it.ConfigEntry != "":
			source += ":" + it.ConfigEntry
		}
		uses := 0
		for _, u := range it.Uses {
			uses += u.Count
		}
		row(tw, it.ID, it.UserID, it.Email, it.Role, source, when(it.LastLogin.Time), when(it.LastUse.Time), strconv.Itoa(uses),
			itemFlags(it), it.Decision, it.DecidedBy, it.Note, it.Action)
	}
	return flush(tw, stderr)
}

// itemFlags names what makes an item worth a second look.
func itemFlags(it adminclient.ReviewItem) string {
	var f []string
	for _, c := range []struct {
		on   bool
		name string
	}{{it.Dormant, "dormant"}, {it.Unused, "unused"}, {it.Locked, "locked"}, {!it.MFAEnrolled, "no-mfa"}, {it.Revoked, "revoked"}} {
		if c.on {
			f = append(f, c.name)
		}
	}
	return strings.Join(f, ",")
}

func reviewDecide(ctx context.Context, conn *adminConn, name, item, decision, note string, stdout, stderr io.Writer) int {
	var it adminclient.ReviewItem
	printed, err := call(ctx, conn, adminclient.DecideReviewItem(name, item, decision, note), stdout, &it)
	if err != nil {
		return fail(stderr, "admin review decide", explainErr(err, "no such review campaign or item"))
	}
	if printed {
		return exitOK
	}
	s := adminclient.Sanitize
	fmt.Fprintf(stdout, "item %s (%s, %s via %s): %s\n", s(it.ID), s(it.UserID), s(it.Role), s(it.Source), s(it.Decision))
	if it.Revoked && it.GrantID != "" {
		fmt.Fprintf(stdout, "grant %s revoked on every instance\n", s(it.GrantID))
	}
	if it.Action != "" {
		fmt.Fprintf(stdout, "action needed: %s\n", s(it.Action))
	}
	return exitOK
}

// checkOut refuses an --out whose directory is missing or which names a
// directory, before anything is downloaded.
func checkOut(out string) error {
	if out == "" {
		return nil
	}
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return fmt.Errorf("--out %s is a directory", out)
	}
	if fi, err := os.Stat(filepath.Dir(out)); err != nil || !fi.IsDir() {
		return fmt.Errorf("--out %s: directory %s does not exist", out, filepath.Dir(out))
	}
	return nil
}

// download copies the body of req (a report, a recording) as is to
// stdout, or to the file out: written beside it under a temporary name
// (mode 0600) and renamed into place once complete, so a failed download
// leaves no partial file.
func download(ctx context.Context, cl *adminclient.Client, req adminclient.Request, timeout time.Duration, out string, stdout io.Writer) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	body, err := cl.Stream(ctx, req)
	if err != nil {
		return err
	}
	defer body.Close()
	if out == "" {
		if _, err := io.Copy(stdout, body); err != nil {
			return fmt.Errorf("download: %w", err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = io.Copy(f, body); err != nil {
		err = fmt.Errorf("download: %w", err)
	}
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, out)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
