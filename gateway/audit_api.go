package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// Trail and recording reads.
//
//	GET /api/audit/events?user=&type=&type_prefix=&app=&target=&decision=&reason=&ref=&since=&until=&limit=
//	GET /api/audit/recordings[?user=]
//	GET /api/audit/recordings/{id}   (asciicast v2)
//
// Searching the trail and reading other users' recordings needs the
// audit-read role (access.Manager.CanReadAudit, on the session's BASE
// roles: with require_approval the role must come from an approved
// request, which the manager tells from its grant cache). One's own
// recordings are always readable. Every read and search is audited,
// allowed or denied, with a summary of the query (names and values of the
// filters: IDs, types, times; never a token or a cookie), and the answer
// waits until that record is durable: nobody reads the trail unrecorded.

// Audit types of trail and recording reads (stable keys).
const (
	TypeTrailSearch   = "trail.search"
	TypeRecordingRead = "recording.read"
)

const (
	// maxQueryLen bounds the raw query string of a read.
	maxQueryLen = 4096
	// maxQueryValue bounds one filter value (audit.Query.Validate's bound).
	maxQueryValue = 512
	// asciicastType is the media type of an asciicast v2 recording.
	asciicastType = "application/x-asciicast"
)

func (a *adminAPI) routeAudit(c *userCall) {
	seg := c.seg
	switch {
	case len(seg) == 1 && seg[0] == "events":
		ev := a.userEvent(c, TypeTrailSearch, "search")
		if a.method(c, http.MethodGet, ev) {
			a.trailSearch(c, ev)
		}
	case len(seg) == 1 && seg[0] == "recordings":
		ev := a.userEvent(c, TypeRecordingRead, "list")
		if a.method(c, http.MethodGet, ev) {
			a.recordingList(c, ev)
		}
	case len(seg) == 2 && seg[0] == "recordings":
		ev := a.userEvent(c, TypeRecordingRead, "export")
		if a.method(c, http.MethodGet, ev) {
			a.recordingExport(c, ev, seg[1])
		}
	default:
		a.apiFail(c.w, c.r, http.StatusNotFound, "not found", reasonNotFound, nil, a.userEvent(c, audit.TypeRequestRejected, "route"), true)
	}
}

// trailQueryKeys are the parameters of a trail search.
var trailQueryKeys = []string{"user", "type", "type_prefix", "app", "target", "decision", "reason", "ref", "since", "until", "limit"}

// parseQuery parses a read's query string strictly: only the allowed
// keys, each at most once, bounded printable values. It returns the
// values and their canonical encoding (the audit summary).
func parseQuery(raw string, allowed []string) (url.Values, string, error) {
	if len(raw) > maxQueryLen {
		return nil, "", errors.New("query string too long")
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, "", errors.New("malformed query string")
	}
	for k, vs := range v {
		if !slices.Contains(allowed, k) {
			return nil, "", fmt.Errorf("unknown parameter %.40q", k)
		}
		if len(vs) != 1 {
			return nil, "", fmt.Errorf("parameter %s given more than once", k)
		}
		if s := vs[0]; len(s) > maxQueryValue || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, "", fmt.Errorf("parameter %s too long or not printable", k)
		}
	}
	return v, v.Encode(), nil
}

// trailQuery builds the search from the parameters.
func trailQuery(v url.Values) (audit.Query, error) {
	q := audit.Query{
		UserID: v.Get("user"), Type: v.Get("type"), TypePrefix: v.Get("type_prefix"), App: v.Get("app"),
		Target: v.Get("target"), Decision: v.Get("decision"), Reason: v.Get("reason"), Ref: v.Get("ref"),
	}
	if d := q.Decision; d != "" && d != audit.Allow && d != audit.Deny {
		return q, errors.New("decision must be allow or deny")
	}
	for _, p := range []struct {
		key string
		t   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(p.key); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, fmt.Errorf("%s must be an RFC 3339 time", p.key)
			}
			*p.t = t
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			return q, errors.New("limit must be between 1 and 10000")
		}
		q.Limit = n
	}
	if err := q.Validate(); err != nil {
		return q, err
	}
	return q, nil
}

// eventList is GET /api/audit/events.
type eventList struct {
	Events []audit.Event `json:"events"`
	More   bool          `json:"more"`
}

func (a *adminAPI) trailSearch(c *userCall, ev audit.Event) {
	dir := a.g.deps.TrailDir
	if dir == "" {
		a.apiFail(c.w, c.r, http.StatusNotFound, "not found", "trail-search-disabled", nil, ev, true)
		return
	}
	v, summary, perr := parseQuery(c.r.URL.RawQuery, trailQueryKeys)
	var q audit.Query
	if perr == nil {
		ev.Attrs["query"] = summary
		q, perr = trailQuery(v)
	}
	// The verdict first: a denied caller learns nothing about which
	// queries would be well-formed.
	if vd := a.g.deps.Access.CanReadAudit(c.rec.UserID, c.rec.Roles, c.now); !vd.Allow {
		a.apiFail(c.w, c.r, http.StatusForbidden, "forbidden", vd.Reason, nil, ev, true)
		return
	}
	if perr != nil {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "bad-query", perr, ev, true)
		return
	}
	events, more, err := audit.Search(c.r.Context(), dir, q)
	if err != nil {
		a.apiFail(c.w, c.r, http.StatusInternalServerError, "internal error", "trail-unreadable", err, ev, true)
		return
	}
	if events == nil {
		events = []audit.Event{}
	}
	ev.Decision, ev.Reason = audit.Allow, "allowed"
	ev.Attrs["results"] = strconv.Itoa(len(events))
	ev.Attrs["more"] = strconv.FormatBool(more)
	a.answer(c.w, c.r, http.StatusOK, eventList{Events: events, More: more}, ev, ev)
}

// recordingList is GET /api/audit/recordings.
type recordingList struct {
	Recordings []RecordingInfo `json:"recordings"`
}

func (a *adminAPI) recordingList(c *userCall, ev audit.Event) {
	rs := a.g.deps.Recordings
	if rs == nil {
		a.apiFail(c.w, c.r, http.StatusNotFound, "not found", "recordings-disabled", nil, ev, true)
		return
	}
	v, summary, err := parseQuery(c.r.URL.RawQuery, []string{"user"})
	if err != nil {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "bad-query", err, ev, true)
		return
	}
	ev.Attrs["query"] = summary
	me := c.rec.UserID
	user := v.Get("user")
	// Whose recordings: one's own always; anyone's, or everyone's
	// (no user given), with the audit-read role.
	scope := user
	if user != me {
		vd := a.g.deps.Access.CanReadAudit(me, c.rec.Roles, c.now)
		switch {
		case vd.Allow:
		case user == "":
			scope = me
		default:
			a.apiFail(c.w, c.r, http.StatusForbidden, "forbidden", vd.Reason, nil, ev, true)
			return
		}
	}
	list, err := rs.ListRecordings(c.r.Context(), scope)
	if err != nil {
		status, msg, reason := recordingFailure(err)
		a.apiFail(c.w, c.r, status, msg, reason, err, ev, true)
		return
	}
	if scope != "" {
		// Whatever the store returns, a list asked for one user holds
		// only that user's recordings.
		list = slices.DeleteFunc(list, func(ri RecordingInfo) bool { return ri.UserID != scope })
	}
	if list == nil {
		list = []RecordingInfo{}
	}
	ev.Decision, ev.Reason = audit.Allow, "allowed"
	ev.Attrs["scope"] = scope
	if scope == "" {
		ev.Attrs["scope"] = "all"
	}
	ev.Attrs["results"] = strconv.Itoa(len(list))
	a.answer(c.w, c.r, http.StatusOK, recordingList{Recordings: list}, ev, ev)
}

// recordingFailure maps a RecordingStore error.
func recordingFailure(err error) (int, string, string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not found", reasonNotFound
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, store.ErrUnavailable.Error(), reasonStoreDown
	default:
		return http.StatusInternalServerError, "internal error", "recording-unreadable"
	}
}

func (a *adminAPI) recordingExport(c *userCall, ev audit.Event, id string) {
	rs := a.g.deps.Recordings
	if rs == nil {
		a.apiFail(c.w, c.r, http.StatusNotFound, "not found", "recordings-disabled", nil, ev, true)
		return
	}
	if c.r.URL.RawQuery != "" {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "bad-query", errors.New("no parameters expected"), ev, true)
		return
	}
	if !validAccessID(id) {
		a.apiFail(c.w, c.r, http.StatusBadRequest, "bad request", "invalid-input", errors.New("malformed recording ID"), ev, true)
		return
	}
	ev.Attrs["recording_id"] = id
	ctx := c.r.Context()
	info, err := rs.RecordingInfo(ctx, id)
	if err != nil {
		status, msg, reason := recordingFailure(err)
		a.apiFail(c.w, c.r, status, msg, reason, err, ev, true)
		return
	}
	ev.Target = info.Target
	ev.Attrs["owner"] = info.UserID
	ev.Attrs["login"] = info.Login
	if info.UserID != c.rec.UserID {
		if vd := a.g.deps.Access.CanReadAudit(c.rec.UserID, c.rec.Roles, c.now); !vd.Allow {
			a.apiFail(c.w, c.r, http.StatusForbidden, "forbidden", vd.Reason, nil, ev, true)
			return
		}
	}
	// The read is on record, durably, before the first byte leaves.
	ev.Decision, ev.Reason = audit.Allow, "allowed"
	a.emit(c.r, ev)
	if err := audit.Sync(ctx, a.g.deps.Audit); err != nil {
		a.apiFail(c.w, c.r, http.StatusServiceUnavailable, "audit trail unavailable", "audit-unavailable", err, ev, true)
		return
	}
	h := c.w.Header()
	h.Set("Content-Type", asciicastType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Disposition", `attachment; filename="`+id+`.cast"`)
	if c.r.Method == http.MethodHead {
		c.w.WriteHeader(http.StatusOK)
		return
	}
	lw := &lazyWriter{w: c.w}
	if err := rs.ExportRecording(ctx, id, lw); err != nil {
		fev := ev
		fev.Attrs = map[string]string{"action": "export", "recording_id": id}
		if !lw.started {
			for _, k := range []string{"Content-Type", "Content-Disposition"} {
				h.Del(k)
			}
			status, msg, reason := recordingFailure(err)
			a.apiFail(c.w, c.r, status, msg, reason, err, fev, true)
			return
		}
		// Part of the recording is out: a clean end would pass a cut
		// recording for a whole one. Abort the response so the client
		// sees a failed transfer.
		fev.Decision, fev.Reason, fev.Ref = audit.Deny, "recording-unreadable", audit.NewRef(a.rand)
		a.emit(c.r, fev)
		a.log.ErrorContext(ctx, "recording export failed midway; response aborted", "ref", fev.Ref, "recording_id", id, "err", err)
		panic(http.ErrAbortHandler)
	}
	if !lw.started {
		c.w.WriteHeader(http.StatusOK)
	}
}

// lazyWriter sends the status line with the first byte, so an export that
// fails before writing anything can still be answered with an error.
type lazyWriter struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}
