package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Diagnostic is one problem found in the file. Line is 0 when the problem
// is about the file as a whole (unreadable, empty).
type Diagnostic struct {
	File    string
	Line    int
	Path    string // key path such as "gateway.routes[1].upstream"; may be empty
	Msg     string
	Warning bool // a warning does not make loading fail
}

// String renders "FILE:LINE: path: message" (parts that are unknown are left
// out).
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d", d.Line)
	}
	b.WriteString(": ")
	if d.Warning {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	return b.String()
}

// Error is every error-level Diagnostic from one load, sorted by line.
type Error struct {
	Diags []Diagnostic
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Diags))
	for i, d := range e.Diags {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// diags collects diagnostics for one file.
type diags struct {
	file string
	list []Diagnostic
}

func (d *diags) add(line int, path, format string, args ...any) {
	d.list = append(d.list, Diagnostic{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *diags) warn(line int, path, format string, args ...any) {
	d.list = append(d.list, Diagnostic{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...), Warning: true})
}

// hasPath reports whether an error was already reported for path, one of
// its children or one of its ancestors, so that a package's Validate does
// not repeat in other words what the decoder said about the same key (or
// about the section that holds it).
func (d *diags) hasPath(path string) bool {
	path = sourceless(path)
	for _, x := range d.list {
		if x.Warning || x.Path == "" {
			continue
		}
		if p := sourceless(x.Path); related(p, path) || related(path, p) {
			return true
		}
	}
	return false
}

// related reports whether a is b or an ancestor of b.
func related(a, b string) bool {
	return a == b || strings.HasPrefix(b, a+".") || strings.HasPrefix(b, a+"[")
}

// split returns the errors (nil when none) and the warnings, each sorted by
// line then path; exact duplicates are dropped.
func (d *diags) split() (*Error, []Diagnostic) {
	sorted := slices.Clone(d.list)
	slices.SortStableFunc(sorted, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Path, b.Path))
	})
	sorted = slices.Compact(sorted)
	var errs, warns []Diagnostic
	for _, x := range sorted {
		if x.Warning {
			warns = append(warns, x)
		} else {
			errs = append(errs, x)
		}
	}
	if len(errs) == 0 {
		return nil, warns
	}
	return &Error{Diags: errs}, warns
}

// sourceless strips a secret's _file/_env suffix: "mfa.key_file" and
// "mfa.key" name the same setting.
func sourceless(path string) string {
	return strings.TrimSuffix(strings.TrimSuffix(path, "_file"), "_env")
}
