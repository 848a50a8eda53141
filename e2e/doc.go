// Package e2e holds Portcullis's end-to-end tests and benchmarks. They run
// the real binary's components against real peers on 127.0.0.1: the npm
// oidc-provider under Node as the identity provider, headless Chromium for
// browser flows, redis-server for shared state, pebble for ACME, OpenSSH,
// and nginx as the benchmark peer. e2e/setup.sh installs what is missing.
//
// deps_test.go also lives here: it enforces the one-way dependency
// direction of ARCHITECTURE.md for the whole module.
package e2e
