package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// FuzzLoadYAML feeds arbitrary bytes as a config file. Loading must never
// panic; a file that loads must validate, and its YAML must load back to
// the same Config.
func FuzzLoadYAML(f *testing.F) {
	f.Add(defaultYAML)
	for _, glob := range []string{"examples/*/*.yaml"} {
		paths, _ := filepath.Glob(glob)
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"", "~", "---\n---\n", "node: {name: x}", "gossip: {sedes: []}", "gossip: 5",
		"pool: {ranges: [\"15-10\"]}", "pool: {ranges: [\"1-10\", \"5\"], partitions: 3}",
		"gossip: {seeds: [\"127.0.0.1\"], probe_interval: -1s}", "a: &a [*a]",
		"gossip: {seeds: &s [\"h:1\"]}\napi: {addr: \"h:2\"}", "log: {level: [debug]}",
		"node:\n  name: a\n  name: b\n", "? [a]\n: b\n", "pool: {partitions: 0x10}",
		"pool: {partitions: 99999999999999999999999}", "gossip: {rejoin_interval: 0}",
		"peer: {addr: \"127.0.0.1:7301\"}", "peer: {addr: \":7100\"}", "peer: {adr: \"h:1\"}", "peer: ~",
		"peer: {addr: \"[::1]:7300\"}\napi: {addr: \"[::1]:7300\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := loadBytes("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error without the config: prefix: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("loaded but invalid: %v", err)
		}
		out, err := c.YAML()
		if err != nil {
			t.Fatal(err)
		}
		back, err := loadBytes("back.yaml", out)
		if err != nil {
			t.Fatalf("YAML output does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config\n got  %+v\n want %+v", back, c)
		}
	})
}

// FuzzParseRange checks parseRange never panics, and that what it accepts
// is well formed and written the way pool's Range.String reads back.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"10-15", " 1 - 2 ", "7", "0-4294967295", "15-10", "-1", "1-2-3", "", "a", "4294967296", "1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRange(s)
		if err != nil {
			if r != (freqRange{}) {
				t.Fatalf("parseRange(%q) failed but returned %+v", s, r)
			}
			return
		}
		if r.first > r.last {
			t.Fatalf("parseRange(%q) = %d-%d, reversed", s, r.first, r.last)
		}
		// Only digits, spaces and at most one dash can parse.
		if strings.Count(s, "-") > 1 || strings.IndexFunc(s, func(c rune) bool {
			return (c < '0' || c > '9') && c != '-' && !unicode.IsSpace(c)
		}) >= 0 {
			t.Fatalf("parseRange(%q) accepted odd input", s)
		}
		// The canonical form parses to the same range.
		canon := strconv.FormatUint(uint64(r.first), 10) + "-" + strconv.FormatUint(uint64(r.last), 10)
		if r2, err := parseRange(canon); err != nil || r2 != r {
			t.Fatalf("parseRange(%q) = %+v, but %q gives %+v, %v", s, r, canon, r2, err)
		}
		if r.first == r.last {
			if r2, err := parseRange(strconv.FormatUint(uint64(r.first), 10)); err != nil || r2 != r {
				t.Fatalf("single %d does not round trip", r.first)
			}
		}
	})
}
