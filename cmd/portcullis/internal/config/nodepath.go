package config

import (
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// segment is one step of a key path: a mapping key or a list index (or,
// in authz rule names such as "roles[engineer]", the list item's name).
type segment struct {
	key   string
	index string
	isIdx bool
}

// splitPath parses "gateway.routes[1].upstream" into segments. It accepts
// whatever packages put in FieldError paths; anything odd just ends the
// walk early (the nearest ancestor's line is used).
func splitPath(path string) []segment {
	var out []segment
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return out
			}
			out = append(out, segment{index: path[1:end], isIdx: true})
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			out = append(out, segment{key: path[:end]})
			path = path[end:]
		}
	}
	return out
}

// lineOf returns the line of the deepest node on path that exists in the
// tree: the key itself when present, else its nearest existing ancestor,
// else 0 (then the message names the file only).
func lineOf(root *yaml.Node, path string) int {
	if root == nil {
		return 0
	}
	line, n := 0, root
	for _, s := range splitPath(path) {
		var next, at *yaml.Node
		switch {
		case s.isIdx && n.Kind == yaml.SequenceNode:
			next = element(n, s.index)
			at = next
		case !s.isIdx && n.Kind == yaml.MappingNode:
			at, next = mappingKey(n, s.key)
		}
		if next == nil {
			break
		}
		line, n = at.Line, next
	}
	return line
}

// element finds a list item by index or, for non-numeric indexes, by its
// "name" key.
func element(seq *yaml.Node, idx string) *yaml.Node {
	if i, err := strconv.Atoi(idx); err == nil {
		if i >= 0 && i < len(seq.Content) {
			return seq.Content[i]
		}
		return nil
	}
	for _, el := range seq.Content {
		if el.Kind != yaml.MappingNode {
			continue
		}
		if _, v := mappingKey(el, "name"); v != nil && v.Kind == yaml.ScalarNode && v.Value == idx {
			return el
		}
	}
	return nil
}

// mappingKey finds key in a mapping, also under the names the file uses for
// it: a secret "cookie_key" is written cookie_key_file or cookie_key_env, a
// package may report "cookie_key_file" for a key given as cookie_key_env,
// and a Go field name (CookieKey) is tried as snake case.
func mappingKey(m *yaml.Node, key string) (k, v *yaml.Node) {
	base := strings.TrimSuffix(strings.TrimSuffix(key, "_file"), "_env")
	for _, name := range []string{key, key + "_file", key + "_env", base + "_file", base + "_env", base, snake(key)} {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == name {
				return m.Content[i], m.Content[i+1]
			}
		}
	}
	return nil, nil
}

// snake turns "CookieKey" into "cookie_key".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
