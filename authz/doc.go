// Package authz is Portcullis's policy decision point: it decides whether a
// verified subject may reach an app (HTTP) or an SSH target, from where, and
// why not. It knows nothing about HTTP or SSH wire formats and depends only
// on the standard library.
//
// A Policy is compiled once from a PolicyConfig, is immutable afterwards and
// is swapped atomically on reload by its callers. Evaluate is deny by
// default: a missing rule, an unknown app, a subject without roles, an
// unparsable address each produce Decision{Allow: false} with a stable
// Reason code that is printed verbatim in audit events and access reviews.
package authz
