package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"go.etcd.io/bbolt"

	"github.com/portcullis/portcullis/authz/access"
	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/authz/session"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/adminclient"
	"github.com/portcullis/portcullis/cmd/portcullis/internal/testfixture"
)

// storedItem is one record of the store that mentions the user.
type storedItem struct {
	where   string // namespace (embedded bucket, Redis key type prefix)
	key     string
	expires bool // has an expiry
}

// TestDeleteUser: delete-user removes everything the store holds about a
// user in one admin call — TOTP secret, recovery codes, web sessions (gone
// on a second instance too), SSH certificates (revoked by key ID), the
// risk profile and baseline, the users entry — and afterwards a scan of
// every key and value of the store finds the user ID only in short-lived
// counters that expire by themselves (and in an account lock, which is
// kept). The trail records the deletion with the actor and keeps the ID.
func TestDeleteUser(t *testing.T) {
	for _, backend := range []string{"embedded", "redis"} {
		t.Run(backend, func(t *testing.T) {
			f := testfixture.New(t)
			f.WithBastion(t)
			// The admin role is requestable, so the user can have a
			// pending request as well as a grant.
			extra := "access: {requestable: [{role: admin, approvers: [admin]}]}\n"
			var prefix string
			if backend == "redis" {
				prefix = "portcullis-test:deleteuser:" + randomHex(t) + ":"
				extra += fmt.Sprintf("store: {backend: redis, redis: {addr: %q, key_prefix: %q}}", redisAddr(), prefix)
				cleanRedis(t, prefix)
			}
			a := openAs(t, f, "a", extra)
			var b *Instance
			if backend == "redis" {
				b = openAs(t, f, "b", extra)
			}
			admin := serveAdmin(t, a)
			ctx := context.Background()
			user := "https://idp.example#erin-" + randomHex(t)
			other := "https://idp.example#frank-" + randomHex(t)
			ip := netip.MustParseAddr("192.0.2.10")
			locked := backend == "embedded" // the lock is kept; the Redis case unlocks first

			// A failure window epoch (lock, then unlock, on Redis), or a
			// lock that stays (embedded).
			if _, err := a.Risk.Lock(ctx, user, "test", "tester"); err != nil {
				t.Fatal(err)
			}
			if !locked {
				if _, err := a.Risk.Unlock(ctx, user, "test", "tester"); err != nil {
					t.Fatal(err)
				}
			}
			for _, u := range []string{user, other} {
				if err := a.Store.PutUser(ctx, u, []byte(`{"user_id":`+strconv.Quote(u)+`,"email":"erin@example.com","name":"Erin"}`)); err != nil {
					t.Fatal(err)
				}
				enr, err := a.MFA.BeginEnrolment(ctx, u, "erin")
				if err != nil {
					t.Fatal(err)
				}
				code, err := totp.GenerateCode(enr.Secret, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := a.MFA.ConfirmEnrolment(ctx, u, code); err != nil {
					t.Fatal(err)
				}
				if err := a.Risk.Record(ctx, u, ip); err != nil {
					t.Fatal(err)
				}
			}
			// The usage baseline needs hours of traffic to appear; write
			// the record the engine keeps.
			if err := a.Store.PutEphemeral(ctx, "risk-baseline:"+user, []byte(`{"rate_ewma":3}`), time.Hour); err != nil {
				t.Fatal(err)
			}
			var tokens []string
			for range 2 {
				tok, _, err := a.Sessions.Create(ctx, session.Record{UserID: user, MFA: true, AuthTime: time.Now()})
				if err != nil {
					t.Fatal(err)
				}
				tokens = append(tokens, tok)
			}
			if _, _, err := a.Sessions.Create(ctx, session.Record{UserID: other, MFA: true, AuthTime: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if b != nil {
				// The second instance has the session cached.
				if _, err := b.Sessions.Lookup(ctx, b.Sessions.Cookie(tokens[0], time.Hour).Value); err != nil {
					t.Fatalf("instance b: %v", err)
				}
			}
			_, cert := testfixture.Issue(t, a.SSHCA, user)
			// Just-in-time access: an approved (temporary) grant and a
			// pending request. (Admin is an approver role here, so it
			// cannot be granted locally.)
			approver := access.Person{UserID: "approver", Roles: []string{"admin"}}
			grant := func(u, reason string) {
				t.Helper()
				rq, err := a.Access.Submit(ctx, access.Person{UserID: u}, "admin", time.Hour, reason)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := a.Access.Approve(ctx, approver, rq.ID, ""); err != nil {
					t.Fatal(err)
				}
			}
			grant(user, "on call")
			if _, err := a.Access.Submit(ctx, access.Person{UserID: user}, "admin", time.Hour, "INC-1 private reason"); err != nil {
				t.Fatal(err)
			}
			grant(other, "other")
			if roles := a.Access.Roles(user, nil, time.Now()); len(roles) != 1 {
				t.Fatalf("roles before delete-user: %v", roles)
			}

			body, err := admin.Call(ctx, adminclient.DeleteUser(user, "left the company"))
			if err != nil {
				t.Fatal(err)
			}
			var res adminclient.DeleteUserResult
			if err := json.Unmarshal(body, &res); err != nil {
				t.Fatal(err)
			}
			want := adminclient.DeleteUserResult{UserID: user, DirectoryEntry: true, MFAEnrolment: true, RecoveryCodes: res.RecoveryCodes,
				Sessions: 2, SSHCertsRevoked: true, RiskProfile: true, AccessRecords: 3, // the approved request, its grant, the pending request
				Locked: locked}
			if res != want || res.RecoveryCodes == 0 {
				t.Fatalf("result %+v, want %+v", res, want)
			}
			if err := a.CertRevocations.Check(ctx, cert); !errors.Is(err, session.ErrCertRevoked) {
				t.Errorf("certificate after delete-user: %v", err)
			}
			if b != nil {
				waitUntil(t, "the session to end on instance b", func() bool {
					_, err := b.Sessions.Lookup(ctx, b.Sessions.Cookie(tokens[0], time.Hour).Value)
					return errors.Is(err, session.ErrNoSession)
				})
			}
			for _, tok := range tokens {
				if _, err := a.Sessions.Lookup(ctx, a.Sessions.Cookie(tok, time.Hour).Value); !errors.Is(err, session.ErrNoSession) {
					t.Errorf("session on instance a: %v", err)
				}
			}
			// Nothing left: a second call finds nothing.
			if _, err := admin.Call(ctx, adminclient.DeleteUser(user, "")); !isStatus(err, http.StatusNotFound) {
				t.Errorf("second delete: %v", err)
			}
			// The other user is untouched.
			if ok, err := a.MFA.Enrolled(ctx, other); err != nil || !ok {
				t.Errorf("other user's enrolment: %v %v", ok, err)
			}
			// The grant no longer counts here, nor on the other instance.
			if roles := a.Access.Roles(user, nil, time.Now()); len(roles) != 0 {
				t.Errorf("roles after delete-user on instance a: %v", roles)
			}
			if roles := a.Access.Roles(other, nil, time.Now()); len(roles) != 1 {
				t.Errorf("the other user's grant: %v", roles)
			}
			if b != nil {
				waitUntil(t, "the grant to end on instance b", func() bool { return len(b.Access.Roles(user, nil, time.Now())) == 0 })
			}

			// The trail: the deletion with the actor; the user ID is kept.
			if err := a.Audit.Flush(); err != nil {
				t.Fatal(err)
			}
			got := findEvents(t, a.Config.Audit.Dir, func(e audit.Event) bool {
				return e.Type == audit.TypeAdmin && e.Reason == reasonUserDel && e.UserID == user && e.Actor == localActor
			})
			if len(got) != 2 || got[0].Decision != audit.Allow || got[0].Attrs["note"] != "left the company" || got[1].Decision != audit.Deny {
				t.Errorf("audit events %+v", got)
			}

			// Scan the whole store for the user ID.
			var items []storedItem
			if backend == "redis" {
				items = scanRedis(t, prefix, user)
			} else {
				path := a.Config.Store.Path
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				items = scanBolt(t, path, user)
			}
			var shortLived, kept int
			for _, it := range items {
				switch {
				case it.where == "counters" || it.where == "totp-steps" || it.where == "ctr" || it.where == "step":
					// Failure and usage counters, used TOTP steps: keyed by
					// the user ID, no delete in the store interface, gone
					// within their window.
					if !it.expires {
						t.Errorf("%s %q mentions the user and never expires", it.where, it.key)
					}
					shortLived++
				case locked && (it.where == "locks" || it.where == "lock"):
					kept++
				default:
					t.Errorf("left in the store after delete-user: %s %q", it.where, it.key)
				}
			}
			if locked && kept != 1 {
				t.Errorf("the account lock was not kept (%d lock records)", kept)
			}
			t.Logf("%d records mention the user; %d are short-lived counters", len(items), shortLived)
		})
	}
}

func isStatus(err error, status int) bool {
	var apiErr *adminclient.APIError
	return errors.As(err, &apiErr) && apiErr.Status == status
}

// openAs opens the fixture's configuration as instance name (own data
// directory and admin socket) with extra YAML, closed when the test ends.
func openAs(t *testing.T, f *testfixture.Fixture, name, extra string) *Instance {
	t.Helper()
	cfg := loadAs(t, f, name, extra)
	in, err := Open(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func randomHex(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// scanBolt reads every bucket of the embedded store's file (closed) and
// returns the records whose key or value contains s.
func scanBolt(t *testing.T, path, s string) []storedItem {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []storedItem
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if bytes.Contains(k, []byte(s)) || bytes.Contains(v, []byte(s)) {
					// Every value starts with a version byte and the
					// expiry (Unix ns, 0 = never): store/codec.go.
					exp := len(v) >= 9 && binary.BigEndian.Uint64(v[1:9]) != 0
					out = append(out, storedItem{where: string(name), key: string(k), expires: exp})
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func redisAddr() string {
	if a := os.Getenv("PORTCULLIS_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// resp is a minimal Redis client for the test's scans (only authz/store
// may import go-redis).
type resp struct {
	c net.Conn
	r *bufio.Reader
}

func dialResp(t *testing.T) *resp {
	t.Helper()
	c, err := net.DialTimeout("tcp", redisAddr(), 5*time.Second)
	if err != nil {
		t.Fatalf("no redis-server at %s (start one with `redis-server --daemonize yes`): %v", redisAddr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return &resp{c: c, r: bufio.NewReader(c)}
}

func (r *resp) do(t *testing.T, args ...string) any {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(r.c, b.String()); err != nil {
		t.Fatal(err)
	}
	v, err := r.read()
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return v
}

func (r *resp) read() (any, error) {
	line, err := r.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = r.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// redisKeys lists the keys under prefix.
func (r *resp) keys(t *testing.T, prefix string) []string {
	var out []string
	cursor := "0"
	for {
		v := r.do(t, "SCAN", cursor, "MATCH", prefix+"*", "COUNT", "1000").([]any)
		cursor = v[0].(string)
		for _, k := range v[1].([]any) {
			out = append(out, k.(string))
		}
		if cursor == "0" {
			return out
		}
	}
}

// cleanRedis deletes the prefix's keys when the test ends.
func cleanRedis(t *testing.T, prefix string) {
	t.Cleanup(func() {
		r := dialResp(t)
		for _, k := range r.keys(t, prefix) {
			r.do(t, "DEL", k)
		}
	})
}

// scanRedis returns the keys under prefix whose name or contents contain
// s; where is the store's namespace word (the part after the prefix).
func scanRedis(t *testing.T, prefix, s string) []storedItem {
	t.Helper()
	r := dialResp(t)
	var out []storedItem
	for _, k := range r.keys(t, prefix) {
		var content []string
		switch typ := r.do(t, "TYPE", k).(string); typ {
		case "string":
			v, _ := r.do(t, "GET", k).(string)
			content = []string{v}
		case "hash":
			content = flat(r.do(t, "HGETALL", k))
		case "set":
			content = flat(r.do(t, "SMEMBERS", k))
		case "zset":
			content = flat(r.do(t, "ZRANGE", k, "0", "-1"))
		case "list":
			content = flat(r.do(t, "LRANGE", k, "0", "-1"))
		case "none":
			continue // expired meanwhile
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		if !strings.Contains(k, s) && !strings.Contains(strings.Join(content, "\x00"), s) {
			continue
		}
		ns, _, _ := strings.Cut(strings.TrimPrefix(k, prefix), ":")
		ttl, _ := r.do(t, "PTTL", k).(int64)
		out = append(out, storedItem{where: ns, key: strings.TrimPrefix(k, prefix), expires: ttl > 0})
	}
	return out
}

func flat(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
