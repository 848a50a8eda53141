package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestListenAdmin(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the socket path
		wantErr string
	}{
		{"creates private directory", func(t *testing.T, dir string) string {
			return filepath.Join(dir, "run", "admin.sock")
		}, ""},
		{"removes stale socket", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "admin.sock")
			ln, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close() // the file stays, nobody listens: stale
			return p
		}, ""},
		{"refuses live socket", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "admin.sock")
			ln, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			return p
		}, "is in use"},
		{"never deletes a regular file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "admin.sock")
			if err := os.WriteFile(p, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, "is not a socket"},
		{"refuses shared directory", func(t *testing.T, dir string) string {
			shared := filepath.Join(dir, "shared")
			if err := os.Mkdir(shared, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(shared, 0o755); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(shared, "admin.sock")
		}, "accessible to other users"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t)
			path := tc.setup(t, dir)
			ln, err := ListenAdmin(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				if b, rerr := os.ReadFile(path); rerr == nil && string(b) != "precious" && tc.name == "never deletes a regular file" {
					t.Fatal("file changed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Type() != os.ModeSocket || info.Mode().Perm() != 0o600 {
				t.Errorf("socket mode %v", info.Mode())
			}
			dinfo, _ := os.Stat(filepath.Dir(path))
			if dinfo.Mode().Perm()&0o077 != 0 {
				t.Errorf("directory mode %v", dinfo.Mode())
			}
		})
	}
}

func TestServeAdminShutsDown(t *testing.T) {
	path := filepath.Join(privateDir(t), "admin.sock")
	ln, err := ListenAdmin(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	go func() { done <- ServeAdmin(ctx, ln, h, slog.New(slog.DiscardHandler)) }()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://admin/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("got %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeAdmin: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind after shutdown: %v", err)
	}
}

// privateDir is a 0700 directory (t.TempDir's mode depends on the umask).
func privateDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
