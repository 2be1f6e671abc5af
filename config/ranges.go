package config

import (
	"fmt"
	"sort"

	"github.com/freqd/freqd/pool"
)

// freqRange is an inclusive range of frequencies, first <= last.
type freqRange struct{ first, last uint32 }

// size is the number of frequencies in r; uint64 because 0-4294967295 has
// 2^32 of them.
func (r freqRange) size() uint64 { return uint64(r.last) - uint64(r.first) + 1 }

// parseRange reads "first-last" or a single frequency "f" with package
// pool's parser, so a range config accepts is exactly one pool accepts.
func parseRange(s string) (freqRange, error) {
	r, err := pool.ParseRange(s)
	if err != nil {
		return freqRange{}, err
	}
	return freqRange{r.First, r.Last}, nil
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
