package authz

import (
	"errors"
	"strings"
)

// FieldError is a configuration error tied to a key path such as
// "roles[2].allow[0].apps[1]". Package Validate methods return these (joined
// with errors.Join) with paths relative to their own Config; cmd prefixes
// them with the section name and maps each path to a YAML line number.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Prefix returns a copy of err with every FieldError's Path prefixed by p
// (joined with "."), keeping non-field errors as they are.
func Prefix(p string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			np := p
			if fe.Path != "" {
				if strings.HasPrefix(fe.Path, "[") {
					np = p + fe.Path
				} else {
					np = p + "." + fe.Path
				}
			}
			out = append(out, &FieldError{Path: np, Msg: fe.Msg})
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Flatten unwraps errors.Join trees into a flat list.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
