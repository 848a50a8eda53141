package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/store"
)

// Fuzzing of what callers of the just-in-time APIs send: the query string
// of GET /api/audit/events and the JSON bodies of /api/access/* and the
// admin grant calls. Whatever arrives, parsing must not panic, must refuse
// with an error (short, printable: it reaches logs and the trail), and
// what it accepts must be bounded and canonical. Seeds, including what
// fuzzing runs found interesting, are in testdata/fuzz/<FuzzName>/.

// checkRefusal: a refusal's message is short and printable (it is logged
// and audited as the cause).
func checkRefusal(t *testing.T, what string, err error) {
	t.Helper()
	msg := err.Error()
	if len(msg) > 200 || !utf8.ValidString(msg) || strings.ContainsFunc(msg, unicode.IsControl) {
		t.Fatalf("%s: refusal message not short and printable: %q", what, msg)
	}
}

func FuzzTrailQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		v, summary, err := parseQuery(raw, trailQueryKeys)
		if err != nil {
			if v != nil || summary != "" {
				t.Fatalf("refused query %q still yields values %v / %q", raw, v, summary)
			}
			checkRefusal(t, "parseQuery", err)
			return
		}
		if len(raw) > maxQueryLen {
			t.Fatalf("accepted a %d-byte query", len(raw))
		}
		for k, vs := range v {
			if !slices.Contains(trailQueryKeys, k) || len(vs) != 1 {
				t.Fatalf("accepted parameter %q with %d values", k, len(vs))
			}
			if s := vs[0]; len(s) > maxQueryValue || !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("accepted value %q for %s", s, k)
			}
		}
		// The audit summary is canonical, bounded and reads back as the
		// same query.
		if len(summary) > 3*maxQueryLen {
			t.Fatalf("summary of %d bytes for a %d-byte query", len(summary), len(raw))
		}
		back, err := url.ParseQuery(summary)
		if err != nil || !reflect.DeepEqual(back, v) {
			t.Fatalf("summary %q reads back as %v (%v), want %v", summary, back, err, v)
		}

		q, err := trailQuery(v)
		if err != nil {
			checkRefusal(t, "trailQuery", err)
			return
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("trailQuery accepted a query Validate refuses: %v", err)
		}
		if q.Limit < 0 || q.Limit > 10000 || (v.Get("limit") != "" && q.Limit == 0) {
			t.Fatalf("limit %d from %q", q.Limit, v.Get("limit"))
		}
		if q.Decision != "" && q.Decision != audit.Allow && q.Decision != audit.Deny {
			t.Fatalf("decision %q accepted", q.Decision)
		}
		if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
			t.Fatalf("since %v not before until %v", q.Since, q.Until)
		}
		for key, got := range map[string]string{"user": q.UserID, "type": q.Type, "type_prefix": q.TypePrefix, "app": q.App,
			"target": q.Target, "decision": q.Decision, "reason": q.Reason, "ref": q.Ref} {
			if got != v.Get(key) {
				t.Fatalf("%s = %q, query said %q", key, got, v.Get(key))
			}
		}
		for key, got := range map[string]time.Time{"since": q.Since, "until": q.Until} {
			if s := v.Get(key); s != "" {
				if want, err := time.Parse(time.RFC3339Nano, s); err != nil || !got.Equal(want) {
					t.Fatalf("%s %q parsed as %v", key, s, got)
				}
			} else if !got.IsZero() {
				t.Fatalf("%s without a value parsed as %v", key, got)
			}
		}
	})
}

// decodeInto runs decodeBody on body into a new value like proto and
// returns it.
func decodeInto[T any](body []byte) (T, error) {
	var v T
	r := httptest.NewRequest("POST", "/api/access/requests", bytes.NewReader(body))
	err := decodeBody(httptest.NewRecorder(), r, &v)
	return v, err
}

// checkBody checks one body type: refused bodies give an error; an
// accepted one is JSON (or blank), names only the type's fields, and
// round-trips.
func checkBody[T any](t *testing.T, body []byte) (T, bool) {
	t.Helper()
	v, err := decodeInto[T](body)
	if err != nil {
		if len(err.Error()) > 300 {
			t.Fatalf("refusal message of %d bytes", len(err.Error()))
		}
		return v, false
	}
	if len(body) > maxAdminBody {
		t.Fatalf("accepted a %d-byte body", len(body))
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not one JSON value: %q", body)
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(body, &fields) == nil {
			known := jsonNames(reflect.TypeFor[T]())
			for k := range fields {
				if !containsFold(known, k) {
					t.Fatalf("accepted unknown field %q", k)
				}
			}
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("accepted body does not re-encode: %v", err)
	}
	back, err := decodeInto[T](b)
	if err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("body does not round-trip: %+v → %s → %+v (%v)", v, b, back, err)
	}
	return v, true
}

func jsonNames(rt reflect.Type) []string {
	var out []string
	for i := range rt.NumField() {
		out = append(out, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
	}
	return out
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func FuzzAccessBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		checkBody[noteBody](t, body)
		checkBody[reasonBody](t, body)
		checkBody[grantBody](t, body)
		sb, ok := checkBody[submitBody](t, body)
		if !ok {
			return
		}
		d, err := parseRequestDuration(sb.Duration)
		if err != nil {
			checkRefusal(t, "parseRequestDuration", err)
			return
		}
		if d <= 0 || len(sb.Duration) > maxDurationLen {
			t.Fatalf("duration %q accepted as %v", sb.Duration, d)
		}
		// What the body asks for reaches a real manager: an accepted
		// request is bounded whatever the body held.
		m, ev := fuzzAccessManager(t)
		who := access.Person{UserID: "https://idp.example.com#fuzz", Roles: []string{"engineer"}}
		r, err := m.Submit(context.Background(), who, sb.Role, d, sb.Reason)
		if err != nil {
			return
		}
		if r.Role != "db-admin" || r.Duration > 4*time.Hour || r.Duration <= 0 || len(r.Reason) > access.MaxReasonLen ||
			!utf8.ValidString(r.Reason) || strings.ContainsFunc(r.Reason, func(c rune) bool { return !unicode.IsPrint(c) }) {
			t.Fatalf("accepted request %+v from body %q", r, body)
		}
		for _, e := range ev.Events() {
			for k, a := range e.Attrs {
				if len(a) > 512 || strings.ContainsFunc(a, unicode.IsControl) {
					t.Fatalf("audit attribute %s = %q", k, a)
				}
			}
		}
	})
}

// fuzzAccessManager is an access manager on an in-memory record map with
// one requestable role, db-admin (at most 4h, one sre-lead approval).
func fuzzAccessManager(t *testing.T) (*access.Manager, *audit.Memory) {
	t.Helper()
	ev := &audit.Memory{}
	m, err := access.New(access.Config{Roles: []access.RoleConfig{
		{Role: "db-admin", Approvers: []string{"sre-lead"}, Approvals: 1, MaxDuration: 4 * time.Hour},
	}}, access.Deps{Store: &fuzzRecords{}, Audit: ev, Now: func() time.Time { return time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return m, ev
}

// fuzzRecords is a minimal in-memory access.Records.
type fuzzRecords struct {
	mu   sync.Mutex
	recs map[string][]byte
}

func (s *fuzzRecords) key(kind, id string) string { return kind + "\x00" + id }

func (s *fuzzRecords) PutRecord(_ context.Context, kind, id string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = map[string][]byte{}
	}
	s.recs[s.key(kind, id)] = bytes.Clone(data)
	return nil
}

func (s *fuzzRecords) CreateRecord(ctx context.Context, kind, id string, data []byte) (bool, error) {
	s.mu.Lock()
	_, ok := s.recs[s.key(kind, id)]
	s.mu.Unlock()
	if ok {
		return false, nil
	}
	return true, s.PutRecord(ctx, kind, id, data)
}

func (s *fuzzRecords) GetRecord(_ context.Context, kind, id string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.recs[s.key(kind, id)]
	if !ok {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(b), nil
}

func (s *fuzzRecords) SwapRecord(_ context.Context, kind, id string, old, new []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.recs[s.key(kind, id)]
	switch {
	case !ok:
		return false, store.ErrNotFound
	case !bytes.Equal(cur, old):
		return false, nil
	case new == nil:
		delete(s.recs, s.key(kind, id))
	default:
		s.recs[s.key(kind, id)] = bytes.Clone(new)
	}
	return true, nil
}

func (s *fuzzRecords) DeleteRecord(_ context.Context, kind, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, s.key(kind, id))
	return nil
}

func (s *fuzzRecords) ListRecords(_ context.Context, kind string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.recs {
		if rest, ok := strings.CutPrefix(k, kind+"\x00"); ok {
			out[rest] = bytes.Clone(v)
		}
	}
	return out, nil
}
