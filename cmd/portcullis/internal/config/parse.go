package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxFileSize caps what is read: a configuration file is a few kilobytes,
// and the cap bounds the work every later step can be made to do.
const maxFileSize = 1 << 20

// maxReported caps repeated diagnostics of one kind (tabs, aliases), so a
// hostile file cannot produce megabytes of output.
const maxReported = 5

// maxLocateSize bounds the files whose syntax errors are located by
// re-parsing prefixes.
const maxLocateSize = 64 << 10

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse turns the file into the root mapping node, or reports why it
// cannot. It never panics, whatever data holds.
func parse(data []byte, d *diags) *yaml.Node {
	if len(data) > maxFileSize {
		d.add(0, "", "file is larger than %d bytes", maxFileSize)
		return nil
	}
	if !utf8.Valid(data) {
		d.add(lineOfInvalidUTF8(data), "", "file is not UTF-8 text")
		return nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		d.add(0, "", "empty configuration file")
		return nil
	}
	doc, err := decodeDocuments(data)
	if err != nil {
		if tabs := tabIndentedLines(data); len(tabs) > 0 {
			for _, l := range tabs {
				d.add(l, "", "tab character in indentation (YAML indents with spaces only)")
			}
			return nil
		}
		var me *multiDocError
		if errors.As(err, &me) {
			d.add(me.line, "", "multiple YAML documents (---) are not supported: use one document")
			return nil
		}
		line, msg := yamlError(err)
		d.add(locateSyntaxError(data, msg, line), "", "invalid YAML: %s", msg)
		return nil
	}
	if doc == nil || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		d.add(0, "", "empty configuration file (only comments)")
		return nil
	}
	root := doc.Content[0]
	if n := rejectAnchors(root, d); n > 0 {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		d.add(root.Line, "", "the file must be a mapping of sections (gateway:, identity:, policy: …), got %s", describe(root))
		return nil
	}
	return root
}

// yamlError splits a yaml.v3 error into its line and message.
func yamlError(err error) (int, string) {
	if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, strings.TrimPrefix(err.Error(), "yaml: ")
}

// locateSyntaxError finds the line a syntax error is on. yaml.v3 reports
// parser errors at the (zero-based) start of the enclosing construct,
// which is often a line or more before the mistake; the first line whose
// prefix of the file fails with the same message is where it is. The
// search is binary (O(log n) parses), and falls back to yaml's own line
// when the prefixes do not behave.
func locateSyntaxError(data []byte, msg string, fallback int) int {
	// Real configuration files are a few kilobytes; for anything much
	// larger (or a nesting bomb) yaml's own line is good enough and the
	// repeated parses are not worth their cost.
	if len(data) > maxLocateSize || strings.Contains(msg, "max depth") {
		return fallback
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(k int) bool {
		_, err := decodeDocuments(bytes.Join(lines[:k], nil))
		if err == nil {
			return false
		}
		_, m := yamlError(err)
		return m == msg
	}
	lo, hi := 1, len(lines)
	if !fails(hi) {
		return fallback
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

type multiDocError struct{ line int }

func (e *multiDocError) Error() string { return fmt.Sprintf("line %d: second document", e.line) }

// decodeDocuments parses exactly one document. yaml.v3 is not known to
// panic on any input, but a configuration loader must not crash the
// process on a hostile file, so a panic becomes a parse error.
func decodeDocuments(data []byte) (doc *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("yaml: parser failure: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	// Empty documents after the first (a stray trailing "---") are
	// harmless; a second document with content is refused, because which
	// one applies would be a guess.
	for range 100 {
		var next yaml.Node
		switch err := dec.Decode(&next); {
		case errors.Is(err, io.EOF):
			return &first, nil
		case err != nil:
			return nil, err
		case len(next.Content) > 0 && !isNull(next.Content[0]):
			return nil, &multiDocError{line: next.Line}
		}
	}
	return nil, errors.New("yaml: too many empty documents")
}

// rejectAnchors reports anchors, aliases and merge keys. Aliases are how
// "billion laughs" documents explode on decode; a configuration file has no
// need for them, so they are refused outright rather than capped. The walk
// is iterative (no recursion depth to exhaust) and bounded by the node
// count, which the file size bounds.
func rejectAnchors(root *yaml.Node, d *diags) int {
	var lines []int
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			lines = append(lines, n.Line)
			continue
		}
		stack = append(stack, n.Content...)
	}
	slices.Sort(lines)
	for i, l := range lines {
		if i == maxReported {
			d.add(l, "", "%d more anchors or aliases from here on", len(lines)-maxReported)
			break
		}
		d.add(l, "", "YAML anchors (&) and aliases (*) are not supported: write the values out")
	}
	return len(lines)
}

// tabIndentedLines lists (up to maxReported) lines whose indentation
// contains a tab.
func tabIndentedLines(data []byte) []int {
	var out []int
	for i, line := range bytes.Split(data, []byte("\n")) {
		indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 && len(bytes.TrimSpace(line)) > 0 {
			out = append(out, i+1)
			if len(out) == maxReported {
				break
			}
		}
	}
	return out
}

func lineOfInvalidUTF8(data []byte) int {
	line := 1
	for len(data) > 0 {
		r, size := utf8.DecodeRune(data)
		if r == utf8.RuneError && size <= 1 {
			return line
		}
		if r == '\n' {
			line++
		}
		data = data[size:]
	}
	return line
}
