package bastion

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/bastion/recording"
)

// TestFileTransfer copies files both ways with scp (legacy protocol over
// exec, and the default SFTP) and sftp through the bastion to the real
// sshd, and checks that the recording names every file with its size and
// SHA-256.
func TestFileTransfer(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.alice()
	host, _, _ := net.SplitHostPort(e.addr)
	remote := "root@db-1@" + host + ":"
	dir := t.TempDir() // the target is this machine: its files are ours to check
	content := make([]byte, 300<<10+17)
	rand.Read(content)
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	src := writeFile(t, filepath.Join(dir, "payload.bin"), content)

	for _, tc := range []struct {
		name  string
		prog  string
		args  func(up, down string) [][]string // one run per entry
		event string
		ops   []string // operations whose events must carry the digest
	}{
		{"legacy scp", "scp", func(up, down string) [][]string {
			return [][]string{{"-O", src, remote + up}, {"-O", remote + up, down}}
		}, recording.EventSCP, []string{recording.OpUpload, recording.OpDownload}},
		{"scp over sftp", "scp", func(up, down string) [][]string {
			return [][]string{{src, remote + up}, {remote + up, down}}
		}, recording.EventSFTP, []string{recording.OpWrite}},
		{"sftp", "sftp", func(up, down string) [][]string {
			batch := writeFile(t, filepath.Join(dir, "batch"), []byte(
				"put "+src+" "+up+"\nget "+up+" "+down+"\nmkdir "+up+".d\nrename "+up+" "+up+".d/moved\nrm "+up+".d/moved\nrmdir "+up+".d\n"))
			return [][]string{{"-b", batch, "root@db-1@" + host}}
		}, recording.EventSFTP, []string{recording.OpWrite}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.use(t)()
			name := strings.ReplaceAll(tc.name, " ", "-")
			up := filepath.Join(dir, name+"-up.bin")
			down := filepath.Join(dir, name+"-down.bin")
			var sessions []string
			for _, args := range tc.args(up, down) {
				r := e.run("", tc.prog, []*user{alice}, args...)
				if r.code != 0 {
					t.Fatalf("%s %v: %+v", tc.prog, args, r)
				}
				s := e.lastSession()
				e.waitSessionEnd(s.SessionID)
				sessions = append(sessions, s.SessionID)
			}
			got, err := os.ReadFile(down)
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("downloaded file differs (%v)", err)
			}
			seen := map[string]bool{}
			var ops []string
			for _, id := range sessions {
				for _, ev := range e.summary(id).Events {
					if ev.Type != tc.event {
						continue
					}
					ops = append(ops, ev.Op+" "+ev.Path)
					if ev.SHA256 == digest && (ev.BytesWritten == int64(len(content))) {
						seen[ev.Op] = true
					}
				}
			}
			for _, op := range tc.ops {
				if !seen[op] {
					t.Fatalf("no %s event with the file's SHA-256; events: %q", op, ops)
				}
			}
			if tc.prog == "sftp" {
				for _, want := range []string{
					recording.OpOpen + " " + up, recording.OpRead + " " + up, recording.OpMkdir + " " + up + ".d",
					recording.OpRename + " " + up, recording.OpRemove + " " + up + ".d/moved", recording.OpRmdir + " " + up + ".d",
				} {
					if !contains(ops, want) {
						t.Fatalf("no %q event; events: %q", want, ops)
					}
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
