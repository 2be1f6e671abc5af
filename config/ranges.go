package config

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// freqRange is an inclusive range of frequencies, first <= last.
type freqRange struct{ first, last uint32 }

// size is the number of frequencies in r; uint64 because 0-4294967295 has
// 2^32 of them.
func (r freqRange) size() uint64 { return uint64(r.last) - uint64(r.first) + 1 }

// parseRange reads "first-last" or a single frequency "f", in decimal,
// 0..4294967295. Spaces around the range and around the dash are ignored;
// this is the syntax of package pool's ParseRange, so a range config
// accepts is one pool accepts.
func parseRange(s string) (freqRange, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return freqRange{}, errors.New("empty range")
	}
	if t[0] == '-' {
		return freqRange{}, errors.New("frequencies cannot be negative")
	}
	first, last, isRange := strings.Cut(t, "-")
	if !isRange {
		f, err := parseFreq(first)
		if err != nil {
			return freqRange{}, err
		}
		return freqRange{f, f}, nil
	}
	if strings.Contains(last, "-") {
		return freqRange{}, errors.New(`want "first-last" or a single frequency`)
	}
	lo, err := parseFreq(first)
	if err != nil {
		return freqRange{}, fmt.Errorf("first: %w", err)
	}
	hi, err := parseFreq(last)
	if err != nil {
		return freqRange{}, fmt.Errorf("last: %w", err)
	}
	if lo > hi {
		return freqRange{}, fmt.Errorf("reversed: first %d is greater than last %d", lo, hi)
	}
	return freqRange{lo, hi}, nil
}

// parseFreq reads one decimal frequency 0..4294967295, no sign.
func parseFreq(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("missing frequency")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a frequency (a whole number 0..%d)", s, uint32(math.MaxUint32))
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s is larger than the largest frequency %d", s, uint32(math.MaxUint32))
	}
	return uint32(v), nil
}

// checkRanges validates pool.ranges: at least one, each parses, none
// overlap. It returns the problems and, when there are none, the number of
// frequencies in the pool.
func checkRanges(ranges []string) (total uint64, ps []*Error) {
	const key = "pool.ranges"
	if len(ranges) == 0 {
		return 0, []*Error{problem(key, ranges, `no frequency ranges; give at least one, as in ["1-1000"]`)}
	}
	type parsed struct {
		i int
		r freqRange
	}
	var ok []parsed
	for i, s := range ranges {
		r, err := parseRange(s)
		if err != nil {
			ps = append(ps, problem(fmt.Sprintf("%s[%d]", key, i), s, "%w", err))
			continue
		}
		ok = append(ok, parsed{i, r})
		total += r.size()
	}
	// Sort by first frequency; a range overlaps an earlier one iff it starts
	// at or before the furthest end seen so far.
	sort.SliceStable(ok, func(a, b int) bool { return ok[a].r.first < ok[b].r.first })
	if len(ok) > 0 {
		reach := ok[0] // the range with the furthest end among ok[:j]
		for _, cur := range ok[1:] {
			if cur.r.first <= reach.r.last {
				a, b := reach, cur
				if a.i > b.i {
					a, b = b, a
				}
				ps = append(ps, problem(fmt.Sprintf("%s[%d]", key, b.i), ranges[b.i],
					"overlaps %s[%d] = %q", key, a.i, ranges[a.i]))
			}
			if cur.r.last > reach.r.last {
				reach = cur
			}
		}
	}
	if len(ps) > 0 {
		return 0, ps
	}
	return total, nil
}
