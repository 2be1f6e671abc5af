package pool

import (
	"strings"
	"testing"
)

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"10-15", "7", " 10 - 15 ", "15-10", "", "-5", "1-2-3", "4294967295", "4294967296", "0x10", "+1", "1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if !strings.Contains(err.Error(), "pool range ") {
				t.Fatalf("error %q does not name the input", err)
			}
			return
		}
		if r.First > r.Last || r.Size() == 0 {
			t.Fatalf("ParseRange(%q) = %+v: invalid range accepted", s, r)
		}
		// String round-trips.
		r2, err := ParseRange(r.String())
		if err != nil || r2 != r {
			t.Fatalf("ParseRange(%q) = %v; reparsing %q gives %v, %v", s, r, r.String(), r2, err)
		}
	})
}

func FuzzParseRanges(f *testing.F) {
	for _, s := range []string{"10-15,20-25", "10-15,12-20", "7", "", "1-5,6-10,11", "20-25,10-15", "5,5", "a,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var in []string
		if s != "" {
			in = strings.Split(s, ",")
		}
		rs, err := ParseRanges(in)
		if err != nil {
			return
		}
		if len(rs) != len(in) {
			t.Fatalf("ParseRanges(%q) returned %d ranges for %d inputs", s, len(rs), len(in))
		}
		for i, r := range rs {
			if r.First > r.Last {
				t.Fatalf("range %v reversed", r)
			}
			if i > 0 && rs[i-1].Last >= r.First {
				t.Fatalf("ranges %v and %v overlap or are unsorted", rs[i-1], r)
			}
		}
	})
}

func FuzzNewLayout(f *testing.F) {
	f.Add("10-15,20-25", 4)
	f.Add("10-15,20-25", 0)
	f.Add("1-1000000", 0)
	f.Add("0-4294967295", 1000)
	f.Add("1,3,5-9", 3)
	f.Add("10-15,20-25", 20)
	f.Add("10-15", -1)
	f.Fuzz(func(t *testing.T, s string, p int) {
		rs, err := ParseRanges(strings.Split(s, ","))
		if err != nil {
			return
		}
		if p > 5000 {
			p %= 5000 // keep each run cheap
		}
		l, err := NewLayout(rs, p)
		if err != nil {
			return
		}
		if p != 0 && l.Partitions() != p {
			t.Fatalf("asked for %d partitions, got %d", p, l.Partitions())
		}
		checkLayout(t, l)
	})
}
