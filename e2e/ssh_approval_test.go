package e2e

import (
	"bytes"
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/authz/audit"
	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/e2e/harness"
)

// approvalURLRE finds the approval page's URL in the bastion's prompt.
var approvalURLRE = regexp.MustCompile(`https://\S+/ssh/approve\?c=\S+`)

// testSSHApproval: an SSH client without a certificate logs in by
// keyboard-interactive. The bastion shows an approval URL on the gateway;
// Chromium (signed in as alice) opens it, checks it names this connection,
// and approves; the SSH session then runs as alice.
func testSSHApproval(t *testing.T, s *sshSite, bctx context.Context) {
	since := time.Now()
	urls := make(chan string, 1)
	answer := func(name, instruction string, questions []string, echos []bool) ([]string, error) {
		if u := approvalURLRE.FindString(instruction); u != "" {
			select {
			case urls <- u:
			default:
			}
		}
		// "Press Enter once approved": the bastion then waits for the
		// decision; later rounds are messages without questions.
		return make([]string, len(questions)), nil
	}
	type dialed struct {
		c   *ssh.Client
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := ssh.Dial("tcp", s.addr, &ssh.ClientConfig{
			User:            "root@db-1",
			Auth:            []ssh.AuthMethod{ssh.KeyboardInteractive(answer)},
			HostKeyCallback: ssh.FixedHostKey(s.hostKey),
			Timeout:         60 * time.Second,
		})
		done <- dialed{c, err}
	}()

	var page string
	select {
	case page = <-urls:
	case d := <-done:
		t.Fatalf("the bastion showed no approval URL (dial: %v)", d.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the bastion showed no approval URL")
	}
	u, err := url.Parse(page)
	if err != nil || u.Host != hostPort(accessHost, s.p.Port) {
		t.Fatalf("approval URL %q is not on the access host", page)
	}
	// alice is signed in already (portcullis login); LoginBrowser signs
	// in again only if the gateway asks.
	l := harness.LoginBrowser(t, bctx, page, s.users["alice"], s.totp)
	if !strings.Contains(l.URL, "/ssh/approve") {
		t.Fatalf("the browser ended at %s, not on the approval page", l.URL)
	}
	ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
	defer cancel()
	for id, want := range map[string]string{"#ssh-login": "root", "#ssh-target": "db-1", "#ssh-source": "127.0.0.1"} {
		got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(id)))
		if err != nil || strings.TrimSpace(got) != want {
			t.Fatalf("approval page %s = %q (%v), want %q", id, got, err, want)
		}
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS("#approve"))); err != nil {
		t.Fatalf("approve: %v", err)
	}

	var d dialed
	select {
	case d = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the SSH login did not finish after the approval")
	}
	if d.err != nil {
		t.Fatalf("SSH login after approval: %v", d.err)
	}
	defer d.c.Close()
	sess, err := d.c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	if err := sess.Run("echo approved"); err != nil || strings.TrimSpace(out.String()) != "approved" {
		t.Fatalf("session after approval: %q (%v)", out.String(), err)
	}
	d.c.Close()

	s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHApprovalRequest, Reason: bastion.ReasonApprovalRequested, Since: since})
	s.audit(t, harness.AuditQuery{Type: "ssh.approval.approve", UserID: s.userID("alice"), Since: since})
	s.audit(t, harness.AuditQuery{Type: bastion.TypeSSHAuth, Reason: bastion.ReasonApproved, Decision: audit.Allow, UserID: s.userID("alice"), Since: since})
	id := s.sessionSince(t, since)
	if cast := s.exportAsciicast(t, id); !strings.Contains(cast.Output, "approved") {
		t.Fatalf("recording of the approved session: %q", cast.Output)
	}
}
