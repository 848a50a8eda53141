#!/usr/bin/env bash
# Installs and starts what the test suite needs, only when it is missing:
# Debian packages (redis-server, chromium, openssh, nginx), the e2e OpenID
# provider's npm modules, pebble (ACME test server), versitygw (S3 test
# server), and a redis-server on 127.0.0.1:6379. Idempotent; safe to run
# on every `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v ssh >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
if [ "${WITH_BENCH:-0}" = 1 ]; then
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  command -v wrk >/dev/null || need+=(wrk)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages ${need[*]}; install them (apt-get install -y ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The real OIDC provider for e2e tests (npm oidc-provider, pinned by the lock file).
if [ ! -d e2e/idp/node_modules/oidc-provider ]; then
  echo "setup: npm ci in e2e/idp"
  (cd e2e/idp && npm ci --no-audit --no-fund --loglevel=error)
fi

# pebble, the ACME test server (a Go module).
gobin="$(go env GOPATH)/bin"
if [ ! -x "$gobin/pebble" ]; then
  echo "setup: go install pebble"
  GOFLAGS= go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1
fi

# versitygw, the S3 server of the recording-storage tests (a Go module),
# in the same place.
if [ ! -x "$gobin/versitygw" ]; then
  echo "setup: go install versitygw"
  GOFLAGS= GOBIN="$gobin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi

# A redis-server on 127.0.0.1:6379 unless one answers already.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "setup: starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/portcullis-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/portcullis-redis --logfile /tmp/portcullis-redis/redis.log
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null
fi
