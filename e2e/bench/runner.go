package main

import (
	"fmt"
	"os"
)

// runner lets the harness (written for tests) drive a plain program: it
// implements harness.TB, runs cleanups in reverse order, and turns a fatal
// error into a clean exit.
type runner struct {
	dir      string
	cleanups []func()
}

func newRunner() *runner {
	dir, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	return &runner{dir: dir}
}

func (r *runner) Helper()                   {}
func (r *runner) Name() string              { return "bench" }
func (r *runner) Logf(f string, a ...any)   { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (r *runner) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *runner) Fatalf(f string, a ...any) { r.Logf("bench: "+f, a...); r.cleanup(); os.Exit(1) }

func (r *runner) TempDir() string {
	d, err := os.MkdirTemp(r.dir, "t")
	if err != nil {
		r.Fatalf("%v", err)
	}
	return d
}

func (r *runner) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
	os.RemoveAll(r.dir)
}
