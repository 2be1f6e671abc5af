package pool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// DefaultPartitions is the number of partitions NewLayout makes when asked
// for 0, unless the pool has fewer frequencies.
const DefaultPartitions = 128

// MaxPartitions is the largest partition count NewLayout accepts. It bounds
// the memory of a Layout and of the per-partition state of a node.
const MaxPartitions = 1 << 20

// MaxSpanSize is the most frequencies one partition may hold; it matches
// partition.MaxSize. NewLayout rejects a partition count that would leave
// a larger partition.
const MaxSpanSize = 1 << 30

// Span is one partition's sub-range of the pool, First <= Last, inclusive.
type Span struct {
	ID          int
	First, Last uint32
}

// Size returns the number of frequencies in s.
func (s Span) Size() uint64 { return Range{First: s.First, Last: s.Last}.Size() }

// Contains reports whether f is in s.
func (s Span) Contains(f uint32) bool { return s.First <= f && f <= s.Last }

// String returns "3:10-15" (partition id, then its range).
func (s Span) String() string {
	return fmt.Sprintf("%d:%s", s.ID, Range{First: s.First, Last: s.Last})
}

// Layout is the pool cut into partitions. It is immutable after NewLayout
// and safe for concurrent use.
type Layout struct {
	ranges []Range // sorted, non-overlapping
	spans  []Span  // spans[i].ID == i, ascending, each inside one range
	size   uint64
	fp     uint64
}

// NewLayout cuts ranges into partitions partitions; see the package doc for
// how. partitions == 0 means min(DefaultPartitions, total frequencies) but
// at least len(ranges). It is an error if partitions is negative, larger
// than MaxPartitions, larger than the number of frequencies, smaller than
// the number of ranges, or so small that a partition would exceed
// MaxSpanSize; or if the ranges are empty, reversed or overlap. ranges is
// not modified.
func NewLayout(ranges []Range, partitions int) (*Layout, error) {
	if len(ranges) == 0 {
		return nil, errors.New("pool: no ranges configured")
	}
	rs := slices.Clone(ranges)
	if err := sortAndCheck(rs); err != nil {
		return nil, err
	}
	var total uint64
	for _, r := range rs {
		total += r.Size()
	}
	n := len(rs)
	switch {
	case partitions < 0:
		return nil, fmt.Errorf("pool.partitions=%d is negative", partitions)
	case partitions == 0:
		partitions = DefaultPartitions
		if uint64(partitions) > total {
			partitions = int(total)
		}
		partitions = max(partitions, n)
	case uint64(partitions) > total:
		return nil, fmt.Errorf("pool.partitions=%d is more than the %d frequencies in the pool", partitions, total)
	case partitions < n:
		return nil, fmt.Errorf("pool.partitions=%d is fewer than the %d configured ranges: a partition never spans two ranges", partitions, n)
	}
	if partitions > MaxPartitions {
		return nil, fmt.Errorf("pool.partitions=%d is more than the maximum %d", partitions, MaxPartitions)
	}

	counts := share(rs, total, partitions)
	spans := make([]Span, 0, partitions)
	for i, r := range rs {
		k := uint64(counts[i])
		base, extra := r.Size()/k, r.Size()%k
		first := uint64(r.First)
		for j := uint64(0); j < k; j++ {
			sz := base
			if j < extra {
				sz++
			}
			spans = append(spans, Span{ID: len(spans), First: uint32(first), Last: uint32(first + sz - 1)})
			first += sz
		}
	}
	for _, sp := range spans {
		if sp.Size() > MaxSpanSize {
			return nil, fmt.Errorf("pool.partitions=%d leaves partition %v with %d frequencies, more than the maximum %d: use more partitions", partitions, sp, sp.Size(), MaxSpanSize)
		}
	}
	l := &Layout{ranges: rs, spans: spans, size: total}
	l.fp = fingerprint(spans)
	return l, nil
}

// share returns how many partitions each range gets: one each, then the
// rest in proportion to size by largest remainder (ties to the lower
// range), never more than a range's size. Requires len(rs) <= p <= total.
func share(rs []Range, total uint64, p int) []int {
	n := len(rs)
	counts := make([]int, n)
	rest := uint64(p - n)
	rems := make([]uint64, n)
	var given uint64
	for i, r := range rs {
		// rest*size/total without overflow: rest*size < 2^96 and the
		// quotient is below size, so Div64's precondition hi < total holds.
		hi, lo := bits.Mul64(rest, r.Size())
		q, rem := bits.Div64(hi, lo, total)
		counts[i] = 1 + int(q) // q <= size-1 because rest <= total-n
		rems[i] = rem
		given += q
	}
	left := rest - given // < n
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rems[order[a]] > rems[order[b]] })
	for left > 0 {
		progress := false
		for _, i := range order {
			if left == 0 {
				break
			}
			if uint64(counts[i]) < rs[i].Size() {
				counts[i]++
				left--
				progress = true
			}
		}
		if !progress { // unreachable when p <= total
			panic("pool: partition share could not be placed")
		}
	}
	return counts
}

// fingerprint hashes a canonical encoding of the spans: a tag, the count,
// then First and Last of each span as big-endian uint32.
func fingerprint(spans []Span) uint64 {
	b := make([]byte, 0, 16+8*len(spans))
	b = append(b, "freqd/layout/v1:"...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(spans)))
	for _, s := range spans {
		b = binary.BigEndian.AppendUint32(b, s.First)
		b = binary.BigEndian.AppendUint32(b, s.Last)
	}
	return xxhash.Sum64(b)
}

// Ranges returns a copy of the configured ranges, sorted by First.
func (l *Layout) Ranges() []Range { return slices.Clone(l.ranges) }

// Partitions returns the number of partitions P; ids are 0..P-1.
func (l *Layout) Partitions() int { return len(l.spans) }

// Span returns partition id's span, or false if id is not in 0..P-1.
func (l *Layout) Span(id int) (Span, bool) {
	if id < 0 || id >= len(l.spans) {
		return Span{}, false
	}
	return l.spans[id], true
}

// Spans returns a copy of all spans, in id (and frequency) order.
func (l *Layout) Spans() []Span { return slices.Clone(l.spans) }

// Lookup returns the id of the partition holding f, or false when f is
// outside the pool (in no range, or in a gap between ranges). O(log P).
func (l *Layout) Lookup(f uint32) (int, bool) {
	i := sort.Search(len(l.spans), func(i int) bool { return l.spans[i].Last >= f })
	if i == len(l.spans) || l.spans[i].First > f {
		return 0, false
	}
	return i, true
}

// Contains reports whether f is in the pool.
func (l *Layout) Contains(f uint32) bool {
	_, ok := l.Lookup(f)
	return ok
}

// Size returns the total number of frequencies in the pool.
func (l *Layout) Size() uint64 { return l.size }

// Fingerprint returns an xxhash of a canonical encoding of the spans. Two
// layouts with the same spans have the same fingerprint; nodes whose
// fingerprints differ must refuse to cluster together. Ranges that only
// differ in how adjacent ranges are written ("1-5","6-10" against "1-10")
// but cut into the same spans have the same fingerprint, since they behave
// the same.
func (l *Layout) Fingerprint() uint64 { return l.fp }

// String returns a short description, "12 frequencies in 4 partitions of
// 10-15,20-25".
func (l *Layout) String() string {
	var b strings.Builder
	for i, r := range l.ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return fmt.Sprintf("%d frequencies in %d partitions of %s", l.size, len(l.spans), b.String())
}
