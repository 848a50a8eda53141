package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/portcullis/portcullis/bastion"
	"github.com/portcullis/portcullis/e2e/harness"
)

// Recordings in an S3-compatible bucket: one `portcullis serve` whose
// bastion uploads closed recordings to a real S3 server (versitygw over
// TLS with the site's CA, ca_file in the config), keep_local 0s, in front
// of a private stock sshd, used with OpenSSH.

const s3Bucket = "pc-recordings"

// newS3Site starts the deployment for users (login → IdP groups) and its
// S3 server (TLS under the site's CA, which ca_file names).
func newS3Site(t *testing.T, users map[string][]string) (*accessSite, *harness.S3) {
	t.Helper()
	as := &accessSite{site: newSite(t, 1, users), dir: t.TempDir()}
	s3 := harness.StartS3(t, as.ca, s3Bucket)
	keys := filepath.Join(as.dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	userCA := harness.NewSSHKey(t, keys, "user_ca")
	upCA := harness.NewSSHKey(t, keys, "upstream_ca")
	host := harness.NewSSHKey(t, keys, "bastion_host")
	recKeyFile, _ := newRecordingKey(t, keys)
	accessFile, secretFile := filepath.Join(keys, "s3-access"), filepath.Join(keys, "s3-secret")
	for f, v := range map[string]string{accessFile: s3.AccessKey, secretFile: s3.SecretKey + "\n"} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	as.recDir = filepath.Join(as.dir, "recordings")
	target := harness.StartSSHD(t, harness.SSHDOptions{TrustedUserCAKeys: []ssh.PublicKey{upCA.Public()}})
	as.sshAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	spec := as.spec(0, "")
	spec.Policy = `roles:
  - name: sshops
    groups: [sshops]
    allow:
      - apps: [app]
      - {targets: [db-1], logins: [root]}
`
	spec.Risk = sshSiteRisk
	cfg := spec.YAML() + fmt.Sprintf(`bastion:
  listen: %s
  host_key_files: [%s]
  user_ca_key_file: %s
  upstream_ca_key_file: %s
  recording_key_file: %s
  recording_dir: %s
  targets:
    - {name: db-1, addr: "%s", host_key: "%s"}
  recording_storage:
    endpoint: %s
    bucket: %s
    prefix: bastion/eu-1
    access_key_file: %s
    secret_key_file: %s
    ca_file: %s
    keep_local: 0s
`, as.sshAddr, host.Path, userCA.Path, upCA.Path, recKeyFile, as.recDir,
		target.Addr, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(target.HostKey))),
		s3.Endpoint, s3Bucket, accessFile, secretFile, as.ca.CertFile)
	as.p = harness.StartPortcullis(t, cfg)
	harness.WaitSSH(t, as.sshAddr, 30*time.Second)
	as.cfg = harness.WriteSSHConfig(t, as.dir, []string{harness.KnownHostsLine(as.sshAddr, host.Public())}, nil,
		harness.SSHHost{Alias: "bastion", Addr: as.sshAddr})
	return as, s3
}

// TestRecordingStorage: a session's recording lands in the bucket once
// the session ends (audited), its local copy goes (keep_local 0s) and
// the API still serves it, from the bucket; an object modified in the
// bucket is refused as tampered, nothing of it shown; with the bucket
// down a session runs unaffected, /healthz says uploads fail, and the
// recording is uploaded once the bucket is back.
func TestRecordingStorage(t *testing.T) {
	t.Parallel()
	as, s3 := newS3Site(t, map[string][]string{"sam": {"sshops"}})
	sam := as.signIn(t, "sam")
	as.mintToken(t, sam)
	key := as.sshCert(t, sam)

	// session runs echo WORD as sam and returns its session ID once the
	// session has ended.
	session := func(word string) string {
		t.Helper()
		since := time.Now()
		if r := as.ssh(t, key, "echo "+word); r.Code != 0 || strings.TrimSpace(r.Stdout) != word {
			t.Fatalf("ssh: %+v\n--- server:\n%s", r, tail(as.p.Output(), 3000))
		}
		st := harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionStart, UserID: sam.id, Since: since})
		harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: bastion.TypeSSHSessionEnd, SessionID: st.SessionID})
		return st.SessionID
	}
	objectOf := func(id string) string { return s3.ObjectPath(s3Bucket, "bastion/eu-1/"+id+".pcrec") }
	// uploaded waits for the upload's audit event, the object, and the
	// local copy's removal.
	uploaded := func(id string) {
		t.Helper()
		ev := harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: "recording.upload", Reason: "uploaded", SessionID: id})
		if ev.Attrs["key"] != "s3://"+s3Bucket+"/bastion/eu-1/"+id+".pcrec" || ev.Attrs["result"] != "ok" || ev.Attrs["sha256"] == "" {
			t.Fatalf("upload event %+v", ev)
		}
		waitFor(t, "the local copy's removal", func() bool {
			_, err := os.Stat(filepath.Join(as.recDir, id+".pcrec"))
			return os.IsNotExist(err)
		})
		if _, err := os.Stat(objectOf(id)); err != nil {
			t.Fatalf("object: %v", err)
		}
	}

	id := session("rec-in-bucket")
	uploaded(id)
	r := sam.api.Call(http.MethodGet, "/api/audit/recordings", nil)
	wantStatus(t, "list with the recording only in the bucket", r, http.StatusOK, "")
	if !strings.Contains(r.Body, `"id":"`+id+`"`) {
		t.Fatalf("listing lacks %s: %s", id, r.Body)
	}
	r = sam.api.Call(http.MethodGet, "/api/audit/recordings/"+id, nil)
	wantStatus(t, "read the recording from the bucket", r, http.StatusOK, "")
	if cast := parseAsciicast(t, []byte(r.Body)); !strings.Contains(cast.Output, "rec-in-bucket") {
		t.Fatalf("recording output %q", cast.Output)
	}

	t.Run("TamperedObject", func(t *testing.T) {
		id := session("rec-tampered")
		uploaded(id)
		data, err := os.ReadFile(objectOf(id))
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x01
		if err := os.WriteFile(objectOf(id), data, 0o644); err != nil {
			t.Fatal(err)
		}
		r := sam.api.Call(http.MethodGet, "/api/audit/recordings/"+id, nil)
		wantStatus(t, "read a modified object", r, http.StatusInternalServerError, "recording-unreadable")
		if strings.Contains(r.Body, "rec-tampered") {
			t.Fatalf("the modified recording was shown: %s", r.Body)
		}
		// The cause goes to the log (the user sees a reference).
		waitFor(t, "the server to log the tampering", func() bool {
			return strings.Contains(as.p.Output(), "recording: tampered") && strings.Contains(as.p.Output(), id)
		})
	})

	t.Run("BucketDown", func(t *testing.T) {
		s3.Stop()
		id := session("rec-while-down") // unaffected
		harness.WaitAudit(t, as.p.AuditDir, harness.AuditQuery{Type: "recording.upload", Reason: "upload-failed", SessionID: id})
		c := as.client(t)
		if h := c.Get(as.p.AccessURL + "/healthz"); h.StatusCode != http.StatusOK || !strings.Contains(h.Body, "degraded: recording uploads to s3://"+s3Bucket+" failing") {
			t.Fatalf("healthz while the bucket is down: %d %q", h.StatusCode, h.Body)
		}
		if _, err := os.Stat(filepath.Join(as.recDir, id+".pcrec")); err != nil {
			t.Fatalf("the local recording while the bucket is down: %v", err)
		}
		s3.Restart()
		uploaded(id) // at the next retry (backoff: 1 s, 2 s, 4 s, …)
		if h := c.Get(as.p.AccessURL + "/healthz"); !strings.HasPrefix(h.Body, "ok") {
			t.Fatalf("healthz after the bucket is back: %q", h.Body)
		}
		r := sam.api.Call(http.MethodGet, "/api/audit/recordings/"+id, nil)
		wantStatus(t, "read the recording uploaded late", r, http.StatusOK, "")
		if cast := parseAsciicast(t, []byte(r.Body)); !strings.Contains(cast.Output, "rec-while-down") {
			t.Fatalf("recording output %q", cast.Output)
		}
	})
}

// waitFor polls cond (every 20 ms, up to 20 s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRecordingStorageHostileConfig: `portcullis config check` refuses
// recording_storage settings that would leak or misplace recordings, at
// FILE:LINE, without echoing a secret.
func TestRecordingStorageHostileConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := `gateway:
  access_host: access.example.com
  tls: {mode: acme}
identity:
  issuer: https://login.example.com
  client_id: portcullis
  client_secret_file: secret
mfa: {key_file: secret}
session: {cookie_key_file: secret, assertion_key_file: secret}
policy:
  roles:
    - {name: r, groups: [g]}
bastion:
  host_key_files: [secret]
  user_ca_key_file: secret
  upstream_ca_key_file: secret
  recording_key_file: secret
  recording_storage:
`
	cases := []struct {
		name    string
		storage string
		want    string
	}{
		{"plain http across the network", "    endpoint: http://10.20.30.40:9000\n    bucket: recordings\n    access_key_env: A\n    secret_key_env: S\n",
			":19: bastion.recording_storage.endpoint: http only to a loopback address"},
		{"missing secret key", "    endpoint: https://s3.example.com\n    bucket: recordings\n    access_key_env: A\n",
			":18: bastion.recording_storage.secret_key: missing"},
		{"inline secret key", "    endpoint: https://s3.example.com\n    bucket: recordings\n    access_key_env: A\n    secret_key: inline-s3-secret-value\n",
			":22: bastion.recording_storage.secret_key: secrets must not be written in the config file"},
		{"bucket name with upper case and underscore", "    endpoint: https://s3.example.com\n    bucket: My_Recordings\n    access_key_env: A\n    secret_key_env: S\n",
			":20: bastion.recording_storage.bucket: \"My_Recordings\" may hold only lowercase"},
		{"bucket name like an IP", "    endpoint: https://s3.example.com\n    bucket: 10.0.0.1\n    access_key_env: A\n    secret_key_env: S\n",
			":20: bastion.recording_storage.bucket: \"10.0.0.1\" must not look like an IP address"},
		{"prefix escaping", "    endpoint: https://s3.example.com\n    bucket: recordings\n    prefix: a/../../b\n    access_key_env: A\n    secret_key_env: S\n",
			":21: bastion.recording_storage.prefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(base+tc.storage), 0o600); err != nil {
				t.Fatal(err)
			}
			r := harness.RunPortcullis(t, "config", "check", "--no-secrets", file)
			out := r.Stdout + r.Stderr
			if r.Code != 1 || !strings.Contains(out, file+tc.want) {
				t.Fatalf("config check: exit %d, want 1 with %q:\n%s", r.Code, file+tc.want, out)
			}
			if strings.Contains(out, "inline-s3-secret-value") {
				t.Fatalf("config check echoed the secret:\n%s", out)
			}
		})
	}
}
