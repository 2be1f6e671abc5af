package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fileValues is what one config file sets: raw values by dotted key, and
// the line each key is on.
type fileValues struct {
	name   string
	values map[string]any // "gossip.seeds" -> []any{"a:1"}; scalars, or lists of scalars
	lines  map[string]int
}

// nested returns the values as the nested map viper expects.
func (fv *fileValues) nested() map[string]any {
	out := make(map[string]any)
	for key, v := range fv.values {
		sec, name, _ := strings.Cut(key, ".")
		m, ok := out[sec].(map[string]any)
		if !ok {
			m = make(map[string]any)
			out[sec] = m
		}
		m[name] = v
	}
	return out
}

// parseFile reads a config file: one YAML document whose top level maps
// section names to mappings of keys. It rejects an empty file, a YAML
// syntax error, more than one document, a top level or section that is not
// a mapping, unknown and duplicate keys, and values that are neither a
// scalar nor a list of scalars. A null value stands for the key's empty
// value. Errors name the file (name), and the line for a key.
func parseFile(name string, data []byte) (*fileValues, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("config: %s: file is empty", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config: %s: file has no settings, only comments", name)
		}
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("config: %s: %w", name, err)
	default:
		return nil, fmt.Errorf("config: %s: line %d: a second YAML document; a config file holds one", name, next.Line)
	}

	root := resolve(&doc)
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, fmt.Errorf("config: %s: file has no settings", name)
		}
		root = resolve(root.Content[0])
	}
	if isNull(root) {
		return nil, fmt.Errorf("config: %s: file has no settings", name)
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config: %s: line %d: want a mapping of sections (node:, api:, peer:, gossip:, ...), found %s",
			name, root.Line, describe(root))
	}

	fs := fields()
	byKey := make(map[string]field, len(fs))
	sections := make(map[string]bool)
	for _, f := range fs {
		byKey[f.key] = f
		sections[f.section()] = true
	}
	fv := &fileValues{name: name, values: make(map[string]any), lines: make(map[string]int)}
	var ps []*Error
	at := func(line int) string { return fmt.Sprintf("%s:%d", name, line) }

	forEachPair(root, func(k, v *yaml.Node, dupLine int) {
		sec := keyName(k)
		switch {
		case dupLine > 0:
			ps = append(ps, &Error{Key: sec, Value: showNode(v), Err: fmt.Errorf("duplicate key; also on line %d", dupLine), Source: at(k.Line)})
			return
		case !sections[sec]:
			ps = append(ps, &Error{Key: sec, Value: showNode(v), Err: unknownKey(sec, ""), Source: at(k.Line)})
			return
		case isNull(v):
			return // "log:" with nothing under it sets nothing
		case v.Kind != yaml.MappingNode:
			ps = append(ps, &Error{Key: sec, Value: showNode(v),
				Err: fmt.Errorf("want a mapping of %s.* keys, found %s", sec, describe(v)), Source: at(k.Line)})
			return
		}
		forEachPair(v, func(k, v *yaml.Node, dupLine int) {
			key := sec + "." + keyName(k)
			f, known := byKey[key]
			switch {
			case dupLine > 0:
				ps = append(ps, &Error{Key: key, Value: showNode(v), Err: fmt.Errorf("duplicate key; also on line %d", dupLine), Source: at(k.Line)})
				return
			case !known:
				ps = append(ps, &Error{Key: key, Value: showNode(v), Err: unknownKey(key, sec), Source: at(k.Line)})
				return
			}
			raw, err := rawValue(f, v)
			var ie *itemError
			switch {
			case errors.As(err, &ie):
				ps = append(ps, &Error{Key: fmt.Sprintf("%s[%d]", key, ie.i), Value: ie.value, Err: ie.err, Source: at(v.Line)})
				return
			case err != nil:
				ps = append(ps, &Error{Key: key, Value: showNode(v), Err: err, Source: at(v.Line)})
				return
			}
			fv.values[key] = raw
			fv.lines[key] = k.Line
		})
	})
	if len(ps) > 0 {
		return nil, join(ps)
	}
	return fv, nil
}

// forEachPair calls fn for each key/value of a mapping node; dupLine is the
// line of an earlier occurrence of the same key, or 0.
func forEachPair(m *yaml.Node, fn func(k, v *yaml.Node, dupLine int)) {
	first := make(map[string]int)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolve(m.Content[i]), resolve(m.Content[i+1])
		name := keyName(k)
		dup, seen := first[name]
		if !seen {
			first[name] = k.Line
		}
		fn(k, v, dup)
	}
}

// keyName is the text of a mapping key; a key that is not a scalar (YAML
// allows lists as keys) gets a placeholder that matches no known key.
func keyName(k *yaml.Node) string {
	if k.Kind != yaml.ScalarNode {
		return "<" + describe(k) + " as key>"
	}
	return k.Value
}

// resolve follows an alias (*name) to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the YAML type of a node for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		}
		return "a " + n.ShortTag() + " value"
	case yaml.AliasNode:
		return "an alias"
	}
	return "a document"
}

// rawValue converts a value node to what decode takes: a scalar, or a list
// of scalars for a list key. A null becomes the key's empty value.
func rawValue(f field, n *yaml.Node) (any, error) {
	switch {
	case isNull(n):
		return f.kind.zero(), nil
	case n.Kind == yaml.ScalarNode:
		return scalar(n)
	case n.Kind == yaml.SequenceNode && f.kind == kindStrings:
		list := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			e = resolve(e)
			if e.Kind != yaml.ScalarNode {
				return nil, &itemError{i, showNode(e), fmt.Errorf("want a string, found %s", describe(e))}
			}
			v, err := scalar(e)
			if err != nil {
				return nil, &itemError{i, showNode(e), err}
			}
			list = append(list, v)
		}
		return list, nil
	}
	want := map[kind]string{
		kindString: "a string", kindStrings: "a list of strings",
		kindInt: "an integer", kindDuration: `a duration such as "5s"`,
	}[f.kind]
	return nil, fmt.Errorf("want %s, found %s", want, describe(n))
}

// itemError is a problem with item i of a list.
type itemError struct {
	i     int
	value string
	err   error
}

func (e *itemError) Error() string { return fmt.Sprintf("item %d: %v", e.i, e.err) }

// scalar decodes a scalar node by its tag: string, int64, float64, bool.
func scalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		return n.Value, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return nil, errors.New("integer out of range")
		}
		return i, nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, fmt.Errorf("bad number: %w", err)
		}
		return f, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("bad boolean: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("unsupported YAML tag %s", n.ShortTag())
}

// showNode formats a node's value for an error message, shallowly.
func showNode(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.ScalarNode:
		if v, err := scalar(n); err == nil {
			return show(v)
		}
		return show(n.Value)
	case yaml.SequenceNode:
		items := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			e = resolve(e)
			if e.Kind != yaml.ScalarNode {
				items = append(items, "...")
				continue
			}
			v, err := scalar(e)
			if err != nil {
				v = e.Value
			}
			items = append(items, v)
			if len(items) > 10 {
				break
			}
		}
		return show(items)
	case yaml.MappingNode:
		return "{...}"
	}
	return ""
}

// unknownKey is the error for a key that does not exist, with a guess at
// the key meant. section is "" for a top-level key.
func unknownKey(key, section string) error {
	var candidates []string
	for _, f := range fields() {
		if section == "" {
			candidates = append(candidates, f.section(), f.key)
		} else if f.section() == section {
			candidates = append(candidates, f.key)
		}
	}
	// Allow one typo in a short name, two in a longer one.
	maxD := 1
	if len(key) > 6 {
		maxD = 2
	}
	best, bestD := "", maxD+1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(key), c)
		if section == "" && strings.HasSuffix(c, "."+key) {
			d = 0 // a key written at the top level instead of in its section
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown key; did you mean %s?", best)
	}
	if section == "" {
		return errors.New("unknown key; the sections are node, api, peer, gossip, pool, replication, routing, cluster and log")
	}
	return errors.New("unknown key")
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
