package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Error is one problem with one configuration key. Load and Validate return
// every problem found, joined with errors.Join; use errors.As to pick one
// out. Its message names the key and the value:
//
//	config: gossip.seeds[1] = "127.0.0.1": missing port (from n1.yaml:7)
type Error struct {
	// Key is the dotted key; list items carry their index, as in
	// "gossip.seeds[1]".
	Key string
	// Value is the offending value as written: strings quoted, lists in
	// brackets. Empty when there is no value to show.
	Value string
	// Err says what is wrong.
	Err error
	// Source is where the value came from: "n1.yaml:7", "env
	// FREQD_API_ADDR", "flag --api-addr" or "default". Empty when unknown
	// (Validate does not know where values came from; Load does).
	Source string
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	b.WriteString(e.Key)
	if e.Value != "" {
		b.WriteString(" = ")
		b.WriteString(e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Source != "" {
		b.WriteString(" (from ")
		b.WriteString(e.Source)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// problem builds an *Error for key with the raw value v.
func problem(key string, v any, format string, args ...any) *Error {
	return &Error{Key: key, Value: show(v), Err: fmt.Errorf(format, args...)}
}

// join turns problems into one error (nil if there are none).
func join(ps []*Error) error {
	if len(ps) == 0 {
		return nil
	}
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// maxShow bounds how much of a value an error message repeats.
const maxShow = 120

// show formats a value the way it would be written in a config file:
// strings quoted, lists in brackets, maps in braces, keys sorted. Long
// values are cut at maxShow bytes.
func show(v any) string {
	var b strings.Builder
	showTo(&b, v, 0)
	s := b.String()
	if len(s) > maxShow {
		s = s[:maxShow] + "..."
	}
	return s
}

func showTo(b *strings.Builder, v any, depth int) {
	if b.Len() > maxShow {
		return
	}
	if depth > 3 {
		b.WriteString("...")
		return
	}
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		b.WriteString(strconv.Quote(v))
	case time.Duration:
		b.WriteString(v.String())
	case []string:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			showTo(b, e, depth+1)
		}
		b.WriteByte(']')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteString(", ")
			}
			showTo(b, e, depth+1)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k)
			b.WriteString(": ")
			showTo(b, v[k], depth+1)
		}
		b.WriteByte('}')
	default:
		fmt.Fprint(b, v)
	}
}
