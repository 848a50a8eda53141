package bastion

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/authz/audit"
)

func TestAdminHandler(t *testing.T) {
	e := newEnv(t, envOptions{})
	srv := httptest.NewServer(e.b.AdminHandler(func(*http.Request) string { return "root@admin-socket" }))
	defer srv.Close()
	ls := e.startCat(e.alice())

	var list []SessionInfo
	resp, err := http.Get(srv.URL + "/sessions")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list) != 1 || list[0].ID != ls.id || list[0].UserID != "alice" {
		t.Fatalf("list %+v", list)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"unknown session", "GET", "/sessions/nope", "", http.StatusNotFound},
		{"known session", "GET", "/sessions/" + ls.id, "", http.StatusOK},
		{"kill without a reason", "POST", "/sessions/" + ls.id + "/kill", `{}`, http.StatusBadRequest},
		{"kill with garbage", "POST", "/sessions/" + ls.id + "/kill", `{"reason":`, http.StatusBadRequest},
		{"watch unknown", "GET", "/sessions/nope/watch", "", http.StatusNotFound},
		{"wrong method", "DELETE", "/sessions/" + ls.id, "", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}

	// Watch as asciicast while the user types, then kill.
	resp, err = http.Get(srv.URL + "/sessions/" + ls.id + "/watch?format=asciicast")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || !strings.Contains(lines.Text(), `"version":2`) {
		t.Fatalf("header %q", lines.Text())
	}
	e.waitAudit(audit.TypeAdmin, "ssh-session-watch")
	ls.echo(t, "seen-live")
	found := make(chan bool, 1)
	go func() {
		for lines.Scan() {
			if strings.Contains(lines.Text(), `"o","seen-live\n"`) {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("watch ended without the output")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("output not watched")
	}
	req, _ := http.NewRequest("POST", srv.URL+"/sessions/"+ls.id+"/kill", strings.NewReader(`{"reason":"incident 7"}`))
	kresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	kresp.Body.Close()
	if kresp.StatusCode != http.StatusNoContent {
		t.Fatalf("kill status %d", kresp.StatusCode)
	}
	ls.waitEnded(t)
	end := e.waitSessionEnd(ls.id)
	if end.Reason != EndKilled || end.Attrs["detail"] != "incident 7" {
		t.Fatalf("end %+v", end)
	}
	kills := e.audit.Find(audit.TypeAdmin, "ssh-session-kill")
	if len(kills) != 1 || kills[0].Actor != "root@admin-socket" {
		t.Fatalf("kill audit %+v", kills)
	}
}
