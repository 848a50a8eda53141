package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// `audit search`, `audit recordings` and `audit recording`: reading the
// trail and session recordings through the running server with the
// caller's own API token. The server decides who may read what (own
// recordings, or the auditor role) and audits every read, allowed or not.

const auditSearchUsage = "portcullis audit search --server URL --token-file FILE [--ca-file F] [--user U] [--type T | --type-prefix P] [--app A] [--target T] [--decision allow|deny] [--reason CODE] [--since RFC3339] [--until RFC3339] [--limit N] [--json]"

func auditSearch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit search", auditSearchUsage, stderr)
	conn := &userConn{}
	conn.register(fs)
	var q audit.Query
	fs.StringVar(&q.UserID, "user", "", "events of this user ID (as subject or actor)")
	fs.StringVar(&q.Type, "type", "", "event type, e.g. decision, access.approve")
	fs.StringVar(&q.TypePrefix, "type-prefix", "", "event types starting with this, e.g. access.")
	fs.StringVar(&q.App, "app", "", "route name")
	fs.StringVar(&q.Target, "target", "", "SSH target")
	fs.StringVar(&q.Decision, "decision", "", "allow or deny")
	fs.StringVar(&q.Reason, "reason", "", "reason code, e.g. deny-rule")
	since := fs.String("since", "", "events at or after this RFC 3339 time")
	until := fs.String("until", "", "events before this RFC 3339 time")
	fs.IntVar(&q.Limit, "limit", 0, "most recent events to show, 1 to 10000 (default: the server's, 1000)")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	if err := conn.check(); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", *since, &q.Since}, {"until", *until, &q.Until}} {
		if t.v == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.v)
		if err != nil {
			return usageError(fs, stderr, "--%s %q is not an RFC 3339 time such as 2026-10-01T00:00:00Z", t.name, adminclient.Sanitize(t.v))
		}
		*t.dst = v
	}
	if q.Decision != "" && q.Decision != audit.Allow && q.Decision != audit.Deny {
		return usageError(fs, stderr, "--decision must be allow or deny")
	}
	limitSet := false
	fs.Visit(func(f *flag.Flag) { limitSet = limitSet || f.Name == "limit" })
	if limitSet && (q.Limit < 1 || q.Limit > 10000) {
		return usageError(fs, stderr, "--limit must be between 1 and 10000")
	}
	if err := q.Validate(); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	var res adminclient.EventList
	printed, err := callUser(ctx, conn, adminclient.SearchEvents(q), stdout, &res)
	if err != nil {
		return fail(stderr, "audit search", explainErr(err, ""))
	}
	if !printed {
		tw := table(stdout, "TIME", "TYPE", "USER", "ACTOR", "DECISION", "REASON", "WHERE", "ROLE", "REF")
		for _, e := range res.Events {
			row(tw, when(e.Time), e.Type, e.UserID, e.Actor, e.Decision, e.Reason, where(e), e.Role, e.Ref)
		}
		if code := flush(tw, stderr); code != exitOK {
			return code
		}
	}
	if res.More { // with --json, "more" is in the output itself
		fmt.Fprintln(stderr, "portcullis audit search: more events match than shown: narrow --since/--until or raise --limit")
	}
	return exitOK
}

// where is an event's place: an app request or an SSH target; for other
// events (access.approve, review.decide …) its details.
func where(e audit.Event) string {
	switch {
	case e.App != "":
		return strings.TrimSpace(e.App + " " + e.Method + " " + e.Path)
	case e.Target != "":
		if login := e.Attrs["login"]; login != "" {
			return login + "@" + e.Target
		}
		return e.Target
	}
	kv := make([]string, 0, len(e.Attrs))
	for _, k := range slices.Sorted(maps.Keys(e.Attrs)) {
		kv = append(kv, k+"="+e.Attrs[k])
	}
	return strings.Join(kv, " ")
}

const auditRecordingsUsage = "portcullis audit recordings --server URL --token-file FILE [--ca-file F] [--user U] [--json]"

// auditRecordings lists recordings: the caller's own, or (auditors) a
// user's or everyone's.
func auditRecordings(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit recordings", auditRecordingsUsage, stderr)
	conn := &userConn{}
	conn.register(fs)
	user := fs.String("user", "", "recordings of this user ID (needs the auditor role unless it is you)")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	if err := conn.check(); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *user != "" {
		if err := checkID("--user", *user); err != nil {
			return usageError(fs, stderr, "%v", err)
		}
	}
	var res adminclient.RecordingList
	printed, err := callUser(ctx, conn, adminclient.Recordings(*user), stdout, &res)
	if err != nil {
		return fail(stderr, "audit recordings", explainErr(err, ""))
	}
	if printed {
		return exitOK
	}
	tw := table(stdout, "ID", "USER", "TARGET", "LOGIN", "START", "END", "BYTES")
	for _, r := range res.Recordings {
		row(tw, r.ID, r.UserID, r.Target, r.Login, when(r.Start.Time), when(r.End.Time), strconv.FormatInt(r.Bytes, 10))
	}
	return flush(tw, stderr)
}

const auditRecordingUsage = "portcullis audit recording --server URL --token-file FILE [--ca-file F] [--out FILE] ID"

// auditRecording downloads one recording as asciicast v2, as is (play it
// with asciinema play, or save it with --out).
func auditRecording(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit recording", auditRecordingUsage, stderr)
	conn := &userConn{}
	conn.register(fs)
	out := fs.String("out", "", "write the recording to `FILE` (mode 0600) instead of stdout")
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(fs, stderr, "expected exactly one recording ID")
	}
	if err := checkID("recording ID", pos[0]); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if err := conn.check(); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if conn.json {
		return usageError(fs, stderr, "--json does not go with recording: the answer is asciicast")
	}
	if err := checkOut(*out); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	cl, err := conn.client()
	if err != nil {
		return fail(stderr, "audit recording", err)
	}
	if err := download(ctx, cl, adminclient.GetRecording(pos[0]), conn.timeout, *out, stdout); err != nil {
		return fail(stderr, "audit recording", explainErr(err, "no such recording (or it is not yours to read)"))
	}
	if *out != "" {
		fmt.Fprintf(stdout, "recording written to %s\n", adminclient.Sanitize(*out))
	}
	return exitOK
}
