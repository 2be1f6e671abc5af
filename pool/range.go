package pool

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Range is an inclusive range of frequencies, First <= Last.
type Range struct {
	First, Last uint32
}

// Size returns the number of frequencies in r (at least 1 for a valid
// range). It is a uint64 because 0-4294967295 holds 2^32 frequencies.
func (r Range) Size() uint64 {
	if r.Last < r.First {
		return 0
	}
	return uint64(r.Last) - uint64(r.First) + 1
}

// String returns "10-15", or "7" when First == Last; ParseRange reads it
// back.
func (r Range) String() string {
	if r.First == r.Last {
		return strconv.FormatUint(uint64(r.First), 10)
	}
	return strconv.FormatUint(uint64(r.First), 10) + "-" + strconv.FormatUint(uint64(r.Last), 10)
}

// Contains reports whether f is in r.
func (r Range) Contains(f uint32) bool { return r.First <= f && f <= r.Last }

// ParseRange parses "first-last" or a single frequency "f". Spaces around
// the range and around the dash are ignored. The error names the input, as
// in `pool range "15-10": reversed: first 15 is greater than last 10`.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(s)
	if err != nil {
		return Range{}, fmt.Errorf("pool range %q: %w", s, err)
	}
	return r, nil
}

func parseRange(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Range{}, errors.New("empty")
	}
	if strings.HasPrefix(t, "-") {
		return Range{}, errors.New("frequencies cannot be negative")
	}
	parts := strings.Split(t, "-")
	switch len(parts) {
	case 1:
		f, err := parseFreq(parts[0])
		if err != nil {
			return Range{}, err
		}
		return Range{First: f, Last: f}, nil
	case 2:
		first, err := parseFreq(parts[0])
		if err != nil {
			return Range{}, fmt.Errorf("first: %w", err)
		}
		last, err := parseFreq(parts[1])
		if err != nil {
			return Range{}, fmt.Errorf("last: %w", err)
		}
		if first > last {
			return Range{}, fmt.Errorf("reversed: first %d is greater than last %d", first, last)
		}
		return Range{First: first, Last: last}, nil
	default:
		return Range{}, errors.New(`want "first-last" or a single frequency`)
	}
}

// parseFreq parses one decimal frequency in 0..MaxUint32, no sign.
func parseFreq(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("missing frequency")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a frequency (0..%d)", s, uint32(math.MaxUint32))
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a frequency (0..%d)", s, uint32(math.MaxUint32))
	}
	return uint32(v), nil
}

// ParseRanges parses every string with ParseRange and returns the ranges
// sorted by First. It rejects an empty list and overlapping ranges, naming
// both: `pool ranges "10-15" and "12-20" overlap`. Adjacent ranges such as
// "10-15" and "16-20" are allowed and stay separate.
func ParseRanges(ss []string) ([]Range, error) {
	if len(ss) == 0 {
		return nil, errors.New("pool ranges: none configured")
	}
	rs := make([]Range, 0, len(ss))
	for _, s := range ss {
		r, err := ParseRange(s)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	if err := sortAndCheck(rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// sortAndCheck sorts rs by First and checks that every range is valid and
// no two overlap.
func sortAndCheck(rs []Range) error {
	for _, r := range rs {
		if r.First > r.Last {
			return fmt.Errorf("pool range %q: first %d is greater than last %d", fmt.Sprintf("%d-%d", r.First, r.Last), r.First, r.Last)
		}
	}
	slices.SortStableFunc(rs, func(a, b Range) int {
		if c := cmp.Compare(a.First, b.First); c != 0 {
			return c
		}
		return cmp.Compare(a.Last, b.Last)
	})
	for i := 1; i < len(rs); i++ {
		if rs[i].First <= rs[i-1].Last {
			return fmt.Errorf("pool ranges %q and %q overlap", rs[i-1].String(), rs[i].String())
		}
	}
	return nil
}
