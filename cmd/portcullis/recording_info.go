package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/portcullis/portcullis/bastion/recording"
)

// recordingInfo prints a recording's metadata, how it ended, its channels
// with what ran in them, file transfers (SFTP operations and scp files
// with SHA-256 of written data), port forwards and refused requests.
func recordingInfo(args []string, stdout, stderr io.Writer) (code int) {
	fs := newFlagSet("recording info", "portcullis recording info (--key FILE | --config FILE) [--json] [--allow-incomplete] RECORDING", stderr)
	kf := addKeyFlags(fs)
	asJSON := fs.Bool("json", false, "print the metadata, trailer and events as JSON")
	path, code, ok := oneRecording(fs, args, stderr)
	if !ok {
		return code
	}
	key, code, ok := kf.load(fs, stderr)
	if !ok {
		return code
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(stderr, "recording info", err)
	}
	defer f.Close()
	sum, err := recording.Summarize(f, key)
	if err != nil {
		return recordingFailure(stderr, "recording info", "", err, false)
	}
	// An incomplete recording is still described (it is authentic up to
	// its cut), then reported.
	defer func() {
		if sum.Truncated && code == exitOK {
			code = recordingFailure(stderr, "recording info", "", sum.Err, *kf.allowIncomplete)
		}
	}()
	if *asJSON {
		return printInfoJSON(sum, stdout, stderr)
	}
	m := sum.Meta
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	end, reason, truncated := "", "", "no"
	if sum.Trailer != nil {
		end = when(sum.Trailer.End) + " (after " + sum.Trailer.End.Sub(m.Start).Round(1e6).String() + ")"
		reason = sum.Trailer.Reason
		if sum.Trailer.Detail != "" {
			reason += ": " + sum.Trailer.Detail
		}
	}
	if sum.Truncated {
		truncated = fmt.Sprintf("YES: %v (the bastion stopped without closing it); at most its last second is missing", sum.Err)
	}
	integrity := fmt.Sprintf("%d chunks authenticated (AES-256-GCM, hash-chained), key %s", sum.Chunks, sum.KeyID)
	digest := "(none: incomplete)"
	if !sum.Truncated {
		digest = hex.EncodeToString(sum.Digest[:])
	}
	input := "not recorded"
	if m.RecordInput {
		input = "recorded"
	}
	target := m.Target
	if m.TargetAddr != "" {
		target += " (" + m.TargetAddr + ")"
	}
	for _, kv := range [][2]string{
		{"recording", path}, {"session", m.SessionID}, {"user", m.UserID}, {"source ip", m.SourceIP},
		{"login", m.Login}, {"target", target}, {"roles", list(m.Roles)}, {"cert serial", serialText(m.CertSerial)},
		{"instance", m.Instance}, {"start", when(m.Start)}, {"end", end}, {"end reason", reason},
		{"truncated", truncated}, {"integrity", integrity}, {"digest", digest}, {"input", input},
		{"bytes", fmt.Sprintf("stdout %d, stderr %d, stdin %d", sum.Bytes[recording.StreamStdout], sum.Bytes[recording.StreamStderr], sum.Bytes[recording.StreamStdin])},
	} {
		row(tw, kv[0]+":", kv[1])
	}
	if code := flush(tw, stderr); code != exitOK {
		return code
	}
	sections := []struct {
		title  string
		header []string
		rows   [][]string
	}{
		{"Channels", []string{"CH", "KIND", "OPENED", "CLOSED", "WHAT", "EXIT"}, channelRows(sum.Events)},
		{"File transfers", []string{"TIME", "CH", "PROTOCOL", "OP", "PATH", "BYTES", "SHA-256", "RESULT"}, transferRows(sum.Events)},
		{"Port forwards", []string{"TIME", "CH", "EVENT", "DESTINATION", "RESOLVED", "BYTES IN", "BYTES OUT"}, forwardRows(sum.Events)},
		{"Refused", []string{"TIME", "CH", "WHAT", "REASON"}, deniedRows(sum.Events)},
	}
	for _, s := range sections {
		if len(s.rows) == 0 {
			continue
		}
		fmt.Fprintf(stdout, "\n%s:\n", s.title)
		tw := table(stdout, s.header...)
		for _, r := range s.rows {
			row(tw, r...)
		}
		if code := flush(tw, stderr); code != exitOK {
			return code
		}
	}
	return exitOK
}

func printInfoJSON(sum *recording.Summary, stdout, stderr io.Writer) int {
	type event struct {
		Offset  float64 `json:"offset_seconds"`
		Channel uint32  `json:"channel"`
		recording.Event
	}
	out := struct {
		Meta      recording.Meta     `json:"meta"`
		Trailer   *recording.Trailer `json:"trailer"`
		Truncated bool               `json:"truncated"`
		KeyID     string             `json:"key_id"`
		Chunks    int                `json:"chunks"`
		Digest    string             `json:"digest,omitempty"`
		Bytes     map[string]int64   `json:"bytes"`
		Events    []event            `json:"events"`
	}{Meta: sum.Meta, Trailer: sum.Trailer, Truncated: sum.Truncated, KeyID: sum.KeyID.String(), Chunks: sum.Chunks, Bytes: map[string]int64{}, Events: []event{}}
	if !sum.Truncated {
		out.Digest = hex.EncodeToString(sum.Digest[:])
	}
	for s, n := range sum.Bytes {
		out.Bytes[s.String()] = n
	}
	for _, e := range sum.Events {
		out.Events = append(out.Events, event{e.Offset.Seconds(), e.Channel, e.Event})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fail(stderr, "recording info", err)
	}
	stdout.Write(append(b, '\n'))
	return exitOK
}

// channelRows summarises each channel: its kind, lifetime, what ran in it
// (pty, shell, command, subsystem) and how it exited.
func channelRows(events []recording.ChannelEvent) [][]string {
	type channel struct {
		kind, opened, closed, exit string
		what                       []string
	}
	chans := map[uint32]*channel{}
	var order []uint32
	get := func(id uint32) *channel {
		c, ok := chans[id]
		if !ok {
			c = &channel{}
			chans[id] = c
			order = append(order, id)
		}
		return c
	}
	for _, e := range events {
		if e.Channel == 0 {
			continue // connection-level events
		}
		c := get(e.Channel)
		switch e.Type {
		case recording.EventChannelOpen:
			c.kind, c.opened = e.Kind, offset(e.Offset)
			if e.Dest != "" {
				c.what = append(c.what, "to "+e.Dest)
			}
		case recording.EventChannelClose:
			c.closed = offset(e.Offset)
		case recording.EventPTY:
			c.what = append(c.what, fmt.Sprintf("pty %s %dx%d", e.Term, e.Cols, e.Rows))
		case recording.EventShell:
			c.what = append(c.what, "shell")
		case recording.EventExec:
			c.what = append(c.what, "exec "+strconv.Quote(e.Command))
		case recording.EventSubsystem:
			c.what = append(c.what, "subsystem "+e.Name)
		case recording.EventExitStatus:
			if e.Status != nil {
				c.exit = "status " + strconv.Itoa(*e.Status)
			}
		case recording.EventExitSignal:
			c.exit = "signal " + e.Signal
		}
	}
	slices.Sort(order)
	var rows [][]string
	for _, id := range order {
		c := chans[id]
		rows = append(rows, []string{strconv.FormatUint(uint64(id), 10), c.kind, c.opened, c.closed, strings.Join(c.what, ", "), c.exit})
	}
	return rows
}

// transferRows lists every SFTP operation and scp file.
func transferRows(events []recording.ChannelEvent) [][]string {
	var rows [][]string
	for _, e := range events {
		if e.Type != recording.EventSFTP && e.Type != recording.EventSCP {
			continue
		}
		p := e.Path
		if e.Path2 != "" {
			p += " -> " + e.Path2
		}
		var bytes []string
		if e.BytesRead > 0 {
			bytes = append(bytes, fmt.Sprintf("read %d", e.BytesRead))
		}
		if e.BytesWritten > 0 || (e.Type == recording.EventSCP && e.Result == "ok") {
			bytes = append(bytes, fmt.Sprintf("written %d", e.BytesWritten))
		}
		sum := e.SHA256
		if e.NonSequential {
			sum = "(not computed: written out of order)"
		}
		rows = append(rows, []string{offset(e.Offset), strconv.FormatUint(uint64(e.Channel), 10), e.Type, e.Op, p, strings.Join(bytes, ", "), sum, e.Result})
	}
	return rows
}

// forwardRows lists port-forward opens and closes with byte counts.
func forwardRows(events []recording.ChannelEvent) [][]string {
	var rows [][]string
	for _, e := range events {
		if e.Type != recording.EventForwardOpen && e.Type != recording.EventForwardClose {
			continue
		}
		in, out := "", ""
		if e.Type == recording.EventForwardClose {
			in, out = strconv.FormatInt(e.BytesIn, 10), strconv.FormatInt(e.BytesOut, 10)
		}
		rows = append(rows, []string{offset(e.Offset), strconv.FormatUint(uint64(e.Channel), 10), e.Type, e.Dest, e.Resolved, in, out})
	}
	return rows
}

// deniedRows lists the requests and channels the bastion refused (and
// environment variables it dropped).
func deniedRows(events []recording.ChannelEvent) [][]string {
	var rows [][]string
	for _, e := range events {
		what := ""
		switch {
		case e.Type == recording.EventDenied:
			what = strings.TrimSpace(e.Kind + " " + e.Name)
		case e.Type == recording.EventEnv && e.Allowed != nil && !*e.Allowed:
			what = "env " + e.Name
		default:
			continue
		}
		rows = append(rows, []string{offset(e.Offset), strconv.FormatUint(uint64(e.Channel), 10), what, e.Reason})
	}
	return rows
}

func serialText(n uint64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatUint(n, 10)
}
