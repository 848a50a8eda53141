package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

// ReadAudit parses every JSON-lines audit file in dir (audit-*.jsonl). A
// last line still being written is skipped; any other line that does not
// parse fails the test (the trail must be machine-readable).
func ReadAudit(t TB, dir string) []audit.Event {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	sort.Strings(files)
	var out []audit.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read audit file: %v", err)
		}
		complete := bytes.HasSuffix(data, []byte("\n"))
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 64*1024), 4<<20)
		var lines [][]byte
		for sc.Scan() {
			lines = append(lines, bytes.Clone(sc.Bytes()))
		}
		for i, l := range lines {
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			var e audit.Event
			if err := json.Unmarshal(l, &e); err != nil {
				if i == len(lines)-1 && !complete {
					continue
				}
				t.Fatalf("%s:%d: audit line is not JSON: %v\n%s", f, i+1, err, l)
			}
			out = append(out, e)
		}
	}
	return out
}

// AuditQuery selects events; empty fields match anything.
type AuditQuery struct {
	Type, Reason, Decision, UserID, SessionID, App, SourceIP, Ref string
	// PathContains matches a substring of the event's path.
	PathContains string
	// Since drops events before this time.
	Since time.Time
}

// Match reports whether e satisfies q.
func (q AuditQuery) Match(e audit.Event) bool {
	return (q.Type == "" || e.Type == q.Type) &&
		(q.Reason == "" || e.Reason == q.Reason) &&
		(q.Decision == "" || e.Decision == q.Decision) &&
		(q.UserID == "" || e.UserID == q.UserID) &&
		(q.SessionID == "" || e.SessionID == q.SessionID) &&
		(q.App == "" || e.App == q.App) &&
		(q.SourceIP == "" || e.SourceIP == q.SourceIP) &&
		(q.Ref == "" || e.Ref == q.Ref) &&
		(q.PathContains == "" || strings.Contains(e.Path, q.PathContains)) &&
		(q.Since.IsZero() || !e.Time.Before(q.Since))
}

// FindAudit returns the events in dir matching q (no waiting).
func FindAudit(t TB, dir string, q AuditQuery) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, e := range ReadAudit(t, dir) {
		if q.Match(e) {
			out = append(out, e)
		}
	}
	return out
}

// WaitAudit waits (up to 10 s: the trail is written asynchronously, in
// batches) for an event in dir matching q and returns the first one. It
// fails the test, listing the events of the same type, when none comes.
func WaitAudit(t TB, dir string, q AuditQuery) audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := FindAudit(t, dir, q); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			var near []string
			for _, e := range ReadAudit(t, dir) {
				if q.Type == "" || e.Type == q.Type {
					b, _ := json.Marshal(e)
					near = append(near, string(b))
				}
			}
			if len(near) > 30 {
				near = near[len(near)-30:]
			}
			t.Fatalf("no audit event matching %+v in %s; events of that type:\n%s", q, dir, strings.Join(near, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
