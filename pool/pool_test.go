package pool

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestRangeSizeString(t *testing.T) {
	tests := []struct {
		r    Range
		size uint64
		str  string
	}{
		{Range{10, 15}, 6, "10-15"},
		{Range{7, 7}, 1, "7"},
		{Range{0, math.MaxUint32}, 1 << 32, "0-4294967295"},
		{Range{5, 4}, 0, "5-4"},
	}
	for _, tt := range tests {
		if got := tt.r.Size(); got != tt.size {
			t.Errorf("%v.Size() = %d, want %d", tt.r, got, tt.size)
		}
		if got := tt.r.String(); got != tt.str {
			t.Errorf("String() = %q, want %q", got, tt.str)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    Range
		wantErr string // substring; "" means success
	}{
		{in: "10-15", want: Range{10, 15}},
		{in: "7", want: Range{7, 7}},
		{in: "  10-15 ", want: Range{10, 15}},
		{in: "10 - 15", want: Range{10, 15}},
		{in: "\t0-0\n", want: Range{0, 0}},
		{in: "0-4294967295", want: Range{0, math.MaxUint32}},
		{in: "4294967295", want: Range{math.MaxUint32, math.MaxUint32}},
		{in: "15-10", wantErr: `pool range "15-10": reversed: first 15 is greater than last 10`},
		{in: "", wantErr: `pool range "": empty`},
		{in: "   ", wantErr: `pool range "   ": empty`},
		{in: "-5", wantErr: `pool range "-5": frequencies cannot be negative`},
		{in: "-5-10", wantErr: `negative`},
		{in: "5--10", wantErr: `pool range "5--10"`},
		{in: "abc", wantErr: `pool range "abc": "abc" is not a frequency`},
		{in: "10-x", wantErr: `last: "x" is not a frequency`},
		{in: "1.5", wantErr: `not a frequency`},
		{in: "+5", wantErr: `not a frequency`},
		{in: "5-+6", wantErr: `not a frequency`},
		{in: "0x10", wantErr: `not a frequency`},
		{in: "4294967296", wantErr: `not a frequency`},
		{in: "1-4294967296", wantErr: `last: "4294967296" is not a frequency`},
		{in: "99999999999999999999999", wantErr: `not a frequency`},
		{in: "1-2-3", wantErr: `pool range "1-2-3": want "first-last"`},
		{in: "10-", wantErr: `last: missing frequency`},
		{in: "1 0", wantErr: `not a frequency`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRange(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseRange(%q) = %v, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRange(%q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRange(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseRange(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseRanges(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []Range
		wantErr string
	}{
		{name: "classic", in: []string{"10-15", "20-25"}, want: []Range{{10, 15}, {20, 25}}},
		{name: "sorted", in: []string{"20-25", "7", "10-15"}, want: []Range{{7, 7}, {10, 15}, {20, 25}}},
		{name: "adjacent", in: []string{"16-20", "10-15"}, want: []Range{{10, 15}, {16, 20}}},
		{name: "empty list", in: nil, wantErr: "pool ranges: none configured"},
		{name: "overlap", in: []string{"10-15", "12-20"}, wantErr: `pool ranges "10-15" and "12-20" overlap`},
		{name: "overlap reversed order", in: []string{"12-20", "10-15"}, wantErr: `pool ranges "10-15" and "12-20" overlap`},
		{name: "touching end", in: []string{"10-15", "15"}, wantErr: `pool ranges "10-15" and "15" overlap`},
		{name: "duplicate", in: []string{"7", "7"}, wantErr: `pool ranges "7" and "7" overlap`},
		{name: "contained", in: []string{"1-100", "50-60", "200"}, wantErr: `pool ranges "1-100" and "50-60" overlap`},
		{name: "bad member", in: []string{"10-15", "x"}, wantErr: `pool range "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRanges(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRanges(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRanges(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseRanges(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func spansOf(pairs ...uint32) []Span {
	var s []Span
	for i := 0; i < len(pairs); i += 2 {
		s = append(s, Span{ID: len(s), First: pairs[i], Last: pairs[i+1]})
	}
	return s
}

func TestNewLayout(t *testing.T) {
	tests := []struct {
		name       string
		ranges     []Range
		partitions int
		want       []Span // nil: check only count and tiling
		wantCount  int
		wantErr    string
	}{
		{name: "classic 4", ranges: []Range{{10, 15}, {20, 25}}, partitions: 4,
			want: spansOf(10, 12, 13, 15, 20, 22, 23, 25)},
		{name: "classic 2", ranges: []Range{{10, 15}, {20, 25}}, partitions: 2,
			want: spansOf(10, 15, 20, 25)},
		{name: "classic default", ranges: []Range{{10, 15}, {20, 25}}, partitions: 0,
			want: spansOf(10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 20, 20, 21, 21, 22, 22, 23, 23, 24, 24, 25, 25)},
		{name: "classic 5 unequal", ranges: []Range{{10, 15}, {20, 25}}, partitions: 5,
			// 3 left shared 1.5/1.5: floors 1,1, one left goes to the lower range.
			want: spansOf(10, 11, 12, 13, 14, 15, 20, 22, 23, 25)},
		{name: "unsorted input", ranges: []Range{{20, 25}, {10, 15}}, partitions: 2,
			want: spansOf(10, 15, 20, 25)},
		{name: "uneven split", ranges: []Range{{0, 9}}, partitions: 3,
			want: spansOf(0, 3, 4, 6, 7, 9)},
		{name: "proportional", ranges: []Range{{0, 99}, {1000, 1299}}, partitions: 8,
			// 6 left: 1.5 and 4.5 -> 1+1 (+1 tie to lower) and 1+4.
			want: spansOf(0, 33, 34, 66, 67, 99, 1000, 1059, 1060, 1119, 1120, 1179, 1180, 1239, 1240, 1299)},
		{name: "tiny range never oversubscribed", ranges: []Range{{1, 1}, {10, 12}}, partitions: 4,
			want: spansOf(1, 1, 10, 10, 11, 11, 12, 12)},
		{name: "million default", ranges: []Range{{1, 1000000}}, partitions: 0, wantCount: 128},
		{name: "whole uint32", ranges: []Range{{0, math.MaxUint32}}, partitions: 0, wantCount: 128},
		{name: "many ranges", ranges: manyRanges(200), partitions: 0, wantCount: 200},
		{name: "many ranges 1000", ranges: manyRanges(200), partitions: 1000, wantCount: 1000},
		{name: "single frequency", ranges: []Range{{7, 7}}, partitions: 0, want: spansOf(7, 7)},
		{name: "exactly total", ranges: []Range{{1, 3}, {5, 5}}, partitions: 4, want: spansOf(1, 1, 2, 2, 3, 3, 5, 5)},
		{name: "negative", ranges: []Range{{10, 15}}, partitions: -1, wantErr: "pool.partitions=-1 is negative"},
		{name: "too many", ranges: []Range{{10, 15}, {20, 25}}, partitions: 20,
			wantErr: "pool.partitions=20 is more than the 12 frequencies in the pool"},
		{name: "fewer than ranges", ranges: []Range{{1, 5}, {10, 15}, {20, 25}}, partitions: 2,
			wantErr: "pool.partitions=2 is fewer than the 3 configured ranges: a partition never spans two ranges"},
		{name: "above max", ranges: []Range{{0, math.MaxUint32}}, partitions: MaxPartitions + 1, wantErr: "more than the maximum"},
		{name: "span too large", ranges: []Range{{0, math.MaxUint32}}, partitions: 3, wantErr: "more than the maximum 1073741824"},
		{name: "span at max", ranges: []Range{{0, math.MaxUint32}}, partitions: 4, wantCount: 4},
		{name: "no ranges", ranges: nil, partitions: 0, wantErr: "no ranges"},
		{name: "overlap", ranges: []Range{{10, 15}, {12, 20}}, partitions: 0, wantErr: `pool ranges "10-15" and "12-20" overlap`},
		{name: "reversed", ranges: []Range{{15, 10}}, partitions: 0, wantErr: `first 15 is greater than last 10`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.ranges)
			l, err := NewLayout(tt.ranges, tt.partitions)
			if !slices.Equal(in, tt.ranges) {
				t.Fatalf("NewLayout modified its input")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewLayout = %v, %v; want error containing %q", l, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewLayout: %v", err)
			}
			checkLayout(t, l)
			if tt.want != nil && !slices.Equal(l.Spans(), tt.want) {
				t.Fatalf("spans = %v, want %v", l.Spans(), tt.want)
			}
			if tt.wantCount != 0 && l.Partitions() != tt.wantCount {
				t.Fatalf("Partitions() = %d, want %d", l.Partitions(), tt.wantCount)
			}
		})
	}
}

func TestLayoutMillionCovers(t *testing.T) {
	l, err := NewLayout([]Range{{1, 1000000}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	spans := l.Spans()
	if len(spans) != 128 || spans[0].First != 1 || spans[127].Last != 1000000 || l.Size() != 1000000 {
		t.Fatalf("got %d spans %v..%v size %d", len(spans), spans[0], spans[len(spans)-1], l.Size())
	}
	for _, s := range spans {
		if sz := s.Size(); sz != 7812 && sz != 7813 {
			t.Fatalf("span %v has size %d, want 7812 or 7813", s, sz)
		}
	}
	checkLayout(t, l)
}

func TestLayoutAccessors(t *testing.T) {
	l, err := NewLayout([]Range{{20, 25}, {10, 15}}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Ranges(); !slices.Equal(got, []Range{{10, 15}, {20, 25}}) {
		t.Fatalf("Ranges() = %v", got)
	}
	l.Ranges()[0] = Range{0, 0}
	l.Spans()[0] = Span{}
	if r := l.Ranges()[0]; r != (Range{10, 15}) {
		t.Fatalf("Ranges() is not a copy")
	}
	if s, _ := l.Span(0); s != (Span{0, 10, 12}) {
		t.Fatalf("Spans() is not a copy")
	}
	for _, id := range []int{-1, 4, 1 << 40} {
		if s, ok := l.Span(id); ok {
			t.Fatalf("Span(%d) = %v, true", id, s)
		}
	}
	if s, ok := l.Span(3); !ok || s != (Span{3, 23, 25}) {
		t.Fatalf("Span(3) = %v, %v", s, ok)
	}
	lookups := map[uint32]int{10: 0, 12: 0, 13: 1, 15: 1, 20: 2, 25: 3}
	for f, want := range lookups {
		if got, ok := l.Lookup(f); !ok || got != want {
			t.Errorf("Lookup(%d) = %d, %v; want %d", f, got, ok, want)
		}
	}
	for _, f := range []uint32{0, 9, 16, 19, 26, math.MaxUint32} {
		if got, ok := l.Lookup(f); ok {
			t.Errorf("Lookup(%d) = %d, true; want false", f, got)
		}
		if l.Contains(f) {
			t.Errorf("Contains(%d) = true", f)
		}
	}
	if got := l.String(); got != "12 frequencies in 4 partitions of 10-15,20-25" {
		t.Errorf("String() = %q", got)
	}
}

func TestFingerprint(t *testing.T) {
	mk := func(rs []Range, p int) uint64 {
		t.Helper()
		l, err := NewLayout(rs, p)
		if err != nil {
			t.Fatal(err)
		}
		return l.Fingerprint()
	}
	a := mk([]Range{{10, 15}, {20, 25}}, 4)
	if b := mk([]Range{{20, 25}, {10, 15}}, 4); a != b {
		t.Errorf("same layout, input order differs: fingerprints %x != %x", a, b)
	}
	differ := []struct {
		rs []Range
		p  int
	}{
		{[]Range{{10, 15}, {20, 25}}, 2},
		{[]Range{{10, 15}, {20, 26}}, 4},
		{[]Range{{10, 15}, {21, 26}}, 4},
		{[]Range{{10, 25}}, 4},
	}
	for _, d := range differ {
		if b := mk(d.rs, d.p); a == b {
			t.Errorf("layouts %v/%d and classic/4 share fingerprint %x", d.rs, d.p, a)
		}
	}
}

func manyRanges(n int) []Range {
	rs := make([]Range, n)
	for i := range rs {
		first := uint32(i * 1000)
		rs[i] = Range{first, first + uint32(i%7)*100 + uint32(i%3)}
	}
	return rs
}

// checkLayout checks that the spans tile the ranges exactly in order, are
// as equal as possible inside each range, and that Lookup agrees with a
// linear scan at every span edge and around it.
func checkLayout(t *testing.T, l *Layout) {
	t.Helper()
	spans := l.Spans()
	ranges := l.Ranges()
	if len(spans) != l.Partitions() || len(spans) < len(ranges) {
		t.Fatalf("%d spans, Partitions() %d, %d ranges", len(spans), l.Partitions(), len(ranges))
	}
	var total uint64
	si := 0
	for _, r := range ranges {
		total += r.Size()
		next := uint64(r.First)
		minSz, maxSz := uint64(math.MaxUint64), uint64(0)
		for si < len(spans) && uint64(spans[si].First) <= uint64(r.Last) {
			s := spans[si]
			if s.ID != si {
				t.Fatalf("span %d has id %d", si, s.ID)
			}
			if uint64(s.First) != next || s.Last < s.First || s.Last > r.Last {
				t.Fatalf("span %v does not continue range %v at %d", s, r, next)
			}
			minSz, maxSz = min(minSz, s.Size()), max(maxSz, s.Size())
			next = uint64(s.Last) + 1
			si++
		}
		if next != uint64(r.Last)+1 {
			t.Fatalf("range %v not covered: stops at %d", r, next)
		}
		if maxSz-minSz > 1 {
			t.Fatalf("range %v: span sizes %d..%d differ by more than 1", r, minSz, maxSz)
		}
	}
	if si != len(spans) {
		t.Fatalf("span %v outside every range", spans[si])
	}
	if total != l.Size() {
		t.Fatalf("Size() = %d, want %d", l.Size(), total)
	}
	linear := func(f uint32) (int, bool) {
		for _, s := range spans {
			if s.Contains(f) {
				return s.ID, true
			}
		}
		return 0, false
	}
	probe := func(f uint32) {
		gid, gok := l.Lookup(f)
		wid, wok := linear(f)
		if gok != wok || (gok && gid != wid) {
			t.Fatalf("Lookup(%d) = %d, %v; linear scan says %d, %v", f, gid, gok, wid, wok)
		}
	}
	// Probe the edges of up to ~200 spans (all of them in small layouts).
	stride := max(1, len(spans)/200)
	for i := 0; i < len(spans); i += stride {
		s := spans[i]
		for _, f := range []uint32{s.First - 1, s.First, s.First + 1, s.Last - 1, s.Last, s.Last + 1} {
			probe(f)
		}
	}
	probe(0)
	probe(math.MaxUint32)
}

func TestLayoutProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		n := 1 + rng.IntN(8)
		var rs []Range
		var next uint64 = uint64(rng.IntN(100))
		var total uint64
		for range n {
			size := uint64(1 + rng.IntN(400))
			if rng.IntN(4) == 0 {
				size = uint64(1 + rng.IntN(3))
			}
			if next+size-1 > math.MaxUint32 {
				break
			}
			rs = append(rs, Range{uint32(next), uint32(next + size - 1)})
			total += size
			next += size + uint64(rng.IntN(3)) // 0 gap: adjacent ranges
		}
		rng.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
		p := 0
		if rng.IntN(4) != 0 {
			p = len(rs) + rng.IntN(int(min(total, 400))-len(rs)+1)
		}
		l, err := NewLayout(rs, p)
		if err != nil {
			t.Fatalf("iter %d: NewLayout(%v, %d): %v", iter, rs, p, err)
		}
		if p != 0 && l.Partitions() != p {
			t.Fatalf("iter %d: %d partitions, want %d", iter, l.Partitions(), p)
		}
		checkLayout(t, l)
		// Random probes, including outside the pool.
		spans := l.Spans()
		for range 100 {
			f := uint32(rng.IntN(int(next) + 10))
			id, ok := l.Lookup(f)
			want, wantOK := -1, false
			for _, s := range spans {
				if s.Contains(f) {
					want, wantOK = s.ID, true
				}
			}
			if ok != wantOK || (ok && id != want) {
				t.Fatalf("iter %d: Lookup(%d) = %d,%v want %d,%v", iter, f, id, ok, want, wantOK)
			}
		}
		// Deterministic: the same input gives the same layout.
		l2, _ := NewLayout(rs, p)
		if l2.Fingerprint() != l.Fingerprint() || !slices.Equal(l2.Spans(), spans) {
			t.Fatalf("iter %d: layout not deterministic", iter)
		}
	}
}

// TestShareProportional checks the largest-remainder share against the
// exact quotas: every range's extra partitions are within 1 of its quota.
func TestShareProportional(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		n := 1 + rng.IntN(10)
		rs := make([]Range, n)
		var total uint64
		for i := range rs {
			sz := uint64(1 + rng.IntN(5000))
			rs[i] = Range{uint32(i * 10000), uint32(i*10000) + uint32(sz) - 1}
			total += sz
		}
		p := n + rng.IntN(int(min(total, 3000))-n+1)
		counts := share(rs, total, p)
		sum := 0
		for i, c := range counts {
			sum += c
			quota := float64(p-n) * float64(rs[i].Size()) / float64(total)
			if extra := float64(c - 1); extra < quota-1-1e-9 || extra > quota+1+1e-9 || uint64(c) > rs[i].Size() || c < 1 {
				t.Fatalf("range %v got %d partitions, quota %.2f+1 (p=%d)", rs[i], c, quota, p)
			}
		}
		if sum != p {
			t.Fatalf("shares sum to %d, want %d", sum, p)
		}
	}
}

func ExampleNewLayout() {
	ranges, err := ParseRanges([]string{"20-25", "10-15"})
	if err != nil {
		panic(err)
	}
	l, err := NewLayout(ranges, 4)
	if err != nil {
		panic(err)
	}
	for _, s := range l.Spans() {
		fmt.Println(s)
	}
	id, ok := l.Lookup(21)
	fmt.Println(id, ok)
	// Output:
	// 0:10-12
	// 1:13-15
	// 2:20-22
	// 3:23-25
	// 2 true
}
