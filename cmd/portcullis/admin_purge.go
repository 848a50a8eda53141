package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
)

// adminPurge asks the running server to delete (--dry-run: list) the
// trail files and recordings older than the configured retention. The
// server writes a signed purge record into the trail first, so
// `portcullis audit verify` still passes afterwards. serve also does this
// once a day by itself.
func adminPurge(ctx context.Context, conn *adminConn, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("admin purge", "portcullis admin purge [--dry-run] [--json]", stderr)
	conn.register(fs)
	dry := fs.Bool("dry-run", false, "list what has expired; delete nothing")
	if code, ok := noPositionals(fs, args, stderr); !ok {
		return code
	}
	var res adminclient.PurgeResult
	printed, err := call(ctx, conn, adminclient.Purge(*dry), stdout, &res)
	if err != nil {
		return fail(stderr, "admin purge", err)
	}
	if printed {
		return exitOK
	}
	verb := "purged"
	if res.DryRun {
		verb = "would purge"
	}
	fmt.Fprintf(stdout, "%s %d trail file(s) with %d records (newest record before %s) and %d recording(s) (last written before %s)\n",
		verb, len(res.Files), res.Records, when(res.AuditCutoff), len(res.Recordings), when(res.RecordingCutoff))
	if len(res.Files)+len(res.Recordings) > 0 {
		tw := table(stdout, "KIND", "NAME", "NEWEST", "BYTES")
		for _, f := range res.Files {
			row(tw, "trail", f.Name, when(f.Newest), strconv.FormatInt(f.Bytes, 10))
		}
		for _, r := range res.Recordings {
			row(tw, "recording", r.Name, when(r.Newest), strconv.FormatInt(r.Bytes, 10))
		}
		if code := flush(tw, stderr); code != exitOK {
			return code
		}
	}
	switch {
	case res.RecordSeq != 0 && res.ThroughSeq != 0:
		fmt.Fprintf(stdout, "signed purge record: seq %d (trail purged through seq %d); audit verify accepts the trail's new start\n", res.RecordSeq, res.ThroughSeq)
	case res.RecordSeq != 0:
		fmt.Fprintf(stdout, "signed purge record: seq %d\n", res.RecordSeq)
	}
	return exitOK
}
