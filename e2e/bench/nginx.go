package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// startNginx runs nginx as a plain TLS-terminating reverse proxy to
// upstream (keep-alive pool to the upstream), the benchmark's peer. It uses
// the same certificate as the gateway and logs nothing per request, as a
// tuned production nginx would.
func startNginx(dir, listen, upstream, certFile, keyFile string) (stop func(), err error) {
	bin := "/usr/sbin/nginx"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("nginx"); err != nil {
			return nil, fmt.Errorf("nginx not installed (make bench installs it): %v", err)
		}
	}
	conf := fmt.Sprintf(`
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream app { server %[3]s; keepalive 256; }
  server {
    listen %[2]s ssl;
    ssl_certificate %[4]s;
    ssl_certificate_key %[5]s;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 100000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }
}
`, dir, listen, upstream, certFile, keyFile)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", path, "-p", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitTCP(listen, 10*time.Second); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("nginx: %v", err)
	}
	return func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }, nil
}
