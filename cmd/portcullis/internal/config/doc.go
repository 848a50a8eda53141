// Package config loads Portcullis's one YAML configuration file.
//
// Loading happens in three steps, each reporting every problem it finds
// rather than stopping at the first:
//
//  1. parse: the file is read (size-capped), checked for tabs in
//     indentation, multiple documents, anchors/aliases and merge keys, and
//     parsed into a yaml.Node tree (never into Go values directly, so that
//     every later error can name a line);
//  2. decode: a strict walk of that tree into the file-format structs in
//     schema.go: unknown keys (with a "did you mean"), duplicate keys, bad
//     types, durations and CIDRs, missing required keys, and secrets given
//     inline are all errors;
//  3. build: each package's Config is assembled (authz.PolicyConfig,
//     gateway.Config, session.Config, mfa.Config, identity.Config, store and
//     audit options, risk.Config from the optional risk section, access.Config
//     from the optional access section (its role names checked against the
//     compiled policy), review.Config from the optional reviews section, and
//     bastion.Config when the optional bastion section is present — its targets are also the policy's targets), secrets are read from their *_file or *_env source,
//     and every package's own Validate (and authz.Compile) runs; the
//     *authz.FieldError key paths they return are mapped back to lines
//     through the node tree.
//
// Errors print as "FILE:LINE: key.path: message", one per line, sorted by
// line. Relative paths in the file are relative to the file's directory.
//
// Secrets (keys, passwords, client secrets) never appear in the file: a key
// that names a secret accepts only NAME_file (a path, which must not be
// readable by others) or NAME_env (an environment variable). Options.
// FakeSecrets replaces every secret and every certificate file with a
// well-formed stand-in, so a file's structure can be validated on a machine
// that does not hold the secrets (CI, `config check --no-secrets`).
package config
