package config

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	durationType = reflect.TypeFor[Duration]()
	cidrType     = reflect.TypeFor[CIDR]()
	secretType   = reflect.TypeFor[SecretRef]()
)

// decoder walks a yaml.Node tree into the schema structs, reporting every
// problem with its line and key path. It never stops early: a bad value
// leaves the field at its zero value and decoding continues, so one run
// reports everything.
type decoder struct {
	d *diags
}

// field is one decodable struct field.
type field struct {
	key      string
	index    int
	required bool
	negative bool
	secret   bool
}

var fieldCache sync.Map // reflect.Type → []field

func fieldsOf(t reflect.Type) []field {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]field)
	}
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok || tag == "-" {
			continue
		}
		parts := strings.Split(tag, ",")
		f := field{key: parts[0], index: i, secret: sf.Type == secretType}
		for _, o := range parts[1:] {
			switch o {
			case "required":
				f.required = true
			case "negative":
				f.negative = true
			default:
				panic("config: unknown tag option " + o + " on " + t.Name() + "." + sf.Name)
			}
		}
		out = append(out, f)
	}
	fieldCache.Store(t, out)
	return out
}

// keysOf lists the YAML keys a struct accepts, in declaration order, with
// secrets expanded to their _file and _env forms.
func keysOf(fields []field) []string {
	var keys []string
	for _, f := range fields {
		if f.secret {
			keys = append(keys, f.key+"_file", f.key+"_env")
		} else {
			keys = append(keys, f.key)
		}
	}
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		case "!!null":
			return "nothing"
		default:
			return fmt.Sprintf("the string %s", quoteShort(n.Value))
		}
	}
	return "something else"
}

// quoteShort quotes s for a message, cut to a readable length.
func quoteShort(s string) string {
	const maxLen = 60
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return strconv.Quote(s)
}

// value decodes n into v; f carries the field's tag options and keyLine
// is the line of the key that holds n (where a missing child is reported).
func (dc *decoder) value(n *yaml.Node, v reflect.Value, path string, f field, keyLine int) {
	if isNull(n) {
		return // absent: zero value; "required" is checked by the parent
	}
	switch v.Type() {
	case durationType:
		dc.duration(n, v, path, f.negative)
		return
	case cidrType:
		if s, ok := dc.scalarString(n, path); ok {
			if msg := checkCIDR(s); msg != "" {
				dc.d.add(n.Line, path, "%s", msg)
				return
			}
			v.SetString(s)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		dc.mapping(n, v, path, keyLine)
	case reflect.String:
		if s, ok := dc.scalarString(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			dc.d.add(n.Line, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(strings.EqualFold(n.Value, "true"))
	case reflect.Int, reflect.Int64:
		dc.integer(n, v, path)
	case reflect.Float64:
		dc.float(n, v, path)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		dc.value(n, p.Elem(), path, f, keyLine)
		v.Set(p)
	case reflect.Slice:
		dc.sequence(n, v, path)
	case reflect.Map:
		dc.stringMap(n, v, path)
	default:
		panic("config: unsupported schema type " + v.Type().String())
	}
}

// scalarString accepts any scalar that reads as text (strings, numbers,
// dates) but not booleans or collections: `name: true` is almost always a
// mistake.
func (dc *decoder) scalarString(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!bool" {
		dc.d.add(n.Line, path, "expected a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (dc *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		dc.d.add(n.Line, path, "expected an integer, got %s", describe(n))
		return
	}
	i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil || v.OverflowInt(i) {
		dc.d.add(n.Line, path, "integer %s out of range", quoteShort(n.Value))
		return
	}
	v.SetInt(i)
}

// float accepts integers and decimals, but not .inf or .nan: a factor
// of infinity would silently turn a check off.
func (dc *decoder) float(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		dc.d.add(n.Line, path, "expected a number, got %s", describe(n))
		return
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	if err != nil {
		// Integers in other bases (0x10) and the like.
		i, ierr := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		f, err = float64(i), ierr
	}
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		dc.d.add(n.Line, path, "expected a finite number, got %s", quoteShort(n.Value))
		return
	}
	v.SetFloat(f)
}

func (dc *decoder) duration(n *yaml.Node, v reflect.Value, path string, negative bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!bool" {
		dc.d.add(n.Line, path, "expected a duration such as 30m or 12h, got %s", describe(n))
		return
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		hint := "use a number with a unit: ns, us, ms, s, m, h (e.g. 90s, 30m, 8760h)"
		if strings.HasSuffix(n.Value, "d") || strings.HasSuffix(n.Value, "w") {
			hint = "days and weeks are not units: write hours (e.g. 8760h for a year)"
		}
		dc.d.add(n.Line, path, "invalid duration %s: %s", quoteShort(n.Value), hint)
		return
	}
	if d < 0 && !negative {
		dc.d.add(n.Line, path, "duration must not be negative")
		return
	}
	v.SetInt(int64(d))
}

// checkCIDR returns "" for a canonical prefix, else a message that says
// what was probably meant.
func checkCIDR(s string) string {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return fmt.Sprintf("%s is an address, not a CIDR (did you mean %s/%d?)", quoteShort(s), a.String(), a.BitLen())
		}
		return fmt.Sprintf("invalid CIDR %s (expected e.g. 10.0.0.0/8 or fd00::/8)", quoteShort(s))
	}
	if p.Masked() != p {
		return fmt.Sprintf("CIDR %s has host bits set (did you mean %s?)", quoteShort(s), p.Masked())
	}
	return ""
}

func (dc *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		dc.d.add(n.Line, path, "expected a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, el := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		if isNull(el) {
			dc.d.add(el.Line, p, "empty list item")
			continue
		}
		dc.value(el, s.Index(i), p, field{}, el.Line)
	}
	v.Set(s)
}

// stringMap decodes free-form string maps (labels). Their keys are data, not
// schema, so neither unknown-key nor inline-secret checks apply.
func (dc *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		dc.d.add(n.Line, path, "expected a mapping, got %s", describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	dc.pairs(n, path, func(_, val *yaml.Node, key string) {
		s, ok := dc.scalarString(val, join(path, key))
		if !ok {
			return
		}
		if isNull(val) {
			s = ""
		}
		m.SetMapIndex(reflect.ValueOf(key), reflect.ValueOf(s).Convert(v.Type().Elem()))
	})
	v.Set(m)
}

// pairs calls fn for each key of mapping n that is a plain, not repeated
// scalar (reporting the others), and returns the keys seen with their lines.
func (dc *decoder) pairs(n *yaml.Node, path string, fn func(k, val *yaml.Node, key string)) map[string]int {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if key, ok := dc.key(k, path, seen); ok {
			fn(k, val, key)
		}
	}
	return seen
}

// key validates a mapping key: a plain scalar, not a merge key, not seen
// before in the same mapping.
func (dc *decoder) key(k *yaml.Node, path string, seen map[string]int) (string, bool) {
	if k.Kind != yaml.ScalarNode {
		dc.d.add(k.Line, path, "mapping keys must be plain strings, got %s", describe(k))
		return "", false
	}
	if k.Tag == "!!merge" {
		dc.d.add(k.Line, path, "merge keys (<<) are not supported: write the keys out")
		return "", false
	}
	if first, dup := seen[k.Value]; dup {
		dc.d.add(k.Line, join(path, k.Value), "duplicate key (first given on line %d)", first)
		return "", false
	}
	seen[k.Value] = k.Line
	return k.Value, true
}

// mapping decodes a YAML mapping into a schema struct.
func (dc *decoder) mapping(n *yaml.Node, v reflect.Value, path string, keyLine int) {
	if n.Kind != yaml.MappingNode {
		dc.d.add(n.Line, path, "expected a mapping (key: value lines), got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	present := map[string]bool{}
	seen := dc.pairs(n, path, func(k, val *yaml.Node, key string) {
		p := join(path, key)
		f, which, ok := lookupField(fields, key)
		switch {
		case !ok:
			dc.unknownKey(k, val, p, fields)
			return
		case f.secret:
			dc.secretSource(k, val, v.Field(f.index), join(path, f.key), which)
		default:
			dc.value(val, v.Field(f.index), p, f, k.Line)
		}
		if !isNull(val) {
			present[f.key] = true
		}
	})
	for _, f := range fields {
		if !f.required || present[f.key] {
			continue
		}
		line := keyLine
		if f.secret {
			dc.d.add(line, join(path, f.key), "missing: give %s_file (a file) or %s_env (an environment variable)", f.key, f.key)
		} else {
			dc.d.add(line, join(path, f.key), "missing required key")
		}
	}
	// A secret given twice (file and env) is ambiguous: which one wins
	// would be a silent choice.
	for _, f := range fields {
		if f.secret {
			if _, hasFile := seen[f.key+"_file"]; hasFile {
				if line, hasEnv := seen[f.key+"_env"]; hasEnv {
					dc.d.add(line, join(path, f.key), "give only one of %s_file and %s_env", f.key, f.key)
				}
			}
		}
	}
}

// lookupField finds the field for key; which is "file"/"env" for secret
// sources, "inline" for a bare secret key, "" otherwise.
func lookupField(fields []field, key string) (field, string, bool) {
	for _, f := range fields {
		if !f.secret {
			if f.key == key {
				return f, "", true
			}
			continue
		}
		switch key {
		case f.key + "_file":
			return f, "file", true
		case f.key + "_env":
			return f, "env", true
		case f.key:
			return f, "inline", true
		}
	}
	return field{}, "", false
}

// secretSource records where a secret comes from. It never echoes a value
// given inline: that value is the secret.
func (dc *decoder) secretSource(k, val *yaml.Node, v reflect.Value, path, which string) {
	ref := v.Addr().Interface().(*SecretRef)
	ref.Path = path
	base := path[strings.LastIndexByte(path, '.')+1:]
	if which == "inline" {
		dc.d.add(k.Line, path, "secrets must not be written in the config file: use %s_file (a file readable only by portcullis) or %s_env (an environment variable)", base, base)
		return
	}
	if isNull(val) {
		return
	}
	s, ok := dc.scalarString(val, path+"_"+which)
	if !ok {
		return
	}
	if strings.TrimSpace(s) == "" {
		dc.d.add(val.Line, path+"_"+which, "must not be empty")
		return
	}
	ref.Line = k.Line
	if which == "file" {
		ref.File = s
	} else {
		if !validEnvName(s) {
			dc.d.add(val.Line, path+"_env", "%s is not an environment variable name (letters, digits, _)", quoteShort(s))
			return
		}
		ref.Env = s
	}
}

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

func (dc *decoder) unknownKey(k, val *yaml.Node, path string, fields []field) {
	keys := keysOf(fields)
	var hint string
	if s := suggest(k.Value, keys); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		sorted := slices.Clone(keys)
		slices.Sort(sorted)
		hint = " (valid keys: " + strings.Join(sorted, ", ") + ")"
	}
	if looksSecret(k.Value) && val.Kind == yaml.ScalarNode && !isNull(val) {
		dc.d.add(k.Line, path, "unknown key%s; secrets are never written inline (use a *_file or *_env key)", hint)
		return
	}
	dc.d.add(k.Line, path, "unknown key%s", hint)
}
